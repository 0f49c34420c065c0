//! The catalog state machine: applies commands, bumps revisions, reports changes.
//!
//! Sans-IO: it takes commands and returns changes; the Raft node feeds it committed
//! entries in log order, so every member computes the same state at the same revision.
//!
//! This file holds the state and its reads; `check` holds the checks a command must
//! pass against the current state, and `apply` the mutation each command makes.

use std::collections::BTreeMap;

use causeway_trust::ClusterName;
use serde::{Deserialize, Serialize};

use causeway_policy::{AccessPolicy, PolicyAction, PolicyName};

use super::limits::Limits;
use super::traffic::TrafficPolicyRecord;
use super::types::{ClusterRecord, DeniedIssuer, Export, Revision, ServiceKey};

mod apply;
mod check;
mod slots;

/// Most issuers the denylist holds. Each unlink adds one; a federation unlinks far
/// fewer clusters than this over its life, and the bound keeps a runaway proposer
/// from growing every member's verifier set without limit.
pub const MAX_DENIED_ISSUERS: usize = 4_096;

/// A value with the revision it was last changed at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned<T> {
    /// The revision of the command that last wrote this value.
    pub mod_revision: Revision,
    /// The value.
    pub value: T,
}

/// The whole catalog at one revision: what a snapshot or a full read returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogSnapshot {
    /// The revision this snapshot reflects.
    pub revision: Revision,
    /// Every cluster, ordered by name.
    pub clusters: Vec<Versioned<ClusterRecord>>,
    /// Every export, ordered by cluster then service.
    pub exports: Vec<Versioned<Export>>,
    /// Every policy, ordered by name.
    pub policies: Vec<Versioned<AccessPolicy>>,
    /// The federation's default access, if it was ever set.
    #[serde(default)]
    pub default_access: Option<Versioned<PolicyAction>>,
    /// Every denied issuer, ordered by fingerprint.
    #[serde(default)]
    pub denied_issuers: Vec<DeniedIssuer>,
    /// Every traffic policy record, ordered by owner then service.
    #[serde(default)]
    pub traffic_policies: Vec<Versioned<TrafficPolicyRecord>>,
}

/// The replicated catalog.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    limits: Limits,
    revision: Revision,
    clusters: BTreeMap<ClusterName, Versioned<ClusterRecord>>,
    exports: BTreeMap<ClusterName, BTreeMap<ServiceKey, Versioned<Export>>>,
    export_count: usize,
    policies: BTreeMap<PolicyName, Versioned<AccessPolicy>>,
    default_access: Option<Versioned<PolicyAction>>,
    denied_issuers: BTreeMap<String, DeniedIssuer>,
    traffic_policies: BTreeMap<ClusterName, BTreeMap<ServiceKey, Versioned<TrafficPolicyRecord>>>,
    traffic_policy_count: usize,
    slots: slots::SlotBook,
}

impl Catalog {
    /// An empty catalog at revision 0.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// A catalog holding exactly what `snapshot` holds.
    ///
    /// The snapshot is trusted to have been produced by [`Catalog::snapshot`]; its
    /// records are not validated again.
    pub fn from_snapshot(snapshot: CatalogSnapshot, limits: Limits) -> Self {
        let mut catalog = Self::new(limits);
        catalog.revision = snapshot.revision;
        let mut exports = snapshot.exports;
        catalog.slots = slots::SlotBook::rebuild(exports.iter_mut().map(|e| &mut e.value));
        for c in snapshot.clusters {
            catalog.clusters.insert(c.value.name.clone(), c);
        }
        for e in exports {
            catalog
                .exports
                .entry(e.value.cluster.clone())
                .or_default()
                .insert(e.value.service.clone(), e);
            catalog.export_count += 1;
        }
        for p in snapshot.policies {
            catalog.policies.insert(p.value.name.clone(), p);
        }
        catalog.default_access = snapshot.default_access;
        for d in snapshot.denied_issuers {
            catalog.denied_issuers.insert(d.fingerprint.clone(), d);
        }
        for t in snapshot.traffic_policies {
            let previous = catalog
                .traffic_policies
                .entry(t.value.owner.clone())
                .or_default()
                .insert(t.value.service.clone(), t);
            if previous.is_none() {
                catalog.traffic_policy_count += 1;
            }
        }
        catalog
    }

    /// The whole catalog as one value.
    pub fn snapshot(&self) -> CatalogSnapshot {
        CatalogSnapshot {
            revision: self.revision,
            clusters: self.clusters.values().cloned().collect(),
            exports: self.exports().cloned().collect(),
            policies: self.policies.values().cloned().collect(),
            default_access: self.default_access.clone(),
            denied_issuers: self.denied_issuers.values().cloned().collect(),
            traffic_policies: self.traffic_policies().cloned().collect(),
        }
    }

    /// The limits commands are checked against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The revision of the last applied command.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// One cluster's record.
    pub fn cluster(&self, name: &ClusterName) -> Option<&Versioned<ClusterRecord>> {
        self.clusters.get(name)
    }

    /// Every cluster, ordered by name.
    pub fn clusters(&self) -> impl Iterator<Item = &Versioned<ClusterRecord>> {
        self.clusters.values()
    }

    /// One export.
    pub fn export(
        &self,
        cluster: &ClusterName,
        service: &ServiceKey,
    ) -> Option<&Versioned<Export>> {
        self.exports.get(cluster)?.get(service)
    }

    /// One cluster's exports, ordered by service.
    pub fn cluster_exports(
        &self,
        cluster: &ClusterName,
    ) -> impl Iterator<Item = &Versioned<Export>> {
        self.exports
            .get(cluster)
            .into_iter()
            .flat_map(|m| m.values())
    }

    /// Every export, ordered by cluster then service.
    pub fn exports(&self) -> impl Iterator<Item = &Versioned<Export>> {
        self.exports.values().flat_map(|m| m.values())
    }

    /// How many exports the catalog holds.
    pub fn export_count(&self) -> usize {
        self.export_count
    }

    /// One policy.
    pub fn policy(&self, name: &PolicyName) -> Option<&Versioned<AccessPolicy>> {
        self.policies.get(name)
    }

    /// Every policy, ordered by name.
    pub fn policies(&self) -> impl Iterator<Item = &Versioned<AccessPolicy>> {
        self.policies.values()
    }

    /// What happens to traffic no policy matches; `None` until a gateway that
    /// bootstraps the federation sets it.
    pub fn default_access(&self) -> Option<PolicyAction> {
        self.default_access.as_ref().map(|v| v.value)
    }

    /// Every denied issuer, ordered by fingerprint.
    pub fn denied_issuers(&self) -> impl Iterator<Item = &DeniedIssuer> {
        self.denied_issuers.values()
    }

    /// Whether the issuer with this fingerprint (64 lowercase hex) is denied.
    pub fn is_issuer_denied(&self, fingerprint: &str) -> bool {
        self.denied_issuers.contains_key(fingerprint)
    }

    /// The traffic policy `owner` declared for `service`.
    pub fn traffic_policy(
        &self,
        owner: &ClusterName,
        service: &ServiceKey,
    ) -> Option<&Versioned<TrafficPolicyRecord>> {
        self.traffic_policies.get(owner)?.get(service)
    }

    /// Every traffic policy `owner` declared, ordered by service.
    pub fn owner_traffic_policies(
        &self,
        owner: &ClusterName,
    ) -> impl Iterator<Item = &Versioned<TrafficPolicyRecord>> {
        self.traffic_policies
            .get(owner)
            .into_iter()
            .flat_map(|m| m.values())
    }

    /// Every traffic policy record, ordered by owner then service.
    pub fn traffic_policies(&self) -> impl Iterator<Item = &Versioned<TrafficPolicyRecord>> {
        self.traffic_policies.values().flat_map(|m| m.values())
    }

    /// How many traffic policy records the catalog holds.
    pub fn traffic_policy_count(&self) -> usize {
        self.traffic_policy_count
    }
}
