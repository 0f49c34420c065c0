//! Gateway footprint and convergence: idle RSS with an empty catalog and with
//! 10,000 imported services, and the time from an export to the name resolving in
//! two other clusters' DNS. Gateways run as separate processes (this binary
//! re-executed as `run-gateway`), so RSS is each gateway's own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use causeway_gateway::cli::ops::AdminClient;
use causeway_gateway::config::{ExportConfig, PortConfig};
use causeway_gateway::status::StatusReport;
use causeway_trust::{ISSUER_VALIDITY, ROOT_VALIDITY, RootCa};
use clap::Args;

/// Arguments of `causeway-bench gateway`.
#[derive(Debug, Args)]
pub struct GatewayBenchArgs {
    /// Services one cluster exports (and the others import).
    #[arg(long, default_value_t = 10_000)]
    imports: usize,
    /// Export changes timed for convergence.
    #[arg(long, default_value_t = 200)]
    changes: usize,
}

struct Gateway {
    name: String,
    child: Child,
    admin: SocketAddr,
    dns: SocketAddr,
    registry: SocketAddr,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    causeway_testing::free_port().expect("a free loopback port")
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Resident and peak resident memory of a process, in bytes.
fn rss(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .with_context(|| format!("{name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn export(name: &str) -> ExportConfig {
    ExportConfig {
        namespace: "bench".into(),
        name: name.into(),
        ports: vec![PortConfig {
            name: Some("http".into()),
            port: 8080,
            target_port: Some(1),
            protocol: "tcp".into(),
        }],
        endpoints: vec!["127.0.0.1".parse().expect("ip")],
        weight: 100,
        labels: Default::default(),
    }
}

fn start(
    dir: &Path,
    root: &RootCa,
    name: &str,
    pool: &str,
    join: Option<SocketAddr>,
    exports: usize,
) -> Result<Gateway> {
    let cdir = dir.join(name);
    root.issue_cluster(name.parse()?, ISSUER_VALIDITY, root.bundle())?
        .write(&cdir.join("issuer"), false)?;
    let (admin, dns, registry) = (
        loopback(free_port()),
        loopback(free_port()),
        loopback(free_port()),
    );
    let mut text = format!(
        "cluster = \"{name}\"\n[trust]\nissuer_dir = \"issuer\"\n[registry]\nlisten = \"{registry}\"\ndata_dir = \"data\"\njoin = [{join}]\nelection_timeout = \"500ms\"\n[tunnel]\nlisten = \"127.0.0.1:{tunnel}\"\n[dns]\nlisten = \"{dns}\"\n[imports]\npools = [\"{pool}\"]\n[admin]\nlisten = \"{admin}\"\n[[access.policy]]\nname = \"bench-from-all\"\naction = \"allow\"\nfrom = [\"*\"]\nnamespace = \"bench\"\n",
        join = join.map_or_else(String::new, |j| format!("\"{j}\"")),
        tunnel = free_port(),
    );
    for i in 0..exports {
        text.push_str(&format!(
            "[[export]]\nnamespace = \"bench\"\nname = \"svc-{i}\"\nendpoints = [\"127.0.0.1\"]\nports = [{{ name = \"http\", port = 8080, target_port = 1 }}]\n"
        ));
    }
    let config = cdir.join("gateway.toml");
    std::fs::write(&config, text)?;
    let log = std::fs::File::create(cdir.join("gateway.log"))?;
    // Profiling: CAUSEWAY_BENCH_WRAP="heaptrack -o /tmp/alpha" runs the first
    // gateway under that command (e.g. to see where its memory goes).
    let wrap = std::env::var("CAUSEWAY_BENCH_WRAP")
        .ok()
        .filter(|_| join.is_none());
    let mut command = match wrap.as_deref().map(str::split_whitespace) {
        Some(mut words) => {
            let mut c = Command::new(words.next().context("CAUSEWAY_BENCH_WRAP is empty")?);
            c.args(words).arg(std::env::current_exe()?);
            c
        }
        None => Command::new(std::env::current_exe()?),
    };
    let child = command
        .arg("run-gateway")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    Ok(Gateway {
        name: name.into(),
        child,
        admin,
        dns,
        registry,
    })
}

async fn wait_status(
    gw: &Gateway,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&StatusReport) -> bool,
) -> Result<Duration> {
    let client = AdminClient::new(gw.admin);
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(s) = client.status().await
            && ok(&s)
        {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{}: {what} not within {timeout:?}", gw.name)
}

fn imports_all(s: &StatusReport, n: usize) -> bool {
    s.imports.len() >= n && s.imports.iter().all(|i| i.listening)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Runs the gateway benchmark.
pub async fn run(args: GatewayBenchArgs) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = RootCa::generate("causeway.local".parse()?, ROOT_VALIDITY)?;
    println!(
        "gateway footprint and convergence ({} imports, {} changes)",
        args.imports, args.changes
    );

    let a = start(dir.path(), &root, "alpha", "127.80.0.0/16", None, 0)?;
    measure_idle(&a).await?;
    let b = start(
        dir.path(),
        &root,
        "bravo",
        "127.81.0.0/16",
        Some(a.registry),
        args.imports,
    )?;
    measure_imports(&a, args.imports).await?;
    let c = start(
        dir.path(),
        &root,
        "charlie",
        "127.82.0.0/16",
        Some(a.registry),
        0,
    )?;
    wait_status(&c, "imports listening", Duration::from_secs(600), |s| {
        imports_all(s, args.imports)
    })
    .await?;
    let samples = measure_convergence(&c, [&a, &b], args.changes).await?;
    report_convergence(&a, &samples)?;
    drop((a, b, c));
    Ok(())
}

/// RSS of a ready gateway with an empty catalog.
async fn measure_idle(a: &Gateway) -> Result<()> {
    wait_status(a, "ready", Duration::from_secs(30), |s| s.ready).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle, _) = rss(a.child.id())?;
    println!("  idle, empty catalog:            RSS {}", mib(idle));
    Ok(())
}

/// How long `a` takes to listen for `imports` imports, and its RSS then.
async fn measure_imports(a: &Gateway, imports: usize) -> Result<()> {
    let took = wait_status(a, "imports listening", Duration::from_secs(600), |s| {
        imports_all(s, imports)
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (loaded, peak) = rss(a.child.id())?;
    println!(
        "  {} imports (one exporter each, one listener each): RSS {} (peak {}), imported in {:.1}s",
        imports,
        mib(loaded),
        mib(peak),
        took.as_secs_f64()
    );
    Ok(())
}

/// Convergence: one new export on `exporter` at a time (bravo is at its limit of
/// exports per cluster), timed until every one of `others`' DNS answers for it.
async fn measure_convergence(
    exporter: &Gateway,
    others: [&Gateway; 2],
    changes: usize,
) -> Result<Vec<Duration>> {
    let client = AdminClient::new(exporter.admin);
    let mut samples = Vec::with_capacity(changes);
    for i in 0..changes {
        let name = format!("conv-{i}");
        let fqdn = format!("{name}.bench.svc.clusterset.local");
        let started = Instant::now();
        client.export(&export(&name)).await?;
        for gw in others {
            loop {
                if let Ok(ips) =
                    causeway_gateway::dns_probe::query_a(gw.dns, &fqdn, Duration::from_millis(500))
                        .await
                    && !ips.is_empty()
                {
                    break;
                }
                if started.elapsed() > Duration::from_secs(30) {
                    bail!("{fqdn} did not resolve at {} within 30s", gw.name);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(samples)
}

fn report_convergence(a: &Gateway, samples: &[Duration]) -> Result<()> {
    println!(
        "  export → DNS in both other clusters: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n={})",
        percentile(samples, 0.5).as_secs_f64() * 1e3,
        percentile(samples, 0.99).as_secs_f64() * 1e3,
        samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        samples.len()
    );
    let (after, peak) = rss(a.child.id())?;
    println!(
        "  alpha after the changes:        RSS {} (peak {})",
        mib(after),
        mib(peak)
    );
    println!("  targets: idle <= 15 MiB, 10,000 imports <= 40 MiB, convergence p99 <= 200 ms");
    Ok(())
}

/// Runs one gateway in this process (the child side of the benchmark).
pub async fn run_gateway(config: PathBuf) -> Result<()> {
    causeway_gateway::telemetry::init(causeway_gateway::telemetry::LogFormat::Text);
    causeway_gateway::app::run(config, None).await
}
