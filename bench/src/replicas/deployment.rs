//! One federation under test: west and east's N replicas, each in a namespace of
//! its own on a bridge, and a sink server in a further namespace behind east. East
//! exports the sink as `demo/sink`; west's client dials its import address.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use causeway_e2e::{Federation, Lab};
use causeway_gateway::status::{PeerLink, StatusReport};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

use super::usage::{CpuReading, Groups};
use super::{ClientLoad, Measurement, REPLICAS, interrupted};
use crate::tunnel::load::{start_sink, throughput};

/// Namespaces of this benchmark are `cbr<digits>-<name>`, apart from the e2e
/// tests' `cw<digits>-…` labs that may run at the same time.
const LAB_PREFIX: &str = "cbr";
/// The service port of the sink, and the port it listens on in its namespace.
const SINK_PORT: u16 = 9000;
/// The name west resolves for the sink (one exporting cluster: one address).
const SINK_NAME: &str = "sink.demo.svc.clusterset.local";
/// How long a federation may take to converge on a loaded two-core machine.
const CONVERGE: Duration = Duration::from_secs(120);
/// Streams a replica has taken from west (inbound; labels in declaration order).
const STREAMS_OPENED: &str = "causeway_tunnel_streams_opened_total{peer=\"west\"";
/// Streams a replica carries now.
const STREAMS_ACTIVE: &str = "causeway_tunnel_streams_active{peer=\"west\"";
/// Payload bytes a replica has received from west.
const BYTES_RECEIVED: &str = "causeway_tunnel_payload_bytes_total{peer=\"west\",flow=\"received\"";

/// West and east's replicas, running, with the sink, pinned and warmed up.
#[derive(Debug)]
pub(super) struct Deployment {
    /// The gateways in their namespaces (dropping it kills the processes, then
    /// removes the namespaces).
    fed: Federation,
    /// The replicas' names and the CPU each is pinned to.
    pins: Vec<(&'static str, usize)>,
    /// The sink's import address in west.
    target: SocketAddr,
}

impl Deployment {
    /// Starts a federation whose east runs `replicas` replicas, pinned round-robin
    /// over `cpus`, and waits until west's client reaches every replica.
    pub(super) fn start(replicas: usize, cpus: &[usize], stop: &AtomicBool) -> Result<Self> {
        let mut names = vec!["west"];
        names.extend_from_slice(&REPLICAS[..replicas]);
        let mut hosts = names.clone();
        hosts.push("server");
        let lab = Lab::with_prefix(LAB_PREFIX, &hosts)?;
        let server = lab.ns("server").clone();
        let sink = SocketAddr::from((server.addr, SINK_PORT));
        server.within(move || start_sink(sink))?;
        let fed = Federation::start_in(lab, &names, |name, text| with_sink(name, text, sink))?;
        let pins = REPLICAS[..replicas]
            .iter()
            .enumerate()
            .map(|(i, &r)| (r, cpus[i % cpus.len()]))
            .collect();
        let target =
            wait_imported(&fed, replicas, stop).inspect_err(|_| eprintln!("{}", fed.logs()))?;
        let deployment = Self { fed, pins, target };
        deployment.warm_up(stop)?;
        Ok(deployment)
    }

    /// How many replicas east runs.
    pub(super) fn replicas(&self) -> usize {
        self.pins.len()
    }

    /// The replicas' names and their CPUs.
    pub(super) fn pins(&self) -> &[(&'static str, usize)] {
        &self.pins
    }

    /// The gateway process of the federation member `name`.
    fn pid(&self, name: &str) -> u32 {
        self.fed
            .cluster(name)
            .gateway
            .pid()
            .expect("the benchmark kills no gateway")
    }

    /// Every process this federation runs: gateways and echo services.
    pub(super) fn pids(&self) -> Vec<u32> {
        let clusters = self.fed.clusters.iter();
        clusters
            .flat_map(|c| [c.gateway.pid(), c.echo.pid()])
            .flatten()
            .collect()
    }

    /// The process groups whose CPU time a measurement reads: this process (the
    /// client and the sink), west's gateway, each replica, and every other process
    /// of `all_pids` (the idle federations' gateways, the echo services).
    fn cpu_groups(&self, all_pids: &[u32]) -> Groups {
        let mut groups = vec![
            ("client+sink".to_owned(), vec![std::process::id()]),
            ("west".to_owned(), vec![self.pid("west")]),
        ];
        for &(name, _) in &self.pins {
            groups.push((name.to_owned(), vec![self.pid(name)]));
        }
        let counted: Vec<u32> = groups.iter().flat_map(|(_, p)| p.clone()).collect();
        let others = all_pids.iter().filter(|p| !counted.contains(p));
        groups.push(("others".to_owned(), others.copied().collect()));
        groups
    }

    /// Streams to every replica, until west sees each one's link up.
    fn warm_up(&self, stop: &AtomicBool) -> Result<()> {
        let load = ClientLoad {
            streams: 2 * self.replicas(),
            open_gap: Duration::from_millis(20),
        };
        self.client(load, Duration::from_secs(1))?;
        self.fed
            .wait_for("west's links to every replica up", CONVERGE, |fed| {
                let status = west_status(fed)?;
                let up = east_peers(&status)
                    .filter(|p| p.link == PeerLink::Up)
                    .count();
                Ok(interrupted(stop).is_err() || up == self.replicas())
            })?;
        interrupted(stop)
    }

    /// West's client under `load` for `seconds` (after a second of warm-up), with
    /// each replica's share and the CPU time they took.
    pub(super) fn measure(
        &self,
        load: ClientLoad,
        seconds: Duration,
        all_pids: &[u32],
    ) -> Result<Measurement> {
        self.pin()?;
        let groups = self.cpu_groups(all_pids);
        let carried_before = self.carried()?;
        let cpu_before = CpuReading::now(&groups)?;
        let gbps = self.client(load, seconds)?;
        let cpu = CpuReading::now(&groups)?.since(&cpu_before);
        self.wait_streams_closed()?;
        let carried = self.carried()?;
        let delta = |f: fn(&(f64, f64)) -> f64| -> Vec<f64> {
            let pairs = carried.iter().zip(&carried_before);
            pairs.map(|(after, before)| f(after) - f(before)).collect()
        };
        Ok(Measurement {
            replicas: self.replicas(),
            load,
            gbps,
            replica_streams: delta(|c| c.0),
            replica_bytes: delta(|c| c.1),
            cpu,
        })
    }

    /// West's client: `load` on the sink's import; Gbit/s written.
    fn client(&self, load: ClientLoad, seconds: Duration) -> Result<f64> {
        let target = self.target;
        let west = self.fed.cluster("west").ns.clone();
        west.within(move || throughput(target, load.streams, load.open_gap, seconds))
    }

    /// Pins every thread of each replica's process to its CPU (again before each
    /// measurement: a thread started since inherits its starter's CPU, but this
    /// also covers any started before the first pinning finished).
    fn pin(&self) -> Result<()> {
        for &(name, cpu) in &self.pins {
            let pid = self.pid(name);
            let mut set = CpuSet::new();
            set.set(cpu)?;
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
                .with_context(|| format!("threads of {name} ({pid})"))?;
            for task in tasks {
                let tid: i32 = task?.file_name().to_string_lossy().parse()?;
                sched_setaffinity(Pid::from_raw(tid), &set)
                    .with_context(|| format!("pinning {name} thread {tid} to CPU {cpu}"))?;
            }
        }
        Ok(())
    }

    /// Each replica's streams taken and bytes received from west so far, from its
    /// own `/metrics`, in replica order.
    fn carried(&self) -> Result<Vec<(f64, f64)>> {
        self.pins
            .iter()
            .map(|&(name, _)| {
                let streams = self.fed.metric(name, STREAMS_OPENED)?;
                Ok((streams, self.fed.metric(name, BYTES_RECEIVED)?))
            })
            .collect()
    }

    /// Waits until no replica carries a stream, so that every byte is counted.
    fn wait_streams_closed(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut open = 0.0;
            for &(name, _) in &self.pins {
                open += self.fed.metric(name, STREAMS_ACTIVE)?;
            }
            if open == 0.0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("replicas still carry {open} streams 10 s after the client stopped");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The config of `name` with, on east's replicas, the export of the sink.
fn with_sink(name: &str, mut text: String, sink: SocketAddr) -> String {
    if name.starts_with("east.") {
        let (ip, port) = (sink.ip(), sink.port());
        text.push_str(&format!(
            "[[export]]\nnamespace = \"demo\"\nname = \"sink\"\nendpoints = [\"{ip}\"]\n\
             ports = [{{ name = \"tcp\", port = {SINK_PORT}, target_port = {port} }}]\n"
        ));
    }
    text
}

/// West's status report.
fn west_status(fed: &Federation) -> Result<StatusReport> {
    Ok(serde_json::from_value(fed.status("west")?)?)
}

/// West's rows of east's replicas.
fn east_peers(
    status: &StatusReport,
) -> impl Iterator<Item = &causeway_gateway::status::PeerStatus> {
    status.peers.iter().filter(|p| p.cluster == "east")
}

/// Waits until west listens on the sink's import with all `replicas` of east
/// listed; the import's address, resolved with west's DNS.
fn wait_imported(fed: &Federation, replicas: usize, stop: &AtomicBool) -> Result<SocketAddr> {
    let what = format!("west imports the sink from {replicas} east replica(s)");
    fed.wait_for(&what, CONVERGE, |fed| {
        let status = west_status(fed)?;
        let listening = status
            .imports
            .iter()
            .any(|i| i.name == "sink" && i.listening);
        let listed = east_peers(&status).count() == replicas;
        let resolves = listening && listed && !fed.dig("west", SINK_NAME)?.is_empty();
        Ok(interrupted(stop).is_err() || resolves)
    })?;
    interrupted(stop)?;
    let ips = fed.dig("west", SINK_NAME)?;
    let ip: IpAddr = ips.first().context("the sink's name")?.parse()?;
    Ok(SocketAddr::new(ip, SINK_PORT))
}
