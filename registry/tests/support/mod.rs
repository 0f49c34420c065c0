//! An in-process registry of N members over real gRPC and mutual TLS on loopback.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use causeway_registry::{
    ClusterRecord, Command, Export, GetKey, MemberIds, NetworkSwitch, NodeConfig, Protocol,
    ReadConsistency, RegistryClient, RegistryServer, ServicePort, TlsConfigs,
};
use causeway_testing::TestFederation;
pub use causeway_testing::eventually;
use causeway_trust::GatewayIdentity;
use tokio::net::TcpListener;

pub const H2: &[u8] = b"h2";

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub struct TestRegistry {
    pub fed: TestFederation,
    pub switch: NetworkSwitch,
    pub dir: tempfile::TempDir,
    pub addrs: BTreeMap<u64, SocketAddr>,
    pub configs: BTreeMap<u64, NodeConfig>,
    pub servers: BTreeMap<u64, RegistryServer>,
    tls: BTreeMap<u64, TlsConfigs>,
    /// Each member's identity; its denylist is the one the member keeps in force.
    pub identities: BTreeMap<u64, Arc<GatewayIdentity>>,
    /// The identity of the default client: west's gateway.
    pub client_identity: Arc<GatewayIdentity>,
    client_tls: Arc<rustls::ClientConfig>,
}

/// Short timers, as the integration tests use: 50 ms ticks, 300 ms election timeout.
/// Members have the small ids 1..=n, so ids are not bound to cluster names here
/// (tests/member_ids.rs covers the binding).
pub fn test_config(id: u64, addr: SocketAddr, dir: &std::path::Path) -> NodeConfig {
    let mut c = NodeConfig::new(id, addr.to_string(), dir.join(format!("member-{id}")));
    c.member_ids = MemberIds::Unchecked;
    c.tick_interval = Duration::from_millis(50);
    c.election_ticks = 6;
    c.heartbeat_ticks = 1;
    c.request_timeout = Duration::from_secs(2);
    c
}

impl TestRegistry {
    /// Starts `n` members with ids 1..=n.
    pub async fn start(n: u64, tweak: impl Fn(&mut NodeConfig)) -> anyhow::Result<Self> {
        init_tracing();
        let fed = TestFederation::new();
        let dir = tempfile::tempdir()?;
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            let l = TcpListener::bind("127.0.0.1:0").await?;
            listeners.insert(id, l);
        }
        let addrs: BTreeMap<u64, SocketAddr> = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().expect("bound")))
            .collect();
        let initial: BTreeMap<u64, String> =
            addrs.iter().map(|(id, a)| (*id, a.to_string())).collect();
        // The tests' client is west's gateway: it may write west's records.
        let west = fed.identity("west");
        let mut reg = Self {
            client_tls: Arc::new(west.client_config(&[H2])),
            client_identity: west,
            identities: BTreeMap::new(),
            fed,
            switch: NetworkSwitch::new(),
            addrs: addrs.clone(),
            configs: BTreeMap::new(),
            servers: BTreeMap::new(),
            tls: BTreeMap::new(),
            dir,
        };
        for (id, listener) in listeners {
            let mut config = test_config(id, addrs[&id], reg.dir.path());
            config.initial_members = initial.clone();
            tweak(&mut config);
            reg.configs.insert(id, config);
            reg.launch(id, listener).await?;
        }
        Ok(reg)
    }

    fn tls_for(&mut self, id: u64) -> TlsConfigs {
        let fed = &self.fed;
        let identity = self
            .identities
            .entry(id)
            .or_insert_with(|| fed.identity(&format!("c{id}")))
            .clone();
        self.tls
            .entry(id)
            .or_insert_with(|| TlsConfigs {
                server: Arc::new(identity.server_config(&[H2])),
                client: Arc::new(identity.client_config(&[H2])),
            })
            .clone()
    }

    async fn launch(&mut self, id: u64, listener: TcpListener) -> anyhow::Result<()> {
        let tls = self.tls_for(id);
        let denylist = self.identities[&id].denylist().clone();
        let config = self.configs[&id].clone();
        let server = RegistryServer::start_with_denylist(
            config,
            listener,
            tls,
            Some(self.switch.clone()),
            denylist,
        )
        .await
        .with_context(|| format!("starting member {id}"))?;
        self.servers.insert(id, server);
        Ok(())
    }

    /// Adds a member that joins an existing registry (empty initial members).
    pub async fn add_joiner(&mut self, id: u64) -> anyhow::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        self.addrs.insert(id, addr);
        let config = test_config(id, addr, self.dir.path());
        self.configs.insert(id, config);
        self.launch(id, listener).await?;
        Ok(addr)
    }

    pub fn client(&self, id: u64) -> RegistryClient {
        RegistryClient::connect(&self.addrs[&id].to_string(), self.client_tls.clone())
            .expect("valid address")
    }

    /// A client of member `id` presenting `identity`.
    pub fn client_as(&self, identity: &Arc<GatewayIdentity>, id: u64) -> RegistryClient {
        let tls = Arc::new(identity.client_config(&[H2]));
        RegistryClient::connect(&self.addrs[&id].to_string(), tls).expect("valid address")
    }

    pub fn client_tls(&self) -> Arc<rustls::ClientConfig> {
        self.client_tls.clone()
    }

    pub fn running(&self) -> Vec<u64> {
        self.servers.keys().copied().collect()
    }

    /// Stops a member as a crash would.
    pub async fn kill(&mut self, id: u64) {
        if let Some(s) = self.servers.remove(&id) {
            s.kill().await;
        }
    }

    /// Restarts a stopped member from its data directory on its old address.
    pub async fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        let addr = self.addrs[&id];
        let listener = eventually(
            Duration::from_secs(5),
            "the old port to be free",
            || async { TcpListener::bind(addr).await.ok() },
        )
        .await?;
        self.launch(id, listener).await
    }

    /// Waits until every member in `among` names the same leader, itself in `among`.
    pub async fn leader(&self, among: &[u64], limit: Duration) -> anyhow::Result<u64> {
        let among: BTreeSet<u64> = among.iter().copied().collect();
        eventually(limit, "an agreed leader", || async {
            let mut leaders = BTreeSet::new();
            for id in &among {
                let status = self.servers.get(id)?.node().status().await.ok()?;
                leaders.insert(status.leader);
            }
            let leader = *leaders.iter().next()?;
            (leaders.len() == 1 && among.contains(&leader)).then_some(leader)
        })
        .await
    }

    /// Waits until every member in `among` has applied `revision`.
    pub async fn converged(
        &self,
        among: &[u64],
        revision: u64,
        limit: Duration,
    ) -> anyhow::Result<()> {
        eventually(
            limit,
            &format!("revision {revision} on {among:?}"),
            || async {
                for id in among {
                    let applied = self.servers.get(id)?.node().read_local(|c| c.revision().0);
                    if applied < revision {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await
    }

    /// Every member's catalog, as JSON, for comparisons.
    pub fn states(&self, among: &[u64]) -> Vec<String> {
        among
            .iter()
            .map(|id| {
                let snap = self.servers[id].node().read_local(|c| c.snapshot());
                serde_json::to_string(&snap).expect("serializes")
            })
            .collect()
    }
}

pub fn cluster(name: &str) -> ClusterRecord {
    ClusterRecord {
        name: name.parse().unwrap(),
        gateway_addrs: vec!["127.0.0.1:15443".into()],
        registry_addr: "127.0.0.1:15444".into(),
        identity: format!("spiffe://causeway.local/cluster/{name}/gateway")
            .parse()
            .unwrap(),
        joined_at_unix_ms: 1,
        trust_bundle: Vec::new(),
        issuer_fingerprint: None,
        replicas: Vec::new(),
        import_pools: Vec::new(),
        runtime_exports: None,
    }
}

pub fn export(cluster: &str, service: &str, endpoints: u32) -> Export {
    Export {
        cluster: cluster.parse().unwrap(),
        service: service.parse().unwrap(),
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Http,
            port: 8080,
        }],
        endpoints,
        labels: BTreeMap::new(),
        weight: 1,
        slots: None,
    }
}

/// Proposes, retrying while the registry has no leader (as a gateway would).
pub async fn propose_retrying(
    client: &RegistryClient,
    command: &Command,
    limit: Duration,
) -> anyhow::Result<u64> {
    eventually(limit, "the proposal to commit", || async {
        client.propose(command).await.ok().map(|r| r.0)
    })
    .await
}

pub async fn get_export(
    client: &RegistryClient,
    cluster: &str,
    service: &str,
    consistency: ReadConsistency,
) -> anyhow::Result<Option<Export>> {
    let snap = client
        .get(
            GetKey::Export(cluster.parse()?, service.parse()?),
            consistency,
        )
        .await?;
    Ok(snap.exports.into_iter().next().map(|v| v.value))
}
