//! DNS: Causeway's clusterset authority against nsd and unbound.
//!
//! All three serve the same zone of imported services on loopback, each on its own
//! port, and `dnsperf` asks each in turn for every name. Then the time from an
//! import-table change to the new name resolving over UDP is measured on Causeway.
//! nsd and unbound run from temporary directories and are stopped by their pid.
//!
//! `run` goes through named phases (build the zone, start the servers, measure
//! throughput, latency and change latency, report); the peer daemons live in `peers`,
//! the UDP questions and dnsperf runs in `queries`.

mod peers;
mod queries;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use causeway_mirror::dns::{DnsConfig, DnsServer, Metrics};
use causeway_mirror::import::NoSink;
use causeway_mirror::{AddressConfig, Mirror, MirrorConfig};
use causeway_registry::{
    Catalog, CatalogEvent, ClusterRecord, Command as CatalogCommand, Export, Limits, Protocol,
    ServicePort,
};
use causeway_trust::{SpiffeId, TrustDomain};
use hickory_proto::op::ResponseCode;
use peers::{Daemon, cpu_seconds, start_nsd, start_unbound};
use queries::{ask, dnsperf_latency, dnsperf_throughput, wait_for_answer};

/// The zone every server serves.
const ZONE: &str = "clusterset.local";
/// The namespace of the benchmark's services.
const NAMESPACE: &str = "bench";
/// How long a server may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between polls for a changed name (the measurement's resolution).
const POLL_INTERVAL: Duration = Duration::from_micros(200);
/// How long a change may take to resolve before the run counts it as failed.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of `causeway-bench dns`.
#[derive(Debug, Clone, clap::Args)]
pub struct DnsBenchArgs {
    /// Seconds of dnsperf throughput per server, split over `--rounds`.
    #[arg(long, default_value_t = 15)]
    pub duration: u64,
    /// Throughput rounds; each round runs every server once, in turn.
    #[arg(long, default_value_t = 3)]
    pub rounds: u64,
    /// Names (imported services) in the zone.
    #[arg(long, default_value_t = 10_000)]
    pub names: usize,
    /// dnsperf clients (`-c`), i.e. source sockets.
    #[arg(long, default_value_t = 10)]
    pub clients: u32,
    /// Worker threads or processes of every server (Causeway UDP workers, nsd
    /// server-count, unbound num-threads).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Rate of the latency run, in queries per second (dnsperf `-Q`, with `-v`).
    #[arg(long, default_value_t = 20_000)]
    pub latency_qps: u32,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 5)]
    pub latency_duration: u64,
    /// Import-table changes to time until their name resolves.
    #[arg(long, default_value_t = 1000)]
    pub changes: usize,
    /// Benchmark Causeway alone (no nsd, no unbound).
    #[arg(long)]
    pub causeway_only: bool,
}

/// What dnsperf throughput runs reported (one, or several added up).
#[derive(Debug, Clone, Default)]
struct Throughput {
    qps: f64,
    avg_latency: Duration,
    completed: u64,
    lost: u64,
    run_time: f64,
    /// CPU time the server used meanwhile (user and system).
    cpu_seconds: f64,
    rcodes: String,
}

impl Throughput {
    /// Adds another run: rates over the total time, latency weighted by queries.
    fn add(&mut self, other: &Throughput) {
        let completed = self.completed + other.completed;
        let weighted = self.avg_latency.as_secs_f64() * self.completed as f64
            + other.avg_latency.as_secs_f64() * other.completed as f64;
        self.avg_latency = Duration::from_secs_f64(weighted / completed.max(1) as f64);
        self.completed = completed;
        self.lost += other.lost;
        self.run_time += other.run_time;
        self.cpu_seconds += other.cpu_seconds;
        self.qps = self.completed as f64 / self.run_time.max(f64::MIN_POSITIVE);
        self.rcodes.clone_from(&other.rcodes);
    }
}

/// Latencies at a fixed rate, from dnsperf's per-query lines.
#[derive(Debug, Clone, Default)]
struct Latency {
    p50: Duration,
    p99: Duration,
    samples: usize,
}

/// A server under test: Causeway in this process, or a peer daemon.
struct Server {
    name: &'static str,
    addr: SocketAddr,
    daemon: Option<Daemon>,
}

/// Runs the DNS benchmark and prints its table.
pub async fn run(args: DnsBenchArgs) -> Result<()> {
    check_tools(&args)?;
    let dir = tempfile::tempdir().context("temporary directory")?;

    // Causeway: the real path, catalog snapshot → import table → zone.
    let (catalog, mirror, config) = build_zone(&args)?;
    let server = DnsServer::start(&config.dns, mirror.zone().clone()).await?;
    let causeway_addr = server.local_addr();

    // The same names and addresses for everyone.
    let records = zone_records(&mirror);
    let queries = write_queries(dir.path(), &records)?;
    let (probe_name, probe_addr) = records.iter().next().context("no records")?;
    let probe = (probe_name.clone(), IpAddr::V4(*probe_addr));
    let mut servers = start_servers(&args, dir.path(), &records, causeway_addr)?;
    wait_until_serving(&servers, &probe).await?;

    let totals = measure_throughput(&args, &servers, &queries).await?;
    let results = measure_latency(&args, &servers, totals, &queries).await?;
    for server in &mut servers {
        if let Some(daemon) = server.daemon.take() {
            daemon.stop();
        }
    }

    // Change → resolvable, through the mirror's own event loop.
    let change = measure_changes(catalog, mirror, causeway_addr, args.changes).await?;
    server.shutdown().await;

    print_report(&args, &results, &change);
    Ok(())
}

fn check_tools(args: &DnsBenchArgs) -> Result<()> {
    ensure!(args.names > 0, "--names must be at least 1");
    which("dnsperf", "dnsperf")?;
    if !args.causeway_only {
        which("nsd", "nsd")?;
        which("unbound", "unbound")?;
    }
    Ok(())
}

/// A catalog of `--names` exports and the mirror whose zone is built from its
/// snapshot, published and ready to serve.
fn build_zone(args: &DnsBenchArgs) -> Result<(Catalog, Mirror, MirrorConfig)> {
    let mut catalog = Catalog::new(Limits {
        max_exports: args.names + args.changes + 16,
        max_exports_per_cluster: args.names + args.changes + 16,
        ..Limits::default()
    });
    catalog.apply(&CatalogCommand::RegisterCluster(cluster_record("west")?))?;
    for i in 0..args.names {
        catalog.apply(&CatalogCommand::PutExport(export(&format!("svc-{i}"))?))?;
    }
    let config = MirrorConfig {
        dns: DnsConfig {
            listen: "127.0.0.1:0".parse()?,
            udp_workers: args.workers,
            ..DnsConfig::default()
        },
        addresses: AddressConfig::default(),
        allocate_addresses: true,
    };
    let mut mirror = Mirror::new("east".parse()?, &config, Metrics::default())?;
    let started = Instant::now();
    mirror.apply(&CatalogEvent::Snapshot(catalog.snapshot()), &mut NoSink)?;
    mirror.publish();
    println!(
        "zone: {} services, {} names, built from a catalog snapshot in {:.1} ms",
        mirror.zone().current().service_count(),
        mirror.zone().current().name_count(),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok((catalog, mirror, config))
}

/// Every imported name with its (IPv4) address, as the mirror's table holds them.
fn zone_records(mirror: &Mirror) -> BTreeMap<String, Ipv4Addr> {
    let mut records = BTreeMap::new();
    for import in mirror.table().imports() {
        if let Some(IpAddr::V4(a)) = import.addresses.first() {
            records.insert(
                format!(
                    "{}.{}.svc.{ZONE}",
                    import.service.name(),
                    import.service.namespace()
                ),
                *a,
            );
        }
    }
    records
}

/// Writes dnsperf's query file: every name, type A.
fn write_queries(dir: &Path, records: &BTreeMap<String, Ipv4Addr>) -> Result<PathBuf> {
    let queries = dir.join("queries.txt");
    let mut text = String::new();
    for name in records.keys() {
        writeln!(text, "{name} A")?;
    }
    std::fs::write(&queries, text)?;
    Ok(queries)
}

/// Causeway, and unless `--causeway-only` nsd and unbound serving the same records.
fn start_servers(
    args: &DnsBenchArgs,
    dir: &Path,
    records: &BTreeMap<String, Ipv4Addr>,
    causeway_addr: SocketAddr,
) -> Result<Vec<Server>> {
    let mut servers = vec![Server {
        name: "causeway",
        addr: causeway_addr,
        daemon: None,
    }];
    if !args.causeway_only {
        let nsd = start_nsd(dir, records, args.workers)?;
        servers.push(Server {
            name: "nsd",
            addr: nsd.addr,
            daemon: Some(nsd),
        });
        let unbound = start_unbound(dir, records, args.workers)?;
        servers.push(Server {
            name: "unbound",
            addr: unbound.addr,
            daemon: Some(unbound),
        });
    }
    Ok(servers)
}

/// Waits until every server answers the probe name with its address.
async fn wait_until_serving(servers: &[Server], probe: &(String, IpAddr)) -> Result<()> {
    for server in servers {
        let (addr, probe) = (server.addr, probe.clone());
        tokio::task::spawn_blocking(move || wait_for_answer(addr, &probe.0, probe.1))
            .await?
            .with_context(|| format!("{} does not serve the zone", server.name))?;
    }
    Ok(())
}

/// dnsperf throughput of every server, with the CPU time each used, added up over
/// the rounds.
async fn measure_throughput(
    args: &DnsBenchArgs,
    servers: &[Server],
    queries: &Path,
) -> Result<Vec<Throughput>> {
    // Rounds alternate between the servers, so that load from elsewhere on the
    // machine falls on all of them alike.
    let rounds = args.rounds.max(1);
    let slice = (args.duration / rounds).max(1);
    let mut totals: Vec<Throughput> = vec![Throughput::default(); servers.len()];
    for round in 1..=rounds {
        for (index, server) in servers.iter().enumerate() {
            let (queries, addr, clients) = (queries.to_owned(), server.addr, args.clients);
            // Causeway runs in this process; nsd forks its servers, unbound does not.
            let (pid, children) = match &server.daemon {
                Some(d) => (d.pid(), true),
                None => (std::process::id(), false),
            };
            let before = cpu_seconds(pid, children)?;
            let mut t = tokio::task::spawn_blocking(move || {
                dnsperf_throughput(addr, &queries, slice, clients)
            })
            .await??;
            t.cpu_seconds = cpu_seconds(pid, children)? - before;
            println!(
                "round {round}/{rounds} {:>9}: {:>9.0} q/s, {:>7.0} q per CPU-s, avg {:>6.0} µs, lost {}, {}",
                server.name,
                t.qps,
                t.completed as f64 / t.cpu_seconds.max(0.01),
                micros(t.avg_latency),
                t.lost,
                t.rcodes
            );
            totals[index].add(&t);
        }
    }
    Ok(totals)
}

/// Latency percentiles of every server at `--latency-qps`, beside its throughput.
async fn measure_latency(
    args: &DnsBenchArgs,
    servers: &[Server],
    totals: Vec<Throughput>,
    queries: &Path,
) -> Result<Vec<(&'static str, Throughput, Latency)>> {
    let mut results = Vec::new();
    for (server, throughput) in servers.iter().zip(totals) {
        let (queries, addr) = (queries.to_owned(), server.addr);
        let (qps, secs) = (args.latency_qps, args.latency_duration);
        let latency =
            tokio::task::spawn_blocking(move || dnsperf_latency(addr, &queries, secs, qps))
                .await??;
        println!(
            "{:>9}: at {qps} q/s p50 {:.0} µs, p99 {:.0} µs",
            server.name,
            micros(latency.p50),
            micros(latency.p99),
        );
        results.push((server.name, throughput, latency));
    }
    Ok(results)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn which(program: &str, package: &str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(program).is_file();
    ensure!(
        found,
        "{program} is not installed (Debian package {package})"
    );
    Ok(())
}

fn cluster_record(name: &str) -> Result<ClusterRecord> {
    Ok(ClusterRecord {
        name: name.parse()?,
        gateway_addrs: vec!["127.0.0.1:15443".into()],
        registry_addr: "127.0.0.1:15444".into(),
        identity: SpiffeId::gateway(TrustDomain::default(), name.parse()?),
        joined_at_unix_ms: 0,
        trust_bundle: Vec::new(),
        issuer_fingerprint: None,
        replicas: Vec::new(),
        import_pools: Vec::new(),
        runtime_exports: None,
    })
}

fn export(service: &str) -> Result<Export> {
    Ok(Export {
        cluster: "west".parse()?,
        service: format!("{NAMESPACE}/{service}").parse()?,
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Http,
            port: 80,
        }],
        endpoints: 1,
        labels: BTreeMap::new(),
        weight: 1,
        slots: None,
    })
}

// === change latency ===

async fn measure_changes(
    mut catalog: Catalog,
    mut mirror: Mirror,
    server: SocketAddr,
    changes: usize,
) -> Result<Vec<Duration>> {
    let (events, mut rx) = tokio::sync::mpsc::channel(64);
    let driver = tokio::spawn(async move { mirror.run(&mut rx, &mut NoSink).await });
    // The client side blocks on its socket, as a real client would.
    let times = tokio::task::spawn_blocking(move || -> Result<Vec<Duration>> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect(server)?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut times = Vec::with_capacity(changes);
        let mut id: u16 = 0;
        for i in 0..changes {
            let service = format!("chg-{i}");
            let name = format!("{service}.{NAMESPACE}.svc.{ZONE}");
            let change = catalog.apply(&CatalogCommand::PutExport(export(&service)?))?;
            let started = Instant::now();
            events.blocking_send(CatalogEvent::Change(change))?;
            loop {
                id = id.wrapping_add(1);
                if let Some((ResponseCode::NoError, Some(_))) = ask(&socket, &name, id)? {
                    break;
                }
                if started.elapsed() > CHANGE_TIMEOUT {
                    bail!("{name} did not resolve within {CHANGE_TIMEOUT:?}");
                }
                // A short pause between polls, so that on a small machine the client
                // does not take the CPU the update needs; it bounds the resolution of
                // the measurement to this interval.
                std::thread::sleep(POLL_INTERVAL);
            }
            times.push(started.elapsed());
        }
        Ok(times)
    })
    .await??;
    driver.await??;
    Ok(times)
}

// === report ===

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn print_report(
    args: &DnsBenchArgs,
    results: &[(&str, Throughput, Latency)],
    changes: &[Duration],
) {
    println!();
    println!(
        "DNS, {} names, dnsperf -c {} for {} s per server in {} alternating rounds, {} worker(s) per server, loopback",
        args.names,
        args.clients,
        args.duration,
        args.rounds.max(1),
        args.workers
    );
    println!(
        "| server | queries/s | queries per CPU-second | avg latency | lost | p50 @ {} q/s | p99 @ {} q/s |",
        args.latency_qps, args.latency_qps
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, t, l) in results {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} µs | {} of {} | {:.0} µs | {:.0} µs ({} samples) |",
            t.qps,
            t.completed as f64 / t.cpu_seconds.max(0.01),
            micros(t.avg_latency),
            t.lost,
            t.completed + t.lost,
            micros(l.p50),
            micros(l.p99),
            l.samples
        );
    }
    if let Some((_, causeway, _)) = results.iter().find(|(n, _, _)| *n == "causeway") {
        for (name, peer, _) in results.iter().filter(|(n, _, _)| *n != "causeway") {
            println!(
                "Causeway/{name}: queries/s {:.2}×, queries per CPU-second {:.2}×",
                causeway.qps / peer.qps,
                (causeway.completed as f64 / causeway.cpu_seconds.max(0.01))
                    / (peer.completed as f64 / peer.cpu_seconds.max(0.01))
            );
        }
    }
    let mut sorted = changes.to_vec();
    sorted.sort();
    println!(
        "import-table change → name resolves over UDP ({} changes, {} names in the zone): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        sorted.len(),
        args.names,
        percentile(&sorted, 0.5).as_secs_f64() * 1e3,
        percentile(&sorted, 0.99).as_secs_f64() * 1e3,
        sorted.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}
