//! Raft registry benchmark: Causeway's registry against etcd, three members each, on
//! loopback, in one run.
//!
//! Both systems are driven over gRPC with the same load: `1` and `--clients` concurrent
//! writers, values of `--value-bytes`, over a fixed key space, spread round-robin over
//! the three members (followers forward to the leader in both). Causeway runs in this
//! process over mutual TLS (its only mode); etcd runs as three `etcd` processes over
//! plaintext gRPC. Both fsync on the same disk. Failover is the time from stopping the
//! leader without a clean shutdown (SIGKILL for etcd; aborting the member's tasks and
//! cutting its connections for Causeway) to the next acknowledged write.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use causeway_registry::{
    ClusterRecord, Command, Export, NodeConfig, Protocol, RegistryClient, RegistryServer,
    ServicePort, TlsConfigs,
};
use causeway_trust::testing::TestFederation;
use clap::Args;
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};

/// Options of `causeway-bench registry`.
#[derive(Debug, Clone, Args)]
pub struct RegistryBenchArgs {
    /// Seconds each measured load phase runs (after a one-second warm-up).
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Concurrent writers in the many-clients phase.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Bytes of value per write.
    #[arg(long, default_value_t = 256)]
    pub value_bytes: usize,
    /// Distinct keys written (writes overwrite them round-robin).
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// Causeway's election timeout in milliseconds (ticks are 50 ms).
    #[arg(long, default_value_t = 300)]
    pub election_timeout_ms: u64,
    /// Leader kills measured per system (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub failover_rounds: usize,
    /// The etcd binary (Debian package `etcd-server`).
    #[arg(long, default_value = "etcd")]
    pub etcd: String,
    /// Parent directory for data (use a real disk: fsync cost is what is measured).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Measure Causeway only.
    #[arg(long)]
    pub skip_etcd: bool,
}

/// Tick of the benchmarked Causeway registry.
const TICK: Duration = Duration::from_millis(50);
/// How long any one write may take before the attempt is abandoned.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// After a leader is stopped, how long one write attempt waits before the client
/// retries (a write forwarded to the dead leader is never answered). The same for both
/// systems.
const FAILOVER_ATTEMPT: Duration = Duration::from_millis(250);

/// Runs the benchmark and prints a table with ratios to etcd.
pub async fn run(args: RegistryBenchArgs) -> anyhow::Result<()> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("causeway-bench-registry-")
        .tempdir_in(&base)
        .with_context(|| format!("creating a data directory in {}", base.display()))?;

    println!(
        "registry benchmark: 3 members each, {} s per phase, {}-byte values, {} keys",
        args.seconds, args.value_bytes, args.keys
    );
    let mut causeway = CausewayCluster::start(dir.path(), &args).await?;
    let c1 = load(1, &args, causeway.writer(&args)).await?;
    let cn = load(args.clients, &args, causeway.writer(&args)).await?;
    let mut c_fail = Vec::new();
    for _ in 0..args.failover_rounds {
        c_fail.push(causeway.failover(&args).await?);
    }
    causeway.stop().await;
    print_row("causeway", 1, &c1);
    print_row("causeway", args.clients, &cn);
    println!(
        "causeway failover (leader stopped -> next acknowledged write): {}",
        ms_list(&c_fail)
    );

    if args.skip_etcd {
        return Ok(());
    }
    let mut etcd = EtcdCluster::start(dir.path(), &args).await?;
    let e1 = load(1, &args, etcd.writer(&args)).await?;
    let en = load(args.clients, &args, etcd.writer(&args)).await?;
    let mut e_fail = Vec::new();
    for _ in 0..args.failover_rounds {
        e_fail.push(etcd.failover(&args).await?);
    }
    etcd.stop();
    print_row("etcd", 1, &e1);
    print_row("etcd", args.clients, &en);
    println!(
        "etcd failover (SIGKILL leader -> next acknowledged write): {}",
        ms_list(&e_fail)
    );

    println!("\n{:<34} {:>10}", "ratio (causeway / etcd)", "value");
    println!(
        "{:<34} {:>9.2}x",
        "writes/s, 1 client",
        c1.rate() / e1.rate()
    );
    println!(
        "{:<34} {:>9.2}x",
        format!("writes/s, {} clients", args.clients),
        cn.rate() / en.rate()
    );
    println!(
        "{:<34} {:>9.2}x",
        "p50 latency, 1 client",
        ratio(c1.p50, e1.p50)
    );
    println!(
        "{:<34} {:>9.2}x",
        format!("p99 latency, {} clients", args.clients),
        ratio(cn.p99, en.p99)
    );
    println!(
        "{:<34} {:>9.2}x",
        "failover time (median)",
        ratio(median(&c_fail), median(&e_fail))
    );
    Ok(())
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms_list(v: &[Duration]) -> String {
    let parts: Vec<String> = v
        .iter()
        .map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
        .collect();
    format!(
        "{} (median {:.0} ms)",
        parts.join(", "),
        median(v).as_secs_f64() * 1000.0
    )
}

fn print_row(system: &str, clients: usize, s: &Stats) {
    println!(
        "{system:<9} clients={clients:<3} writes/s={:>9.0}  p50={:>7.2} ms  p99={:>7.2} ms  errors={}",
        s.rate(),
        s.p50.as_secs_f64() * 1000.0,
        s.p99.as_secs_f64() * 1000.0,
        s.errors
    );
}

// === load generator ===

struct Stats {
    writes: u64,
    errors: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64()
    }
}

/// Something that performs write number `seq` as client `client`.
trait Writer: Clone + Send + Sync + 'static {
    fn write(&self, client: usize, seq: u64) -> impl Future<Output = anyhow::Result<()>> + Send;
}

async fn load<W: Writer>(
    clients: usize,
    args: &RegistryBenchArgs,
    writer: W,
) -> anyhow::Result<Stats> {
    // Warm-up: connections, leader, caches.
    run_phase(clients, Duration::from_secs(1), writer.clone()).await?;
    run_phase(clients, Duration::from_secs(args.seconds), writer).await
}

async fn run_phase<W: Writer>(
    clients: usize,
    length: Duration,
    writer: W,
) -> anyhow::Result<Stats> {
    let start = Instant::now();
    let deadline = start + length;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut seq = client as u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match tokio::time::timeout(WRITE_TIMEOUT, writer.write(client, seq)).await {
                    Ok(Ok(())) => latencies.push(t0.elapsed()),
                    _ => errors += 1,
                }
                seq += clients as u64;
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(Stats {
        writes: all.len() as u64,
        errors,
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
    })
}

async fn free_addr() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    Ok(l.local_addr()?)
}

// === Causeway ===

struct CausewayCluster {
    fed: TestFederation,
    servers: BTreeMap<u64, RegistryServer>,
    configs: BTreeMap<u64, NodeConfig>,
    tls: BTreeMap<u64, TlsConfigs>,
    clients: BTreeMap<u64, RegistryClient>,
}

#[derive(Clone)]
struct CausewayWriter {
    clients: Arc<Vec<RegistryClient>>,
    value: Arc<BTreeMap<String, String>>,
    keys: u64,
}

impl Writer for CausewayWriter {
    async fn write(&self, client: usize, seq: u64) -> anyhow::Result<()> {
        let c = &self.clients[client % self.clients.len()];
        c.propose(&bench_export(seq % self.keys, &self.value))
            .await?;
        Ok(())
    }
}

fn bench_export(key: u64, value: &BTreeMap<String, String>) -> Command {
    Command::PutExport(Export {
        cluster: "bench".parse().expect("valid name"),
        service: format!("bench/s{key}").parse().expect("valid key"),
        ports: vec![ServicePort {
            name: "tcp".into(),
            protocol: Protocol::Tcp,
            port: 80,
        }],
        endpoints: 1,
        labels: value.clone(),
        weight: 1,
    })
}

/// The value as labels of at most 255 bytes each (the catalog's label limit).
fn value_labels(bytes: usize) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut left = bytes;
    let mut i = 0;
    while left > 0 {
        let n = left.min(255);
        labels.insert(format!("v{i}"), "x".repeat(n));
        left -= n;
        i += 1;
    }
    labels
}

impl CausewayCluster {
    async fn start(dir: &Path, args: &RegistryBenchArgs) -> anyhow::Result<Self> {
        let fed = TestFederation::new();
        let mut listeners = BTreeMap::new();
        for id in 1..=3u64 {
            listeners.insert(id, TcpListener::bind("127.0.0.1:0").await?);
        }
        let initial: BTreeMap<u64, String> = listeners
            .iter()
            .map(|(id, l)| Ok((*id, l.local_addr()?.to_string())))
            .collect::<anyhow::Result<_>>()?;
        let ticks = (args.election_timeout_ms / TICK.as_millis() as u64).max(3) as usize;
        let ops = fed.identity("bench");
        let client_tls = Arc::new(ops.client_config(&[b"h2"]));
        let mut me = Self {
            fed,
            servers: BTreeMap::new(),
            configs: BTreeMap::new(),
            tls: BTreeMap::new(),
            clients: BTreeMap::new(),
        };
        for (id, listener) in listeners {
            let mut config =
                NodeConfig::new(id, initial[&id].clone(), dir.join(format!("causeway-{id}")));
            config.initial_members = initial.clone();
            // Members 1..=3 share one process: ids are assigned, not derived.
            config.member_ids = causeway_registry::MemberIds::Unchecked;
            config.tick_interval = TICK;
            config.election_ticks = ticks;
            config.heartbeat_ticks = 1;
            config.request_timeout = WRITE_TIMEOUT;
            let identity = me.fed.identity(&format!("m{id}"));
            let tls = TlsConfigs {
                server: Arc::new(identity.server_config(&[b"h2"])),
                client: Arc::new(identity.client_config(&[b"h2"])),
            };
            let server = RegistryServer::start(config.clone(), listener, tls.clone(), None).await?;
            me.servers.insert(id, server);
            me.configs.insert(id, config);
            me.tls.insert(id, tls);
            me.clients.insert(
                id,
                RegistryClient::connect(&initial[&id], client_tls.clone())?,
            );
        }
        me.leader(Duration::from_secs(10)).await?;
        let register = Command::RegisterCluster(ClusterRecord {
            name: "bench".parse()?,
            gateway_addrs: vec!["127.0.0.1:15443".into()],
            registry_addr: initial[&1].clone(),
            identity: "spiffe://causeway.local/cluster/bench/gateway".parse()?,
            joined_at_unix_ms: 0,
            trust_bundle: Vec::new(),
            issuer_fingerprint: None,
        });
        retry_until(Duration::from_secs(10), || async {
            me.clients[&1]
                .propose(&register)
                .await
                .map(|_| ())
                .map_err(Into::into)
        })
        .await?;
        Ok(me)
    }

    fn writer(&self, args: &RegistryBenchArgs) -> CausewayWriter {
        CausewayWriter {
            clients: Arc::new(self.clients.values().cloned().collect()),
            value: Arc::new(value_labels(args.value_bytes)),
            keys: args.keys as u64,
        }
    }

    async fn leader(&self, limit: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + limit;
        loop {
            let mut leaders = Vec::new();
            for s in self.servers.values() {
                if let Ok(st) = s.node().status().await {
                    leaders.push(st.leader);
                }
            }
            if let Some(l) = leaders.first()
                && *l != 0
                && leaders.iter().all(|x| x == l)
                && self.servers.contains_key(l)
            {
                return Ok(*l);
            }
            if Instant::now() > deadline {
                bail!("no Causeway leader within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the leader as a crash would and times the next acknowledged write; then
    /// restarts it and waits for it to catch up.
    async fn failover(&mut self, args: &RegistryBenchArgs) -> anyhow::Result<Duration> {
        let leader = self.leader(Duration::from_secs(10)).await?;
        let value = value_labels(args.value_bytes);
        let survivors: Vec<RegistryClient> = self
            .clients
            .iter()
            .filter(|(id, _)| **id != leader)
            .map(|(_, c)| c.clone())
            .collect();
        let server = self.servers.remove(&leader).expect("leader is running");
        let t0 = Instant::now();
        server.kill().await;
        let mut seq = 0u64;
        loop {
            let c = &survivors[seq as usize % survivors.len()];
            if let Ok(Ok(_)) =
                tokio::time::timeout(FAILOVER_ATTEMPT, c.propose(&bench_export(seq, &value))).await
            {
                break;
            }
            seq += 1;
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("no Causeway write acknowledged within 30 s of the leader's stop");
            }
        }
        let elapsed = t0.elapsed();
        // Restart the old leader from its files.
        let config = self.configs[&leader].clone();
        let addr: SocketAddr = config.advertise_addr.parse()?;
        let listener = retry_until(Duration::from_secs(10), || async {
            TcpListener::bind(addr).await.map_err(Into::into)
        })
        .await?;
        let server =
            RegistryServer::start(config, listener, self.tls[&leader].clone(), None).await?;
        self.servers.insert(leader, server);
        self.leader(Duration::from_secs(10)).await?;
        Ok(elapsed)
    }

    async fn stop(self) {
        for (_, s) in self.servers {
            s.kill().await;
        }
    }
}

async fn retry_until<T, F, Fut>(limit: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

// === etcd ===

/// The parts of etcd's `etcdserverpb` API the benchmark uses (field numbers from
/// etcd's rpc.proto).
mod etcdpb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct PutRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub(super) key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub(super) value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ResponseHeader {
        #[prost(uint64, tag = "1")]
        pub(super) cluster_id: u64,
        #[prost(uint64, tag = "2")]
        pub(super) member_id: u64,
        #[prost(int64, tag = "3")]
        pub(super) revision: i64,
        #[prost(uint64, tag = "4")]
        pub(super) raft_term: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct PutResponse {
        #[prost(message, optional, tag = "1")]
        pub(super) header: Option<ResponseHeader>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct StatusRequest {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct StatusResponse {
        #[prost(message, optional, tag = "1")]
        pub(super) header: Option<ResponseHeader>,
        #[prost(uint64, tag = "4")]
        pub(super) leader: u64,
    }
}

async fn etcd_put(channel: &Channel, key: Vec<u8>, value: Vec<u8>) -> anyhow::Result<()> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await?;
    let codec: tonic_prost::ProstCodec<etcdpb::PutRequest, etcdpb::PutResponse> =
        Default::default();
    grpc.unary(
        tonic::Request::new(etcdpb::PutRequest { key, value }),
        tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Put"),
        codec,
    )
    .await?;
    Ok(())
}

async fn etcd_status(channel: &Channel) -> anyhow::Result<(u64, u64)> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await?;
    let codec: tonic_prost::ProstCodec<etcdpb::StatusRequest, etcdpb::StatusResponse> =
        Default::default();
    let r = grpc
        .unary(
            tonic::Request::new(etcdpb::StatusRequest {}),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/etcdserverpb.Maintenance/Status",
            ),
            codec,
        )
        .await?
        .into_inner();
    let me = r.header.map(|h| h.member_id).unwrap_or_default();
    Ok((me, r.leader))
}

struct EtcdMember {
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    channel: Channel,
}

struct EtcdCluster {
    binary: String,
    members: Vec<EtcdMember>,
}

#[derive(Clone)]
struct EtcdWriter {
    channels: Arc<Vec<Channel>>,
    value: Arc<Vec<u8>>,
    keys: u64,
}

impl Writer for EtcdWriter {
    async fn write(&self, client: usize, seq: u64) -> anyhow::Result<()> {
        let ch = &self.channels[client % self.channels.len()];
        etcd_put(
            ch,
            format!("bench/s{}", seq % self.keys).into_bytes(),
            self.value.to_vec(),
        )
        .await
    }
}

impl EtcdCluster {
    async fn start(dir: &Path, args: &RegistryBenchArgs) -> anyhow::Result<Self> {
        let mut ports = Vec::new();
        for _ in 0..3 {
            ports.push((free_addr().await?, free_addr().await?));
        }
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://{peer}"))
            .collect();
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let data = dir.join(format!("etcd-{i}"));
            let args = vec![
                "--name".into(),
                format!("e{i}"),
                "--data-dir".into(),
                data.display().to_string(),
                "--listen-client-urls".into(),
                format!("http://{client}"),
                "--advertise-client-urls".into(),
                format!("http://{client}"),
                "--listen-peer-urls".into(),
                format!("http://{peer}"),
                "--initial-advertise-peer-urls".into(),
                format!("http://{peer}"),
                "--initial-cluster".into(),
                initial.join(","),
                "--initial-cluster-state".into(),
                "new".into(),
                "--initial-cluster-token".into(),
                "causeway-bench".into(),
                "--log-level".into(),
                "error".into(),
                "--logger".into(),
                "zap".into(),
            ];
            let channel = Endpoint::from_shared(format!("http://{client}"))?
                .tcp_nodelay(true)
                .connect_lazy();
            members.push(EtcdMember {
                args,
                log: dir.join(format!("etcd-{i}.log")),
                child: None,
                channel,
            });
        }
        let mut cluster = Self {
            binary: args.etcd.clone(),
            members,
        };
        for i in 0..3 {
            cluster.spawn(i)?;
        }
        let first = cluster.members[0].channel.clone();
        retry_until(Duration::from_secs(30), || async {
            etcd_put(&first, b"bench/ready".to_vec(), b"1".to_vec()).await
        })
        .await
        .context("etcd did not accept a write within 30 s")?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &mut self.members[i];
        let log = std::fs::File::create(&m.log)?;
        let child = Process::new(&self.binary)
            .args(&m.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} (install Debian's etcd-server)", self.binary))?;
        m.child = Some(child);
        Ok(())
    }

    fn writer(&self, args: &RegistryBenchArgs) -> EtcdWriter {
        EtcdWriter {
            channels: Arc::new(self.members.iter().map(|m| m.channel.clone()).collect()),
            value: Arc::new(vec![b'x'; args.value_bytes]),
            keys: args.keys as u64,
        }
    }

    async fn leader(&self, limit: Duration) -> anyhow::Result<usize> {
        retry_until(limit, || async {
            let mut ids = Vec::new();
            let mut leader = 0;
            for m in &self.members {
                let (me, l) = etcd_status(&m.channel).await?;
                ids.push(me);
                if leader == 0 {
                    leader = l;
                } else if l != leader {
                    bail!("members disagree on the leader");
                }
            }
            ids.iter()
                .position(|id| *id == leader && leader != 0)
                .context("no etcd leader")
        })
        .await
    }

    async fn failover(&mut self, args: &RegistryBenchArgs) -> anyhow::Result<Duration> {
        let leader = self.leader(Duration::from_secs(30)).await?;
        let survivors: Vec<Channel> = self
            .members
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != leader)
            .map(|(_, m)| m.channel.clone())
            .collect();
        let value = vec![b'x'; args.value_bytes];
        let mut child = self.members[leader]
            .child
            .take()
            .context("leader not running")?;
        let t0 = Instant::now();
        child.kill()?;
        let _ = child.wait();
        let mut seq = 0usize;
        loop {
            let ch = &survivors[seq % survivors.len()];
            if let Ok(Ok(())) = tokio::time::timeout(
                FAILOVER_ATTEMPT,
                etcd_put(ch, b"bench/failover".to_vec(), value.clone()),
            )
            .await
            {
                break;
            }
            seq += 1;
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("no etcd write acknowledged within 60 s of killing the leader");
            }
        }
        let elapsed = t0.elapsed();
        // Restart the killed member from its data directory; it rejoins the cluster.
        self.spawn(leader)?;
        self.leader(Duration::from_secs(30)).await?;
        Ok(elapsed)
    }

    fn stop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
