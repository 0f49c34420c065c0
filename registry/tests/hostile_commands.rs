//! Hostile command bytes and records, the registry's fuzz targets run as bounded
//! tests: a committed seed corpus (`tests/corpus/commands/*.bin`) is replayed first,
//! then proptest feeds random bytes, mutated seeds and structured garbage into the
//! protobuf decoder, `command_from_pb`, validation and the state machine. Each case
//! must end in a value or a named error, never a panic, and a refused command must
//! leave the catalog unchanged.
//!
//! Case counts are fixed so CI time is bounded; raise `CAUSEWAY_FUZZ_CASES` locally
//! for a longer run. `CAUSEWAY_WRITE_CORPUS=1` rewrites the seed corpus.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use causeway_policy::{AccessPolicy, PolicyAction, RoutingMode, TrafficPolicy, TrafficScope};
use causeway_registry::wire::{self, pb};
use causeway_registry::{
    Catalog, Command, CommandError, Limits, Protocol, ServicePort, TrafficPolicyRecord,
};
use proptest::prelude::*;
use prost::Message as _;
use support::{cluster, export};
use tonic::Code;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/commands")
}

fn cases(default: u32) -> u32 {
    std::env::var("CAUSEWAY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default_cases),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One valid command of every kind, the seeds mutations start from.
fn valid_commands() -> Vec<Command> {
    let mut labelled = export("west", "shop/web", 2);
    labelled.labels = BTreeMap::from([("tier".into(), "front".into())]);
    labelled.ports.push(ServicePort {
        name: "grpc".into(),
        protocol: Protocol::Grpc,
        port: 9090,
    });
    let mut registered = cluster("west");
    registered.issuer_fingerprint = Some("ab".repeat(32));
    vec![
        Command::RegisterCluster(registered),
        Command::PutExport(labelled.clone()),
        Command::ReplaceClusterExports {
            cluster: "west".parse().unwrap(),
            exports: vec![labelled, export("west", "shop/api", 1)],
        },
        Command::DeleteExport {
            cluster: "west".parse().unwrap(),
            service: "shop/web".parse().unwrap(),
        },
        Command::PutPolicy(AccessPolicy {
            name: "front".parse().unwrap(),
            action: PolicyAction::Allow,
            from_clusters: vec!["east".parse().unwrap()],
            to_cluster: Some("west".parse().unwrap()),
            to_namespace: Some("shop".into()),
            to_service: None,
            to_labels: BTreeMap::from([("tier".into(), "front".into())]),
            ports: vec![80],
        }),
        Command::DeletePolicy {
            name: "front".parse().unwrap(),
        },
        Command::SetDefaultAccess(PolicyAction::Deny),
        Command::PutTrafficPolicy(TrafficPolicyRecord {
            owner: "west".parse().unwrap(),
            service: "shop/web".parse().unwrap(),
            apply_to: TrafficScope::All,
            policy: TrafficPolicy {
                routing: RoutingMode::Weighted,
                weights: BTreeMap::from([
                    ("west".parse().unwrap(), 90),
                    ("east".parse().unwrap(), 10),
                ]),
                idle_timeout: Some(Duration::from_secs(60)),
                ..TrafficPolicy::default()
            },
        }),
        Command::DeleteTrafficPolicy {
            owner: "west".parse().unwrap(),
            service: "shop/web".parse().unwrap(),
        },
        Command::DenyIssuer {
            cluster: "east".parse().unwrap(),
            fingerprint: "cd".repeat(32),
        },
        Command::RemoveCluster {
            cluster: "west".parse().unwrap(),
        },
    ]
}

/// Hand-made hostile seeds: what a fuzzer found interesting or an attacker would try.
fn hostile_seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", vec![]),
        // Field 1 (register_cluster), length-delimited, claiming 2^62 bytes.
        (
            "huge-length",
            vec![0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40],
        ),
        // A varint that never ends.
        (
            "endless-varint",
            vec![
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
        ),
        // put_export whose port is 70000 (does not fit u16).
        ("port-overflow", {
            let mut pb = wire::command_to_pb(&Command::PutExport(export("west", "shop/web", 1)));
            if let Some(pb::command::Kind::PutExport(e)) = &mut pb.kind {
                e.ports[0].port = 70_000;
            }
            pb.encode_to_vec()
        }),
        // A cluster name with a NUL and uppercase.
        ("bad-cluster-name", {
            let mut pb = wire::command_to_pb(&Command::RemoveCluster {
                cluster: "west".parse().unwrap(),
            });
            if let Some(pb::command::Kind::RemoveCluster(r)) = &mut pb.kind {
                r.cluster = "We\0st".into();
            }
            pb.encode_to_vec()
        }),
        // An unknown field number (field 99, varint).
        ("unknown-field", vec![0x98, 0x06, 0x01]),
        // Wrong wire type for field 1 (varint instead of length-delimited).
        ("wrong-wire-type", vec![0x08, 0x01]),
    ]
}

/// Every seed file, sorted by name.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .expect("the seed corpus is committed")
        .map(|e| {
            let path = e.expect("readable corpus dir").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("readable seed"))
        })
        .collect();
    seeds.sort();
    seeds
}

/// Decodes, validates and applies `bytes` to a catalog holding west and east; checks
/// the invariants every input must keep.
fn exercise(bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut catalog = Catalog::new(Limits::default());
    for name in ["west", "east"] {
        catalog
            .apply(&Command::RegisterCluster(cluster(name)))
            .expect("registering works");
    }
    match wire::decode_command(bytes) {
        Ok(command) => {
            // Whatever decodes survives a round trip unchanged.
            let again = wire::decode_command(&wire::encode_command(&command));
            prop_assert_eq!(again.as_ref(), Ok(&command));
            let before = catalog.snapshot();
            if catalog.apply(&command).is_err() {
                prop_assert_eq!(
                    catalog.snapshot(),
                    before,
                    "a refused command changed the catalog"
                );
            }
        }
        Err(e) => check_error(&e)?,
    }
    Ok(())
}

/// An error names a field and stays short, however long the hostile input.
fn check_error(e: &CommandError) -> Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(text.len() < 2048, "error message of {} bytes", text.len());
    if let CommandError::Invalid { field, .. } = e {
        prop_assert!(!field.is_empty());
    }
    Ok(())
}

#[test]
fn write_corpus_when_asked() {
    if std::env::var_os("CAUSEWAY_WRITE_CORPUS").is_none() {
        return;
    }
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for command in valid_commands() {
        std::fs::write(
            dir.join(format!("valid-{}.bin", command.kind())),
            wire::encode_command(&command),
        )
        .unwrap();
    }
    for (name, bytes) in hostile_seeds() {
        std::fs::write(dir.join(format!("hostile-{name}.bin")), bytes).unwrap();
    }
}

#[test]
fn the_seed_corpus_replays_cleanly() {
    let seeds = corpus();
    assert!(
        seeds.len() >= valid_commands().len(),
        "seed corpus is missing"
    );
    for (name, bytes) in &seeds {
        exercise(bytes).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        let decoded = wire::decode_command(bytes);
        if name.starts_with("valid-") {
            let command = decoded.unwrap_or_else(|e| panic!("seed {name} no longer decodes: {e}"));
            command
                .validate(&Limits::default())
                .unwrap_or_else(|e| panic!("seed {name}: {e}"));
        } else {
            assert!(
                decoded.is_err(),
                "hostile seed {name} decoded to {decoded:?}"
            );
        }
    }
}

fn mutate(mut bytes: Vec<u8>, ops: &[(u8, usize, u8)]) -> Vec<u8> {
    for (op, at, value) in ops {
        let len = bytes.len();
        match op % 4 {
            0 if len > 0 => bytes[at % len] = *value,
            1 if len > 0 => bytes[at % len] ^= 1 << (value % 8),
            2 => bytes.insert(at % (len + 1), *value),
            _ if len > 0 => bytes.truncate(at % len),
            _ => {}
        }
    }
    bytes
}

/// Text that is usually almost valid: names, labels, fingerprints, with hostile bytes.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z][a-z0-9-]{0,62}",
        "[A-Za-z0-9._/-]{0,300}",
        ".{0,80}",
        Just("a".repeat(64)),
        Just("x".repeat(100_000)),
        "[0-9a-f]{64}",
        "[a-z]{1,10}:[0-9]{1,6}",
    ]
}

fn hostile_pb_command() -> impl Strategy<Value = pb::Command> {
    use pb::command::Kind;
    let export = (
        hostile_text(),
        hostile_text(),
        hostile_text(),
        proptest::collection::vec((hostile_text(), hostile_text(), any::<u32>()), 0..4),
        proptest::collection::btree_map(hostile_text(), hostile_text(), 0..4),
    )
        .prop_map(|(cluster, namespace, service, ports, labels)| pb::Export {
            cluster,
            namespace,
            service,
            ports: ports
                .into_iter()
                .map(|(name, protocol, port)| pb::ServicePort {
                    name,
                    protocol,
                    port,
                })
                .collect(),
            endpoints: 1,
            labels: labels.into_iter().collect(),
            weight: 1,
            slots: None,
        });
    let record = (
        hostile_text(),
        proptest::collection::vec(hostile_text(), 0..3),
        hostile_text(),
        hostile_text(),
        proptest::option::of(hostile_text()),
    )
        .prop_map(
            |(name, gateway_addrs, registry_addr, identity, issuer_fingerprint)| {
                pb::ClusterRecord {
                    name,
                    gateway_addrs,
                    registry_addr,
                    identity,
                    joined_at_unix_ms: 0,
                    trust_bundle: vec![],
                    issuer_fingerprint,
                    replicas: Vec::new(),
                    import_pools: Vec::new(),
                    runtime_exports: None,
                }
            },
        );
    let policy = (
        hostile_text(),
        hostile_text(),
        proptest::collection::vec(hostile_text(), 0..3),
        proptest::option::of(hostile_text()),
        proptest::collection::btree_map(hostile_text(), hostile_text(), 0..3),
        proptest::collection::vec(any::<u32>(), 0..4),
    )
        .prop_map(|(name, action, from_clusters, to_service, labels, ports)| {
            pb::AccessPolicy {
                name,
                action,
                from_clusters,
                to_cluster: None,
                to_namespace: None,
                to_service,
                to_labels: labels.into_iter().collect(),
                ports,
            }
        });
    let traffic = (
        hostile_text(),
        hostile_text(),
        proptest::collection::vec(hostile_text(), 0..3),
        any::<bool>(),
        hostile_text(),
        proptest::collection::btree_map(hostile_text(), any::<u32>(), 0..3),
        proptest::option::of(hostile_text()),
        (any::<u32>(), any::<u64>(), any::<u32>()),
        (any::<f64>(), proptest::option::of(any::<u64>())),
    )
        .prop_map(
            |(
                owner,
                service,
                apply_to,
                apply_to_all,
                routing,
                weights,
                pinned,
                (attempts, interval_ms, percent),
                (delay_percent, delay_ms),
            )| pb::TrafficPolicyRecord {
                owner,
                namespace: "shop".into(),
                service,
                apply_to,
                apply_to_all,
                policy: Some(pb::TrafficPolicy {
                    routing,
                    weights: weights.into_iter().collect(),
                    pinned,
                    outlier: Some(pb::OutlierPolicy {
                        consecutive_failures: attempts,
                        interval_ms,
                        base_ejection_time_ms: interval_ms,
                        max_ejection_time_ms: interval_ms,
                        max_ejection_percent: percent,
                    }),
                    limits: None,
                    retries: Some(pb::RetryPolicy {
                        attempts,
                        budget_percent: percent,
                        connect_timeout_ms: delay_ms,
                    }),
                    idle_timeout_ms: delay_ms,
                    faults: Some(pb::FaultPolicy {
                        delay_ms,
                        delay_percent,
                        abort_percent: delay_percent,
                    }),
                }),
            },
        );
    prop_oneof![
        traffic.prop_map(|t| pb::Command {
            kind: Some(Kind::PutTrafficPolicy(t))
        }),
        export.prop_map(|e| pb::Command {
            kind: Some(Kind::PutExport(e))
        }),
        record.prop_map(|r| pb::Command {
            kind: Some(Kind::RegisterCluster(r))
        }),
        policy.prop_map(|p| pb::Command {
            kind: Some(Kind::PutPolicy(p))
        }),
        (hostile_text(), hostile_text()).prop_map(|(cluster, fingerprint)| pb::Command {
            kind: Some(Kind::DenyIssuer(pb::DenyIssuer {
                cluster,
                fingerprint
            }))
        }),
        hostile_text().prop_map(|action| pb::Command {
            kind: Some(Kind::SetDefaultAccess(pb::SetDefaultAccess { action }))
        }),
        Just(pb::Command { kind: None }),
    ]
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        exercise(&bytes)?;
    }

    #[test]
    fn mutated_seeds_never_panic(
        seed in 0usize..64,
        ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..12),
    ) {
        let seeds = corpus();
        let bytes = mutate(seeds[seed % seeds.len()].1.clone(), &ops);
        exercise(&bytes)?;
    }
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn structured_garbage_is_refused_by_name(command in hostile_pb_command()) {
        let bytes = command.encode_to_vec();
        exercise(&bytes)?;
        if let Err(e) = wire::command_from_pb(command) {
            check_error(&e)?;
        }
    }
}

// === limits over the real API ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_limits_fire_with_a_clear_status_and_other_clusters_are_unaffected()
-> anyhow::Result<()> {
    let reg = support::TestRegistry::start(1, |c| {
        c.limits.max_exports_per_cluster = 3;
    })
    .await?;
    reg.leader(&reg.running(), Duration::from_secs(10)).await?;
    let west = reg.client(1);
    let east = reg.client_as(&reg.fed.identity("east"), 1);
    support::propose_retrying(
        &west,
        &Command::RegisterCluster(cluster("west")),
        Duration::from_secs(5),
    )
    .await?;
    support::propose_retrying(
        &east,
        &Command::RegisterCluster(cluster("east")),
        Duration::from_secs(5),
    )
    .await?;
    for i in 0..3 {
        west.propose(&Command::PutExport(export(
            "west",
            &format!("shop/s{i}"),
            1,
        )))
        .await?;
    }
    let err = west
        .propose(&Command::PutExport(export("west", "shop/s3", 1)))
        .await
        .expect_err("a fourth export was accepted");
    assert_eq!(err.code(), Some(Code::ResourceExhausted), "{err}");
    assert!(
        err.to_string()
            .contains("cluster west has 3 exports already"),
        "{err}"
    );
    // East's quota is its own.
    east.propose(&Command::PutExport(export("east", "shop/s0", 1)))
        .await?;

    // Label sizes: a key and a value one byte over the limit, and too many labels.
    let limits = Limits::default();
    let mut long_key = export("west", "shop/s0", 1);
    long_key.labels = BTreeMap::from([("k".repeat(limits.max_label_key_len + 1), "v".into())]);
    let mut long_value = export("west", "shop/s0", 1);
    long_value.labels = BTreeMap::from([("k".into(), "v".repeat(limits.max_label_value_len + 1))]);
    let mut many = export("west", "shop/s0", 1);
    many.labels = (0..=limits.max_labels)
        .map(|i| (format!("k{i}"), "v".into()))
        .collect();
    for (bad, needle) in [
        (long_key, "export.labels"),
        (long_value, "export.labels[k]"),
        (many, "labels; at most"),
    ] {
        let err = west
            .propose(&Command::PutExport(bad))
            .await
            .expect_err("oversized labels accepted");
        assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
        let text = err.to_string();
        assert!(text.contains(needle), "{text} lacks {needle}");
        assert!(text.len() < 1024, "error of {} bytes", text.len());
    }

    // A message over the API's size bound is refused before it is decoded.
    let mut huge = export("west", "shop/s0", 1);
    huge.labels = BTreeMap::from([(
        "k".into(),
        "v".repeat(causeway_registry::MAX_API_MESSAGE_BYTES + 1),
    )]);
    let err = west
        .propose(&Command::PutExport(huge))
        .await
        .expect_err("oversized message accepted");
    assert_eq!(err.code(), Some(Code::OutOfRange), "{err}");
    assert!(
        err.to_string().contains("message limit of 8388608 bytes"),
        "{err}"
    );
    // And everyone is still served.
    east.propose(&Command::PutExport(export("east", "shop/s1", 1)))
        .await?;
    assert_eq!(reg.servers[&1].node().read_local(|c| c.export_count()), 5);
    Ok(())
}
