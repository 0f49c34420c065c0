//! What the attempts of a route learn and spend: successes and failures for
//! outlier detection, the retry and hedge budgets, refusals at a connection limit.

use std::time::{Duration, Instant};

use causeway_trust::ClusterName;
use tracing::{debug, warn};

use super::Route;
use crate::metrics::{CircuitLabels, Direction, Metrics};
use crate::traffic::Admission;

/// Hedged opens may add at most this many per cent to a service's stream opens
/// (plus the budget's small reserve): a slow exporter must not double the load on
/// the others.
const HEDGE_BUDGET_PERCENT: u32 = 10;
/// A hedge waits at least this many of the slow peer's RTTs: an answer needs one,
/// plus the exporter's connect to its endpoint.
const HEDGE_RTTS: u32 = 4;

impl Route<'_> {
    /// Whether the `attempts + 1`-th attempt may go to `cluster`: the first always
    /// (earning budget), a retry within the plan's budget.
    pub(super) fn may_attempt(&self, cluster: &ClusterName, attempts: u32) -> bool {
        let (table, key) = (&self.shared.traffic, &self.state.key);
        if attempts == 0 {
            if self.plan.declared {
                table.first_attempt(key, self.policy.retries.budget_percent);
            }
            if self.plan.hedged() {
                self.hedge_budget().on_first_attempt(HEDGE_BUDGET_PERCENT);
            }
            return true;
        }
        if !self.plan.declared {
            return true;
        }
        let labels = || Metrics::traffic_labels(&self.state.key_label, cluster.as_str());
        let metrics = &self.shared.metrics;
        if table.try_retry(key) {
            metrics.traffic_retries.get_or_create(&labels()).inc();
            debug!(peer.cluster = %cluster, attempt = attempts + 1, "retrying on another cluster");
            true
        } else {
            metrics
                .traffic_retry_budget_exhausted
                .get_or_create(&labels())
                .inc();
            warn!(peer.cluster = %cluster, "retry budget spent; not retrying");
            false
        }
    }

    /// Whether the open in flight may be hedged to `cluster` now: takes a token of
    /// the hedge budget.
    pub(super) fn grant_hedge(&self, cluster: &ClusterName) -> bool {
        if !self.hedge_budget().try_retry() {
            debug!("hedge budget spent; waiting for the open in flight");
            return false;
        }
        debug!(peer.cluster = %cluster, "no answer yet; hedging to the next peer");
        let labels = Metrics::traffic_labels(&self.state.service_label, cluster.as_str());
        let hedged = &self.shared.metrics.streams_hedged;
        hedged.get_or_create(&labels).inc();
        true
    }

    fn hedge_budget(&self) -> std::sync::MutexGuard<'_, crate::traffic::RetryBudget> {
        let budget = &self.state.hedge_budget;
        budget.lock().expect("hedge budget lock poisoned")
    }

    /// How long an open may wait for its answer before it is hedged: [`HEDGE_RTTS`]
    /// of the slowest exporter's RTT, at least `hedge_delay_ms`; `None` (never)
    /// with hedging off.
    pub(super) fn hedge_delay(&self) -> Option<Duration> {
        let floor = self.shared.config.hedge_delay();
        if floor.is_zero() {
            return None;
        }
        let peers = &self.state.peers;
        let rtt = peers.iter().filter_map(|(_, p)| p.rtt()).max();
        Some(floor.max(rtt.unwrap_or_default() * HEDGE_RTTS))
    }

    /// `cluster` accepted the stream: its failure run ends, and the stream's span
    /// names it.
    pub(super) fn succeeded(&self, cluster: &ClusterName) {
        // A service without a declared policy keeps no traffic state.
        if self.plan.declared {
            let outlier = self.policy.outlier.as_ref();
            let now = Instant::now();
            (self.shared.traffic).on_success(&self.state.key, cluster, now, outlier);
        }
        tracing::Span::current().record("peer.cluster", cluster.as_str());
    }

    /// Counts a failure of `cluster` for outlier detection, ejecting it when due.
    pub(super) fn note_outlier_failure(&self, cluster: &ClusterName) {
        let Some(outlier) = &self.policy.outlier else {
            return;
        };
        let (shared, state) = (self.shared, self.state);
        let exporters = self.offer.traffic.len();
        let ejected =
            shared
                .traffic
                .on_failure(&state.key, cluster, Instant::now(), outlier, exporters);
        if let Some(time) = ejected {
            let labels = Metrics::traffic_labels(&state.key_label, cluster.as_str());
            let metrics = &shared.metrics;
            metrics.traffic_ejections.get_or_create(&labels).inc();
            metrics.traffic_ejected.get_or_create(&labels).set(1);
            warn!(service = %state.key, peer.cluster = %cluster, ejection_ms = time.as_millis() as u64, "cluster ejected after consecutive failures");
        }
    }

    /// Every cluster tried was at its connection limit: counts the refusal.
    pub(super) fn refuse_over_limit(&self, cluster: &ClusterName, why: Admission) {
        let (shared, state) = (self.shared, self.state);
        let labels = CircuitLabels {
            service: state.key_label.clone(),
            cluster: cluster.to_string(),
            limit: why.label().to_owned(),
        };
        let metrics = &shared.metrics;
        metrics
            .traffic_circuit_refusals
            .get_or_create(&labels)
            .inc();
        let service = &state.service_label;
        metrics.failed(
            cluster.as_str(),
            service,
            Direction::Outbound,
            "circuit_open",
        );
        debug!(peer.cluster = %cluster, limit = why.label(), "connection limit reached; refusing the client");
    }
}
