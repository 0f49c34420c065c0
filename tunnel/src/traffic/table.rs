//! The live traffic state of a tunnel: policies by service, and the state of
//! each (service, cluster) they govern. Services without a policy keep no state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use causeway_trust::ClusterName;

use super::{ClusterTraffic, PolicyKey, RetryBudget};

use causeway_policy::{ConnectionLimits, OutlierPolicy, TrafficPolicy};

/// Whether a (service, cluster) may take one more stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Yes; the stream counts as open and pending until told otherwise.
    Admitted,
    /// `limits.max_streams` streams are open.
    OverStreams,
    /// `limits.max_pending` streams are waiting for an answer.
    OverPending,
}

impl Admission {
    /// A short label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Admission::Admitted => "admitted",
            Admission::OverStreams => "max_streams",
            Admission::OverPending => "max_pending",
        }
    }
}

/// One ejected cluster, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ejection {
    /// `namespace/name` of the service.
    pub service: String,
    /// The ejected cluster.
    pub cluster: ClusterName,
    /// Time left until it returns.
    pub remaining: Duration,
    /// Ejections in a row, this one included.
    pub ejections: u32,
}

#[derive(Debug, Default)]
struct ServiceTraffic {
    clusters: HashMap<ClusterName, ClusterTraffic>,
    budget: RetryBudget,
}

/// Policies and their state, shared by every import listener of a tunnel.
#[derive(Debug)]
pub struct TrafficTable {
    local: ClusterName,
    policies: ArcSwap<HashMap<PolicyKey, Arc<TrafficPolicy>>>,
    services: Mutex<HashMap<PolicyKey, ServiceTraffic>>,
}

impl TrafficTable {
    /// An empty table for a gateway of cluster `local`.
    pub fn new(local: ClusterName) -> Self {
        Self {
            local,
            policies: ArcSwap::default(),
            services: Mutex::default(),
        }
    }

    /// This gateway's cluster (for `local-first`).
    pub fn local(&self) -> &ClusterName {
        &self.local
    }

    /// Replaces every policy. State of services that keep a policy stays
    /// (ejections, counts); the rest is forgotten. New streams see the new
    /// policies at once.
    pub fn set_policies(&self, policies: HashMap<PolicyKey, Arc<TrafficPolicy>>) {
        let mut services = self.services.lock().expect("traffic lock poisoned");
        services.retain(|key, _| policies.contains_key(key));
        self.policies.store(Arc::new(policies));
    }

    /// The policy of a service, if it has one.
    pub fn policy(&self, key: &PolicyKey) -> Option<Arc<TrafficPolicy>> {
        self.policies.load().get(key).cloned()
    }

    fn with<T>(&self, key: &PolicyKey, f: impl FnOnce(&mut ServiceTraffic) -> T) -> T {
        let mut services = self.services.lock().expect("traffic lock poisoned");
        f(services.entry(key.clone()).or_default())
    }

    /// For each cluster, whether it is ejected for `key` at `now`.
    pub fn ejected(&self, key: &PolicyKey, clusters: &[&ClusterName], now: Instant) -> Vec<bool> {
        self.with(key, |s| {
            clusters
                .iter()
                .map(|c| s.clusters.get(*c).is_some_and(|t| t.is_ejected(now)))
                .collect()
        })
    }

    /// Admits a new stream to `cluster` under `limits`, counting it as open and
    /// pending when admitted.
    pub fn admit(
        &self,
        key: &PolicyKey,
        cluster: &ClusterName,
        limits: &ConnectionLimits,
    ) -> Admission {
        self.with(key, |s| {
            let t = s.clusters.entry(cluster.clone()).or_default();
            if limits.max_streams.is_some_and(|max| t.streams >= max) {
                return Admission::OverStreams;
            }
            if limits.max_pending.is_some_and(|max| t.pending >= max) {
                return Admission::OverPending;
            }
            t.streams += 1;
            t.pending += 1;
            Admission::Admitted
        })
    }

    /// An admitted stream got its answer (or gave up waiting).
    pub fn answered(&self, key: &PolicyKey, cluster: &ClusterName) {
        self.with(key, |s| {
            if let Some(t) = s.clusters.get_mut(cluster) {
                t.pending = t.pending.saturating_sub(1);
            }
        });
    }

    /// An admitted stream ended.
    pub fn closed(&self, key: &PolicyKey, cluster: &ClusterName) {
        self.with(key, |s| {
            if let Some(t) = s.clusters.get_mut(cluster) {
                t.streams = t.streams.saturating_sub(1);
            }
        });
    }

    /// An attempt to `cluster` succeeded.
    pub fn on_success(
        &self,
        key: &PolicyKey,
        cluster: &ClusterName,
        now: Instant,
        policy: Option<&OutlierPolicy>,
    ) {
        self.with(key, |s| {
            if let Some(t) = s.clusters.get_mut(cluster) {
                t.on_success(now, policy);
            }
        });
    }

    /// An attempt to `cluster` failed; `exporters` clusters export the service.
    /// Returns the ejection time when the failure ejected the cluster.
    pub fn on_failure(
        &self,
        key: &PolicyKey,
        cluster: &ClusterName,
        now: Instant,
        policy: &OutlierPolicy,
        exporters: usize,
    ) -> Option<Duration> {
        self.with(key, |s| {
            let ejected = s.clusters.values().filter(|t| t.is_ejected(now)).count();
            let cap = exporters * usize::from(policy.max_ejection_percent) / 100;
            let may_eject = ejected < cap;
            s.clusters
                .entry(cluster.clone())
                .or_default()
                .on_failure(now, policy, may_eject)
        })
    }

    /// A client connection made its first attempt; earns retry budget.
    pub fn first_attempt(&self, key: &PolicyKey, budget_percent: u32) {
        self.with(key, |s| s.budget.on_first_attempt(budget_percent));
    }

    /// Takes retry budget for one retry; `false` when spent.
    pub fn try_retry(&self, key: &PolicyKey) -> bool {
        self.with(key, |s| s.budget.try_retry())
    }

    /// Every cluster ejected at `now`, by service then cluster.
    pub fn ejections(&self, now: Instant) -> Vec<Ejection> {
        let services = self.services.lock().expect("traffic lock poisoned");
        let mut out: Vec<Ejection> = services
            .iter()
            .flat_map(|(key, s)| {
                s.clusters.iter().filter_map(move |(cluster, t)| {
                    t.ejected_until(now).map(|until| Ejection {
                        service: key.to_string(),
                        cluster: cluster.clone(),
                        remaining: until - now,
                        ejections: t.ejections(),
                    })
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.service, &a.cluster).cmp(&(&b.service, &b.cluster)));
        out
    }
}
