//! The catalog state machine: applies commands, bumps revisions, reports changes.
//!
//! Sans-IO: it takes commands and returns changes; the Raft node feeds it committed
//! entries in log order, so every member computes the same state at the same revision.

use std::collections::BTreeMap;

use causeway_trust::ClusterName;
use serde::{Deserialize, Serialize};

use super::limits::Limits;
use super::traffic::TrafficPolicyRecord;
use super::types::{
    AccessPolicy, CatalogChange, Change, ClusterRecord, Command, CommandError, DeniedIssuer,
    Export, PolicyAction, PolicyName, Revision, ServiceKey,
};

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
        for c in snapshot.clusters {
            catalog.clusters.insert(c.value.name.clone(), c);
        }
        for e in snapshot.exports {
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

    /// Checks `command` against the limits and the current state without applying it.
    pub fn check(&self, command: &Command) -> Result<(), CommandError> {
        self.clone_free_check(command)
    }

    /// Applies `command`: on success the revision is bumped by one and the changes are
    /// returned; on error nothing changed.
    pub fn apply(&mut self, command: &Command) -> Result<CatalogChange, CommandError> {
        self.clone_free_check(command)?;
        let revision = self.revision.next();
        let mut changes = Vec::new();
        match command {
            Command::RegisterCluster(record) => {
                self.clusters.insert(
                    record.name.clone(),
                    Versioned {
                        mod_revision: revision,
                        value: record.clone(),
                    },
                );
                changes.push(Change::ClusterPut(record.clone()));
            }
            Command::RemoveCluster { cluster } => self.remove_cluster(cluster, &mut changes),
            Command::PutExport(export) => {
                let previous = self
                    .exports
                    .entry(export.cluster.clone())
                    .or_default()
                    .insert(
                        export.service.clone(),
                        Versioned {
                            mod_revision: revision,
                            value: export.clone(),
                        },
                    );
                if previous.is_none() {
                    self.export_count += 1;
                }
                changes.push(Change::ExportPut(export.clone()));
            }
            Command::DeleteExport { cluster, service } => {
                if let Some(exports) = self.exports.get_mut(cluster) {
                    exports.remove(service);
                    self.export_count -= 1;
                    if exports.is_empty() {
                        self.exports.remove(cluster);
                    }
                }
                changes.push(Change::ExportDeleted {
                    cluster: cluster.clone(),
                    service: service.clone(),
                });
            }
            Command::ReplaceClusterExports { cluster, exports } => {
                let old = self.exports.remove(cluster).unwrap_or_default();
                self.export_count -= old.len();
                let mut new = BTreeMap::new();
                for export in exports {
                    match old.get(&export.service) {
                        Some(kept) if kept.value == *export => {
                            new.insert(export.service.clone(), kept.clone());
                        }
                        _ => {
                            changes.push(Change::ExportPut(export.clone()));
                            new.insert(
                                export.service.clone(),
                                Versioned {
                                    mod_revision: revision,
                                    value: export.clone(),
                                },
                            );
                        }
                    }
                }
                for service in old.into_keys() {
                    if !new.contains_key(&service) {
                        changes.push(Change::ExportDeleted {
                            cluster: cluster.clone(),
                            service,
                        });
                    }
                }
                self.export_count += new.len();
                if !new.is_empty() {
                    self.exports.insert(cluster.clone(), new);
                }
            }
            Command::PutPolicy(policy) => {
                self.policies.insert(
                    policy.name.clone(),
                    Versioned {
                        mod_revision: revision,
                        value: policy.clone(),
                    },
                );
                changes.push(Change::PolicyPut(policy.clone()));
            }
            Command::DeletePolicy { name } => {
                self.policies.remove(name);
                changes.push(Change::PolicyDeleted { name: name.clone() });
            }
            Command::SetDefaultAccess(action) => {
                self.default_access = Some(Versioned {
                    mod_revision: revision,
                    value: *action,
                });
                changes.push(Change::DefaultAccessSet { action: *action });
            }
            Command::DenyIssuer {
                cluster,
                fingerprint,
            } => {
                let serves_cluster = self.clusters.get(cluster).is_some_and(|c| {
                    c.value.issuer_fingerprint.is_none()
                        || c.value.issuer_fingerprint.as_ref() == Some(fingerprint)
                });
                if serves_cluster {
                    self.remove_cluster(cluster, &mut changes);
                }
                let denied = DeniedIssuer {
                    cluster: cluster.clone(),
                    fingerprint: fingerprint.clone(),
                    revision,
                };
                self.denied_issuers
                    .insert(fingerprint.clone(), denied.clone());
                changes.push(Change::IssuerDenied(denied));
            }
            Command::PutTrafficPolicy(record) => {
                let previous = self
                    .traffic_policies
                    .entry(record.owner.clone())
                    .or_default()
                    .insert(
                        record.service.clone(),
                        Versioned {
                            mod_revision: revision,
                            value: record.clone(),
                        },
                    );
                if previous.is_none() {
                    self.traffic_policy_count += 1;
                }
                changes.push(Change::TrafficPolicyPut(record.clone()));
            }
            Command::DeleteTrafficPolicy { owner, service } => {
                if let Some(records) = self.traffic_policies.get_mut(owner)
                    && records.remove(service).is_some()
                {
                    self.traffic_policy_count -= 1;
                    if records.is_empty() {
                        self.traffic_policies.remove(owner);
                    }
                }
                changes.push(Change::TrafficPolicyDeleted {
                    owner: owner.clone(),
                    service: service.clone(),
                });
            }
        }
        self.revision = revision;
        Ok(CatalogChange { revision, changes })
    }

    /// Removes a cluster, its exports and its traffic policies, recording the changes.
    fn remove_cluster(&mut self, cluster: &ClusterName, changes: &mut Vec<Change>) {
        self.clusters.remove(cluster);
        if let Some(records) = self.traffic_policies.remove(cluster) {
            self.traffic_policy_count -= records.len();
            for service in records.into_keys() {
                changes.push(Change::TrafficPolicyDeleted {
                    owner: cluster.clone(),
                    service,
                });
            }
        }
        if let Some(exports) = self.exports.remove(cluster) {
            self.export_count -= exports.len();
            for service in exports.into_keys() {
                changes.push(Change::ExportDeleted {
                    cluster: cluster.clone(),
                    service,
                });
            }
        }
        changes.push(Change::ClusterDeleted {
            cluster: cluster.clone(),
        });
    }

    /// Every check `apply` makes, so that `apply` can mutate without rolling back.
    fn clone_free_check(&self, command: &Command) -> Result<(), CommandError> {
        command.validate(&self.limits)?;
        let limits = &self.limits;
        let require_cluster = |cluster: &ClusterName| {
            if self.clusters.contains_key(cluster) {
                Ok(())
            } else {
                Err(CommandError::NotFound {
                    what: format!("cluster {cluster}"),
                })
            }
        };
        match command {
            Command::RegisterCluster(record) => {
                if let Some(fp) = &record.issuer_fingerprint
                    && let Some(denied) = self.denied_issuers.get(fp)
                {
                    return Err(CommandError::invalid(
                        "cluster.issuer_fingerprint",
                        format!(
                            "issuer {fp} was denied at revision {} (cluster {} unlinked)",
                            denied.revision, denied.cluster
                        ),
                    ));
                }
                if !self.clusters.contains_key(&record.name)
                    && self.clusters.len() >= limits.max_clusters
                {
                    return Err(CommandError::LimitReached(format!(
                        "the catalog holds {} clusters already",
                        limits.max_clusters
                    )));
                }
            }
            Command::RemoveCluster { cluster } => require_cluster(cluster)?,
            Command::PutExport(export) => {
                require_cluster(&export.cluster)?;
                let existing = self.exports.get(&export.cluster);
                let is_new = existing.is_none_or(|m| !m.contains_key(&export.service));
                if is_new {
                    let in_cluster = existing.map_or(0, |m| m.len());
                    if in_cluster >= limits.max_exports_per_cluster {
                        return Err(CommandError::LimitReached(format!(
                            "cluster {} has {} exports already",
                            export.cluster, limits.max_exports_per_cluster
                        )));
                    }
                    if self.export_count >= limits.max_exports {
                        return Err(CommandError::LimitReached(format!(
                            "the catalog holds {} exports already",
                            limits.max_exports
                        )));
                    }
                }
            }
            Command::DeleteExport { cluster, service } => {
                if self.export(cluster, service).is_none() {
                    return Err(CommandError::NotFound {
                        what: format!("export {service} of cluster {cluster}"),
                    });
                }
            }
            Command::ReplaceClusterExports { cluster, exports } => {
                require_cluster(cluster)?;
                let current = self.exports.get(cluster).map_or(0, |m| m.len());
                if self.export_count - current + exports.len() > limits.max_exports {
                    return Err(CommandError::LimitReached(format!(
                        "the catalog would hold more than {} exports",
                        limits.max_exports
                    )));
                }
            }
            Command::PutPolicy(policy) => {
                if !self.policies.contains_key(&policy.name)
                    && self.policies.len() >= limits.max_policies
                {
                    return Err(CommandError::LimitReached(format!(
                        "the catalog holds {} policies already",
                        limits.max_policies
                    )));
                }
            }
            Command::DeletePolicy { name } => {
                if !self.policies.contains_key(name) {
                    return Err(CommandError::NotFound {
                        what: format!("policy {name}"),
                    });
                }
            }
            Command::SetDefaultAccess(_) => {}
            Command::PutTrafficPolicy(record) => {
                require_cluster(&record.owner)?;
                let existing = self.traffic_policies.get(&record.owner);
                let is_new = existing.is_none_or(|m| !m.contains_key(&record.service));
                if is_new {
                    let of_owner = existing.map_or(0, |m| m.len());
                    if of_owner >= limits.max_exports_per_cluster {
                        return Err(CommandError::LimitReached(format!(
                            "cluster {} has {} traffic policies already",
                            record.owner, limits.max_exports_per_cluster
                        )));
                    }
                    if self.traffic_policy_count >= limits.max_traffic_policies {
                        return Err(CommandError::LimitReached(format!(
                            "the catalog holds {} traffic policies already",
                            limits.max_traffic_policies
                        )));
                    }
                }
            }
            Command::DeleteTrafficPolicy { owner, service } => {
                if self.traffic_policy(owner, service).is_none() {
                    return Err(CommandError::NotFound {
                        what: format!("traffic policy of {service} declared by cluster {owner}"),
                    });
                }
            }
            Command::DenyIssuer { fingerprint, .. } => {
                if !self.denied_issuers.contains_key(fingerprint)
                    && self.denied_issuers.len() >= MAX_DENIED_ISSUERS
                {
                    return Err(CommandError::LimitReached(format!(
                        "the denylist holds {MAX_DENIED_ISSUERS} issuers already"
                    )));
                }
            }
        }
        Ok(())
    }
}
