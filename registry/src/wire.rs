//! The protobuf schema (`proto/registry.proto`) and conversions between its messages
//! and the catalog's types. Every conversion from the wire validates names and says
//! which field was wrong.

mod from_pb;
mod to_pb;

pub use from_pb::{
    command_from_pb, decode_command, event_from_pb, export_key_from_pb, snapshot_from_pb,
    traffic_key_from_pb,
};
pub use to_pb::{
    change_to_pb, command_to_pb, encode_command, event_to_pb, export_key_to_pb, snapshot_to_pb,
    traffic_key_to_pb,
};

/// Generated protobuf messages and gRPC stubs.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("causeway.registry.v1");
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::from_pb::traffic_record_from_pb;
    use super::to_pb::traffic_record_to_pb;
    use super::*;
    use crate::catalog::{
        CatalogEvent, ClusterRecord, Command, Export, ServicePort, TrafficPolicyRecord,
    };
    use crate::catalog::{Limits, Protocol};
    use causeway_policy::PolicyAction;
    use causeway_policy::{
        AccessPolicy, ConnectionLimits, FaultPolicy, OutlierPolicy, RetryPolicy, TrafficPolicy,
        TrafficScope,
    };
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
            slots: None,
        };
        vec![
            Command::RegisterCluster(ClusterRecord {
                name: "west".parse().unwrap(),
                gateway_addrs: vec!["127.0.0.1:15443".into()],
                registry_addr: "127.0.0.1:15444".into(),
                identity: "spiffe://causeway.local/cluster/west/gateway/a"
                    .parse()
                    .unwrap(),
                joined_at_unix_ms: 7,
                trust_bundle: vec!["ab".repeat(32)],
                issuer_fingerprint: Some("cd".repeat(32)),
                replicas: Vec::new(),
                import_pools: Vec::new(),
                runtime_exports: None,
            }),
            Command::PutExport(export.clone()),
            Command::PutRuntimeExport(crate::catalog::RuntimeExport {
                export: export.clone(),
                endpoints: vec!["10.0.0.5".into(), "fd00::5".into()],
                target_ports: vec![8080],
            }),
            Command::DeleteRuntimeExport {
                cluster: "west".parse().unwrap(),
                service: "shop/web".parse().unwrap(),
            },
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
            Command::RemoveReplica {
                cluster: "west".parse().unwrap(),
                replica: Some("b".parse().unwrap()),
            },
            Command::RemoveReplica {
                cluster: "west".parse().unwrap(),
                replica: None,
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
                routing: causeway_policy::RoutingMode::Weighted,
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
        let mut pb = command_to_pb(&sample_commands()[2]);
        if let Some(pb::command::Kind::PutRuntimeExport(r)) = &mut pb.kind {
            r.target_ports[0] = 70_000;
        }
        let err = command_from_pb(pb).unwrap_err().to_string();
        assert!(err.contains("runtime_export.target_ports[0]"), "{err}");
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
            index in 0usize..64,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let samples = sample_commands();
            let mut bytes = encode_command(&samples[index % samples.len()]);
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
