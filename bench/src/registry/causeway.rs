//! Causeway's registry in this process: three members over mutual TLS, a writer that
//! proposes exports round-robin over them, and the leader stop and restart of a
//! failover round.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use causeway_registry::{
    ClusterRecord, Command, Export, NodeConfig, Protocol, RegistryClient, RegistryServer,
    ServicePort, TlsConfigs,
};
use causeway_testing::TestFederation;
use tokio::net::TcpListener;

use super::load::Writer;
use super::{FAILOVER_ATTEMPT, RegistryBenchArgs, WRITE_TIMEOUT, retry_until};

/// Tick of the benchmarked Causeway registry.
const TICK: Duration = Duration::from_millis(50);

/// Three members and a client of each.
pub(super) struct CausewayCluster {
    fed: TestFederation,
    servers: BTreeMap<u64, RegistryServer>,
    configs: BTreeMap<u64, NodeConfig>,
    tls: BTreeMap<u64, TlsConfigs>,
    clients: BTreeMap<u64, RegistryClient>,
}

/// Proposes exports round-robin over the members.
#[derive(Clone)]
pub(super) struct CausewayWriter {
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
        slots: None,
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
    /// Starts three members and registers the benchmark's cluster.
    pub(super) async fn start(dir: &Path, args: &RegistryBenchArgs) -> anyhow::Result<Self> {
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
            replicas: Vec::new(),
            import_pools: Vec::new(),
            runtime_exports: None,
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

    /// A writer over every member's client.
    pub(super) fn writer(&self, args: &RegistryBenchArgs) -> CausewayWriter {
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
    pub(super) async fn failover(&mut self, args: &RegistryBenchArgs) -> anyhow::Result<Duration> {
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

    /// Stops every member.
    pub(super) async fn stop(self) {
        for (_, s) in self.servers {
            s.kill().await;
        }
    }
}
