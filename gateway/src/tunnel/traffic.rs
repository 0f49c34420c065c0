//! Traffic policy for imported services: which exporting cluster gets a new
//! stream, when a cluster is ejected, how many streams one cluster may carry,
//! retries, timeouts and injected faults. The L4 part of what Istio's
//! DestinationRule/VirtualService and Linkerd's TrafficSplit/ServiceProfile do,
//! enforced by the importing gateway.
//!
//! Sans-IO: [`TrafficPolicy`] is plain data with a `validate()` (it lives in the
//! registry crate, which stores it in the catalog, and is re-exported here);
//! [`ClusterTraffic`] is the per-(service, cluster) state machine (outlier
//! ejection, in-flight and pending counts); [`RetryBudget`] bounds extra opens;
//! [`choose`] orders the exporting clusters for a new stream, drawing from an
//! injected RNG so that it is deterministic under test. The outbound driver
//! (`outbound.rs`) feeds them clock readings and outcomes; [`TrafficTable`] holds
//! the live state behind locks.

mod choose;
mod state;
mod table;

pub use causeway_registry::{
    ConnectionLimits, FaultPolicy, MAX_ATTEMPTS, MAX_CONNECTION_LIMIT, MAX_EJECTION_TIME,
    MAX_FAULT_DELAY, MAX_WEIGHT, MAX_WEIGHTED_CLUSTERS, OutlierPolicy, RetryPolicy, RoutingMode,
    TrafficPolicy, TrafficPolicyProblem,
};
pub use choose::{TrafficCandidate, choose};
pub use state::{ClusterTraffic, Failure, RETRY_RESERVE, RetryBudget};
pub use table::{Admission, Ejection, TrafficTable};

/// Names an imported service (all its ports) in the traffic table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
}

impl PolicyKey {
    /// The key of `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests;
