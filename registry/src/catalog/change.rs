//! What an applied command changed, key by key.

use causeway_policy::{AccessPolicy, PolicyAction, PolicyName};
use causeway_trust::ClusterName;
use serde::{Deserialize, Serialize};

use super::traffic::TrafficPolicyRecord;
use super::types::{ClusterRecord, DeniedIssuer, Export, Revision, ServiceKey};

/// One key's change within an applied command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A cluster was added or its record replaced.
    ClusterPut(ClusterRecord),
    /// A cluster was removed (its exports and traffic policies are removed by
    /// separate `ExportDeleted`s and `TrafficPolicyDeleted`s).
    ClusterDeleted {
        /// The removed cluster.
        cluster: ClusterName,
    },
    /// An export was added or replaced.
    ExportPut(Export),
    /// An export was removed.
    ExportDeleted {
        /// The exporting cluster.
        cluster: ClusterName,
        /// The service.
        service: ServiceKey,
    },
    /// A policy was added or replaced.
    PolicyPut(AccessPolicy),
    /// A policy was removed.
    PolicyDeleted {
        /// The removed policy.
        name: PolicyName,
    },
    /// The federation's default access (for traffic no policy matches) was set.
    DefaultAccessSet {
        /// The new default.
        action: PolicyAction,
    },
    /// An issuer was denied (its cluster, if registered, is removed by the
    /// `ExportDeleted`s and `ClusterDeleted` of the same change set).
    IssuerDenied(DeniedIssuer),
    /// A traffic policy record was added or replaced.
    TrafficPolicyPut(TrafficPolicyRecord),
    /// A traffic policy record was removed (deleted, or its owner left).
    TrafficPolicyDeleted {
        /// The cluster that declared it.
        owner: ClusterName,
        /// The service it governed.
        service: ServiceKey,
    },
}

/// Everything one applied command changed, at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogChange {
    /// The revision the command produced (the previous revision plus one).
    pub revision: Revision,
    /// The key changes, in the order they were made; may be empty for a command that
    /// changed nothing visible (e.g. replacing a cluster's exports with the same set).
    pub changes: Vec<Change>,
}
