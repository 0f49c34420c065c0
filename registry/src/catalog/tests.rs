use std::collections::BTreeMap;

use super::*;
use causeway_policy::{
    AccessPolicy, PolicyAction, PolicyName, RoutingMode, TrafficPolicy, TrafficScope,
};

pub(crate) fn cluster(name: &str) -> ClusterRecord {
    ClusterRecord {
        name: name.parse().unwrap(),
        gateway_addrs: vec![format!("{name}.example.net:15443")],
        registry_addr: "127.0.0.1:15444".into(),
        identity: format!("spiffe://causeway.local/cluster/{name}/gateway")
            .parse()
            .unwrap(),
        joined_at_unix_ms: 1,
        trust_bundle: Vec::new(),
        issuer_fingerprint: None,
        replicas: Vec::new(),
        import_pools: Vec::new(),
        runtime_exports: None,
    }
}

pub(crate) fn export(cluster: &str, key: &str, endpoints: u32) -> Export {
    Export {
        cluster: cluster.parse().unwrap(),
        service: key.parse().unwrap(),
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Http,
            port: 8080,
        }],
        endpoints,
        labels: BTreeMap::from([("tier".into(), "front".into())]),
        weight: 100,
        slots: None,
    }
}

/// `e` with the slots the catalog gives it.
fn slotted(e: Export, service: u32, pinned: u32) -> Export {
    Export {
        slots: Some(crate::catalog::AddressSlots { service, pinned }),
        ..e
    }
}

fn policy(name: &str) -> AccessPolicy {
    AccessPolicy {
        name: name.parse().unwrap(),
        action: PolicyAction::Allow,
        from_clusters: vec!["east".parse().unwrap()],
        to_cluster: None,
        to_namespace: Some("shop".into()),
        to_service: None,
        to_labels: BTreeMap::new(),
        ports: Vec::new(),
    }
}

fn catalog_with(clusters: &[&str]) -> Catalog {
    let mut c = Catalog::new(Limits::default());
    for name in clusters {
        c.apply(&Command::RegisterCluster(cluster(name))).unwrap();
    }
    c
}

#[test]
fn every_applied_command_bumps_the_revision_and_stamps_keys() {
    let mut c = catalog_with(&["west"]);
    assert_eq!(c.revision(), Revision(1));
    let change = c
        .apply(&Command::PutExport(export("west", "shop/web", 3)))
        .unwrap();
    assert_eq!(change.revision, Revision(2));
    assert_eq!(
        change.changes,
        vec![Change::ExportPut(slotted(
            export("west", "shop/web", 3),
            0,
            1
        ))]
    );
    c.apply(&Command::PutPolicy(policy("p1"))).unwrap();
    let west = "west".parse().unwrap();
    let web: ServiceKey = "shop/web".parse().unwrap();
    assert_eq!(c.export(&west, &web).unwrap().mod_revision, Revision(2));
    assert_eq!(c.cluster(&west).unwrap().mod_revision, Revision(1));
    assert_eq!(
        c.policy(&"p1".parse().unwrap()).unwrap().mod_revision,
        Revision(3)
    );
    c.apply(&Command::PutExport(export("west", "shop/web", 5)))
        .unwrap();
    assert_eq!(c.export(&west, &web).unwrap().mod_revision, Revision(4));
    assert_eq!(c.export(&west, &web).unwrap().value.endpoints, 5);
    assert_eq!(c.export_count(), 1);
}

#[test]
fn rejected_commands_change_nothing() {
    let mut c = catalog_with(&["west"]);
    c.apply(&Command::PutExport(export("west", "shop/web", 1)))
        .unwrap();
    let before = c.snapshot();
    let bad = [
        Command::PutExport(export("east", "shop/web", 1)),
        Command::DeleteExport {
            cluster: "west".parse().unwrap(),
            service: "shop/api".parse().unwrap(),
        },
        Command::RemoveCluster {
            cluster: "east".parse().unwrap(),
        },
        Command::DeletePolicy {
            name: "nope".parse().unwrap(),
        },
        Command::PutExport(Export {
            ports: vec![],
            ..export("west", "shop/x", 1)
        }),
        Command::ReplaceClusterExports {
            cluster: "west".parse().unwrap(),
            exports: vec![export("east", "shop/web", 1)],
        },
    ];
    for command in &bad {
        assert!(c.apply(command).is_err(), "{command:?} accepted");
        assert_eq!(c.snapshot(), before, "{command:?} changed the catalog");
    }
}

#[test]
fn removing_a_cluster_drops_its_exports() {
    let mut c = catalog_with(&["west", "east"]);
    c.apply(&Command::PutExport(export("west", "shop/web", 1)))
        .unwrap();
    c.apply(&Command::PutExport(export("west", "shop/api", 1)))
        .unwrap();
    c.apply(&Command::PutExport(export("east", "shop/web", 1)))
        .unwrap();
    let change = c
        .apply(&Command::RemoveCluster {
            cluster: "west".parse().unwrap(),
        })
        .unwrap();
    assert_eq!(change.changes.len(), 3);
    assert!(matches!(
        change.changes.last(),
        Some(Change::ClusterDeleted { .. })
    ));
    assert_eq!(c.export_count(), 1);
    assert_eq!(c.clusters().count(), 1);
    assert!(c.exports().all(|e| e.value.cluster.as_str() == "east"));
}

#[test]
fn replace_cluster_exports_reports_only_differences() {
    let mut c = catalog_with(&["west"]);
    c.apply(&Command::PutExport(export("west", "shop/web", 1)))
        .unwrap();
    c.apply(&Command::PutExport(export("west", "shop/old", 1)))
        .unwrap();
    let change = c
        .apply(&Command::ReplaceClusterExports {
            cluster: "west".parse().unwrap(),
            exports: vec![export("west", "shop/web", 1), export("west", "shop/new", 2)],
        })
        .unwrap();
    assert_eq!(change.revision, Revision(4));
    assert_eq!(
        change.changes,
        vec![
            // Placed before shop/old gives its slots back: no address changes
            // service within one command.
            Change::ExportPut(slotted(export("west", "shop/new", 2), 4, 5)),
            Change::ExportDeleted {
                cluster: "west".parse().unwrap(),
                service: "shop/old".parse().unwrap()
            },
        ]
    );
    let west = "west".parse().unwrap();
    // The unchanged export keeps its revision.
    assert_eq!(
        c.export(&west, &"shop/web".parse().unwrap())
            .unwrap()
            .mod_revision,
        Revision(2)
    );
    assert_eq!(c.export_count(), 2);
}

#[test]
fn slots_are_shared_per_service_kept_on_change_and_survive_a_snapshot() {
    let mut c = catalog_with(&["west", "east"]);
    let slots = |c: &Catalog, cluster: &str, key: &str| {
        let cluster = cluster.parse().unwrap();
        c.export(&cluster, &key.parse().unwrap())
            .and_then(|e| e.value.slots)
            .unwrap()
    };
    c.apply(&Command::PutExport(export("west", "shop/web", 1)))
        .unwrap();
    c.apply(&Command::PutExport(export("east", "shop/web", 1)))
        .unwrap();
    let (west, east) = (slots(&c, "west", "shop/web"), slots(&c, "east", "shop/web"));
    assert_eq!(west.service, east.service, "one slot per service");
    assert_ne!(west.pinned, east.pinned);
    // A changed export (more endpoints) keeps its slots, whatever the proposer sent.
    let mut changed = slotted(export("west", "shop/web", 5), 900, 901);
    c.apply(&Command::PutExport(changed.clone())).unwrap();
    assert_eq!(slots(&c, "west", "shop/web"), west);
    changed.endpoints = 6;
    c.apply(&Command::ReplaceClusterExports {
        cluster: "west".parse().unwrap(),
        exports: vec![changed],
    })
    .unwrap();
    assert_eq!(slots(&c, "west", "shop/web"), west);
    // A member that loads a snapshot hands out the same slots as one that applied the log.
    c.apply(&Command::DeleteExport {
        cluster: "west".parse().unwrap(),
        service: "shop/web".parse().unwrap(),
    })
    .unwrap();
    let mut loaded = Catalog::from_snapshot(c.snapshot(), Limits::default());
    for catalog in [&mut c, &mut loaded] {
        catalog
            .apply(&Command::PutExport(export("west", "shop/db", 1)))
            .unwrap();
    }
    assert_eq!(
        slots(&c, "west", "shop/db"),
        slots(&loaded, "west", "shop/db")
    );
    assert_eq!(
        slots(&c, "west", "shop/db").service,
        west.pinned,
        "the lowest free slot"
    );
}

#[test]
fn import_pools_are_bounded_and_must_be_cidr_blocks() {
    let limits = Limits::default();
    let mut record = cluster("west");
    record.import_pools = vec!["127.77.0.0/16".into(), "fd00:77::/64".into()];
    Command::RegisterCluster(record.clone())
        .validate(&limits)
        .unwrap();
    record.import_pools = vec!["127.77.0.0/16".into(), "banana".into()];
    let err = Command::RegisterCluster(record.clone())
        .validate(&limits)
        .unwrap_err();
    assert!(
        err.to_string().contains("cluster.import_pools[1]")
            && err.to_string().contains("not a CIDR block"),
        "{err}"
    );
    record.import_pools = vec!["10.0.0.0/8".into(); 3];
    let err = Command::RegisterCluster(record)
        .validate(&limits)
        .unwrap_err();
    assert!(err.to_string().contains("at most 2"), "{err}");
}

#[test]
fn validation_names_the_field() {
    let limits = Limits::default();
    let mut e = export("west", "shop/web", 1);
    e.ports.push(ServicePort {
        name: "http".into(),
        protocol: Protocol::Tcp,
        port: 9090,
    });
    let err = Command::PutExport(e).validate(&limits).unwrap_err();
    assert!(err.to_string().contains("export.ports[1].name"), "{err}");

    let mut e = export("west", "shop/web", 1);
    e.ports[0].port = 0;
    let err = Command::PutExport(e).validate(&limits).unwrap_err();
    assert!(err.to_string().contains("export.ports[0].port"), "{err}");

    let mut e = export("west", "shop/web", 1);
    e.labels.insert("bad key!".into(), "v".into());
    let err = Command::PutExport(e).validate(&limits).unwrap_err();
    assert!(err.to_string().contains("labels"), "{err}");

    let mut r = cluster("west");
    r.identity = "spiffe://causeway.local/cluster/east/gateway"
        .parse()
        .unwrap();
    let err = Command::RegisterCluster(r).validate(&limits).unwrap_err();
    assert!(err.to_string().contains("cluster.identity"), "{err}");

    let mut r = cluster("west");
    r.gateway_addrs = vec!["no port".into()];
    let err = Command::RegisterCluster(r).validate(&limits).unwrap_err();
    assert!(err.to_string().contains("gateway_addrs[0]"), "{err}");

    for ok in ["10.0.0.1:1", "[::1]:15443", "gw.west.example:15443"] {
        assert!(
            super::command::validate_host_port(ok, &limits).is_ok(),
            "{ok}"
        );
    }
    for bad in ["10.0.0.1", "host:0", ":80", "a..b:1", "-a:1", "x:70000"] {
        assert!(
            super::command::validate_host_port(bad, &limits).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn limits_are_enforced() {
    let limits = Limits {
        max_exports_per_cluster: 2,
        max_clusters: 1,
        ..Limits::default()
    };
    let mut c = Catalog::new(limits);
    c.apply(&Command::RegisterCluster(cluster("west"))).unwrap();
    assert!(matches!(
        c.apply(&Command::RegisterCluster(cluster("east"))),
        Err(CommandError::LimitReached(_))
    ));
    // Re-registering an existing cluster is a replacement, not a new one.
    c.apply(&Command::RegisterCluster(cluster("west"))).unwrap();
    c.apply(&Command::PutExport(export("west", "a/a", 1)))
        .unwrap();
    c.apply(&Command::PutExport(export("west", "a/b", 1)))
        .unwrap();
    assert!(matches!(
        c.apply(&Command::PutExport(export("west", "a/c", 1))),
        Err(CommandError::LimitReached(_))
    ));
    c.apply(&Command::PutExport(export("west", "a/b", 9)))
        .unwrap();
}

#[test]
fn snapshots_round_trip_through_serde() {
    let mut c = catalog_with(&["west", "east"]);
    c.apply(&Command::PutExport(export("west", "shop/web", 1)))
        .unwrap();
    c.apply(&Command::PutPolicy(policy("p"))).unwrap();
    let snap = c.snapshot();
    let json = serde_json::to_vec(&snap).unwrap();
    let back: CatalogSnapshot = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, snap);
    let restored = Catalog::from_snapshot(back, Limits::default());
    assert_eq!(restored.snapshot(), snap);
    assert_eq!(restored.export_count(), 1);
}

#[test]
fn names_parse_and_print() {
    let key: ServiceKey = "shop/web".parse().unwrap();
    assert_eq!(key.namespace(), "shop");
    assert_eq!(key.to_string(), "shop/web");
    for bad in ["shop", "Shop/web", "shop/", "/web", "a/b/c"] {
        assert!(bad.parse::<ServiceKey>().is_err(), "{bad}");
    }
    assert_eq!("grpc".parse::<Protocol>().unwrap(), Protocol::Grpc);
    assert!("sctp".parse::<Protocol>().is_err());
    assert_eq!("42".parse::<Revision>().unwrap(), Revision(42));
    assert!("p_1".parse::<PolicyName>().is_err());
}

// === access policy selectors, default access, issuer denylist ===

#[test]
fn policy_selectors_are_bounded_and_named() {
    let limits = Limits::default();
    let check = |p: AccessPolicy| Command::PutPolicy(p).validate(&limits);
    let mut p = policy("p");
    p.to_labels = BTreeMap::from([("tier".into(), "front".into())]);
    p.ports = vec![80, 443];
    check(p.clone()).unwrap();

    let mut bad = p.clone();
    bad.ports = vec![0];
    let err = check(bad).unwrap_err().to_string();
    assert!(err.contains("policy.ports: 0 is not a port"), "{err}");
    let mut bad = p.clone();
    bad.ports = vec![80, 80];
    assert!(
        check(bad)
            .unwrap_err()
            .to_string()
            .contains("policy.ports: 80 is listed twice")
    );
    let mut bad = p.clone();
    bad.ports = (1..=(limits.max_ports as u16 + 1)).collect();
    assert!(check(bad).unwrap_err().to_string().contains("policy.ports"));
    let mut bad = p.clone();
    bad.to_labels = (0..=causeway_policy::MAX_POLICY_LABELS)
        .map(|i| (format!("k{i}"), "v".into()))
        .collect();
    assert!(
        check(bad)
            .unwrap_err()
            .to_string()
            .contains("policy.to_labels")
    );
    let mut bad = p.clone();
    bad.to_labels = BTreeMap::from([("k".repeat(10_000), "v".into())]);
    let err = check(bad).unwrap_err().to_string();
    assert!(err.contains("policy.to_labels") && err.len() < 400, "{err}");
    let mut bad = p;
    bad.to_labels = BTreeMap::from([("k".into(), "v\n".into())]);
    assert!(
        check(bad)
            .unwrap_err()
            .to_string()
            .contains("policy.to_labels.k")
    );
}

#[test]
fn default_access_is_none_until_set_and_travels_in_changes_and_snapshots() {
    let mut c = catalog_with(&[]);
    assert_eq!(c.default_access(), None);
    let change = c
        .apply(&Command::SetDefaultAccess(PolicyAction::Deny))
        .unwrap();
    assert_eq!(
        change.changes,
        vec![Change::DefaultAccessSet {
            action: PolicyAction::Deny
        }]
    );
    assert_eq!(c.default_access(), Some(PolicyAction::Deny));
    c.apply(&Command::SetDefaultAccess(PolicyAction::Allow))
        .unwrap();
    let snap = c.snapshot();
    let restored = Catalog::from_snapshot(snap.clone(), Limits::default());
    assert_eq!(restored.default_access(), Some(PolicyAction::Allow));
    let json = serde_json::to_vec(&snap).unwrap();
    assert_eq!(
        serde_json::from_slice::<CatalogSnapshot>(&json).unwrap(),
        snap
    );
    // A command log entry in JSON (as tests and tools print them) round trips too.
    let cmd = Command::SetDefaultAccess(PolicyAction::Deny);
    let json = serde_json::to_string(&cmd).unwrap();
    assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), cmd);
}

#[test]
fn deny_issuer_removes_the_cluster_and_refuses_its_issuer_later() {
    let fp = "ab".repeat(32);
    let mut west = cluster("west");
    west.issuer_fingerprint = Some(fp.clone());
    let mut c = catalog_with(&["east"]);
    c.apply(&Command::RegisterCluster(west.clone())).unwrap();
    c.apply(&Command::PutExport(export("west", "shop/web", 1)))
        .unwrap();
    let deny = Command::DenyIssuer {
        cluster: "west".parse().unwrap(),
        fingerprint: fp.clone(),
    };
    let change = c.apply(&deny).unwrap();
    assert_eq!(
        change.changes,
        vec![
            Change::ExportDeleted {
                cluster: "west".parse().unwrap(),
                service: "shop/web".parse().unwrap()
            },
            Change::ClusterDeleted {
                cluster: "west".parse().unwrap()
            },
            Change::IssuerDenied(DeniedIssuer {
                cluster: "west".parse().unwrap(),
                fingerprint: fp.clone(),
                revision: change.revision,
            }),
        ]
    );
    assert!(c.cluster(&"west".parse().unwrap()).is_none());
    assert_eq!(c.export_count(), 0);
    assert!(c.is_issuer_denied(&fp));
    assert_eq!(c.denied_issuers().count(), 1);

    // The same issuer cannot register again; a new issuer for the name can.
    let err = c
        .apply(&Command::RegisterCluster(west.clone()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cluster.issuer_fingerprint") && err.contains(&fp),
        "{err}"
    );
    let mut relinked = west;
    relinked.issuer_fingerprint = Some("cd".repeat(32));
    c.apply(&Command::RegisterCluster(relinked)).unwrap();
    // Denying the old issuer again leaves the relinked cluster alone.
    let change = c.apply(&deny).unwrap();
    assert!(matches!(
        change.changes.as_slice(),
        [Change::IssuerDenied(_)]
    ));
    assert!(c.cluster(&"west".parse().unwrap()).is_some());

    let snap = c.snapshot();
    let restored = Catalog::from_snapshot(snap.clone(), Limits::default());
    assert!(restored.is_issuer_denied(&fp));
    let json = serde_json::to_vec(&snap).unwrap();
    assert_eq!(
        serde_json::from_slice::<CatalogSnapshot>(&json).unwrap(),
        snap
    );
}

#[test]
fn fingerprints_must_be_lowercase_sha256_hex() {
    let limits = Limits::default();
    for bad in [
        "",
        "AB".repeat(32).as_str(),
        &"a".repeat(63),
        &"z".repeat(64),
    ] {
        let deny = Command::DenyIssuer {
            cluster: "west".parse().unwrap(),
            fingerprint: bad.to_owned(),
        };
        let err = deny.validate(&limits).unwrap_err().to_string();
        assert!(err.contains("deny_issuer.fingerprint"), "{err}");
        let mut record = cluster("west");
        record.issuer_fingerprint = Some(bad.to_owned());
        let err = Command::RegisterCluster(record)
            .validate(&limits)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cluster.issuer_fingerprint"), "{err}");
    }
}

// === Traffic policies ===

fn traffic(owner: &str, service: &str, apply_to: TrafficScope) -> TrafficPolicyRecord {
    TrafficPolicyRecord {
        owner: owner.parse().unwrap(),
        service: service.parse().unwrap(),
        apply_to,
        policy: TrafficPolicy {
            routing: RoutingMode::Weighted,
            weights: BTreeMap::from([("west".parse().unwrap(), 90), ("east".parse().unwrap(), 10)]),
            idle_timeout: Some(std::time::Duration::from_secs(3600)),
            ..TrafficPolicy::default()
        },
    }
}

fn scope(clusters: &[&str]) -> TrafficScope {
    TrafficScope::Clusters(clusters.iter().map(|c| c.parse().unwrap()).collect())
}

#[test]
fn traffic_policies_are_kept_per_owner_and_service() {
    let mut c = catalog_with(&["west", "east"]);
    let canary = traffic("west", "shop/web", TrafficScope::All);
    let change = c.apply(&Command::PutTrafficPolicy(canary.clone())).unwrap();
    assert_eq!(
        change.changes,
        vec![Change::TrafficPolicyPut(canary.clone())]
    );
    // Another owner's policy for the same service is a record of its own.
    let local = traffic("east", "shop/web", scope(&["east"]));
    c.apply(&Command::PutTrafficPolicy(local.clone())).unwrap();
    assert_eq!(c.traffic_policy_count(), 2);
    let west = "west".parse().unwrap();
    let web: ServiceKey = "shop/web".parse().unwrap();
    let stored = c.traffic_policy(&west, &web).unwrap();
    assert_eq!((stored.mod_revision, &stored.value), (Revision(3), &canary));
    // A put replaces; the revision stamps it again.
    let mut pinned = canary.clone();
    pinned.policy = TrafficPolicy {
        routing: RoutingMode::Pinned,
        pinned: Some("east".parse().unwrap()),
        ..TrafficPolicy::default()
    };
    c.apply(&Command::PutTrafficPolicy(pinned.clone())).unwrap();
    assert_eq!(c.traffic_policy_count(), 2);
    assert_eq!(
        c.traffic_policy(&west, &web).unwrap().mod_revision,
        Revision(5)
    );
    let change = c
        .apply(&Command::DeleteTrafficPolicy {
            owner: west.clone(),
            service: web.clone(),
        })
        .unwrap();
    assert_eq!(
        change.changes,
        vec![Change::TrafficPolicyDeleted {
            owner: west.clone(),
            service: web.clone(),
        }]
    );
    assert!(c.traffic_policy(&west, &web).is_none());
    assert_eq!(c.traffic_policy_count(), 1);
    // Deleting what is not there is refused and changes nothing.
    let before = c.snapshot();
    let err = c
        .apply(&Command::DeleteTrafficPolicy {
            owner: west,
            service: web,
        })
        .unwrap_err();
    assert!(matches!(err, CommandError::NotFound { .. }), "{err}");
    assert_eq!(c.snapshot(), before);
}

#[test]
fn a_removed_cluster_takes_its_traffic_policies_along() {
    let mut c = catalog_with(&["west", "east"]);
    c.apply(&Command::PutTrafficPolicy(traffic(
        "west",
        "shop/web",
        TrafficScope::All,
    )))
    .unwrap();
    c.apply(&Command::PutTrafficPolicy(traffic(
        "east",
        "shop/web",
        TrafficScope::All,
    )))
    .unwrap();
    let change = c
        .apply(&Command::RemoveCluster {
            cluster: "west".parse().unwrap(),
        })
        .unwrap();
    assert!(change.changes.contains(&Change::TrafficPolicyDeleted {
        owner: "west".parse().unwrap(),
        service: "shop/web".parse().unwrap(),
    }));
    assert_eq!(c.traffic_policy_count(), 1);
    assert_eq!(
        c.traffic_policies().next().unwrap().value.owner.as_str(),
        "east"
    );
    // An unregistered owner may not declare one.
    let err = c
        .apply(&Command::PutTrafficPolicy(traffic(
            "west",
            "shop/web",
            TrafficScope::All,
        )))
        .unwrap_err();
    assert!(matches!(err, CommandError::NotFound { .. }), "{err}");
}

#[test]
fn traffic_policies_travel_in_snapshots() {
    let mut c = catalog_with(&["west", "east"]);
    c.apply(&Command::PutTrafficPolicy(traffic(
        "west",
        "shop/web",
        TrafficScope::All,
    )))
    .unwrap();
    c.apply(&Command::PutTrafficPolicy(traffic(
        "west",
        "shop/db",
        scope(&["east"]),
    )))
    .unwrap();
    c.apply(&Command::PutTrafficPolicy(traffic(
        "east",
        "shop/web",
        scope(&["east"]),
    )))
    .unwrap();
    let snapshot = c.snapshot();
    let owners: Vec<String> = snapshot
        .traffic_policies
        .iter()
        .map(|t| format!("{}:{}", t.value.owner, t.value.service))
        .collect();
    assert_eq!(owners, ["east:shop/web", "west:shop/db", "west:shop/web"]);
    let json = serde_json::to_string(&snapshot).unwrap();
    let back: CatalogSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snapshot);
    let restored = Catalog::from_snapshot(back, Limits::default());
    assert_eq!(restored.snapshot(), snapshot);
    assert_eq!(restored.traffic_policy_count(), 3);
    // A snapshot written before traffic policies existed still loads.
    let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
    old.as_object_mut().unwrap().remove("traffic_policies");
    let old: CatalogSnapshot = serde_json::from_value(old).unwrap();
    assert!(old.traffic_policies.is_empty());
}

#[test]
fn traffic_policy_records_are_validated_by_field() {
    let mut c = catalog_with(&["west"]);
    let invalid = |record: TrafficPolicyRecord| match Command::PutTrafficPolicy(record)
        .validate(&Limits::default())
    {
        Err(CommandError::Invalid { field, reason }) => format!("{field}: {reason}"),
        other => panic!("not refused by field: {other:?}"),
    };
    let mut bad = traffic("west", "shop/web", TrafficScope::All);
    bad.policy.retries.attempts = 0;
    let err = invalid(bad);
    assert!(
        err.starts_with("traffic_policy.policy.retries.attempts:"),
        "{err}"
    );
    let mut bad = traffic("west", "shop/web", TrafficScope::All);
    bad.policy.idle_timeout = Some(std::time::Duration::from_micros(1_500_500));
    let err = invalid(bad);
    assert!(
        err.starts_with("traffic_policy.policy.idle_timeout:"),
        "{err}"
    );
    assert!(err.contains("milliseconds"), "{err}");
    let err = invalid(traffic("west", "shop/web", scope(&[])));
    assert!(err.starts_with("traffic_policy.apply_to:"), "{err}");
    let err = invalid(traffic(
        "west",
        "shop/web",
        scope(&["east", "north", "east"]),
    ));
    assert!(err.starts_with("traffic_policy.apply_to[2]:"), "{err}");
    let many: Vec<String> = (0..257).map(|i| format!("c{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let err = invalid(traffic("west", "shop/web", scope(&many)));
    assert!(err.contains("257 clusters; at most 256"), "{err}");
    // Whole milliseconds are fine, and nothing refused reached the catalog.
    let mut ok = traffic("west", "shop/web", scope(&["east"]));
    ok.policy.idle_timeout = Some(std::time::Duration::from_millis(1_500));
    c.apply(&Command::PutTrafficPolicy(ok)).unwrap();
    assert_eq!(c.traffic_policy_count(), 1);
}

#[test]
fn traffic_policy_limits_hold_per_owner_and_in_total() {
    let limits = Limits {
        max_exports_per_cluster: 2,
        max_traffic_policies: 3,
        ..Limits::default()
    };
    let mut c = Catalog::new(limits);
    for name in ["west", "east"] {
        c.apply(&Command::RegisterCluster(cluster(name))).unwrap();
    }
    let put = |owner: &str, service: &str| {
        Command::PutTrafficPolicy(traffic(owner, service, TrafficScope::All))
    };
    c.apply(&put("west", "shop/a")).unwrap();
    c.apply(&put("west", "shop/b")).unwrap();
    let err = c.apply(&put("west", "shop/c")).unwrap_err().to_string();
    assert!(err.contains("cluster west has 2 traffic policies"), "{err}");
    // Replacing an existing record is not a new one.
    c.apply(&put("west", "shop/b")).unwrap();
    c.apply(&put("east", "shop/a")).unwrap();
    let err = c.apply(&put("east", "shop/b")).unwrap_err().to_string();
    assert!(err.contains("holds 3 traffic policies"), "{err}");
    assert_eq!(c.traffic_policy_count(), 3);
}

#[test]
fn traffic_scopes_parse_and_print() {
    assert_eq!(TrafficScope::from_strings(&["*"]), Ok(TrafficScope::All));
    assert_eq!(
        TrafficScope::from_strings(&["east", "north"]),
        Ok(scope(&["east", "north"]))
    );
    assert_eq!(TrafficScope::from_strings(&["east", "*"]).unwrap_err().0, 1);
    assert_eq!(
        TrafficScope::from_strings(&["east", "No"]).unwrap_err().0,
        1
    );
    assert!(TrafficScope::All.includes(&"east".parse().unwrap()));
    assert!(!scope(&["north"]).includes(&"east".parse().unwrap()));
    assert_eq!(scope(&["east", "north"]).to_string(), "east,north");
    let json = serde_json::to_string(&TrafficScope::All).unwrap();
    assert_eq!(json, r#"["*"]"#);
    assert!(serde_json::from_str::<TrafficScope>(r#"["*","east"]"#).is_err());
}

mod replicas;
mod runtime;
