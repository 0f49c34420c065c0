//! The protobuf schema (`proto/registry.proto`) and conversions between its messages
//! and the catalog's types. Every conversion from the wire validates names and says
//! which field was wrong.

use std::collections::BTreeMap;
use std::time::Duration;

use causeway_trust::ClusterName;
use prost::Message as _;

use crate::catalog::{
    AccessPolicy, CatalogChange, CatalogEvent, CatalogSnapshot, Change, ClusterRecord, Command,
    CommandError, ConnectionLimits, DeniedIssuer, Export, FaultPolicy, OutlierPolicy, PolicyName,
    RetryPolicy, Revision, ServiceKey, ServicePort, TrafficPolicy, TrafficPolicyRecord,
    TrafficScope, Versioned,
};

/// Generated protobuf messages and gRPC stubs.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("causeway.registry.v1");
}

/// Decodes a command from its protobuf bytes (as carried in the Raft log) and checks
/// its names. Hostile bytes give an error, never a panic.
pub fn decode_command(bytes: &[u8]) -> Result<Command, CommandError> {
    let pb = pb::Command::decode(bytes).map_err(|e| {
        CommandError::invalid("command", format!("not a valid protobuf message: {e}"))
    })?;
    command_from_pb(pb)
}

/// Encodes a command as protobuf bytes.
pub fn encode_command(command: &Command) -> Vec<u8> {
    command_to_pb(command).encode_to_vec()
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

// === to the catalog ===

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

fn traffic_record_from_pb(
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

fn denied_to_pb(d: &DeniedIssuer) -> pb::DeniedIssuer {
    pb::DeniedIssuer {
        cluster: d.cluster.to_string(),
        fingerprint: d.fingerprint.clone(),
        revision: d.revision.0,
    }
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

// === to the wire ===

/// Converts a command for the wire.
pub fn command_to_pb(command: &Command) -> pb::Command {
    use pb::command::Kind;
    let kind = match command {
        Command::RegisterCluster(c) => Kind::RegisterCluster(cluster_to_pb(c)),
        Command::RemoveCluster { cluster } => Kind::RemoveCluster(pb::RemoveCluster {
            cluster: cluster.to_string(),
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

fn traffic_record_to_pb(r: &TrafficPolicyRecord) -> pb::TrafficPolicyRecord {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Limits, PolicyAction, Protocol};
    use proptest::prelude::*;

    fn sample_commands() -> Vec<Command> {
        let export = Export {
            cluster: "west".parse().unwrap(),
            service: "shop/web".parse().unwrap(),
            ports: vec![ServicePort {
                name: "http".into(),
                protocol: Protocol::Http,
                port: 80,
            }],
            endpoints: 2,
            labels: BTreeMap::from([("a".into(), "b".into())]),
            weight: 1,
        };
        vec![
            Command::RegisterCluster(ClusterRecord {
                name: "west".parse().unwrap(),
                gateway_addrs: vec!["127.0.0.1:15443".into()],
                registry_addr: "127.0.0.1:15444".into(),
                identity: "spiffe://causeway.local/cluster/west/gateway"
                    .parse()
                    .unwrap(),
                joined_at_unix_ms: 7,
                trust_bundle: vec!["ab".repeat(32)],
                issuer_fingerprint: Some("cd".repeat(32)),
            }),
            Command::PutExport(export.clone()),
            Command::ReplaceClusterExports {
                cluster: "west".parse().unwrap(),
                exports: vec![export],
            },
            Command::DeleteExport {
                cluster: "west".parse().unwrap(),
                service: "shop/web".parse().unwrap(),
            },
            Command::PutPolicy(AccessPolicy {
                name: "p".parse().unwrap(),
                action: PolicyAction::Deny,
                from_clusters: vec!["east".parse().unwrap()],
                to_cluster: Some("west".parse().unwrap()),
                to_namespace: None,
                to_service: Some("web".into()),
                to_labels: BTreeMap::from([("tier".into(), "front".into())]),
                ports: vec![80, 443],
            }),
            Command::DeletePolicy {
                name: "p".parse().unwrap(),
            },
            Command::PutTrafficPolicy(full_traffic_record()),
            Command::DeleteTrafficPolicy {
                owner: "west".parse().unwrap(),
                service: "shop/web".parse().unwrap(),
            },
            Command::PutTrafficPolicy(TrafficPolicyRecord {
                apply_to: TrafficScope::All,
                policy: TrafficPolicy::default(),
                ..full_traffic_record()
            }),
            Command::RemoveCluster {
                cluster: "west".parse().unwrap(),
            },
            Command::SetDefaultAccess(PolicyAction::Allow),
            Command::DenyIssuer {
                cluster: "west".parse().unwrap(),
                fingerprint: "cd".repeat(32),
            },
        ]
    }

    /// A record with every optional field set.
    fn full_traffic_record() -> TrafficPolicyRecord {
        use std::time::Duration;
        TrafficPolicyRecord {
            owner: "west".parse().unwrap(),
            service: "shop/web".parse().unwrap(),
            apply_to: TrafficScope::Clusters(vec![
                "east".parse().unwrap(),
                "north".parse().unwrap(),
            ]),
            policy: TrafficPolicy {
                routing: crate::catalog::RoutingMode::Weighted,
                weights: BTreeMap::from([
                    ("west".parse().unwrap(), 90),
                    ("east".parse().unwrap(), 10),
                ]),
                pinned: None,
                outlier: Some(OutlierPolicy {
                    consecutive_failures: 3,
                    interval: Duration::from_millis(2_500),
                    base_ejection_time: Duration::from_secs(30),
                    max_ejection_time: Duration::from_secs(300),
                    max_ejection_percent: 50,
                }),
                limits: ConnectionLimits {
                    max_streams: Some(1_000),
                    max_pending: None,
                },
                retries: RetryPolicy {
                    attempts: 2,
                    budget_percent: 20,
                    connect_timeout: Some(Duration::from_millis(1_500)),
                },
                idle_timeout: Some(Duration::from_secs(3_600)),
                faults: FaultPolicy {
                    delay: Some(Duration::from_millis(100)),
                    delay_percent: 12.5,
                    abort_percent: 0.0,
                },
            },
        }
    }

    #[test]
    fn traffic_records_keep_every_field_on_the_wire() {
        let record = full_traffic_record();
        let command = Command::PutTrafficPolicy(record.clone());
        command.validate(&Limits::default()).unwrap();
        assert_eq!(decode_command(&encode_command(&command)).unwrap(), command);
        let pb = traffic_record_to_pb(&record);
        let policy = pb.policy.as_ref().unwrap();
        assert_eq!(policy.idle_timeout_ms, Some(3_600_000));
        assert_eq!(policy.outlier.as_ref().unwrap().interval_ms, 2_500);
        assert_eq!(policy.routing, "weighted");
        // apply_to_all with names listed is ambiguous: refused by name.
        let mut both = pb.clone();
        both.apply_to_all = true;
        let err = traffic_record_from_pb(both, "traffic_policy")
            .unwrap_err()
            .to_string();
        assert!(err.contains("traffic_policy.apply_to"), "{err}");
        let mut bad = pb;
        bad.policy.as_mut().unwrap().routing = "random".into();
        let err = traffic_record_from_pb(bad, "traffic_policy")
            .unwrap_err()
            .to_string();
        assert!(err.contains("traffic_policy.policy.routing"), "{err}");
    }

    #[test]
    fn traffic_records_round_trip_in_snapshots_and_changes() {
        let mut catalog = crate::catalog::Catalog::new(Limits::default());
        let mut events = Vec::new();
        for c in sample_commands().into_iter().take(1) {
            catalog.apply(&c).unwrap();
        }
        let record = full_traffic_record();
        for c in [
            Command::PutTrafficPolicy(record.clone()),
            Command::PutTrafficPolicy(TrafficPolicyRecord {
                service: "shop/db".parse().unwrap(),
                apply_to: TrafficScope::All,
                ..record
            }),
            Command::DeleteTrafficPolicy {
                owner: "west".parse().unwrap(),
                service: "shop/db".parse().unwrap(),
            },
        ] {
            events.push(CatalogEvent::Change(catalog.apply(&c).unwrap()));
        }
        events.push(CatalogEvent::Snapshot(catalog.snapshot()));
        assert_eq!(catalog.snapshot().traffic_policies.len(), 1);
        for event in events {
            assert_eq!(event_from_pb(event_to_pb(&event)).unwrap(), event);
        }
    }

    #[test]
    fn commands_round_trip() {
        for c in sample_commands() {
            assert_eq!(decode_command(&encode_command(&c)).unwrap(), c);
        }
    }

    #[test]
    fn events_and_snapshots_round_trip_with_default_access_and_denylist() {
        let mut catalog = crate::catalog::Catalog::new(Limits::default());
        let mut events = Vec::new();
        for c in sample_commands() {
            if let Ok(change) = catalog.apply(&c) {
                events.push(CatalogEvent::Change(change));
            }
        }
        assert_eq!(catalog.default_access(), Some(PolicyAction::Allow));
        assert_eq!(catalog.denied_issuers().count(), 1);
        events.push(CatalogEvent::Snapshot(catalog.snapshot()));
        for event in events {
            assert_eq!(event_from_pb(event_to_pb(&event)).unwrap(), event);
        }
    }

    #[test]
    fn bad_wire_fields_are_named() {
        let mut pb = command_to_pb(&sample_commands()[1]);
        if let Some(pb::command::Kind::PutExport(e)) = &mut pb.kind {
            e.ports[0].port = 70_000;
        }
        let err = command_from_pb(pb).unwrap_err().to_string();
        assert!(err.contains("export.ports[0].port"), "{err}");
        let err = command_from_pb(pb::Command { kind: None })
            .unwrap_err()
            .to_string();
        assert!(err.contains("command.kind"), "{err}");
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(command) = decode_command(&bytes) {
                let _ = command.validate(&Limits::default());
                // Whatever decodes must survive a round trip unchanged.
                prop_assert_eq!(decode_command(&encode_command(&command)).unwrap(), command);
            }
        }

        #[test]
        fn mutated_commands_never_panic(
            index in 0usize..12,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = encode_command(&sample_commands()[index]);
            for (at, value) in flips {
                if !bytes.is_empty() {
                    let i = at % bytes.len();
                    bytes[i] = value;
                }
            }
            if let Ok(command) = decode_command(&bytes) {
                let mut catalog = crate::catalog::Catalog::new(Limits::default());
                let before = catalog.snapshot();
                if catalog.apply(&command).is_err() {
                    prop_assert_eq!(catalog.snapshot(), before);
                }
            }
        }
    }
}
