//! A federation of in-process gateways on loopback: what `causeway demo` runs and
//! what multi-gateway tests build on.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let fed = causeway_gateway::federation::LocalFederation::start(&["west", "east"]).await?;
//! fed.wait_converged(std::time::Duration::from_secs(20)).await?;
//! let body = fed.request(0, "east.echo.demo.svc.clusterset.local").await?;
//! assert!(body.contains("east"));
//! # Ok(()) }
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use causeway_mirror::AddressConfig;
use causeway_mirror::dns::DnsConfig;
use causeway_trust::{ISSUER_VALIDITY, ROOT_VALIDITY, RootCa};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{AccessSection, PolicyConfig};
use crate::config::{
    AdminSection, AdvertiseSection, ExportConfig, GatewayConfig, KubernetesMode, KubernetesSection,
    PortConfig, RegistrySection, TrustSection,
};
use crate::daemon::Gateway;
use crate::dns_probe;
use causeway_tunnel::TunnelConfig;

/// The namespace and name every demo cluster exports.
pub const ECHO_NAMESPACE: &str = "demo";
/// The echo service's name.
pub const ECHO_SERVICE: &str = "echo";
/// The port importers connect to (unprivileged, so no root is needed).
pub const ECHO_PORT: u16 = 8080;

/// One cluster of a local federation.
pub struct Member {
    /// The cluster's name.
    pub cluster: String,
    /// Its configuration (kept for restarts).
    pub config: GatewayConfig,
    /// The running gateway; none while stopped.
    pub gateway: Option<Gateway>,
    /// The echo service's endpoint.
    pub echo: SocketAddr,
    echo_task: JoinHandle<()>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("cluster", &self.cluster)
            .field("running", &self.gateway.is_some())
            .finish()
    }
}

/// Gateways, their trust and their echo services, all in one temporary folder.
#[derive(Debug)]
pub struct LocalFederation {
    /// The clusters, first one bootstrapped the registry.
    pub members: Vec<Member>,
    dir: tempfile::TempDir,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn echo_app(cluster: &str) -> axum::Router {
    use axum::routing::get;
    let hello = format!("hello from {cluster}\n");
    axum::Router::new().route(
        "/",
        get(move || async move { hello }).post(|body: axum::body::Bytes| async move { body }),
    )
}

/// Serves `hello from <cluster>` (GET) and echoes bodies (POST) on a free port.
async fn echo_service(cluster: String) -> Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = echo_app(&cluster);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task))
}

/// Serves the echo service on `listen` until the process ends (`causeway echo`).
pub async fn serve_echo(listen: SocketAddr, cluster: String) -> Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    axum::serve(listener, echo_app(&cluster)).await?;
    Ok(())
}

/// The demo's access section: the federation denies by default, and each cluster
/// explicitly lets every cluster reach its echo service.
pub fn echo_access() -> AccessSection {
    AccessSection {
        policies: vec![PolicyConfig {
            name: "echo-from-all".into(),
            action: causeway_policy::PolicyAction::Allow,
            from: vec!["*".into()],
            namespace: Some(ECHO_NAMESPACE.into()),
            service: Some(ECHO_SERVICE.into()),
            labels: Default::default(),
            ports: Vec::new(),
        }],
        ..AccessSection::default()
    }
}

/// The configuration of member `index` of the local federation `block` of this
/// process: loopback ports the
/// gateway picks when it binds them (port 0), its issuer and data under
/// `cluster_dir`, joining `join` unless it is the first, and exporting the echo
/// service at `echo`.
fn member_config(
    name: &str,
    (block, index): (usize, usize),
    cluster_dir: &Path,
    join: Option<SocketAddr>,
    echo: SocketAddr,
) -> Result<GatewayConfig> {
    Ok(GatewayConfig {
        cluster: name.parse()?,
        replica: None,
        trust: TrustSection {
            issuer_dir: cluster_dir.join("issuer"),
            ..TrustSection::default()
        },
        registry: RegistrySection {
            listen: loopback(0),
            data_dir: cluster_dir.join("data"),
            join: join.into_iter().collect(),
            election_timeout: Duration::from_millis(500),
            ..RegistrySection::default()
        },
        tunnel: TunnelConfig {
            listen: loopback(0),
            probe_interval_ms: 500,
            ..TunnelConfig::default()
        },
        advertise: AdvertiseSection::default(),
        dns: DnsConfig {
            listen: loopback(0),
            udp_workers: 1,
            ..DnsConfig::default()
        },
        // Every gateway gets its own /24 for imports, since they share this
        // host's loopback: the /16 depends on the process, and within it each
        // federation of the process (`block`) has sixteen /24s, one per member, so
        // concurrent test runs, demos and federations of one test binary do not
        // collide.
        imports: AddressConfig {
            pools: vec![
                format!(
                    "127.{}.{}.0/24",
                    100 + std::process::id() % 100,
                    block * 16 + index
                )
                .parse()?,
            ],
        },
        admin: AdminSection {
            listen: loopback(0),
        },
        exports: vec![echo_export(echo)],
        access: echo_access(),
        traffic_policies: Vec::new(),
        // In-process federations never talk to a Kubernetes API server, even
        // where $KUBECONFIG is set.
        kubernetes: KubernetesSection {
            mode: KubernetesMode::Off,
            ..KubernetesSection::default()
        },
    })
}

/// The echo service, exported on `ECHO_PORT` towards its endpoint at `echo`.
fn echo_export(echo: SocketAddr) -> ExportConfig {
    ExportConfig {
        namespace: ECHO_NAMESPACE.into(),
        name: ECHO_SERVICE.into(),
        ports: vec![PortConfig {
            name: Some("http".into()),
            port: u64::from(ECHO_PORT),
            target_port: Some(u64::from(echo.port())),
            protocol: "tcp".into(),
        }],
        endpoints: vec![echo.ip()],
        weight: 100,
        labels: Default::default(),
    }
}

impl LocalFederation {
    /// Creates a trust domain, an issuer per cluster, an echo service per cluster,
    /// and starts one gateway per cluster. The first bootstraps the registry; the
    /// others join it.
    pub async fn start(clusters: &[&str]) -> Result<Self> {
        anyhow::ensure!(
            !clusters.is_empty() && clusters.len() <= 16,
            "1 to 16 clusters"
        );
        // Sixteen federations of one process at once, each with its own addresses.
        static FEDERATIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let block = FEDERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 16;
        let dir = tempfile::tempdir()?;
        let root = RootCa::generate("causeway.local".parse()?, ROOT_VALIDITY)?;
        root.write_new(&dir.path().join("ca"), false)?;
        let mut members: Vec<Member> = Vec::new();
        let mut first_registry = None;
        for (i, name) in clusters.iter().enumerate() {
            let issuer = root.issue_cluster(name.parse()?, ISSUER_VALIDITY, root.bundle())?;
            let cluster_dir = dir.path().join(name);
            issuer.write(&cluster_dir.join("issuer"), false)?;
            let (echo, echo_task) = echo_service(name.to_string()).await?;
            let config = member_config(name, (block, i), &cluster_dir, first_registry, echo)?;
            let problems = config.validate();
            anyhow::ensure!(problems.is_empty(), "demo config invalid: {problems:?}");
            let gateway = Gateway::start(config, None)
                .await
                .with_context(|| format!("starting gateway {name}"))?;
            first_registry.get_or_insert(gateway.config().registry.listen);
            members.push(Member {
                cluster: name.to_string(),
                // With the ports bound, so a restart takes the same ones.
                config: gateway.config().clone(),
                gateway: Some(gateway),
                echo,
                echo_task,
            });
        }
        Ok(Self { members, dir })
    }

    /// The folder holding trust material and data.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// The running gateway of member `i`.
    pub fn gateway(&self, i: usize) -> Result<&Gateway> {
        self.members[i]
            .gateway
            .as_ref()
            .with_context(|| format!("{} is stopped", self.members[i].cluster))
    }

    /// Waits until every running gateway is ready and imports the echo service from
    /// every other running cluster, with a listener bound for each.
    pub async fn wait_converged(&self, timeout: Duration) -> Result<()> {
        use crate::admin::AdminApi;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let running: Vec<&Member> = self
                .members
                .iter()
                .filter(|m| m.gateway.is_some())
                .collect();
            let mut waiting = Vec::new();
            for m in &running {
                let status = m.gateway.as_ref().expect("filtered").api().status();
                let import = status
                    .imports
                    .iter()
                    .find(|i| i.namespace == ECHO_NAMESPACE && i.name == ECHO_SERVICE);
                let from = import.map_or(0, |i| i.clusters.len());
                let ok = status.ready
                    && import.is_some_and(|i| i.listening)
                    && from == running.len() - 1
                    && status.peers.iter().filter(|p| p.alive).count() >= running.len() - 1;
                if !ok {
                    waiting.push(format!(
                        "{}: ready={} imports from {from}/{} {:?}",
                        m.cluster,
                        status.ready,
                        running.len() - 1,
                        status.not_ready
                    ));
                }
            }
            if waiting.is_empty() || running.len() == 1 {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("not converged after {timeout:?}: {}", waiting.join("; "));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resolves `name` with member `from`'s DNS and sends an HTTP GET to the answer,
    /// as a client in that cluster would. Returns the body.
    pub async fn request(&self, from: usize, name: &str) -> Result<String> {
        let gateway = self.gateway(from)?;
        let ips = dns_probe::query_a(gateway.dns_addr(), name, Duration::from_secs(2)).await?;
        let ip = ips.first().with_context(|| format!("{name}: no address"))?;
        let url = format!("http://{}/", SocketAddr::new(*ip, ECHO_PORT));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let resp = client
            .get(&url)
            .header("host", name)
            .send()
            .await
            .with_context(|| format!("GET {url} ({name})"))?;
        Ok(resp.error_for_status()?.text().await?)
    }

    /// The DNS name that reaches only `cluster`'s echo service.
    pub fn pinned_name(cluster: &str) -> String {
        format!("{cluster}.{ECHO_SERVICE}.{ECHO_NAMESPACE}.svc.clusterset.local")
    }

    /// The DNS name that reaches the echo service in any exporting cluster.
    pub fn service_name() -> String {
        format!("{ECHO_SERVICE}.{ECHO_NAMESPACE}.svc.clusterset.local")
    }

    /// Stops member `i`'s gateway at once, as a crash would.
    pub async fn kill(&mut self, i: usize) {
        if let Some(g) = self.members[i].gateway.take() {
            g.kill().await;
        }
    }

    /// Starts member `i`'s gateway again from its files.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        let config = self.members[i].config.clone();
        self.members[i].gateway = Some(Gateway::start(config, None).await?);
        Ok(())
    }

    /// Stops every gateway gracefully and the echo services.
    pub async fn shutdown(mut self) {
        for m in &mut self.members {
            if let Some(g) = m.gateway.take() {
                g.shutdown().await;
            }
            m.echo_task.abort();
        }
    }
}
