//! `causeway gateway run`: trust, registry, mirror and tunnel wired into one process.
//!
//! Start-up order: identity (fails fast on bad certificates), registry member
//! (bootstrap, restart from disk, or join), tunnel, DNS, then the tasks that keep
//! them in step: catalog → import table → DNS and import listeners; exports →
//! catalog and local services; registry status → metrics. The data plane never
//! waits on the registry: with no quorum, imports keep serving from the last catalog
//! applied here, and `/ready` says so.
//!
//! Each part's state is a handle owned by the module of its concept
//! ([`members::Membership`], [`exports::Exports`], [`sync::Imports`], the access and
//! traffic policies, [`metrics::Telemetry`]), so a consumer holds only the ones it
//! uses. `crate::app` builds them from the config (`Gateway::start`) and starts the
//! platform's adapters beside the tasks started here; nothing here knows a platform.

mod api;
pub(crate) mod exports;
pub(crate) mod members;
pub(crate) mod metrics;
pub(crate) mod policy;
mod reload;
mod replicas;
pub(crate) mod sync;
pub(crate) mod traffic;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use causeway_mirror::dns::DnsServer;
use causeway_trust::{ClusterName, GatewayIdentity};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::admin::ApiError;
use crate::config::GatewayConfig;
use causeway_tunnel::Tunnel;
use exports::Exports;
use members::Membership;
use metrics::Telemetry;
use policy::AccessPolicies;
use sync::Imports;
use traffic::TrafficPolicies;

pub use api::GatewayApi;
pub use members::{JOIN_FILE, member_id};

/// How long a graceful stop waits for in-flight streams.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// This gateway as configured: what it is, what it was told, and the token that
/// ends its tasks. Fixed for the gateway's life.
#[derive(Debug)]
pub(crate) struct Local {
    /// This gateway's cluster.
    pub(crate) cluster: ClusterName,
    /// The identity its certificates are issued to.
    pub(crate) identity: Arc<GatewayIdentity>,
    /// The configuration it started with, each listen port 0 replaced by the port
    /// bound (reloads change the parts that may change in their own handles, not
    /// here).
    pub(crate) config: GatewayConfig,
    /// The config file, for reloads; none when built in memory.
    pub(crate) config_file: Option<PathBuf>,
    /// Cancelled when the gateway stops; every task ends with it.
    pub(crate) cancel: CancellationToken,
}

/// Every handle of a running gateway, for the few parts that use most of them: the
/// admin API, reloads, the catalog follower and the composition of adapters. The
/// rest take the handles they use.
#[derive(Clone)]
pub(crate) struct Shared {
    /// This gateway as configured.
    pub(crate) local: Arc<Local>,
    /// The registry member.
    pub(crate) membership: Arc<Membership>,
    /// What this cluster exports.
    pub(crate) exports: Arc<Exports>,
    /// What this cluster imports.
    pub(crate) imports: Arc<Imports>,
    /// Access policy: the tunnel's access check, hidden imports, the denylist.
    pub(crate) access: Arc<AccessPolicies>,
    /// Traffic policies: declared here, from the catalog, and in effect.
    pub(crate) traffic: Arc<TrafficPolicies>,
    /// The data plane.
    pub(crate) tunnel: Arc<Tunnel>,
    /// Metrics, and the registry `/metrics` encodes.
    pub(crate) telemetry: Arc<Telemetry>,
}

/// Joins the federation through the registry member at `peer` (`causeway link`, or
/// a `ClusterLink`): re-seats the member, then has the catalog followed from a
/// snapshot of the new registry and this cluster's whole export set put in it.
pub(crate) async fn link(
    local: &Local,
    membership: &Membership,
    imports: &Imports,
    exports: &Exports,
    peer: SocketAddr,
) -> Result<String, ApiError> {
    membership
        .reseat(&local.config, &local.identity, peer)
        .await?;
    imports.restart_from_snapshot();
    exports.replace_all();
    Ok(format!(
        "{} joined the federation through {peer}",
        local.cluster
    ))
}

/// Starts the tasks that keep the parts in step (see the module's doc). Local
/// services and traffic policies are applied first, so the tunnel serves exports
/// and follows policies before the registry is heard from.
pub(crate) fn start_tasks(shared: &Shared, needs_join: bool) -> TaskTracker {
    let Shared {
        local,
        membership,
        exports,
        access,
        traffic,
        tunnel,
        telemetry,
        ..
    } = shared;
    let metrics = &telemetry.metrics;
    exports::apply_local_services(exports);
    traffic::apply(traffic, tunnel, metrics);

    let tasks = TaskTracker::new();
    if needs_join {
        let (membership, exports) = (membership.clone(), exports.clone());
        let local = local.clone();
        tasks.spawn(async move {
            if members::join_in_background(membership, local).await {
                exports.republish();
            }
        });
    }
    tasks.spawn(members::rejoin_when_removed(
        membership.clone(),
        local.clone(),
    ));
    tasks.spawn(sync::follow_catalog(shared.clone()));
    tasks.spawn(exports::publish(
        exports.clone(),
        membership.clone(),
        local.clone(),
    ));
    tasks.spawn(policy::publish(
        access.clone(),
        membership.clone(),
        local.clone(),
    ));
    tasks.spawn(traffic::publish(
        traffic.clone(),
        membership.clone(),
        local.clone(),
    ));
    tasks.spawn(traffic::follow_changes(
        traffic.clone(),
        tunnel.clone(),
        metrics.clone(),
        local.cancel.clone(),
    ));
    tasks.spawn(metrics::poll_registry(
        telemetry.clone(),
        membership.clone(),
        local.clone(),
    ));
    tasks
}

/// A running gateway.
pub struct Gateway {
    shared: Shared,
    dns: Option<DnsServer>,
    tasks: TaskTracker,
    admin_addr: SocketAddr,
}

impl Gateway {
    /// Serves the admin API on `admin` beside the running `tasks`, and hands the
    /// whole out as one gateway.
    pub(crate) fn serve(
        shared: Shared,
        dns: DnsServer,
        tasks: TaskTracker,
        admin: TcpListener,
    ) -> Result<Self> {
        let admin_addr = admin.local_addr()?;
        let api = Arc::new(GatewayApi::new(shared.clone()));
        let cancel = shared.local.cancel.clone();
        tasks.spawn(async move {
            if let Err(e) = crate::admin::serve(admin, api, cancel.cancelled_owned()).await {
                warn!(error = %e, "admin HTTP stopped");
            }
        });
        info!(
            cluster = %shared.local.cluster,
            tunnel = %shared.tunnel.local_addr(),
            dns = %shared.local.config.dns.listen,
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
        self.shared.local.config.dns.listen
    }

    /// The configuration it runs: the one it started with, each listen port 0
    /// replaced by the port bound.
    pub fn config(&self) -> &GatewayConfig {
        &self.shared.local.config
    }

    /// The tunnel's UDP address.
    pub fn tunnel_addr(&self) -> SocketAddr {
        self.shared.tunnel.local_addr()
    }

    /// This gateway's cluster.
    pub fn cluster(&self) -> &ClusterName {
        &self.shared.local.cluster
    }

    /// The handles, for in-crate tests of the parts built on them.
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Shared {
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

    /// Watches the config file this gateway was started from and reloads it on
    /// every change, for as long as the watcher is kept.
    ///
    /// `loaded` is the file's content as read before the configuration was
    /// loaded from it: a change made between that read and this call (the
    /// gateway's start can take a while) is then reloaded at the first check.
    pub fn watch_config(
        &self,
        file: &std::path::Path,
        loaded: Option<Vec<u8>>,
    ) -> Result<notify::RecommendedWatcher> {
        reload::watch_file(file, loaded, self.shared.clone())
    }

    /// Replaces the access section in memory (what a reload of `[access]` does),
    /// for gateways built without a config file.
    pub fn set_access(&self, access: crate::config::AccessSection) {
        policy::set_config(&self.shared.access, &self.shared.tunnel, access);
    }

    /// Replaces the traffic policies in memory (what a reload of
    /// `[[traffic_policy]]` does), for gateways built without a config file. An
    /// invalid list changes nothing.
    pub fn set_traffic_policies(
        &self,
        policies: &[crate::config::TrafficPolicyConfig],
    ) -> Result<()> {
        let problems = crate::config::validate_traffic_policies(policies);
        if let Some(problem) = problems.first() {
            anyhow::bail!("{problem} ({} problem(s))", problems.len());
        }
        let shared = &self.shared;
        let metrics = &shared.telemetry.metrics;
        traffic::set_file(&shared.traffic, &shared.tunnel, metrics, policies.to_vec());
        Ok(())
    }

    /// Stops gracefully: tells peers, waits for in-flight streams up to a deadline,
    /// then stops DNS, the registry member and every task.
    pub async fn shutdown(mut self) {
        info!(cluster = %self.shared.local.cluster, "draining");
        let shared = &self.shared;
        let left = shared.tunnel.drain(Some(DRAIN_DEADLINE)).await;
        // Only now: peers retire a replica that leaves the list, with its streams.
        exports::leave_replica_list(&shared.exports, &shared.membership, &shared.local).await;
        if left > 0 {
            warn!(
                streams = left,
                "streams still open at the drain deadline were closed"
            );
        }
        self.shared.local.cancel.cancel();
        if let Some(dns) = self.dns.take() {
            dns.shutdown().await;
        }
        self.shared.membership.stop().await;
        self.shared.tunnel.close();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
    }

    /// Stops at once, as a crash would (tests and the demo's failover).
    pub async fn kill(mut self) {
        self.shared.local.cancel.cancel();
        self.shared.tunnel.close();
        if let Some(dns) = self.dns.take() {
            dns.shutdown().await;
        }
        self.shared.membership.stop().await;
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
    }
}
