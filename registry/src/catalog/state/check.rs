//! Checking commands against the limits and the current state: everything `apply`
//! relies on, so that `apply` can mutate without rolling back. One method per command
//! that has a check beyond the command's own validation.

use causeway_trust::{ClusterName, ReplicaName};

use super::{Catalog, MAX_DENIED_ISSUERS};
use causeway_policy::{AccessPolicy, PolicyName};

use crate::catalog::command::Command;
use crate::catalog::error::CommandError;
use crate::catalog::traffic::TrafficPolicyRecord;
use crate::catalog::types::{ClusterRecord, Export, RuntimeExport, ServiceKey};

impl Catalog {
    /// Checks `command` against the limits and the current state without applying it.
    pub fn check(&self, command: &Command) -> Result<(), CommandError> {
        self.clone_free_check(command)
    }

    /// Every check `apply` makes, so that `apply` can mutate without rolling back.
    pub(super) fn clone_free_check(&self, command: &Command) -> Result<(), CommandError> {
        command.validate(&self.limits)?;
        match command {
            Command::RegisterCluster(record) => self.check_register_cluster(record),
            Command::RemoveCluster { cluster } => self.require_cluster(cluster),
            Command::RemoveReplica { cluster, replica } => {
                self.check_remove_replica(cluster, replica.as_ref())
            }
            Command::PutExport(export) => self.check_put_export(export),
            Command::DeleteExport { cluster, service } => {
                self.check_delete_export(cluster, service)
            }
            Command::ReplaceClusterExports { cluster, exports } => {
                self.check_replace_cluster_exports(cluster, exports)
            }
            Command::PutPolicy(policy) => self.check_put_policy(policy),
            Command::DeletePolicy { name } => self.check_delete_policy(name),
            Command::SetDefaultAccess(_) => Ok(()),
            Command::PutTrafficPolicy(record) => self.check_put_traffic_policy(record),
            Command::DeleteTrafficPolicy { owner, service } => {
                self.check_delete_traffic_policy(owner, service)
            }
            Command::DenyIssuer { fingerprint, .. } => self.check_deny_issuer(fingerprint),
            Command::PutRuntimeExport(runtime) => self.check_put_runtime_export(runtime),
            Command::DeleteRuntimeExport { cluster, service } => {
                self.check_delete_runtime_export(cluster, service)
            }
        }
    }

    fn require_cluster(&self, cluster: &ClusterName) -> Result<(), CommandError> {
        if self.clusters.contains_key(cluster) {
            Ok(())
        } else {
            Err(CommandError::NotFound {
                what: format!("cluster {cluster}"),
            })
        }
    }

    // === Clusters and issuers ===

    /// A cluster is refused if its issuer was denied, or if it is new and the catalog
    /// is full.
    fn check_register_cluster(&self, record: &ClusterRecord) -> Result<(), CommandError> {
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
        let Some(existing) = self.clusters.get(&record.name) else {
            if self.clusters.len() >= self.limits.max_clusters {
                return Err(CommandError::LimitReached(format!(
                    "the catalog holds {} clusters already",
                    self.limits.max_clusters
                )));
            }
            return Ok(());
        };
        let replicas = &existing.value.replicas;
        let name = &record.identity.replica;
        if !replicas.iter().any(|r| &r.name == name)
            && replicas.len() >= self.limits.max_replicas_per_cluster
        {
            return Err(CommandError::LimitReached(format!(
                "cluster {} lists {} gateway replicas already",
                record.name, self.limits.max_replicas_per_cluster
            )));
        }
        Ok(())
    }

    fn check_remove_replica(
        &self,
        cluster: &ClusterName,
        replica: Option<&ReplicaName>,
    ) -> Result<(), CommandError> {
        self.require_cluster(cluster)?;
        let record = &self.clusters[cluster].value;
        let shown = replica.map_or("(unnamed)", |r| r.as_str());
        if !record.replicas.iter().any(|r| r.name.as_ref() == replica) {
            return Err(CommandError::NotFound {
                what: format!("gateway replica {shown} of cluster {cluster}"),
            });
        }
        if record.replicas.len() == 1 {
            return Err(CommandError::invalid(
                "remove_replica.replica",
                format!(
                    "{shown} is the last replica of cluster {cluster}; it stays listed until the cluster is unlinked"
                ),
            ));
        }
        Ok(())
    }

    fn check_deny_issuer(&self, fingerprint: &str) -> Result<(), CommandError> {
        if !self.denied_issuers.contains_key(fingerprint)
            && self.denied_issuers.len() >= MAX_DENIED_ISSUERS
        {
            return Err(CommandError::LimitReached(format!(
                "the denylist holds {MAX_DENIED_ISSUERS} issuers already"
            )));
        }
        Ok(())
    }

    // === Exports ===

    /// A new export must fit in its cluster's and in the catalog's limits.
    fn check_put_export(&self, export: &Export) -> Result<(), CommandError> {
        self.require_cluster(&export.cluster)?;
        let limits = &self.limits;
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
        Ok(())
    }

    /// A runtime export's cluster must be registered, and a new one fit in its
    /// record's limit.
    fn check_put_runtime_export(&self, runtime: &RuntimeExport) -> Result<(), CommandError> {
        let cluster = &runtime.export.cluster;
        self.require_cluster(cluster)?;
        let listed = self.clusters[cluster].value.runtime_exports.as_deref();
        let listed = listed.unwrap_or_default();
        let service = &runtime.export.service;
        let is_new = !listed.iter().any(|r| &r.export.service == service);
        if is_new && listed.len() >= self.limits.max_runtime_exports_per_cluster {
            return Err(CommandError::LimitReached(format!(
                "cluster {cluster} has {} runtime exports already",
                self.limits.max_runtime_exports_per_cluster
            )));
        }
        Ok(())
    }

    fn check_delete_runtime_export(
        &self,
        cluster: &ClusterName,
        service: &ServiceKey,
    ) -> Result<(), CommandError> {
        let listed = self
            .clusters
            .get(cluster)
            .and_then(|c| c.value.runtime_exports.as_deref())
            .unwrap_or_default();
        if listed.iter().any(|r| &r.export.service == service) {
            Ok(())
        } else {
            Err(CommandError::NotFound {
                what: format!("runtime export {service} of cluster {cluster}"),
            })
        }
    }

    fn check_delete_export(
        &self,
        cluster: &ClusterName,
        service: &ServiceKey,
    ) -> Result<(), CommandError> {
        if self.export(cluster, service).is_none() {
            return Err(CommandError::NotFound {
                what: format!("export {service} of cluster {cluster}"),
            });
        }
        Ok(())
    }

    fn check_replace_cluster_exports(
        &self,
        cluster: &ClusterName,
        exports: &[Export],
    ) -> Result<(), CommandError> {
        self.require_cluster(cluster)?;
        let current = self.exports.get(cluster).map_or(0, |m| m.len());
        if self.export_count - current + exports.len() > self.limits.max_exports {
            return Err(CommandError::LimitReached(format!(
                "the catalog would hold more than {} exports",
                self.limits.max_exports
            )));
        }
        Ok(())
    }

    // === Access policies ===

    fn check_put_policy(&self, policy: &AccessPolicy) -> Result<(), CommandError> {
        if !self.policies.contains_key(&policy.name)
            && self.policies.len() >= self.limits.max_policies
        {
            return Err(CommandError::LimitReached(format!(
                "the catalog holds {} policies already",
                self.limits.max_policies
            )));
        }
        Ok(())
    }

    fn check_delete_policy(&self, name: &PolicyName) -> Result<(), CommandError> {
        if !self.policies.contains_key(name) {
            return Err(CommandError::NotFound {
                what: format!("policy {name}"),
            });
        }
        Ok(())
    }

    // === Traffic policies ===

    /// A new traffic policy must fit in its owner's and in the catalog's limits.
    fn check_put_traffic_policy(&self, record: &TrafficPolicyRecord) -> Result<(), CommandError> {
        self.require_cluster(&record.owner)?;
        let limits = &self.limits;
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
        Ok(())
    }

    fn check_delete_traffic_policy(
        &self,
        owner: &ClusterName,
        service: &ServiceKey,
    ) -> Result<(), CommandError> {
        if self.traffic_policy(owner, service).is_none() {
            return Err(CommandError::NotFound {
                what: format!("traffic policy of {service} declared by cluster {owner}"),
            });
        }
        Ok(())
    }
}
