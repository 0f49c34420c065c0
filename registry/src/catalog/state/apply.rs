//! Applying commands: one method per command, grouped by what they change (clusters
//! and issuers, exports, access policies, traffic policies). Each runs after
//! `check` passed, so it mutates without rolling back.

use std::collections::BTreeMap;

use causeway_trust::{ClusterName, ReplicaName};

use super::{Catalog, Versioned};
use causeway_policy::{AccessPolicy, PolicyAction, PolicyName};

use crate::catalog::change::{CatalogChange, Change};
use crate::catalog::command::Command;
use crate::catalog::error::CommandError;
use crate::catalog::traffic::TrafficPolicyRecord;
use crate::catalog::types::{
    ClusterRecord, DeniedIssuer, Export, Revision, RuntimeExport, ServiceKey,
};

impl Catalog {
    /// Applies `command`: on success the revision is bumped by one and the changes are
    /// returned; on error nothing changed.
    pub fn apply(&mut self, command: &Command) -> Result<CatalogChange, CommandError> {
        self.clone_free_check(command)?;
        let revision = self.revision.next();
        let mut changes = Vec::new();
        match command {
            Command::RegisterCluster(record) => {
                self.register_cluster(record, revision, &mut changes)
            }
            Command::RemoveCluster { cluster } => self.remove_cluster(cluster, &mut changes),
            Command::RemoveReplica { cluster, replica } => {
                self.remove_replica(cluster, replica.as_ref(), revision, &mut changes)
            }
            Command::DenyIssuer {
                cluster,
                fingerprint,
            } => self.deny_issuer(cluster, fingerprint, revision, &mut changes),
            Command::PutExport(export) => self.put_export(export, revision, &mut changes),
            Command::DeleteExport { cluster, service } => {
                self.delete_export(cluster, service, &mut changes)
            }
            Command::ReplaceClusterExports { cluster, exports } => {
                self.replace_cluster_exports(cluster, exports, revision, &mut changes)
            }
            Command::PutPolicy(policy) => self.put_policy(policy, revision, &mut changes),
            Command::DeletePolicy { name } => self.delete_policy(name, &mut changes),
            Command::SetDefaultAccess(action) => {
                self.set_default_access(*action, revision, &mut changes)
            }
            Command::PutTrafficPolicy(record) => {
                self.put_traffic_policy(record, revision, &mut changes)
            }
            Command::DeleteTrafficPolicy { owner, service } => {
                self.delete_traffic_policy(owner, service, &mut changes)
            }
            Command::PutRuntimeExport(runtime) => {
                let (cluster, service) = (&runtime.export.cluster, &runtime.export.service);
                self.edit_runtime_exports(cluster, service, Some(runtime), revision, &mut changes)
            }
            Command::DeleteRuntimeExport { cluster, service } => {
                self.edit_runtime_exports(cluster, service, None, revision, &mut changes)
            }
        }
        self.revision = revision;
        Ok(CatalogChange { revision, changes })
    }

    // === Clusters and issuers ===

    /// Puts a cluster's record, with the registering replica put into (or replaced
    /// in) the replicas already listed, and the stored runtime exports kept.
    fn register_cluster(
        &mut self,
        record: &ClusterRecord,
        revision: Revision,
        changes: &mut Vec<Change>,
    ) {
        let (mut replicas, runtime_exports) = self
            .clusters
            .remove(&record.name)
            .map(|old| (old.value.replicas, old.value.runtime_exports))
            .unwrap_or_default();
        let replica = record.registering_replica();
        replicas.retain(|r| r.name != replica.name);
        replicas.push(replica);
        replicas.sort_by(|a, b| a.name.cmp(&b.name));
        let value = ClusterRecord {
            replicas,
            runtime_exports,
            ..record.clone()
        };
        changes.push(Change::ClusterPut(value.clone()));
        self.clusters.insert(
            record.name.clone(),
            Versioned {
                mod_revision: revision,
                value,
            },
        );
    }

    /// Replaces (`Some`) or removes (`None`) the runtime export of `service` in
    /// `cluster`'s record (checked: registered). The list is kept ordered by service,
    /// without the catalog's slots.
    fn edit_runtime_exports(
        &mut self,
        cluster: &ClusterName,
        service: &ServiceKey,
        put: Option<&RuntimeExport>,
        revision: Revision,
        changes: &mut Vec<Change>,
    ) {
        let Some(entry) = self.clusters.get_mut(cluster) else {
            return;
        };
        let list = entry.value.runtime_exports.get_or_insert_with(Vec::new);
        list.retain(|r| &r.export.service != service);
        if let Some(runtime) = put {
            let mut runtime = runtime.clone();
            runtime.export.slots = None;
            list.push(runtime);
            list.sort_by(|a, b| a.export.service.cmp(&b.export.service));
        }
        entry.mod_revision = revision;
        changes.push(Change::ClusterPut(entry.value.clone()));
    }

    /// Takes one replica off its cluster's list (checked: listed, not the last).
    fn remove_replica(
        &mut self,
        cluster: &ClusterName,
        replica: Option<&ReplicaName>,
        revision: Revision,
        changes: &mut Vec<Change>,
    ) {
        let Some(entry) = self.clusters.get_mut(cluster) else {
            return;
        };
        entry.value.replicas.retain(|r| r.name.as_ref() != replica);
        entry.mod_revision = revision;
        changes.push(Change::ClusterPut(entry.value.clone()));
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
            for (service, gone) in exports {
                self.slots.release(&gone.value);
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

    /// Denies an issuer, removing the cluster it serves if it still serves it.
    fn deny_issuer(
        &mut self,
        cluster: &ClusterName,
        fingerprint: &str,
        revision: Revision,
        changes: &mut Vec<Change>,
    ) {
        let serves_cluster = self.clusters.get(cluster).is_some_and(|c| {
            c.value.issuer_fingerprint.is_none()
                || c.value.issuer_fingerprint.as_deref() == Some(fingerprint)
        });
        if serves_cluster {
            self.remove_cluster(cluster, changes);
        }
        let denied = DeniedIssuer {
            cluster: cluster.clone(),
            fingerprint: fingerprint.to_owned(),
            revision,
        };
        self.denied_issuers
            .insert(fingerprint.to_owned(), denied.clone());
        changes.push(Change::IssuerDenied(denied));
    }

    // === Exports ===

    fn put_export(&mut self, export: &Export, revision: Revision, changes: &mut Vec<Change>) {
        let exports = self.exports.entry(export.cluster.clone()).or_default();
        let previous = exports.get(&export.service).map(|p| &p.value);
        let export = Export {
            slots: Some(self.slots.place(export, previous)),
            ..export.clone()
        };
        let previous = exports.insert(
            export.service.clone(),
            Versioned {
                mod_revision: revision,
                value: export.clone(),
            },
        );
        if previous.is_none() {
            self.export_count += 1;
        }
        changes.push(Change::ExportPut(export));
    }

    fn delete_export(
        &mut self,
        cluster: &ClusterName,
        service: &ServiceKey,
        changes: &mut Vec<Change>,
    ) {
        if let Some(exports) = self.exports.get_mut(cluster) {
            if let Some(gone) = exports.remove(service) {
                self.slots.release(&gone.value);
            }
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

    /// Replaces a cluster's exports; an export that did not change keeps its revision
    /// and is not reported.
    fn replace_cluster_exports(
        &mut self,
        cluster: &ClusterName,
        exports: &[Export],
        revision: Revision,
        changes: &mut Vec<Change>,
    ) {
        let old = self.exports.remove(cluster).unwrap_or_default();
        self.export_count -= old.len();
        let mut new = BTreeMap::new();
        for export in exports {
            let previous = old.get(&export.service);
            match previous {
                Some(kept) if kept.value.same_content(export) => {
                    new.insert(export.service.clone(), kept.clone());
                }
                _ => {
                    let export = Export {
                        slots: Some(self.slots.place(export, previous.map(|p| &p.value))),
                        ..export.clone()
                    };
                    changes.push(Change::ExportPut(export.clone()));
                    new.insert(
                        export.service.clone(),
                        Versioned {
                            mod_revision: revision,
                            value: export,
                        },
                    );
                }
            }
        }
        // Slots of exports that went are given back after the new ones took theirs,
        // so no address passes from one service to another within one command.
        for (service, gone) in old {
            if !new.contains_key(&service) {
                self.slots.release(&gone.value);
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

    // === Access policies ===

    fn put_policy(&mut self, policy: &AccessPolicy, revision: Revision, changes: &mut Vec<Change>) {
        self.policies.insert(
            policy.name.clone(),
            Versioned {
                mod_revision: revision,
                value: policy.clone(),
            },
        );
        changes.push(Change::PolicyPut(policy.clone()));
    }

    fn delete_policy(&mut self, name: &PolicyName, changes: &mut Vec<Change>) {
        self.policies.remove(name);
        changes.push(Change::PolicyDeleted { name: name.clone() });
    }

    fn set_default_access(
        &mut self,
        action: PolicyAction,
        revision: Revision,
        changes: &mut Vec<Change>,
    ) {
        self.default_access = Some(Versioned {
            mod_revision: revision,
            value: action,
        });
        changes.push(Change::DefaultAccessSet { action });
    }

    // === Traffic policies ===

    fn put_traffic_policy(
        &mut self,
        record: &TrafficPolicyRecord,
        revision: Revision,
        changes: &mut Vec<Change>,
    ) {
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

    fn delete_traffic_policy(
        &mut self,
        owner: &ClusterName,
        service: &ServiceKey,
        changes: &mut Vec<Change>,
    ) {
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
