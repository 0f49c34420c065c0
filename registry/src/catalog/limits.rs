//! Size limits every command is checked against.

use serde::{Deserialize, Serialize};

/// Bounds on what one command and the whole catalog may hold. An access policy
/// record's own bounds are `causeway_policy`'s, as for every written rule.
///
/// The defaults come from the design's scale targets (100 clusters, 10,000 exported
/// services, 100,000 endpoints) with head room, and keep one command well under the
/// gRPC message limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most clusters the catalog holds.
    pub max_clusters: usize,
    /// Most exports in the whole catalog.
    pub max_exports: usize,
    /// Most exports one cluster may hold (and one `ReplaceClusterExports` may carry).
    pub max_exports_per_cluster: usize,
    /// Most access policies in the catalog.
    pub max_policies: usize,
    /// Most ports one export lists.
    pub max_ports: usize,
    /// Most labels one export carries.
    pub max_labels: usize,
    /// Longest label key, in bytes.
    pub max_label_key_len: usize,
    /// Longest label value, in bytes.
    pub max_label_value_len: usize,
    /// Most gateway addresses one cluster lists.
    pub max_gateway_addrs: usize,
    /// Most replicas of one cluster's gateway the catalog lists.
    pub max_replicas_per_cluster: usize,
    /// Longest `host:port` address, in bytes (a DNS name of 253 plus `:65535`).
    pub max_addr_len: usize,
    /// Most traffic policy records in the catalog. One cluster may hold as many as
    /// it may export services (`max_exports_per_cluster`).
    pub max_traffic_policies: usize,
    /// Most importing clusters one traffic policy record names in `apply_to`.
    pub max_traffic_policy_targets: usize,
    /// Most runtime exports one cluster's record holds: each change of one sends
    /// the whole record to every watcher.
    pub max_runtime_exports_per_cluster: usize,
    /// Most endpoint addresses one runtime export lists.
    pub max_runtime_endpoints: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_clusters: 1_000,
            max_exports: 100_000,
            max_exports_per_cluster: 10_000,
            max_policies: 10_000,
            max_ports: 64,
            max_labels: 32,
            max_label_key_len: 253,
            max_label_value_len: 255,
            max_gateway_addrs: 16,
            // Far more than a gateway Deployment runs; bounds what a cluster whose
            // replicas come and go (pods killed, never drained) can leave behind.
            max_replicas_per_cluster: 64,
            max_addr_len: 259,
            // One policy per exported service at the design's 10,000 services.
            max_traffic_policies: 10_000,
            // More clusters than a federation has (the design targets 100).
            max_traffic_policy_targets: causeway_policy::MAX_APPLY_TO,
            max_runtime_exports_per_cluster: 256,
            max_runtime_endpoints: 64,
        }
    }
}
