//! Traffic policy for imported services: which exporting cluster gets a new
//! stream, when a cluster is ejected, how many streams one cluster may carry,
//! retries, timeouts and injected faults. The L4 part of what Istio's
//! DestinationRule/VirtualService and Linkerd's TrafficSplit/ServiceProfile do,
//! enforced by the importing gateway.
//!
//! Sans-IO: the policy itself (`causeway_policy::TrafficPolicy`) and the order of
//! clusters for a new stream (`causeway_policy::choose`) are the policy crate's;
//! here [`ClusterTraffic`] is the per-(service, cluster) state machine (outlier
//! ejection, in-flight and pending counts) and [`RetryBudget`] bounds extra opens.
//! The outbound driver (`outbound.rs`) feeds them clock readings and outcomes;
//! [`TrafficTable`] holds the live state behind locks.

mod state;
mod table;

pub use state::{ClusterTraffic, Failure, RETRY_REFILL_PER_SECOND, RETRY_RESERVE, RetryBudget};
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
