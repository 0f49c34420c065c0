//! Tunnel: Causeway's QUIC tunnel against direct loopback TCP and an stunnel4
//! mutual-TLS 1.3 tunnel.
//!
//! Every path ends at the same in-process servers (a sink and a 1 KiB echo) and
//! is driven by the same blocking load generator:
//!
//! ```text
//! direct:   client ───────────────────────────────▶ server
//! stunnel:  client ─▶ stunnel (client) ─TLS─▶ stunnel (server) ─▶ server
//! causeway: client ─▶ gateway A ─QUIC/mTLS─▶ gateway B ─▶ server
//! ```
//!
//! The two Causeway gateways run in a child process (this binary re-executed with
//! `--gateways`), and the two stunnels are their own processes, so each tunnel's
//! CPU seconds and peak RSS are read from `/proc/<pid>` alone, without the load
//! generator's. Measured: single-stream and N-stream throughput, and p50/p99/p99.9
//! round-trip time of 1 KiB request/response at a fixed rate and at saturation.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// Size of one request and one response in the latency tests.
const MESSAGE: usize = 1024;
/// Chunk the throughput clients write.
const CHUNK: usize = 256 << 10;
/// How long a tunnel may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Service names the gateways carry.
const SINK: &str = "sink";
/// See [`SINK`].
const ECHO: &str = "echo";

/// Options of `causeway-bench tunnel`.
#[derive(Debug, Clone, clap::Args)]
pub struct TunnelBenchArgs {
    /// Seconds of each throughput measurement.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Streams in the multi-stream throughput measurement.
    #[arg(long, default_value_t = 8)]
    pub streams: usize,
    /// Requests per second in the fixed-rate latency measurement.
    #[arg(long, default_value_t = 2000)]
    pub rate: u32,
    /// Seconds of each latency measurement.
    #[arg(long, default_value_t = 5)]
    pub latency_seconds: u64,
    /// The stunnel binary (Debian package `stunnel4`).
    #[arg(long, default_value = "stunnel4")]
    pub stunnel: String,
    /// Rounds over all paths; each figure is the median.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Leave stunnel out (for machines without it).
    #[arg(long)]
    pub skip_stunnel: bool,
    /// Worker threads of each gateway's runtime; 0 runs both gateways on one
    /// shared multi-threaded runtime.
    #[arg(long, default_value_t = 1)]
    pub gateway_threads: usize,
    /// QUIC congestion controller of the gateways: cubic, bbr or newreno.
    #[arg(long, default_value = "cubic")]
    pub congestion: String,
    /// QUIC send window of the gateways, in bytes (0: the default).
    #[arg(long, default_value_t = 0)]
    pub send_window: u64,
    /// Largest splice buffer of the gateways, in bytes.
    #[arg(long, default_value_t = 512 << 10)]
    pub buffer_size: usize,
    /// Internal: run the two gateways for a parent run, forwarding to
    /// `<sink>,<echo>` addresses, until stdin closes.
    #[arg(long, hide = true, value_name = "SINK,ECHO")]
    pub gateways: Option<String>,
}

/// Runs the benchmark and prints a table.
pub async fn run(args: TunnelBenchArgs) -> Result<()> {
    if let Some(backends) = &args.gateways {
        return serve_gateways(backends, &args).await;
    }
    tokio::task::spawn_blocking(move || run_blocking(&args))
        .await
        .context("benchmark thread panicked")?
}

// === the run ===

/// One tunnel under test: where clients connect, and the processes to measure.
struct Path_ {
    name: &'static str,
    sink: SocketAddr,
    echo: SocketAddr,
    processes: Vec<Child>,
}

impl Drop for Path_ {
    fn drop(&mut self) {
        for p in &mut self.processes {
            // Only the processes this run started, by their handle.
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Results {
    single_gbps: f64,
    multi_gbps: f64,
    fixed: Latency,
    saturated: Latency,
    cpu_seconds: f64,
    peak_rss_kib: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Latency {
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    rate: f64,
}

fn run_blocking(args: &TunnelBenchArgs) -> Result<()> {
    let sink = start_sink()?;
    let echo = start_echo()?;
    let dir = tempdir()?;
    let mut paths = vec![Path_ {
        name: "direct",
        sink,
        echo,
        processes: Vec::new(),
    }];
    if args.skip_stunnel {
        eprintln!("stunnel: skipped (--skip-stunnel)");
    } else {
        paths.push(start_stunnel(args, &dir, sink, echo)?);
    }
    paths.push(start_causeway(args, sink, echo)?);

    // Rounds alternate the paths, so a burst of load elsewhere on the machine
    // hits all of them; each figure is the median over the rounds.
    let mut runs: Vec<Vec<Results>> = vec![Vec::new(); paths.len()];
    for round in 1..=args.repeat.max(1) {
        for (path, results) in paths.iter().zip(&mut runs) {
            eprintln!("round {round}/{}: {}", args.repeat.max(1), path.name);
            results.push(measure(path, args)?);
        }
    }
    let rows: Vec<(&str, Results)> = paths
        .iter()
        .zip(&runs)
        .map(|(p, r)| (p.name, median(r)))
        .collect();
    drop(paths);
    print_table(args, &rows);
    // Best effort: the directory only holds throw-away certificates.
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The per-field median of several runs (CPU seconds: per run; RSS: the peak).
fn median(runs: &[Results]) -> Results {
    let mid = |f: &dyn Fn(&Results) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let lat = |g: &dyn Fn(&Results) -> Latency| Latency {
        p50_us: mid(&|r| g(r).p50_us),
        p99_us: mid(&|r| g(r).p99_us),
        p999_us: mid(&|r| g(r).p999_us),
        rate: mid(&|r| g(r).rate),
    };
    Results {
        single_gbps: mid(&|r| r.single_gbps),
        multi_gbps: mid(&|r| r.multi_gbps),
        fixed: lat(&|r| r.fixed),
        saturated: lat(&|r| r.saturated),
        cpu_seconds: mid(&|r| r.cpu_seconds),
        peak_rss_kib: runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0),
    }
}

fn measure(path: &Path_, args: &TunnelBenchArgs) -> Result<Results> {
    let pids: Vec<u32> = path.processes.iter().map(Child::id).collect();
    let cpu_before = cpu_seconds(&pids)?;
    let secs = Duration::from_secs(args.seconds);
    eprintln!("{}: single stream", path.name);
    let single_gbps = throughput(path.sink, 1, secs)?;
    eprintln!("{}: {} streams", path.name, args.streams);
    let multi_gbps = throughput(path.sink, args.streams, secs)?;
    let lat = Duration::from_secs(args.latency_seconds);
    let (mut fixed, mut saturated) = (Latency::default(), Latency::default());
    if args.latency_seconds > 0 {
        eprintln!("{}: latency at {}/s", path.name, args.rate);
        fixed = latency(path.echo, Some(args.rate), lat)?;
        eprintln!("{}: latency at saturation", path.name);
        saturated = latency(path.echo, None, lat)?;
    }
    let cpu_seconds = cpu_seconds(&pids)? - cpu_before;
    let peak_rss_kib = pids.iter().map(|&p| peak_rss_kib(p).unwrap_or(0)).sum();
    Ok(Results {
        single_gbps,
        multi_gbps,
        fixed,
        saturated,
        cpu_seconds,
        peak_rss_kib,
    })
}

fn print_table(args: &TunnelBenchArgs, rows: &[(&str, Results)]) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<9} {:>9} {:>9} | {:>27} | {:>36} | {:>7} {:>8}",
        "path",
        "1 stream",
        format!("{} strm", args.streams),
        format!("RTT µs at {}/s p50/p99/p99.9", args.rate),
        "RTT µs saturated p50/p99/p99.9 (req/s)",
        "CPU s",
        "RSS MiB"
    );
    for (name, r) in rows {
        let _ = writeln!(
            out,
            "{:<9} {:>6.2} Gb {:>6.2} Gb | {:>8.1} {:>8.1} {:>9.1} | {:>7.1} {:>7.1} {:>8.1} ({:>8.0}) | {:>7.2} {:>8.1}",
            name,
            r.single_gbps,
            r.multi_gbps,
            r.fixed.p50_us,
            r.fixed.p99_us,
            r.fixed.p999_us,
            r.saturated.p50_us,
            r.saturated.p99_us,
            r.saturated.p999_us,
            r.saturated.rate,
            r.cpu_seconds,
            r.peak_rss_kib as f64 / 1024.0
        );
    }
    let find = |n: &str| rows.iter().find(|(name, _)| *name == n).map(|(_, r)| r);
    if let Some(c) = find("causeway") {
        for base in ["stunnel", "direct"] {
            let Some(b) = find(base) else { continue };
            let _ = writeln!(
                out,
                "causeway/{base:<7}: 1 stream {:.2}x, {} streams {:.2}x, added p99 at {}/s {:+.1} µs (direct p99 {:.1} µs)",
                c.single_gbps / b.single_gbps,
                args.streams,
                c.multi_gbps / b.multi_gbps,
                args.rate,
                c.fixed.p99_us - b.fixed.p99_us,
                find("direct").map_or(0.0, |d| d.fixed.p99_us),
            );
        }
        if let (Some(s), Some(d)) = (find("stunnel"), find("direct")) {
            let _ = writeln!(
                out,
                "added p99 at {}/s over direct: causeway {:+.1} µs, stunnel {:+.1} µs",
                args.rate,
                c.fixed.p99_us - d.fixed.p99_us,
                s.fixed.p99_us - d.fixed.p99_us
            );
        }
    }
    println!("{out}");
}

// === servers and load ===

fn start_sink() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            thread::spawn(move || {
                let mut buf = vec![0u8; CHUNK];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    Ok(addr)
}

fn start_echo() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let _ = s.set_nodelay(true);
            thread::spawn(move || {
                let mut buf = [0u8; MESSAGE];
                while s.read_exact(&mut buf).is_ok() {
                    if s.write_all(&buf).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Writes as fast as possible on `streams` connections for `duration`; Gbit/s
/// over all of them. The first second is warm-up and not counted.
fn throughput(addr: SocketAddr, streams: usize, duration: Duration) -> Result<f64> {
    let counted = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..streams {
        let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        let (counted, counting, stop) = (counted.clone(), counting.clone(), stop.clone());
        writers.push(thread::spawn(move || -> Result<()> {
            let buf = vec![0x5a_u8; CHUNK];
            while !stop.load(Ordering::Relaxed) {
                s.write_all(&buf).context("write")?;
                if counting.load(Ordering::Relaxed) {
                    counted.fetch_add(CHUNK as u64, Ordering::Relaxed);
                }
            }
            Ok(())
        }));
    }
    thread::sleep(Duration::from_secs(1));
    counting.store(true, Ordering::SeqCst);
    let start = Instant::now();
    thread::sleep(duration);
    let bytes = counted.load(Ordering::SeqCst);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
    }
    Ok(bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e9)
}

/// 1 KiB request/response on one connection, paced at `rate` per second or back
/// to back; RTT percentiles in µs.
fn latency(addr: SocketAddr, rate: Option<u32>, duration: Duration) -> Result<Latency> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true)?;
    let req = [0x42_u8; MESSAGE];
    let mut resp = [0u8; MESSAGE];
    // Warm-up: the first requests pay for lazy connection set-up.
    for _ in 0..200 {
        s.write_all(&req)?;
        s.read_exact(&mut resp)?;
    }
    let interval = rate.map(|r| Duration::from_secs_f64(1.0 / f64::from(r.max(1))));
    let mut samples = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    let mut next = start;
    while start.elapsed() < duration {
        if let Some(i) = interval {
            next += i;
            let now = Instant::now();
            if next > now {
                thread::sleep(next - now);
            }
        }
        let t = Instant::now();
        s.write_all(&req)?;
        s.read_exact(&mut resp)?;
        samples.push(t.elapsed().as_nanos() as u64);
    }
    ensure!(!samples.is_empty(), "no samples");
    let rate = samples.len() as f64 / start.elapsed().as_secs_f64();
    samples.sort_unstable();
    let pct = |p: f64| {
        let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i] as f64 / 1000.0
    };
    Ok(Latency {
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        rate,
    })
}

// === process accounting ===

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

fn cpu_seconds(pids: &[u32]) -> Result<f64> {
    let mut total = 0.0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("read /proc/{pid}/stat"))?;
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .context("malformed stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11).context("no utime")?.parse()?;
        let stime: f64 = fields.get(12).context("no stime")?.parse()?;
        total += (utime + stime) / CLOCK_TICKS;
    }
    Ok(total)
}

fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("no value")?
        .parse()?)
}

// === stunnel ===

fn tempdir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("causeway-bench-tunnel-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

use causeway_gateway::federation::free_port;

/// A CA and two leaves (server, client) as PEM files in `dir`.
fn write_certs(dir: &Path) -> Result<()> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "causeway bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    for (name, usage) in [
        ("server", ExtendedKeyUsagePurpose::ServerAuth),
        ("client", ExtendedKeyUsagePurpose::ClientAuth),
    ] {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("bench {name}"));
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca)?;
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem())?;
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem())?;
    }
    Ok(())
}

fn start_stunnel(
    args: &TunnelBenchArgs,
    dir: &Path,
    sink: SocketAddr,
    echo: SocketAddr,
) -> Result<Path_> {
    write_certs(dir)?;
    let d = dir.display();
    let common = |role: &str| {
        format!(
            "foreground = yes\npid =\ndebug = 3\nsocket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n\
             sslVersionMin = TLSv1.3\nCAfile = {d}/ca.pem\nverifyChain = yes\n\
             cert = {d}/{role}.pem\nkey = {d}/{role}.key\n"
        )
    };
    let (tls_sink, tls_echo) = (free_port()?, free_port()?);
    let (in_sink, in_echo) = (free_port()?, free_port()?);
    let server = format!(
        "{}[sink]\naccept = 127.0.0.1:{tls_sink}\nconnect = {sink}\n[echo]\naccept = 127.0.0.1:{tls_echo}\nconnect = {echo}\n",
        common("server")
    );
    let client = format!(
        "{}client = yes\n[sink]\naccept = 127.0.0.1:{in_sink}\nconnect = 127.0.0.1:{tls_sink}\n[echo]\naccept = 127.0.0.1:{in_echo}\nconnect = 127.0.0.1:{tls_echo}\n",
        common("client")
    );
    std::fs::write(dir.join("server.conf"), server)?;
    std::fs::write(dir.join("client.conf"), client)?;
    let spawn = |conf: &str| -> Result<Child> {
        Command::new(&args.stunnel)
            .arg(dir.join(conf))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "start {} (Debian package stunnel4; or pass --skip-stunnel)",
                    args.stunnel
                )
            })
    };
    let path = Path_ {
        name: "stunnel",
        sink: SocketAddr::from(([127, 0, 0, 1], in_sink)),
        echo: SocketAddr::from(([127, 0, 0, 1], in_echo)),
        processes: vec![spawn("server.conf")?, spawn("client.conf")?],
    };
    wait_for_echo(path.echo)?;
    Ok(path)
}

/// Waits until a 1 KiB round trip through `addr` works.
fn wait_for_echo(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let attempt = (|| -> Result<()> {
            let mut s = TcpStream::connect(addr)?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(&[1u8; MESSAGE])?;
            let mut r = [0u8; MESSAGE];
            s.read_exact(&mut r)?;
            Ok(())
        })();
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                bail!("{addr} did not start within {START_TIMEOUT:?}: {e}")
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

// === causeway ===

fn start_causeway(args: &TunnelBenchArgs, sink: SocketAddr, echo: SocketAddr) -> Result<Path_> {
    let exe = std::env::current_exe().context("locate this binary")?;
    let mut child = Command::new(exe)
        .arg("tunnel")
        .arg("--gateways")
        .arg(format!("{sink},{echo}"))
        .arg("--gateway-threads")
        .arg(args.gateway_threads.to_string())
        .arg("--buffer-size")
        .arg(args.buffer_size.to_string())
        .arg("--congestion")
        .arg(&args.congestion)
        .arg("--send-window")
        .arg(args.send_window.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the gateway process")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let mut addrs = line
        .strip_prefix("READY ")
        .with_context(|| format!("gateway process said {line:?}"))?
        .trim()
        .split(',');
    let sink_in: SocketAddr = addrs.next().context("sink address")?.parse()?;
    let echo_in: SocketAddr = addrs.next().context("echo address")?.parse()?;
    let path = Path_ {
        name: "causeway",
        sink: sink_in,
        echo: echo_in,
        processes: vec![child],
    };
    wait_for_echo(path.echo)?;
    Ok(path)
}

/// The child side: gateways B (exporting the sink and echo) and A (importing
/// them), until stdin closes. With `--gateway-threads N > 0` each gateway gets
/// its own runtime of N threads, as two gateway processes would.
async fn serve_gateways(backends: &str, args: &TunnelBenchArgs) -> Result<()> {
    use causeway_gateway::tunnel::{
        AllowAll, Import, ImportPeer, LocalService, Metrics, ServiceTarget, Tunnel, TunnelConfig,
    };
    use causeway_trust::{
        GatewayIdentity, ISSUER_VALIDITY, LEAF_LIFETIME, ROOT_VALIDITY, Role, RootCa, TrustDomain,
    };

    let (sink, echo) = backends
        .split_once(',')
        .context("--gateways takes SINK,ECHO")?;
    let (sink, echo): (SocketAddr, SocketAddr) = (sink.parse()?, echo.parse()?);
    let root = RootCa::generate(TrustDomain::default(), ROOT_VALIDITY)?;
    let identity = |cluster: &str| -> Result<Arc<GatewayIdentity>> {
        let issuer = root.issue_cluster(cluster.parse()?, ISSUER_VALIDITY, root.bundle())?;
        Ok(GatewayIdentity::new(issuer, Role::Gateway, LEAF_LIFETIME)?)
    };
    let mut config = TunnelConfig {
        listen: "127.0.0.1:0".parse()?,
        buffer_size: args.buffer_size,
        congestion: args.congestion.parse().map_err(anyhow::Error::msg)?,
        ..TunnelConfig::default()
    };
    if args.send_window > 0 {
        config.send_window = args.send_window;
    }
    let target = |name: &str| ServiceTarget::new("bench", name, 9000);
    let runtime = |threads: usize| -> Result<Option<tokio::runtime::Runtime>> {
        if threads == 0 {
            return Ok(None);
        }
        Ok(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()?,
        ))
    };
    let (rt_a, rt_b) = (
        runtime(args.gateway_threads)?,
        runtime(args.gateway_threads)?,
    );

    let guard = rt_b.as_ref().map(tokio::runtime::Runtime::enter);
    let b = Tunnel::start(
        config.clone(),
        identity("east")?,
        Arc::new(Metrics::new()),
        Arc::new(AllowAll),
    )?;
    drop(guard);
    b.set_local_services([
        LocalService {
            target: target(SINK),
            endpoints: vec![sink],
        },
        LocalService {
            target: target(ECHO),
            endpoints: vec![echo],
        },
    ]);
    let guard = rt_a.as_ref().map(tokio::runtime::Runtime::enter);
    let a = Arc::new(Tunnel::start(
        config,
        identity("west")?,
        Arc::new(Metrics::new()),
        Arc::new(AllowAll),
    )?);
    drop(guard);
    let peers = vec![ImportPeer {
        cluster: "east".parse()?,
        gateway: b.local_addr(),
        weight: 1,
    }];
    let mut listens = Vec::new();
    for name in [SINK, ECHO] {
        let import = Import {
            target: target(name),
            bind: "127.0.0.1:0".parse()?,
            peers: peers.clone(),
        };
        // The listener's tasks belong to A's runtime.
        let addr = match &rt_a {
            Some(rt) => {
                let a = a.clone();
                rt.spawn(async move { a.add_import(import).await })
                    .await??
            }
            None => a.add_import(import).await?,
        };
        listens.push(addr);
    }
    println!("READY {},{}", listens[0], listens[1]);
    std::io::stdout().flush()?;
    // Until the parent goes away.
    tokio::task::spawn_blocking(|| {
        let mut buf = [0u8; 64];
        while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
    })
    .await?;
    a.close();
    b.close();
    for rt in [rt_a, rt_b].into_iter().flatten() {
        rt.shutdown_background();
    }
    Ok(())
}
