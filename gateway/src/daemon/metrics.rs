//! The gateway's own metrics, and the registry gauges polled from its member.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Local;
use super::members::Membership;

/// How often registry and certificate gauges are refreshed.
const POLL: Duration = Duration::from_millis(250);

/// Every metric a gateway exports, grouped by the part that owns it.
#[derive(Debug, Clone, Default)]
pub(crate) struct GatewayMetrics {
    pub(crate) tunnel: Arc<causeway_tunnel::Metrics>,
    pub(crate) dns: causeway_mirror::dns::Metrics,
    pub(crate) imports: Gauge,
    pub(crate) exports: Gauge,
    pub(crate) catalog_revision: Gauge,
    /// Exports of other clusters the access policy hides here.
    pub(crate) access_hidden_imports: Gauge,
    /// Cluster issuers the federation no longer trusts.
    pub(crate) access_denied_issuers: Gauge,
    /// Imported services with a traffic policy in effect here.
    pub(crate) traffic_policies: Gauge,
    /// Other clusters' traffic policies that apply here but are not followed.
    pub(crate) traffic_policies_not_followed: Gauge,
    /// 1 while this replica holds the Kubernetes controllers' Lease (writes
    /// mirrored Services, `ServiceImport`s and statuses), else 0.
    pub(crate) kubernetes_controller_leader: Gauge,
    registry_term: Gauge,
    registry_leader: Gauge,
    registry_commit_index: Gauge,
    registry_applied_index: Gauge,
    registry_has_quorum: Gauge,
    cert_expiry: Gauge<f64, AtomicU64>,
    issuer_expiry: Gauge<f64, AtomicU64>,
}

impl GatewayMetrics {
    /// Registers everything under `causeway_`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        self.tunnel.register(registry);
        self.dns.register(registry);
        let sub = registry.sub_registry_with_prefix("causeway");
        sub.register(
            "imports",
            "Services imported from other clusters",
            self.imports.clone(),
        );
        sub.register(
            "exports",
            "Services this cluster exports",
            self.exports.clone(),
        );
        sub.register(
            "kubernetes_controller_leader",
            "1 while this gateway replica holds the Kubernetes controllers' Lease and writes shared objects",
            self.kubernetes_controller_leader.clone(),
        );
        sub.register(
            "catalog_revision",
            "Catalog revision applied to the import table and DNS",
            self.catalog_revision.clone(),
        );
        sub.register(
            "access_hidden_imports",
            "Exports of other clusters the access policy does not let this cluster use",
            self.access_hidden_imports.clone(),
        );
        sub.register(
            "access_denied_issuers",
            "Cluster issuers the federation no longer trusts (unlinked clusters)",
            self.access_denied_issuers.clone(),
        );
        sub.register(
            "traffic_policies",
            "Imported services with a traffic policy in effect here",
            self.traffic_policies.clone(),
        );
        sub.register(
            "traffic_policies_not_followed",
            "Other clusters' traffic policies that apply here but are not followed (see causeway status)",
            self.traffic_policies_not_followed.clone(),
        );
        sub.register(
            "registry_term",
            "Raft term of the local member",
            self.registry_term.clone(),
        );
        sub.register(
            "registry_leader",
            "Member id of the registry leader (0 when none is known)",
            self.registry_leader.clone(),
        );
        sub.register(
            "registry_commit_index",
            "Highest log index known committed",
            self.registry_commit_index.clone(),
        );
        sub.register(
            "registry_applied_index",
            "Highest log index applied here",
            self.registry_applied_index.clone(),
        );
        sub.register(
            "registry_has_quorum",
            "1 when a registry leader is known",
            self.registry_has_quorum.clone(),
        );
        sub.register(
            "certificate_expiry_timestamp_seconds",
            "When the gateway's current leaf certificate expires (Unix time)",
            self.cert_expiry.clone(),
        );
        sub.register(
            "issuer_expiry_timestamp_seconds",
            "When the cluster issuer expires (Unix time)",
            self.issuer_expiry.clone(),
        );
    }
}

/// The gateway's metrics and the registry `/metrics` encodes them from.
#[derive(Debug)]
pub(crate) struct Telemetry {
    /// Every metric, for the parts that count.
    pub(crate) metrics: GatewayMetrics,
    /// Every registered metric, for `/metrics`.
    registry: Registry,
}

impl Telemetry {
    /// Fresh metrics, all registered.
    pub(crate) fn new() -> Self {
        let metrics = GatewayMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        Self { metrics, registry }
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            return format!("# encoding failed: {e}\n");
        }
        out
    }
}

/// Refreshes the registry and certificate gauges until the gateway stops.
pub(crate) async fn poll_registry(
    telemetry: Arc<Telemetry>,
    membership: Arc<Membership>,
    local: Arc<Local>,
) {
    let m = &telemetry.metrics;
    let issuer_expiry = causeway_trust::CertInfo::parse(local.identity.issuer().cert())
        .map(|i| i.not_after.unix_timestamp() as f64)
        .unwrap_or_default();
    m.issuer_expiry.set(issuer_expiry);
    loop {
        let leaf = local.identity.current();
        m.cert_expiry
            .set(leaf.info.not_after.unix_timestamp() as f64);
        if let Ok(status) = membership.node().status().await {
            m.registry_term.set(status.term as i64);
            m.registry_leader.set(status.leader as i64);
            m.registry_commit_index.set(status.commit_index as i64);
            m.registry_applied_index.set(status.applied_index as i64);
            m.registry_has_quorum.set(i64::from(status.leader != 0));
            membership.set_last_status(status);
        }
        tokio::select! {
            _ = local.cancel.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}
