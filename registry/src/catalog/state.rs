//! The catalog state machine: applies commands, bumps revisions, reports changes.
//!
//! Sans-IO: it takes commands and returns changes; the Raft node feeds it committed
//! entries in log order, so every member computes the same state at the same revision.

use std::collections::BTreeMap;

use causeway_trust::ClusterName;
use serde::{Deserialize, Serialize};

use super::limits::Limits;
use super::types::{
    AccessPolicy, CatalogChange, Change, ClusterRecord, Command, CommandError, Export, PolicyName,
    Revision, ServiceKey,
};

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
        catalog
    }

    /// The whole catalog as one value.
    pub fn snapshot(&self) -> CatalogSnapshot {
        CatalogSnapshot {
            revision: self.revision,
            clusters: self.clusters.values().cloned().collect(),
            exports: self.exports().cloned().collect(),
            policies: self.policies.values().cloned().collect(),
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
            Command::RemoveCluster { cluster } => {
                self.clusters.remove(cluster);
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
        }
        self.revision = revision;
        Ok(CatalogChange { revision, changes })
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
        }
        Ok(())
    }
}
