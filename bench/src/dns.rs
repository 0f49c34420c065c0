//! DNS: Causeway's clusterset authority against nsd and unbound.
//!
//! All three serve the same zone of imported services on loopback, each on its own
//! port, and `dnsperf` asks each in turn for every name. Then the time from an
//! import-table change to the new name resolving over UDP is measured on Causeway.
//! nsd and unbound run from temporary directories and are stopped by their pid.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
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
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

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

/// Runs the DNS benchmark and prints its table.
pub async fn run(args: DnsBenchArgs) -> Result<()> {
    ensure!(args.names > 0, "--names must be at least 1");
    which("dnsperf", "dnsperf")?;
    if !args.causeway_only {
        which("nsd", "nsd")?;
        which("unbound", "unbound")?;
    }
    let dir = tempfile::tempdir().context("temporary directory")?;

    // Causeway: the real path, catalog snapshot → import table → zone.
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
        state_file: None,
    };
    let mut mirror = Mirror::new("east".parse()?, &config, Metrics::default())?;
    let started = Instant::now();
    mirror.apply(&CatalogEvent::Snapshot(catalog.snapshot()), &mut NoSink)?;
    mirror.publish()?;
    println!(
        "zone: {} services, {} names, built from a catalog snapshot in {:.1} ms",
        mirror.zone().current().service_count(),
        mirror.zone().current().name_count(),
        started.elapsed().as_secs_f64() * 1e3
    );
    let server = DnsServer::start(&config.dns, mirror.zone().clone()).await?;
    let causeway_addr = server.local_addr();

    // The same names and addresses for everyone.
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
    let queries = dir.path().join("queries.txt");
    let mut text = String::new();
    for name in records.keys() {
        writeln!(text, "{name} A")?;
    }
    std::fs::write(&queries, text)?;
    let (probe_name, probe_addr) = records.iter().next().context("no records")?;
    let probe = (probe_name.clone(), IpAddr::V4(*probe_addr));

    let mut servers = vec![("causeway", causeway_addr, None::<Daemon>)];
    if !args.causeway_only {
        let nsd = start_nsd(dir.path(), &records, args.workers)?;
        servers.push(("nsd", nsd.addr, Some(nsd)));
        let unbound = start_unbound(dir.path(), &records, args.workers)?;
        servers.push(("unbound", unbound.addr, Some(unbound)));
    }

    for (name, addr, _) in &servers {
        let (addr, probe) = (*addr, probe.clone());
        tokio::task::spawn_blocking(move || wait_for_answer(addr, &probe.0, probe.1))
            .await?
            .with_context(|| format!("{name} does not serve the zone"))?;
    }
    // Rounds alternate between the servers, so that load from elsewhere on the
    // machine falls on all of them alike.
    let rounds = args.rounds.max(1);
    let slice = (args.duration / rounds).max(1);
    let mut totals: Vec<Throughput> = vec![Throughput::default(); servers.len()];
    for round in 1..=rounds {
        for (index, (name, addr, daemon)) in servers.iter().enumerate() {
            let (queries, addr, clients) = (queries.clone(), *addr, args.clients);
            // Causeway runs in this process; nsd forks its servers, unbound does not.
            let (pid, children) = match daemon {
                Some(d) => (d.child.id(), true),
                None => (std::process::id(), false),
            };
            let before = cpu_seconds(pid, children)?;
            let mut t = tokio::task::spawn_blocking(move || {
                dnsperf_throughput(addr, &queries, slice, clients)
            })
            .await??;
            t.cpu_seconds = cpu_seconds(pid, children)? - before;
            println!(
                "round {round}/{rounds} {name:>9}: {:>9.0} q/s, {:>7.0} q per CPU-s, avg {:>6.0} µs, lost {}, {}",
                t.qps,
                t.completed as f64 / t.cpu_seconds.max(0.01),
                micros(t.avg_latency),
                t.lost,
                t.rcodes
            );
            totals[index].add(&t);
        }
    }
    let mut results = Vec::new();
    for ((name, addr, _), throughput) in servers.iter().zip(totals) {
        let (queries, addr) = (queries.clone(), *addr);
        let (qps, secs) = (args.latency_qps, args.latency_duration);
        let latency =
            tokio::task::spawn_blocking(move || dnsperf_latency(addr, &queries, secs, qps))
                .await??;
        println!(
            "{name:>9}: at {qps} q/s p50 {:.0} µs, p99 {:.0} µs",
            micros(latency.p50),
            micros(latency.p99),
        );
        results.push((*name, throughput, latency));
    }
    for (_, _, daemon) in servers.iter_mut() {
        if let Some(daemon) = daemon.take() {
            daemon.stop();
        }
    }

    // Change → resolvable, through the mirror's own event loop.
    let change = measure_changes(catalog, mirror, causeway_addr, args.changes).await?;
    server.shutdown().await;

    print_report(&args, &results, &change);
    Ok(())
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
    })
}

// === peers ===

/// A server process started by this run, stopped by its pid.
struct Daemon {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl Daemon {
    fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGTERM lets nsd stop the server processes it forked; SIGKILL if it hangs.
        // Its forked processes are noted first: once it exits they are orphans.
        let forked = descendants(&processes(), self.child.id());
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.stop_forked(&forked);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} (pid {pid}) ignored SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stop_forked(&forked);
    }

    /// Stops the processes the daemon forked, by pid, if they outlived it.
    fn stop_forked(&self, forked: &[u32]) {
        let deadline = Instant::now() + Duration::from_secs(5);
        // Alive and still ours: the pid was not reused by something else.
        let alive = |p: &u32| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|cmdline| cmdline.contains(self.name))
        };
        while forked.iter().any(alive) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for p in forked.iter().filter(|p| alive(p)) {
            eprintln!("{}: forked process {p} outlived it; stopping it", self.name);
            let _ = Command::new("kill")
                .args(["-TERM", &p.to_string()])
                .status();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.terminate();
    }
}

use causeway_gateway::federation::free_port;

fn spawn(
    name: &'static str,
    program: &str,
    args: &[&str],
    dir: &Path,
    port: u16,
) -> Result<Daemon> {
    let log = std::fs::File::create(dir.join(format!("{name}.out")))?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    Ok(Daemon {
        name,
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    })
}

fn start_nsd(
    dir: &Path,
    records: &BTreeMap<String, std::net::Ipv4Addr>,
    workers: usize,
) -> Result<Daemon> {
    let dir = dir.join("nsd");
    std::fs::create_dir_all(&dir)?;
    let mut zone = format!(
        "$ORIGIN {ZONE}.\n$TTL 5\n@ IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 604800 5\n@ IN NS ns.{ZONE}.\nns IN A 127.0.0.1\n"
    );
    for (name, address) in records {
        writeln!(zone, "{name}. IN A {address}")?;
    }
    std::fs::write(dir.join("zone"), zone)?;
    let port = free_port()?;
    let d = dir.display();
    let conf = format!(
        "server:\n  ip-address: 127.0.0.1@{port}\n  server-count: {workers}\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  logfile: \"{d}/nsd.log\"\n  verbosity: 0\n  do-ip6: no\n  reuseport: yes\nremote-control:\n  control-enable: no\nzone:\n  name: {ZONE}\n  zonefile: \"{d}/zone\"\n"
    );
    let conf_path = dir.join("nsd.conf");
    std::fs::write(&conf_path, conf)?;
    let conf_arg = conf_path.display().to_string();
    spawn("nsd", "nsd", &["-d", "-c", &conf_arg], &dir, port)
}

fn start_unbound(
    dir: &Path,
    records: &BTreeMap<String, std::net::Ipv4Addr>,
    workers: usize,
) -> Result<Daemon> {
    let dir = dir.join("unbound");
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let d = dir.display();
    let mut conf = format!(
        "server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  num-threads: {workers}\n  so-reuseport: yes\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  use-syslog: no\n  logfile: \"{d}/unbound.log\"\n  verbosity: 0\n  do-ip6: no\n  do-daemonize: no\n  access-control: 127.0.0.0/8 allow\n  module-config: \"iterator\"\n  local-zone: \"{ZONE}.\" static\n"
    );
    for (name, address) in records {
        writeln!(conf, "  local-data: \"{name}. 5 IN A {address}\"")?;
    }
    conf.push_str("remote-control:\n  control-enable: no\n");
    let conf_path = dir.join("unbound.conf");
    std::fs::write(&conf_path, conf)?;
    let conf_arg = conf_path.display().to_string();
    spawn("unbound", "unbound", &["-d", "-c", &conf_arg], &dir, port)
}

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ, 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

/// Every process: pid → (parent pid, user + system CPU seconds).
fn processes() -> BTreeMap<u32, (u32, f64)> {
    // Fields after the command name: state, ppid, ..., utime (14th), stime (15th).
    let read = |stat: &str| -> Option<(u32, f64)> {
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ppid = fields.get(1)?.parse().ok()?;
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some((ppid, ticks / CLOCK_TICKS))
    };
    let mut table = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return table;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if let Some(parsed) = read(&stat) {
            table.insert(pid, parsed);
        }
    }
    table
}

/// The processes below `pid` (children, grandchildren, ...).
fn descendants(table: &BTreeMap<u32, (u32, f64)>, pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for (&other, &(mut parent, _)) in table {
        // Walk up; the depth bound guards against a pid reused mid-scan.
        for _ in 0..16 {
            if parent == pid {
                found.push(other);
                break;
            }
            match table.get(&parent) {
                Some(&(up, _)) if parent > 1 => parent = up,
                _ => break,
            }
        }
    }
    found
}

/// User and system CPU seconds of process `pid`, and with `below` of every process
/// below it too (nsd's server runs in a grandchild of the process started).
fn cpu_seconds(pid: u32, below: bool) -> Result<f64> {
    let table = processes();
    let own = table
        .get(&pid)
        .with_context(|| format!("no process {pid}"))?
        .1;
    let others = if below {
        descendants(&table, pid)
            .iter()
            .filter_map(|p| table.get(p))
            .map(|(_, t)| t)
            .sum()
    } else {
        0.0
    };
    Ok(own + others)
}

// === queries ===

/// Asks `server` for `name` A once; the first address, `None` for an empty answer.
fn ask(socket: &UdpSocket, name: &str, id: u16) -> Result<Option<(ResponseCode, Option<IpAddr>)>> {
    let mut query = Message::query();
    query.metadata.id = id;
    query.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    socket.send(&query.to_vec()?)?;
    let mut buf = [0u8; 1500];
    loop {
        match socket.recv(&mut buf) {
            Ok(n) => {
                let Ok(answer) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if answer.metadata.id != id {
                    continue;
                }
                let address = answer.answers.iter().find_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    _ => None,
                });
                return Ok(Some((answer.metadata.response_code, address)));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

fn wait_for_answer(server: SocketAddr, name: &str, expected: IpAddr) -> Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let deadline = Instant::now() + START_TIMEOUT;
    let mut id = 1;
    loop {
        id += 1;
        if let Some((code, address)) = ask(&socket, name, id)? {
            ensure!(
                code == ResponseCode::NoError && address == Some(expected),
                "{server} answered {name} with {code} {address:?}, expected {expected}"
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{server} did not answer within {START_TIMEOUT:?}");
        }
    }
}

fn field<'a>(output: &'a str, label: &str) -> Result<&'a str> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(str::trim)
        .with_context(|| format!("dnsperf printed no {label:?}:\n{output}"))
}

fn first_number<T: std::str::FromStr>(text: &str) -> Result<T> {
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no number in {text:?}"))
}

fn dnsperf_throughput(
    server: SocketAddr,
    queries: &Path,
    seconds: u64,
    clients: u32,
) -> Result<Throughput> {
    let output = Command::new("dnsperf")
        .args([
            "-s",
            &server.ip().to_string(),
            "-p",
            &server.port().to_string(),
        ])
        .args([
            "-d",
            &queries.display().to_string(),
            "-l",
            &seconds.to_string(),
        ])
        .args(["-c", &clients.to_string(), "-q", "200", "-t", "2"])
        .output()
        .context("running dnsperf")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "dnsperf failed:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(Throughput {
        qps: first_number(field(&text, "Queries per second:")?)?,
        avg_latency: Duration::from_secs_f64(first_number(field(&text, "Average Latency (s):")?)?),
        completed: first_number(field(&text, "Queries completed:")?)?,
        lost: first_number(field(&text, "Queries lost:")?)?,
        run_time: first_number(field(&text, "Run time (s):")?)?,
        cpu_seconds: 0.0,
        rcodes: field(&text, "Response codes:")?.to_owned(),
    })
}

/// A rate-limited run with per-query output; its latencies give percentiles.
fn dnsperf_latency(server: SocketAddr, queries: &Path, seconds: u64, qps: u32) -> Result<Latency> {
    let output = Command::new("dnsperf")
        .args([
            "-s",
            &server.ip().to_string(),
            "-p",
            &server.port().to_string(),
        ])
        .args([
            "-d",
            &queries.display().to_string(),
            "-l",
            &seconds.to_string(),
        ])
        .args(["-c", "10", "-Q", &qps.to_string(), "-t", "2", "-v"])
        .output()
        .context("running dnsperf -v")?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "dnsperf -v failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Lines look like `> NOERROR svc-1.bench.svc.clusterset.local A 0.000123`.
    let mut samples: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.split_whitespace().last()?.parse().ok())
        .collect();
    ensure!(
        !samples.is_empty(),
        "dnsperf -v printed no per-query latencies"
    );
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| {
        Duration::from_secs_f64(samples[((samples.len() - 1) as f64 * q).round() as usize])
    };
    Ok(Latency {
        p50: at(0.50),
        p99: at(0.99),
        samples: samples.len(),
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
