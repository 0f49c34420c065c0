//! `causeway gateway run`: trust, registry, mirror and tunnel wired into one process.
//!
//! Start-up order: identity (fails fast on bad certificates), registry member
//! (bootstrap, restart from disk, or join), tunnel, DNS, then the tasks that keep
//! them in step: catalog → import table → DNS and import listeners; exports →
//! catalog and local services; registry status → metrics. The data plane never
//! waits on the registry: with no quorum, imports keep serving from the last catalog
//! applied here, and `/ready` says so.

mod api;
pub(crate) mod exports;
mod members;
mod metrics;
mod policy;
mod reload;
mod sync;
mod traffic;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use causeway_mirror::dns::DnsServer;
use causeway_mirror::{Mirror, MirrorConfig};
use causeway_registry::{Node, RegistryServer};
use causeway_trust::{ClusterIssuer, ClusterName, GatewayIdentity, Role};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{ExportConfig, GatewayConfig};
use crate::tunnel::Tunnel;

pub use api::GatewayApi;
pub use members::{JOIN_FILE, member_id};

/// How long a graceful stop waits for in-flight streams.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// State every task of a running gateway shares.
pub(crate) struct Shared {
    pub(crate) config: GatewayConfig,
    /// The config file, for reloads; none when built in memory.
    pub(crate) config_file: Option<PathBuf>,
    pub(crate) cluster: ClusterName,
    pub(crate) identity: Arc<GatewayIdentity>,
    pub(crate) tunnel: Tunnel,
    pub(crate) mirror: Mutex<Mirror>,
    pub(crate) registry: tokio::sync::Mutex<Option<RegistryServer>>,
    /// The current registry member; replaced when `link` re-seats it.
    pub(crate) node: RwLock<Node>,
    pub(crate) directory: RwLock<sync::Directory>,
    pub(crate) exports: Arc<Mutex<Vec<ExportConfig>>>,
    /// Access policy: the tunnel's access check, hidden imports, the denylist.
    pub(crate) access: Arc<policy::AccessPolicies>,
    /// Traffic policies: declared here, from the catalog, and in effect.
    pub(crate) traffic: Arc<traffic::TrafficPolicies>,
    /// Exports from the platform (Kubernetes `ServiceExport`s), by service.
    pub(crate) platform_exports:
        Mutex<std::collections::BTreeMap<causeway_registry::ServiceKey, exports::PlatformExport>>,
    /// On Kubernetes: the pod ports carrying imported service ports (import
    /// listeners bind these instead of per-import addresses).
    pub(crate) listener_ports: Option<Mutex<crate::kubernetes::ListenerPorts>>,
    /// Wakes the Kubernetes import mirror after the import table changed.
    pub(crate) imports_changed: Notify,
    /// Wakes the publisher after exports change or the registry is re-seated.
    pub(crate) republish: Notify,
    /// Counts changes of the export set; the publisher reports the last one it
    /// committed on `published`, so callers can wait for their change.
    pub(crate) export_generation: std::sync::atomic::AtomicU64,
    pub(crate) published: tokio::sync::watch::Sender<u64>,
    pub(crate) state: Mutex<sync::SyncState>,
    pub(crate) metrics: metrics::GatewayMetrics,
    /// Every registered metric, for `/metrics`.
    pub(crate) prometheus: prometheus_client::registry::Registry,
    /// The member's last status, refreshed every second (status calls are sync).
    pub(crate) last_status: Mutex<Option<(causeway_registry::NodeStatus, time::OffsetDateTime)>>,
    pub(crate) dns_addr: SocketAddr,
    pub(crate) cancel: CancellationToken,
}

impl Shared {
    pub(crate) fn node(&self) -> Node {
        self.node.read().expect("node lock poisoned").clone()
    }
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    dns: Option<DnsServer>,
    tasks: TaskTracker,
    admin_addr: SocketAddr,
}

impl Gateway {
    /// Starts every part of the gateway described by `config`.
    pub async fn start(mut config: GatewayConfig, config_file: Option<PathBuf>) -> Result<Self> {
        if config.registry.join.is_empty() {
            config.registry.join = members::recorded_members(&config.registry.data_dir);
        }
        let issuer = ClusterIssuer::load(&config.trust.issuer_dir)
            .with_context(|| "loading the cluster issuer ([trust].issuer_dir)")?;
        anyhow::ensure!(
            issuer.cluster() == &config.cluster,
            "the issuer in {} is for cluster {}, but this gateway is cluster {}",
            config.trust.issuer_dir.display(),
            issuer.cluster(),
            config.cluster
        );
        let identity = GatewayIdentity::new(issuer, Role::Gateway, config.trust.leaf_lifetime)?;
        identity.spawn_renewal();
        let cluster = config.cluster.clone();
        let metrics = metrics::GatewayMetrics::default();
        let mut prometheus = prometheus_client::registry::Registry::default();
        metrics.register(&mut prometheus);

        let (registry, needs_join) = members::start_member(&config, &identity).await?;
        let node = registry.node().clone();

        let exports = Arc::new(Mutex::new(config.exports.clone()));
        let access = Arc::new(policy::AccessPolicies::new(
            cluster.clone(),
            config.access.clone(),
            exports.clone(),
        ));
        let traffic = Arc::new(traffic::TrafficPolicies::new(
            cluster.clone(),
            config.traffic_policies.clone(),
        ));
        let tunnel = Tunnel::start(
            config.tunnel.clone(),
            identity.clone(),
            metrics.tunnel.clone(),
            access.clone(),
        )
        .context("starting the tunnel")?;

        // On Kubernetes, imports get the cluster IPs of their mirrored Services,
        // not addresses from the pools.
        let kubernetes = config.kubernetes.enabled(|k| std::env::var(k).ok());
        let mirror_config = MirrorConfig {
            dns: config.dns.clone(),
            addresses: config.imports.clone(),
            allocate_addresses: !kubernetes,
            state_file: Some(config.registry.data_dir.join("addresses.json")),
        };
        let mirror = Mirror::new(cluster.clone(), &mirror_config, metrics.dns.clone())
            .context("starting the mirror")?;
        let dns = DnsServer::start(&config.dns, mirror.zone().clone())
            .await
            .with_context(|| format!("starting DNS on {}", config.dns.listen))?;
        let dns_addr = dns.local_addr();

        let admin = TcpListener::bind(config.admin.listen)
            .await
            .with_context(|| format!("binding admin HTTP on {}", config.admin.listen))?;
        let admin_addr = admin.local_addr()?;

        if kubernetes {
            // TrafficPolicy objects join the file's policies once listed; until
            // then this cluster's records in the catalog stay in force.
            traffic.await_platform_policies();
        }

        let shared = Arc::new(Shared {
            cluster,
            config_file,
            identity,
            tunnel,
            mirror: Mutex::new(mirror),
            registry: tokio::sync::Mutex::new(Some(registry)),
            node: RwLock::new(node),
            directory: RwLock::default(),
            exports,
            access,
            traffic,
            platform_exports: Mutex::default(),
            listener_ports: kubernetes
                .then(|| config.kubernetes.listener_range())
                .flatten()
                .map(|range| {
                    let bind = config
                        .kubernetes
                        .pod_ip
                        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
                    Mutex::new(crate::kubernetes::ListenerPorts::new(bind, range))
                }),
            imports_changed: Notify::new(),
            republish: Notify::new(),
            export_generation: std::sync::atomic::AtomicU64::new(0),
            published: tokio::sync::watch::channel(0).0,
            state: Mutex::default(),
            metrics,
            prometheus,
            last_status: Mutex::default(),
            dns_addr,
            cancel: CancellationToken::new(),
            config,
        });
        exports::apply_local_services(&shared);
        traffic::apply(&shared);

        let tasks = TaskTracker::new();
        if needs_join {
            tasks.spawn(members::join_in_background(shared.clone()));
        }
        tasks.spawn(sync::follow_catalog(shared.clone()));
        tasks.spawn(exports::publish(shared.clone()));
        tasks.spawn(policy::publish(shared.clone()));
        tasks.spawn(traffic::publish(shared.clone()));
        tasks.spawn(traffic::follow_changes(shared.clone()));
        tasks.spawn(metrics::poll_registry(shared.clone()));
        if kubernetes {
            crate::kubernetes::start(&shared, &tasks)
                .await
                .context("starting the Kubernetes controllers ([kubernetes] mode)")?;
        }
        let api = Arc::new(GatewayApi::new(shared.clone()));
        let cancel = shared.cancel.clone();
        tasks.spawn(async move {
            if let Err(e) = crate::admin::serve(admin, api, cancel.cancelled_owned()).await {
                warn!(error = %e, "admin HTTP stopped");
            }
        });
        info!(
            cluster = %shared.cluster,
            tunnel = %shared.tunnel.local_addr(),
            dns = %dns_addr,
            admin = %admin_addr,
            "gateway started"
        );
        Ok(Self {
            shared,
            dns: Some(dns),
            tasks,
            admin_addr,
        })
    }

    /// The admin HTTP address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The DNS server's address.
    pub fn dns_addr(&self) -> SocketAddr {
        self.shared.dns_addr
    }

    /// The tunnel's UDP address.
    pub fn tunnel_addr(&self) -> SocketAddr {
        self.shared.tunnel.local_addr()
    }

    /// This gateway's cluster.
    pub fn cluster(&self) -> &ClusterName {
        &self.shared.cluster
    }

    /// The shared state, for in-crate tests of the parts built on it.
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The admin API, for in-process callers (the demo).
    pub fn api(&self) -> GatewayApi {
        GatewayApi::new(self.shared.clone())
    }

    /// Re-reads the exports and access policy from the config file (SIGHUP or a
    /// file change).
    pub fn reload(&self) -> Result<()> {
        reload::reload_from_file(&self.shared)
    }

    /// Replaces the access section in memory (what a reload of `[access]` does),
    /// for gateways built without a config file.
    pub fn set_access(&self, access: crate::config::AccessSection) {
        policy::set_config(&self.shared, access);
    }

    /// Replaces the traffic policies in memory (what a reload of
    /// `[[traffic_policy]]` does), for gateways built without a config file. An
    /// invalid list changes nothing.
    pub fn set_traffic_policies(
        &self,
        policies: &[crate::config::TrafficPolicyConfig],
    ) -> Result<()> {
        let problems = crate::config::validate_traffic_policies(policies);
        if let Some((key, message)) = problems.first() {
            anyhow::bail!("{key}: {message} ({} problem(s))", problems.len());
        }
        traffic::set_file(&self.shared, policies.to_vec());
        Ok(())
    }

    /// Stops gracefully: tells peers, waits for in-flight streams up to a deadline,
    /// then stops DNS, the registry member and every task.
    pub async fn shutdown(mut self) {
        info!(cluster = %self.shared.cluster, "draining");
        let left = self.shared.tunnel.drain(Some(DRAIN_DEADLINE)).await;
        if left > 0 {
            warn!(
                streams = left,
                "streams still open at the drain deadline were closed"
            );
        }
        self.shared.cancel.cancel();
        if let Some(dns) = self.dns.take() {
            dns.shutdown().await;
        }
        if let Some(registry) = self.shared.registry.lock().await.take() {
            registry.kill().await;
        }
        self.shared.tunnel.close();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
    }

    /// Stops at once, as a crash would (tests and the demo's failover).
    pub async fn kill(mut self) {
        self.shared.cancel.cancel();
        self.shared.tunnel.close();
        if let Some(dns) = self.dns.take() {
            dns.shutdown().await;
        }
        if let Some(registry) = self.shared.registry.lock().await.take() {
            registry.kill().await;
        }
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
    }
}

/// File descriptors a gateway asks for: each import listens once per port, plus once
/// per exporting cluster when several export it, so 10,000 imports need 10,000+.
const WANT_FILES: u64 = 1 << 17;

/// Raises the open-file limit as far as allowed: the hard limit too when running
/// with the privilege to (containers usually run gateways as root).
/// Proposes `commands` in order, stopping at the first failure, which is logged as
/// `what` failing: the publishers repeat the rest on their next round.
async fn propose_in_order(
    node: &Node,
    commands: Vec<causeway_registry::Command>,
    what: &str,
) -> Result<(), causeway_registry::NodeError> {
    for command in commands {
        if let Err(e) = node.propose(&command).await {
            warn!(error = %e, kind = command.kind(), "{what} failed");
            return Err(e);
        }
    }
    Ok(())
}

fn raise_file_limit() {
    use rlimit::Resource;
    let Ok((soft, hard)) = Resource::NOFILE.get() else {
        return;
    };
    let target = WANT_FILES.max(soft);
    if Resource::NOFILE.set(target, target.max(hard)).is_err() {
        let _ = Resource::NOFILE.set(hard.min(target).max(soft), hard);
    }
    if let Ok((soft, _)) = Resource::NOFILE.get() {
        info!(open_files = soft, "open-file limit");
    }
}

/// Runs a gateway from a config file until SIGTERM or SIGINT; SIGHUP and edits of
/// the file reload its exports.
pub async fn run(config_file: PathBuf) -> Result<()> {
    raise_file_limit();
    let config = GatewayConfig::load(&config_file, std::env::vars())?;
    let gateway = Gateway::start(config, Some(config_file.clone())).await?;
    let _watcher = reload::watch_file(&config_file, gateway.shared.clone())?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                if let Err(e) = gateway.reload() {
                    warn!(error = %e, "reload refused; the running exports stay");
                }
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    gateway.shutdown().await;
    Ok(())
}
