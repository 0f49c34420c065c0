//! The composition root: builds each part of a gateway from its config, hands each
//! consumer the handles it uses, starts the daemon's tasks and, in Kubernetes mode,
//! the Kubernetes adapters.
//!
//! The only place that knows both the daemon and the platform adapters: the daemon
//! never imports an adapter, and an adapter never builds a part of the daemon.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use causeway_mirror::dns::DnsServer;
use causeway_mirror::{Mirror, MirrorConfig};
use causeway_trust::{ClusterIssuer, GatewayIdentity, ReplicaName, SpiffeId};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::GatewayConfig;
use crate::daemon::exports::{Exports, RuntimeExports};
use crate::daemon::members::{self, Membership};
use crate::daemon::metrics::Telemetry;
use crate::daemon::policy::AccessPolicies;
use crate::daemon::sync::Imports;
use crate::daemon::traffic::TrafficPolicies;
use crate::daemon::{self, Gateway, Local, Shared};
use crate::listener_ports::ListenerPorts;
use causeway_tunnel::{KeySource, ResetKey, Tunnel};

/// The tunnel's stateless-reset key, in the data folder.
const RESET_KEY_FILE: &str = "tunnel-reset.key";

impl Gateway {
    /// Starts every part of the gateway described by `config`. A listen address
    /// with port 0 gets a free port; [`Gateway::config`] shows the ports bound.
    pub async fn start(config: GatewayConfig, config_file: Option<PathBuf>) -> Result<Self> {
        let mut config = with_recorded_members(config);
        let kubernetes = config.kubernetes.enabled(|k| std::env::var(k).ok());
        let identity = load_identity(&config)?;
        let telemetry = Arc::new(Telemetry::new());
        let registry_listener = members::bind(&config).await?;
        config.registry.listen = registry_listener.local_addr()?;
        let (registry, needs_join) =
            members::start_member(&config, &identity, registry_listener).await?;
        let membership = Arc::new(Membership::new(registry));

        let runtime_exports = RuntimeExports::load(&config.registry.data_dir)
            .context("loading the runtime exports")?;
        // Filled by `Exports::new`: no stream is served before it.
        let configured = Arc::new(Mutex::new(Vec::new()));
        let cluster = config.cluster.clone();
        let access = Arc::new(AccessPolicies::new(
            cluster.clone(),
            config.access.clone(),
            configured.clone(),
        ));
        let traffic = Arc::new(TrafficPolicies::new(
            cluster.clone(),
            config.traffic_policies.clone(),
        ));
        if kubernetes {
            // TrafficPolicy objects join the file's policies once listed; until
            // then this cluster's records in the catalog stay in force.
            traffic.await_platform_policies();
        }
        let tunnel = Tunnel::start_with_reset_key(
            config.tunnel.clone(),
            identity.clone(),
            telemetry.metrics.tunnel.clone(),
            access.clone(),
            &reset_key(&config.registry.data_dir),
        )
        .context("starting the tunnel")?;
        config.tunnel.listen = tunnel.local_addr();
        let tunnel = Arc::new(tunnel);
        let exports_gauge = telemetry.metrics.exports.clone();
        let exports = Arc::new(Exports::new(
            config.exports.clone(),
            runtime_exports,
            configured,
            tunnel.clone(),
            exports_gauge,
        ));

        let (imports, dns) = start_imports(&config, kubernetes, &telemetry).await?;
        let admin = TcpListener::bind(config.admin.listen)
            .await
            .with_context(|| format!("binding admin HTTP on {}", config.admin.listen))?;
        config.admin.listen = admin.local_addr()?;
        config.dns.listen = dns.local_addr();
        let local = Arc::new(Local {
            cluster,
            identity,
            config_file,
            cancel: CancellationToken::new(),
            config,
        });
        let shared = Shared {
            local,
            membership,
            exports,
            imports: Arc::new(imports),
            access,
            traffic,
            tunnel,
            telemetry,
        };
        let tasks = daemon::start_tasks(&shared, needs_join);
        if kubernetes {
            crate::kubernetes::start(&shared, &tasks)
                .await
                .context("starting the Kubernetes controllers ([kubernetes] mode)")?;
        }
        Gateway::serve(shared, dns, tasks, admin)
    }
}

/// The tunnel's stateless-reset key from `<data_dir>/tunnel-reset.key`, created
/// on first start. Without it (an unwritable folder) the gateway still runs: peers
/// then notice its restarts only when their probes time out.
fn reset_key(data_dir: &std::path::Path) -> ResetKey {
    let path = data_dir.join(RESET_KEY_FILE);
    match ResetKey::load_or_create(&path) {
        Ok((key, KeySource::Replaced)) => {
            warn!(path = %path.display(), "the tunnel reset key was damaged; a new one replaced it");
            key
        }
        Ok((key, _)) => key,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot keep the tunnel reset key; using one for this run only");
            ResetKey::random()
        }
    }
}

/// `config` with the members a join token recorded, when it names none to join.
fn with_recorded_members(mut config: GatewayConfig) -> GatewayConfig {
    if config.registry.join.is_empty() {
        config.registry.join = members::recorded_members(&config.registry.data_dir);
    }
    config
}

/// This gateway's identity from the cluster issuer, renewing itself from now on.
/// Fails fast on an issuer of another cluster: every certificate would be refused.
fn load_identity(config: &GatewayConfig) -> Result<Arc<GatewayIdentity>> {
    let issuer = ClusterIssuer::load(&config.trust.issuer_dir)
        .with_context(|| "loading the cluster issuer ([trust].issuer_dir)")?;
    anyhow::ensure!(
        issuer.cluster() == &config.cluster,
        "the issuer in {} is for cluster {}, but this gateway is cluster {}",
        config.trust.issuer_dir.display(),
        issuer.cluster(),
        config.cluster
    );
    let id = SpiffeId::gateway(issuer.trust_domain().clone(), config.cluster.clone())
        .with_replica(config.replica.clone());
    let identity = GatewayIdentity::with_id(issuer, id, config.trust.leaf_lifetime)?;
    identity.spawn_renewal();
    Ok(identity)
}

/// The import table with its DNS server. On Kubernetes, imports get the cluster
/// IPs of their mirrored Services, not addresses from the pools, and their
/// listeners bind pod ports.
async fn start_imports(
    config: &GatewayConfig,
    kubernetes: bool,
    telemetry: &Telemetry,
) -> Result<(Imports, DnsServer)> {
    let mirror_config = MirrorConfig {
        dns: config.dns.clone(),
        addresses: config.imports.clone(),
        allocate_addresses: !kubernetes,
    };
    let dns_metrics = telemetry.metrics.dns.clone();
    let mirror = Mirror::new(config.cluster.clone(), &mirror_config, dns_metrics)
        .context("starting the mirror")?;
    let dns = DnsServer::start(&config.dns, mirror.zone().clone())
        .await
        .with_context(|| format!("starting DNS on {}", config.dns.listen))?;
    let listener_ports = kubernetes
        .then(|| config.kubernetes.listener_range())
        .flatten()
        .map(|range| {
            let bind = config
                .kubernetes
                .pod_ip
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            ListenerPorts::new(bind, range)
        });
    Ok((Imports::new(mirror, listener_ports), dns))
}

/// File descriptors a gateway asks for: each import listens once per port, plus once
/// per exporting cluster when several export it, so 10,000 imports need 10,000+.
const WANT_FILES: u64 = 1 << 17;

/// Raises the open-file limit as far as allowed: the hard limit too when running
/// with the privilege to (containers usually run gateways as root).
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
///
/// `replica` (from `--replica`) names this gateway among its cluster's replicas,
/// over the file's `replica`.
pub async fn run(config_file: PathBuf, replica: Option<ReplicaName>) -> Result<()> {
    raise_file_limit();
    // Read before the load: an edit made while the gateway starts is newer than
    // this and is reloaded at the watcher's first check.
    let loaded = std::fs::read(&config_file).ok();
    let mut config = GatewayConfig::load(&config_file, std::env::vars())?;
    if replica.is_some() {
        config.replica = replica;
    }
    let gateway = Gateway::start(config, Some(config_file.clone())).await?;
    let _watcher = gateway.watch_config(&config_file, loaded)?;
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
