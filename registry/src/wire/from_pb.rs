//! Wire → catalog: every message checked, the first bad field named.

use std::collections::BTreeMap;
use std::time::Duration;

use causeway_policy::{
    AccessPolicy, ConnectionLimits, FaultPolicy, OutlierPolicy, PolicyName, RetryPolicy,
    TrafficPolicy, TrafficScope,
};
use causeway_trust::ClusterName;
use prost::Message as _;

use super::pb;
use crate::catalog::{
    AddressSlots, CatalogChange, CatalogEvent, CatalogSnapshot, Change, ClusterRecord, Command,
    CommandError, DeniedIssuer, Export, ReplicaRecord, Revision, RuntimeExport, ServiceKey,
    ServicePort, TrafficPolicyRecord, Versioned,
};

/// Decodes a command from its protobuf bytes (as carried in the Raft log) and checks
/// its names. Hostile bytes give an error, never a panic.
pub fn decode_command(bytes: &[u8]) -> Result<Command, CommandError> {
    let pb = pb::Command::decode(bytes).map_err(|e| {
        CommandError::invalid("command", format!("not a valid protobuf message: {e}"))
    })?;
    command_from_pb(pb)
}

fn parse<T: std::str::FromStr>(field: &str, value: &str) -> Result<T, CommandError>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e: T::Err| CommandError::invalid(field, e.to_string()))
}

fn service_key(field: &str, namespace: &str, name: &str) -> Result<ServiceKey, CommandError> {
    ServiceKey::new(namespace, name).map_err(|e| CommandError::invalid(field, e.to_string()))
}

/// Converts a wire command, naming the first bad field.
pub fn command_from_pb(pb: pb::Command) -> Result<Command, CommandError> {
    use pb::command::Kind;
    let kind = pb
        .kind
        .ok_or_else(|| CommandError::invalid("command.kind", "no command given"))?;
    Ok(match kind {
        Kind::RegisterCluster(c) => Command::RegisterCluster(cluster_from_pb(c, "cluster")?),
        Kind::RemoveCluster(r) => Command::RemoveCluster {
            cluster: parse("remove_cluster.cluster", &r.cluster)?,
        },
        Kind::RemoveReplica(r) => Command::RemoveReplica {
            cluster: parse("remove_replica.cluster", &r.cluster)?,
            replica: r
                .replica
                .map(|name| parse("remove_replica.replica", &name))
                .transpose()?,
        },
        Kind::PutExport(e) => Command::PutExport(export_from_pb(e, "export")?),
        Kind::DeleteExport(k) => {
            let (cluster, service) = export_key_from_pb(&k, "delete_export")?;
            Command::DeleteExport { cluster, service }
        }
        Kind::ReplaceClusterExports(r) => Command::ReplaceClusterExports {
            cluster: parse("replace_cluster_exports.cluster", &r.cluster)?,
            exports: r
                .exports
                .into_iter()
                .enumerate()
                .map(|(i, e)| export_from_pb(e, &format!("exports[{i}]")))
                .collect::<Result<_, _>>()?,
        },
        Kind::PutPolicy(p) => Command::PutPolicy(policy_from_pb(p)?),
        Kind::DeletePolicy(d) => Command::DeletePolicy {
            name: parse("delete_policy.name", &d.name)?,
        },
        Kind::SetDefaultAccess(d) => {
            Command::SetDefaultAccess(parse("set_default_access.action", &d.action)?)
        }
        Kind::DenyIssuer(d) => Command::DenyIssuer {
            cluster: parse("deny_issuer.cluster", &d.cluster)?,
            fingerprint: d.fingerprint,
        },
        Kind::PutTrafficPolicy(r) => {
            Command::PutTrafficPolicy(traffic_record_from_pb(r, "traffic_policy")?)
        }
        Kind::DeleteTrafficPolicy(k) => {
            let (owner, service) = traffic_key_from_pb(&k, "delete_traffic_policy")?;
            Command::DeleteTrafficPolicy { owner, service }
        }
        Kind::PutRuntimeExport(r) => {
            Command::PutRuntimeExport(runtime_export_from_pb(r, "runtime_export")?)
        }
        Kind::DeleteRuntimeExport(k) => {
            let (cluster, service) = export_key_from_pb(&k, "delete_runtime_export")?;
            Command::DeleteRuntimeExport { cluster, service }
        }
    })
}

/// Converts a traffic policy key (owner and service).
pub fn traffic_key_from_pb(
    k: &pb::TrafficPolicyKey,
    path: &str,
) -> Result<(ClusterName, ServiceKey), CommandError> {
    Ok((
        parse(&format!("{path}.owner"), &k.owner)?,
        service_key(&format!("{path}.service"), &k.namespace, &k.service)?,
    ))
}

pub(super) fn traffic_record_from_pb(
    r: pb::TrafficPolicyRecord,
    path: &str,
) -> Result<TrafficPolicyRecord, CommandError> {
    let apply_to = if r.apply_to_all {
        if !r.apply_to.is_empty() {
            return Err(CommandError::invalid(
                format!("{path}.apply_to"),
                "must be empty when apply_to_all is set",
            ));
        }
        TrafficScope::All
    } else {
        TrafficScope::Clusters(
            r.apply_to
                .iter()
                .enumerate()
                .map(|(i, c)| parse(&format!("{path}.apply_to[{i}]"), c))
                .collect::<Result<_, _>>()?,
        )
    };
    Ok(TrafficPolicyRecord {
        owner: parse(&format!("{path}.owner"), &r.owner)?,
        service: service_key(&format!("{path}.service"), &r.namespace, &r.service)?,
        apply_to,
        policy: traffic_policy_from_pb(
            required(r.policy, &format!("{path}.policy"))?,
            &format!("{path}.policy"),
        )?,
    })
}

fn traffic_policy_from_pb(p: pb::TrafficPolicy, path: &str) -> Result<TrafficPolicy, CommandError> {
    let ms = Duration::from_millis;
    let outlier = p
        .outlier
        .map(|o| {
            Ok::<_, CommandError>(OutlierPolicy {
                consecutive_failures: o.consecutive_failures,
                interval: ms(o.interval_ms),
                base_ejection_time: ms(o.base_ejection_time_ms),
                max_ejection_time: ms(o.max_ejection_time_ms),
                max_ejection_percent: u8::try_from(o.max_ejection_percent).map_err(|_| {
                    CommandError::invalid(
                        format!("{path}.outlier.max_ejection_percent"),
                        format!("{} is not in 0..=100", o.max_ejection_percent),
                    )
                })?,
            })
        })
        .transpose()?;
    let limits = p
        .limits
        .map_or_else(ConnectionLimits::default, |l| ConnectionLimits {
            max_streams: l.max_streams,
            max_pending: l.max_pending,
        });
    let retries = p
        .retries
        .map_or_else(RetryPolicy::default, |r| RetryPolicy {
            attempts: r.attempts,
            budget_percent: r.budget_percent,
            connect_timeout: r.connect_timeout_ms.map(ms),
        });
    let faults = p.faults.map_or_else(FaultPolicy::default, |f| FaultPolicy {
        delay: f.delay_ms.map(ms),
        delay_percent: f.delay_percent,
        abort_percent: f.abort_percent,
    });
    Ok(TrafficPolicy {
        routing: parse(&format!("{path}.routing"), &p.routing)?,
        weights: p
            .weights
            .into_iter()
            .map(|(c, w)| Ok((parse(&format!("{path}.weights"), &c)?, w)))
            .collect::<Result<_, CommandError>>()?,
        pinned: p
            .pinned
            .map(|c| parse(&format!("{path}.pinned"), &c))
            .transpose()?,
        outlier,
        limits,
        retries,
        idle_timeout: p.idle_timeout_ms.map(ms),
        faults,
    })
}

/// Converts an export key.
pub fn export_key_from_pb(
    k: &pb::ExportKey,
    path: &str,
) -> Result<(ClusterName, ServiceKey), CommandError> {
    Ok((
        parse(&format!("{path}.cluster"), &k.cluster)?,
        service_key(&format!("{path}.service"), &k.namespace, &k.service)?,
    ))
}

fn cluster_from_pb(c: pb::ClusterRecord, path: &str) -> Result<ClusterRecord, CommandError> {
    Ok(ClusterRecord {
        name: parse(&format!("{path}.name"), &c.name)?,
        gateway_addrs: c.gateway_addrs,
        registry_addr: c.registry_addr,
        identity: parse(&format!("{path}.identity"), &c.identity)?,
        joined_at_unix_ms: c.joined_at_unix_ms,
        trust_bundle: c.trust_bundle,
        issuer_fingerprint: c.issuer_fingerprint,
        replicas: c
            .replicas
            .into_iter()
            .enumerate()
            .map(|(i, r)| replica_from_pb(r, &format!("{path}.replicas[{i}]")))
            .collect::<Result<_, _>>()?,
        import_pools: c.import_pools,
        runtime_exports: c
            .runtime_exports
            .map(|list| {
                list.exports
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| {
                        runtime_export_from_pb(r, &format!("{path}.runtime_exports[{i}]"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?,
    })
}

fn runtime_export_from_pb(r: pb::RuntimeExport, path: &str) -> Result<RuntimeExport, CommandError> {
    let export = r
        .export
        .ok_or_else(|| CommandError::invalid(format!("{path}.export"), "missing"))?;
    let target_ports = r
        .target_ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            u16::try_from(*p).map_err(|_| {
                CommandError::invalid(
                    format!("{path}.target_ports[{i}]"),
                    format!("{p} is not a port; use 1-65535"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(RuntimeExport {
        export: export_from_pb(export, &format!("{path}.export"))?,
        endpoints: r.endpoints,
        target_ports,
    })
}

fn replica_from_pb(r: pb::ReplicaRecord, path: &str) -> Result<ReplicaRecord, CommandError> {
    Ok(ReplicaRecord {
        name: r
            .name
            .map(|name| parse(&format!("{path}.name"), &name))
            .transpose()?,
        gateway_addrs: r.gateway_addrs,
        registry_addr: r.registry_addr,
        joined_at_unix_ms: r.joined_at_unix_ms,
        import_pools: r.import_pools,
    })
}

fn export_from_pb(e: pb::Export, path: &str) -> Result<Export, CommandError> {
    let ports = e
        .ports
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let field = format!("{path}.ports[{i}]");
            let port = u16::try_from(p.port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    CommandError::invalid(
                        format!("{field}.port"),
                        format!("{} is not 1-65535", p.port),
                    )
                })?;
            Ok(ServicePort {
                name: p.name,
                protocol: parse(&format!("{field}.protocol"), &p.protocol)?,
                port,
            })
        })
        .collect::<Result<_, CommandError>>()?;
    Ok(Export {
        cluster: parse(&format!("{path}.cluster"), &e.cluster)?,
        service: service_key(&format!("{path}.service"), &e.namespace, &e.service)?,
        ports,
        endpoints: e.endpoints,
        labels: e.labels.into_iter().collect::<BTreeMap<_, _>>(),
        weight: e.weight,
        slots: e.slots.map(|s| AddressSlots {
            service: s.service,
            pinned: s.pinned,
        }),
    })
}

fn policy_from_pb(p: pb::AccessPolicy) -> Result<AccessPolicy, CommandError> {
    Ok(AccessPolicy {
        name: parse("policy.name", &p.name)?,
        action: parse("policy.action", &p.action)?,
        from_clusters: p
            .from_clusters
            .iter()
            .enumerate()
            .map(|(i, c)| parse(&format!("policy.from_clusters[{i}]"), c))
            .collect::<Result<_, _>>()?,
        to_cluster: p
            .to_cluster
            .map(|c| parse("policy.to_cluster", &c))
            .transpose()?,
        to_namespace: p.to_namespace,
        to_service: p.to_service,
        to_labels: p.to_labels.into_iter().collect(),
        ports: p
            .ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                u16::try_from(*port)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| {
                        CommandError::invalid(
                            format!("policy.ports[{i}]"),
                            format!("{port} is not 1-65535"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
    })
}

fn denied_from_pb(d: pb::DeniedIssuer, path: &str) -> Result<DeniedIssuer, CommandError> {
    Ok(DeniedIssuer {
        cluster: parse(&format!("{path}.cluster"), &d.cluster)?,
        fingerprint: d.fingerprint,
        revision: Revision(d.revision),
    })
}

/// Converts a snapshot received from a server.
pub fn snapshot_from_pb(s: pb::Snapshot) -> Result<CatalogSnapshot, CommandError> {
    Ok(CatalogSnapshot {
        revision: Revision(s.revision),
        clusters: s
            .clusters
            .into_iter()
            .map(|v| {
                Ok(Versioned {
                    mod_revision: Revision(v.mod_revision),
                    value: cluster_from_pb(required(v.value, "clusters.value")?, "cluster")?,
                })
            })
            .collect::<Result<_, CommandError>>()?,
        exports: s
            .exports
            .into_iter()
            .map(|v| {
                Ok(Versioned {
                    mod_revision: Revision(v.mod_revision),
                    value: export_from_pb(required(v.value, "exports.value")?, "export")?,
                })
            })
            .collect::<Result<_, CommandError>>()?,
        policies: s
            .policies
            .into_iter()
            .map(|v| {
                Ok(Versioned {
                    mod_revision: Revision(v.mod_revision),
                    value: policy_from_pb(required(v.value, "policies.value")?)?,
                })
            })
            .collect::<Result<_, CommandError>>()?,
        default_access: s
            .default_access
            .map(|v| {
                Ok::<_, CommandError>(Versioned {
                    mod_revision: Revision(v.mod_revision),
                    value: parse("default_access.action", &v.action)?,
                })
            })
            .transpose()?,
        denied_issuers: s
            .denied_issuers
            .into_iter()
            .map(|d| denied_from_pb(d, "denied_issuers"))
            .collect::<Result<_, _>>()?,
        traffic_policies: s
            .traffic_policies
            .into_iter()
            .map(|v| {
                Ok(Versioned {
                    mod_revision: Revision(v.mod_revision),
                    value: traffic_record_from_pb(
                        required(v.value, "traffic_policies.value")?,
                        "traffic_policy",
                    )?,
                })
            })
            .collect::<Result<_, CommandError>>()?,
    })
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, CommandError> {
    value.ok_or_else(|| CommandError::invalid(field, "missing"))
}

/// Converts a watch event received from a server.
pub fn event_from_pb(e: pb::WatchEvent) -> Result<CatalogEvent, CommandError> {
    use pb::watch_event::Kind;
    match required(e.kind, "event.kind")? {
        Kind::Snapshot(s) => Ok(CatalogEvent::Snapshot(snapshot_from_pb(s)?)),
        Kind::Change(c) => {
            use pb::change::Kind as C;
            let changes =
                c.changes
                    .into_iter()
                    .map(|ch| {
                        Ok(match required(ch.kind, "change.kind")? {
                            C::ClusterPut(r) => Change::ClusterPut(cluster_from_pb(r, "cluster")?),
                            C::ClusterDeleted(name) => Change::ClusterDeleted {
                                cluster: parse("cluster_deleted", &name)?,
                            },
                            C::ExportPut(e) => Change::ExportPut(export_from_pb(e, "export")?),
                            C::ExportDeleted(k) => {
                                let (cluster, service) = export_key_from_pb(&k, "export_deleted")?;
                                Change::ExportDeleted { cluster, service }
                            }
                            C::PolicyPut(p) => Change::PolicyPut(policy_from_pb(p)?),
                            C::PolicyDeleted(name) => Change::PolicyDeleted {
                                name: parse::<PolicyName>("policy_deleted", &name)?,
                            },
                            C::DefaultAccessSet(action) => Change::DefaultAccessSet {
                                action: parse("default_access_set", &action)?,
                            },
                            C::IssuerDenied(d) => {
                                Change::IssuerDenied(denied_from_pb(d, "issuer_denied")?)
                            }
                            C::TrafficPolicyPut(r) => Change::TrafficPolicyPut(
                                traffic_record_from_pb(r, "traffic_policy_put")?,
                            ),
                            C::TrafficPolicyDeleted(k) => {
                                let (owner, service) =
                                    traffic_key_from_pb(&k, "traffic_policy_deleted")?;
                                Change::TrafficPolicyDeleted { owner, service }
                            }
                        })
                    })
                    .collect::<Result<_, CommandError>>()?;
            Ok(CatalogEvent::Change(CatalogChange {
                revision: Revision(c.revision),
                changes,
            }))
        }
    }
}
