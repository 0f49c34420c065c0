//! Who may do what through a registry member, decided from the caller's verified
//! SPIFFE identity alone (never from anything the request claims).
//!
//! Sans-IO: [`authorize`] takes the identity and the command and returns a verdict, so
//! the rules are tested without sockets.
//!
//! The rules:
//! - A cluster's records (its registration and its exports) are written only by that
//!   cluster's gateway: `RegisterCluster`, `PutExport`, `DeleteExport` and
//!   `ReplaceClusterExports` must name the caller's own cluster, and the caller's role
//!   must be `gateway`. A registration speaks for the replica the caller's identity
//!   names, and no other. `RemoveReplica` comes from any replica of the cluster (a
//!   draining one, or a sibling of one that is gone) or from an admin.
//! - A cluster's traffic policies (`PutTrafficPolicy`, `DeleteTrafficPolicy`) are
//!   written by that cluster's gateway (the record's `owner` must be the caller's
//!   cluster) or by an admin, who may correct any cluster's.
//! - Federation-wide commands (`RemoveCluster`, `DenyIssuer`, `PutPolicy`,
//!   `DeletePolicy`, `SetDefaultAccess`) may come from any gateway or admin of the
//!   federation: `causeway unlink` and policy changes run against the operator's own
//!   gateway, which proposes them with its own identity.
//! - Raft transport and `Join` are for gateways only: an admin certificate may read,
//!   watch, remove a (dead) member with `Leave` and propose the federation-wide
//!   commands above, but never becomes a member or speaks Raft.
//!
//! The check runs on the member that receives the client's `Propose`, before the
//! command enters the Raft log; followers hand proposals to the leader inside Raft,
//! and Raft traffic is accepted only from gateways of the federation, i.e. members
//! that run these same checks. Checking at the receiving member is therefore what a
//! check at the leader would decide, without trusting a forwarded claim of who the
//! caller was. A compromised member's gateway can still write anything; SECURITY.md
//! covers that case.

use causeway_trust::{ClusterName, Role, SpiffeId};

use crate::catalog::Command;

/// Why a caller may not do what it asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Denied {
    /// The caller wrote another cluster's records.
    #[error(
        "{caller} (cluster {caller_cluster}) may not {kind} for cluster {target}: a cluster's records are written only by its own gateway"
    )]
    OtherCluster {
        caller: String,
        caller_cluster: ClusterName,
        target: ClusterName,
        kind: &'static str,
    },
    /// A gateway wrote a traffic policy owned by another cluster.
    #[error(
        "{caller} (cluster {caller_cluster}) may not {kind} owned by cluster {owner}: a gateway writes only its own cluster's traffic policies"
    )]
    OtherOwner {
        caller: String,
        caller_cluster: ClusterName,
        owner: ClusterName,
        kind: &'static str,
    },
    /// A gateway replica registered another replica of its cluster.
    #[error(
        "{caller} may not register replica {claimed} of its cluster: a replica registers only itself"
    )]
    OtherReplica { caller: String, claimed: String },
    /// The caller's role may not do this.
    #[error("{caller} has role {role}; {what} needs role {needed}")]
    WrongRole {
        caller: String,
        role: Role,
        what: &'static str,
        needed: &'static str,
    },
}

/// Whether `caller` may propose `command`.
pub(crate) fn authorize(caller: &SpiffeId, command: &Command) -> Result<(), Denied> {
    let own = |target: &ClusterName| {
        if caller.role != Role::Gateway {
            return Err(Denied::WrongRole {
                caller: caller.to_string(),
                role: caller.role,
                what: command.kind(),
                needed: "gateway",
            });
        }
        if *target != caller.cluster {
            return Err(Denied::OtherCluster {
                caller: caller.to_string(),
                caller_cluster: caller.cluster.clone(),
                target: target.clone(),
                kind: command.kind(),
            });
        }
        Ok(())
    };
    let owner_or_admin = |owner: &ClusterName| match caller.role {
        Role::Admin => Ok(()),
        Role::Gateway if *owner == caller.cluster => Ok(()),
        Role::Gateway => Err(Denied::OtherOwner {
            caller: caller.to_string(),
            caller_cluster: caller.cluster.clone(),
            owner: owner.clone(),
            kind: command.kind(),
        }),
    };
    match command {
        Command::RegisterCluster(record) => {
            own(&record.name)?;
            if record.identity.replica != caller.replica {
                return Err(Denied::OtherReplica {
                    caller: caller.to_string(),
                    claimed: record.identity.replica_label().to_owned(),
                });
            }
            Ok(())
        }
        // Any replica of the cluster may take a sibling that is gone off the list.
        Command::RemoveReplica { cluster, .. } => owner_or_admin(cluster),
        Command::PutTrafficPolicy(record) => owner_or_admin(&record.owner),
        Command::DeleteTrafficPolicy { owner, .. } => owner_or_admin(owner),
        Command::PutExport(export) => own(&export.cluster),
        Command::DeleteExport { cluster, .. } | Command::ReplaceClusterExports { cluster, .. } => {
            own(cluster)
        }
        // A cluster's runtime exports are its operator's, through any of its replicas.
        Command::PutRuntimeExport(runtime) => own(&runtime.export.cluster),
        Command::DeleteRuntimeExport { cluster, .. } => own(cluster),
        // Every role that exists (gateway, admin) may; a new role must be added here
        // on purpose.
        Command::RemoveCluster { .. }
        | Command::DenyIssuer { .. }
        | Command::PutPolicy(_)
        | Command::DeletePolicy { .. }
        | Command::SetDefaultAccess(_) => match caller.role {
            Role::Gateway | Role::Admin => Ok(()),
        },
    }
}

/// Whether `caller` may be a member: stream Raft messages, join or remove members.
pub(crate) fn authorize_member(caller: &SpiffeId, what: &'static str) -> Result<(), Denied> {
    if caller.role == Role::Gateway {
        Ok(())
    } else {
        Err(Denied::WrongRole {
            caller: caller.to_string(),
            role: caller.role,
            what,
            needed: "gateway",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_policy::PolicyAction;

    fn id(cluster: &str, role: Role) -> SpiffeId {
        SpiffeId::of(
            "causeway.local".parse().unwrap(),
            cluster.parse().unwrap(),
            role,
        )
    }

    fn replica(cluster: &str, name: &str) -> SpiffeId {
        id(cluster, Role::Gateway).with_replica(Some(name.parse().unwrap()))
    }

    fn register(identity: SpiffeId) -> Command {
        Command::RegisterCluster(crate::catalog::ClusterRecord {
            name: identity.cluster.clone(),
            gateway_addrs: vec!["127.0.0.1:1".into()],
            registry_addr: "127.0.0.1:2".into(),
            identity,
            joined_at_unix_ms: 0,
            trust_bundle: Vec::new(),
            issuer_fingerprint: None,
            replicas: Vec::new(),
            import_pools: Vec::new(),
            runtime_exports: None,
        })
    }

    #[test]
    fn a_replica_registers_only_itself_and_any_replica_removes_a_sibling() {
        let a = replica("west", "a");
        authorize(&a, &register(a.clone())).unwrap();
        let err = authorize(&a, &register(replica("west", "b"))).unwrap_err();
        assert!(matches!(err, Denied::OtherReplica { .. }), "{err}");
        let err = authorize(&a, &register(id("west", Role::Gateway))).unwrap_err();
        assert!(err.to_string().contains("replica -"), "{err}");
        let remove = |cluster: &str| Command::RemoveReplica {
            cluster: cluster.parse().unwrap(),
            replica: Some("b".parse().unwrap()),
        };
        authorize(&a, &remove("west")).unwrap();
        authorize(&id("east", Role::Admin), &remove("west")).unwrap();
        let err = authorize(&replica("east", "a"), &remove("west")).unwrap_err();
        assert!(matches!(err, Denied::OtherOwner { .. }), "{err}");
    }

    #[test]
    fn gateways_write_only_their_own_cluster() {
        let west = id("west", Role::Gateway);
        let delete = |c: &str| Command::DeleteExport {
            cluster: c.parse().unwrap(),
            service: "shop/web".parse().unwrap(),
        };
        authorize(&west, &delete("west")).unwrap();
        let err = authorize(&west, &delete("east")).unwrap_err().to_string();
        assert!(
            err.contains("west") && err.contains("cluster east"),
            "{err}"
        );
        let replace = Command::ReplaceClusterExports {
            cluster: "east".parse().unwrap(),
            exports: vec![],
        };
        assert!(matches!(
            authorize(&west, &replace),
            Err(Denied::OtherCluster { .. })
        ));
        let unexport = |c: &str| Command::DeleteRuntimeExport {
            cluster: c.parse().unwrap(),
            service: "shop/web".parse().unwrap(),
        };
        authorize(&replica("west", "b"), &unexport("west")).unwrap();
        assert!(matches!(
            authorize(&west, &unexport("east")),
            Err(Denied::OtherCluster { .. })
        ));
    }

    #[test]
    fn admins_run_federation_commands_but_write_no_cluster_records() {
        let admin = id("west", Role::Admin);
        authorize(&admin, &Command::SetDefaultAccess(PolicyAction::Deny)).unwrap();
        authorize(
            &admin,
            &Command::RemoveCluster {
                cluster: "east".parse().unwrap(),
            },
        )
        .unwrap();
        let err = authorize(
            &admin,
            &Command::DeleteExport {
                cluster: "west".parse().unwrap(),
                service: "shop/web".parse().unwrap(),
            },
        )
        .unwrap_err();
        assert!(matches!(err, Denied::WrongRole { .. }), "{err}");
        assert!(authorize_member(&admin, "raft").is_err());
        authorize_member(&id("east", Role::Gateway), "raft").unwrap();
    }

    fn put_traffic(owner: &str) -> Command {
        Command::PutTrafficPolicy(crate::catalog::TrafficPolicyRecord {
            owner: owner.parse().unwrap(),
            service: "shop/web".parse().unwrap(),
            apply_to: causeway_policy::TrafficScope::All,
            policy: causeway_policy::TrafficPolicy::default(),
        })
    }

    fn delete_traffic(owner: &str) -> Command {
        Command::DeleteTrafficPolicy {
            owner: owner.parse().unwrap(),
            service: "shop/web".parse().unwrap(),
        }
    }

    #[test]
    fn gateways_write_only_their_own_clusters_traffic_policies() {
        let west = id("west", Role::Gateway);
        authorize(&west, &put_traffic("west")).unwrap();
        authorize(&west, &delete_traffic("west")).unwrap();
        for command in [put_traffic("east"), delete_traffic("east")] {
            let err = authorize(&west, &command).unwrap_err();
            assert!(matches!(err, Denied::OtherOwner { .. }), "{err}");
            let text = err.to_string();
            assert!(
                text.contains("cluster west") && text.contains("owned by cluster east"),
                "{text}"
            );
        }
    }

    #[test]
    fn admins_write_any_clusters_traffic_policies() {
        let admin = id("west", Role::Admin);
        for owner in ["west", "east"] {
            authorize(&admin, &put_traffic(owner)).unwrap();
            authorize(&admin, &delete_traffic(owner)).unwrap();
        }
    }
}
