//! Catalog → wire.

use std::time::Duration;

use causeway_policy::{AccessPolicy, TrafficScope};
use causeway_trust::ClusterName;
use prost::Message as _;

use super::pb;
use crate::catalog::{
    CatalogChange, CatalogEvent, CatalogSnapshot, Change, ClusterRecord, Command, DeniedIssuer,
    Export, RuntimeExport, ServiceKey, TrafficPolicyRecord,
};

/// Encodes a command as protobuf bytes.
pub fn encode_command(command: &Command) -> Vec<u8> {
    command_to_pb(command).encode_to_vec()
}

/// Converts a command for the wire.
pub fn command_to_pb(command: &Command) -> pb::Command {
    use pb::command::Kind;
    let kind = match command {
        Command::RegisterCluster(c) => Kind::RegisterCluster(cluster_to_pb(c)),
        Command::RemoveCluster { cluster } => Kind::RemoveCluster(pb::RemoveCluster {
            cluster: cluster.to_string(),
        }),
        Command::RemoveReplica { cluster, replica } => Kind::RemoveReplica(pb::RemoveReplica {
            cluster: cluster.to_string(),
            replica: replica.as_ref().map(ToString::to_string),
        }),
        Command::PutExport(e) => Kind::PutExport(export_to_pb(e)),
        Command::DeleteExport { cluster, service } => {
            Kind::DeleteExport(export_key_to_pb(cluster, service))
        }
        Command::ReplaceClusterExports { cluster, exports } => {
            Kind::ReplaceClusterExports(pb::ReplaceClusterExports {
                cluster: cluster.to_string(),
                exports: exports.iter().map(export_to_pb).collect(),
            })
        }
        Command::PutPolicy(p) => Kind::PutPolicy(policy_to_pb(p)),
        Command::DeletePolicy { name } => Kind::DeletePolicy(pb::DeletePolicy {
            name: name.to_string(),
        }),
        Command::SetDefaultAccess(action) => Kind::SetDefaultAccess(pb::SetDefaultAccess {
            action: action.to_string(),
        }),
        Command::DenyIssuer {
            cluster,
            fingerprint,
        } => Kind::DenyIssuer(pb::DenyIssuer {
            cluster: cluster.to_string(),
            fingerprint: fingerprint.clone(),
        }),
        Command::PutTrafficPolicy(r) => Kind::PutTrafficPolicy(traffic_record_to_pb(r)),
        Command::DeleteTrafficPolicy { owner, service } => {
            Kind::DeleteTrafficPolicy(traffic_key_to_pb(owner, service))
        }
        Command::PutRuntimeExport(r) => Kind::PutRuntimeExport(runtime_export_to_pb(r)),
        Command::DeleteRuntimeExport { cluster, service } => {
            Kind::DeleteRuntimeExport(export_key_to_pb(cluster, service))
        }
    };
    pb::Command { kind: Some(kind) }
}

/// Converts an export key for the wire.
pub fn export_key_to_pb(cluster: &ClusterName, service: &ServiceKey) -> pb::ExportKey {
    pb::ExportKey {
        cluster: cluster.to_string(),
        namespace: service.namespace().to_owned(),
        service: service.name().to_owned(),
    }
}

/// Converts a traffic policy key for the wire.
pub fn traffic_key_to_pb(owner: &ClusterName, service: &ServiceKey) -> pb::TrafficPolicyKey {
    pb::TrafficPolicyKey {
        owner: owner.to_string(),
        namespace: service.namespace().to_owned(),
        service: service.name().to_owned(),
    }
}

/// Milliseconds of a duration (records hold whole milliseconds).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn traffic_record_to_pb(r: &TrafficPolicyRecord) -> pb::TrafficPolicyRecord {
    let p = &r.policy;
    let (apply_to, apply_to_all) = match &r.apply_to {
        TrafficScope::All => (Vec::new(), true),
        TrafficScope::Clusters(c) => (c.iter().map(ToString::to_string).collect(), false),
    };
    pb::TrafficPolicyRecord {
        owner: r.owner.to_string(),
        namespace: r.service.namespace().to_owned(),
        service: r.service.name().to_owned(),
        apply_to,
        apply_to_all,
        policy: Some(pb::TrafficPolicy {
            routing: p.routing.to_string(),
            weights: p.weights.iter().map(|(c, w)| (c.to_string(), *w)).collect(),
            pinned: p.pinned.as_ref().map(ToString::to_string),
            outlier: p.outlier.map(|o| pb::OutlierPolicy {
                consecutive_failures: o.consecutive_failures,
                interval_ms: millis(o.interval),
                base_ejection_time_ms: millis(o.base_ejection_time),
                max_ejection_time_ms: millis(o.max_ejection_time),
                max_ejection_percent: u32::from(o.max_ejection_percent),
            }),
            limits: Some(pb::ConnectionLimits {
                max_streams: p.limits.max_streams,
                max_pending: p.limits.max_pending,
            }),
            retries: Some(pb::RetryPolicy {
                attempts: p.retries.attempts,
                budget_percent: p.retries.budget_percent,
                connect_timeout_ms: p.retries.connect_timeout.map(millis),
            }),
            idle_timeout_ms: p.idle_timeout.map(millis),
            faults: Some(pb::FaultPolicy {
                delay_ms: p.faults.delay.map(millis),
                delay_percent: p.faults.delay_percent,
                abort_percent: p.faults.abort_percent,
            }),
        }),
    }
}

fn cluster_to_pb(c: &ClusterRecord) -> pb::ClusterRecord {
    pb::ClusterRecord {
        name: c.name.to_string(),
        gateway_addrs: c.gateway_addrs.clone(),
        registry_addr: c.registry_addr.clone(),
        identity: c.identity.to_string(),
        joined_at_unix_ms: c.joined_at_unix_ms,
        trust_bundle: c.trust_bundle.clone(),
        issuer_fingerprint: c.issuer_fingerprint.clone(),
        replicas: c
            .replicas
            .iter()
            .map(|r| pb::ReplicaRecord {
                name: r.name.as_ref().map(ToString::to_string),
                gateway_addrs: r.gateway_addrs.clone(),
                registry_addr: r.registry_addr.clone(),
                joined_at_unix_ms: r.joined_at_unix_ms,
                import_pools: r.import_pools.clone(),
            })
            .collect(),
        import_pools: c.import_pools.clone(),
        runtime_exports: c.runtime_exports.as_ref().map(|list| pb::RuntimeExports {
            exports: list.iter().map(runtime_export_to_pb).collect(),
        }),
    }
}

fn runtime_export_to_pb(r: &RuntimeExport) -> pb::RuntimeExport {
    pb::RuntimeExport {
        export: Some(export_to_pb(&r.export)),
        endpoints: r.endpoints.clone(),
        target_ports: r.target_ports.iter().map(|p| u32::from(*p)).collect(),
    }
}

fn export_to_pb(e: &Export) -> pb::Export {
    pb::Export {
        cluster: e.cluster.to_string(),
        namespace: e.service.namespace().to_owned(),
        service: e.service.name().to_owned(),
        ports: e
            .ports
            .iter()
            .map(|p| pb::ServicePort {
                name: p.name.clone(),
                protocol: p.protocol.to_string(),
                port: u32::from(p.port),
            })
            .collect(),
        endpoints: e.endpoints,
        labels: e.labels.clone().into_iter().collect(),
        weight: e.weight,
        slots: e.slots.map(|s| pb::AddressSlots {
            service: s.service,
            pinned: s.pinned,
        }),
    }
}

fn policy_to_pb(p: &AccessPolicy) -> pb::AccessPolicy {
    pb::AccessPolicy {
        name: p.name.to_string(),
        action: p.action.to_string(),
        from_clusters: p.from_clusters.iter().map(|c| c.to_string()).collect(),
        to_cluster: p.to_cluster.as_ref().map(|c| c.to_string()),
        to_namespace: p.to_namespace.clone(),
        to_service: p.to_service.clone(),
        to_labels: p.to_labels.clone().into_iter().collect(),
        ports: p.ports.iter().map(|p| u32::from(*p)).collect(),
    }
}

/// Converts a snapshot for the wire.
pub fn snapshot_to_pb(s: &CatalogSnapshot) -> pb::Snapshot {
    pb::Snapshot {
        revision: s.revision.0,
        clusters: s
            .clusters
            .iter()
            .map(|v| pb::VersionedCluster {
                mod_revision: v.mod_revision.0,
                value: Some(cluster_to_pb(&v.value)),
            })
            .collect(),
        exports: s
            .exports
            .iter()
            .map(|v| pb::VersionedExport {
                mod_revision: v.mod_revision.0,
                value: Some(export_to_pb(&v.value)),
            })
            .collect(),
        policies: s
            .policies
            .iter()
            .map(|v| pb::VersionedPolicy {
                mod_revision: v.mod_revision.0,
                value: Some(policy_to_pb(&v.value)),
            })
            .collect(),
        default_access: s.default_access.as_ref().map(|v| pb::VersionedAccess {
            mod_revision: v.mod_revision.0,
            action: v.value.to_string(),
        }),
        denied_issuers: s.denied_issuers.iter().map(denied_to_pb).collect(),
        traffic_policies: s
            .traffic_policies
            .iter()
            .map(|v| pb::VersionedTrafficPolicy {
                mod_revision: v.mod_revision.0,
                value: Some(traffic_record_to_pb(&v.value)),
            })
            .collect(),
    }
}

/// Converts a change set for the wire.
pub fn change_to_pb(c: &CatalogChange) -> pb::ChangeSet {
    use pb::change::Kind;
    pb::ChangeSet {
        revision: c.revision.0,
        changes: c
            .changes
            .iter()
            .map(|ch| pb::Change {
                kind: Some(match ch {
                    Change::ClusterPut(r) => Kind::ClusterPut(cluster_to_pb(r)),
                    Change::ClusterDeleted { cluster } => Kind::ClusterDeleted(cluster.to_string()),
                    Change::ExportPut(e) => Kind::ExportPut(export_to_pb(e)),
                    Change::ExportDeleted { cluster, service } => {
                        Kind::ExportDeleted(export_key_to_pb(cluster, service))
                    }
                    Change::PolicyPut(p) => Kind::PolicyPut(policy_to_pb(p)),
                    Change::PolicyDeleted { name } => Kind::PolicyDeleted(name.to_string()),
                    Change::DefaultAccessSet { action } => {
                        Kind::DefaultAccessSet(action.to_string())
                    }
                    Change::IssuerDenied(d) => Kind::IssuerDenied(denied_to_pb(d)),
                    Change::TrafficPolicyPut(r) => Kind::TrafficPolicyPut(traffic_record_to_pb(r)),
                    Change::TrafficPolicyDeleted { owner, service } => {
                        Kind::TrafficPolicyDeleted(traffic_key_to_pb(owner, service))
                    }
                }),
            })
            .collect(),
    }
}

/// Converts a watch event for the wire.
pub fn event_to_pb(e: &CatalogEvent) -> pb::WatchEvent {
    use pb::watch_event::Kind;
    pb::WatchEvent {
        kind: Some(match e {
            CatalogEvent::Snapshot(s) => Kind::Snapshot(snapshot_to_pb(s)),
            CatalogEvent::Change(c) => Kind::Change(change_to_pb(c)),
        }),
    }
}

fn denied_to_pb(d: &DeniedIssuer) -> pb::DeniedIssuer {
    pb::DeniedIssuer {
        cluster: d.cluster.to_string(),
        fingerprint: d.fingerprint.clone(),
        revision: d.revision.0,
    }
}
