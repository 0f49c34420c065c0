//! Traffic policy records: a policy one cluster declares for one service, stored
//! in the catalog so that it applies to the importers it names (e.g. the
//! exporter's canary split). The policy itself is `causeway-policy`'s.

use causeway_policy::{TrafficPolicy, TrafficScope};
use causeway_trust::ClusterName;
use serde::{Deserialize, Serialize};

use super::error::CommandError;
use super::types::ServiceKey;

/// A traffic policy one cluster declares for one service, and the importing
/// clusters it applies to. The catalog holds at most one per (owner, service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficPolicyRecord {
    /// The cluster that declared it; only that cluster's gateway (or an admin)
    /// writes it.
    pub owner: ClusterName,
    /// The imported service it governs (all its ports).
    pub service: ServiceKey,
    /// The importing clusters it applies to.
    pub apply_to: TrafficScope,
    /// The policy.
    pub policy: TrafficPolicy,
}

/// Checks a record on its own: the policy's rules, whole-millisecond durations
/// (the wire's unit), and a bounded, duplicate-free `apply_to`.
pub(crate) fn validate_record(
    record: &TrafficPolicyRecord,
    max_targets: usize,
) -> Result<(), CommandError> {
    let problems = record
        .policy
        .validate("traffic_policy.policy")
        .into_iter()
        .chain(record.apply_to.validate("traffic_policy.apply_to"));
    if let Some(p) = problems.into_iter().next() {
        return Err(CommandError::invalid(p.path, p.message));
    }
    for (key, d) in record.policy.durations() {
        if d.subsec_nanos() % 1_000_000 != 0 {
            return Err(CommandError::invalid(
                format!("traffic_policy.policy.{key}"),
                format!("{d:?} is not a whole number of milliseconds"),
            ));
        }
    }
    // The catalog's own bound may be tighter than the policy model's.
    if let TrafficScope::Clusters(clusters) = &record.apply_to
        && clusters.len() > max_targets
    {
        return Err(CommandError::invalid(
            "traffic_policy.apply_to",
            format!("{} clusters; at most {max_targets}", clusters.len()),
        ));
    }
    Ok(())
}
