//! A cluster's runtime exports in its record: put and deleted one at a time through
//! any replica, kept across registrations, bounded and validated.

use super::*;

fn runtime(cluster: &str, key: &str) -> RuntimeExport {
    RuntimeExport {
        export: export(cluster, key, 2),
        endpoints: vec!["10.0.0.5".into(), "fd00::5".into()],
        target_ports: vec![9090],
    }
}

fn listed(catalog: &Catalog, cluster: &str) -> Option<Vec<String>> {
    let record = catalog.cluster(&cluster.parse().unwrap()).unwrap();
    let list = record.value.runtime_exports.as_ref()?;
    Some(list.iter().map(|r| r.export.service.to_string()).collect())
}

fn delete(cluster: &str, key: &str) -> Command {
    Command::DeleteRuntimeExport {
        cluster: cluster.parse().unwrap(),
        service: key.parse().unwrap(),
    }
}

#[test]
fn runtime_exports_are_the_clusters_and_outlive_registrations() {
    let mut c = Catalog::new(Limits::default());
    c.apply(&Command::RegisterCluster(cluster("east"))).unwrap();
    assert_eq!(listed(&c, "east"), None, "never set");

    let mut web = runtime("east", "shop/web");
    web.export.slots = Some(AddressSlots {
        service: 7,
        pinned: 7,
    });
    let change = c.apply(&Command::PutRuntimeExport(web.clone())).unwrap();
    assert!(matches!(&change.changes[..], [Change::ClusterPut(r)] if r.runtime_exports.is_some()));
    c.apply(&Command::PutRuntimeExport(runtime("east", "shop/api")))
        .unwrap();
    assert_eq!(
        listed(&c, "east"),
        Some(vec!["shop/api".into(), "shop/web".into()]),
        "ordered by service"
    );
    let record = &c.cluster(&"east".parse().unwrap()).unwrap().value;
    let stored = &record.runtime_exports.as_ref().unwrap()[1];
    assert_eq!(stored.export.slots, None, "a proposer's slots are dropped");
    assert_eq!(stored.endpoints, web.endpoints);

    // A replica's registration carries none, and keeps the stored list.
    c.apply(&Command::RegisterCluster(cluster("east"))).unwrap();
    assert_eq!(listed(&c, "east").unwrap().len(), 2);

    c.apply(&delete("east", "shop/web")).unwrap();
    c.apply(&delete("east", "shop/api")).unwrap();
    assert_eq!(listed(&c, "east"), Some(vec![]), "set, and empty");
    let err = c.apply(&delete("east", "shop/api")).unwrap_err();
    assert!(matches!(err, CommandError::NotFound { .. }), "{err}");

    // The cluster's leaving takes them with it.
    c.apply(&Command::PutRuntimeExport(runtime("east", "shop/web")))
        .unwrap();
    c.apply(&Command::RemoveCluster {
        cluster: "east".parse().unwrap(),
    })
    .unwrap();
    let err = c
        .apply(&Command::PutRuntimeExport(runtime("east", "shop/web")))
        .unwrap_err();
    assert!(matches!(err, CommandError::NotFound { .. }), "{err}");
}

#[test]
fn bad_runtime_exports_are_refused_with_the_field_named() {
    let limits = Limits {
        max_runtime_exports_per_cluster: 1,
        ..Limits::default()
    };
    let mut c = Catalog::new(limits);
    c.apply(&Command::RegisterCluster(cluster("east"))).unwrap();
    let refused = |c: &mut Catalog, r: RuntimeExport| {
        c.apply(&Command::PutRuntimeExport(r))
            .unwrap_err()
            .to_string()
    };
    let mut bad = runtime("east", "shop/web");
    bad.endpoints = vec!["10.0.0.300".into()];
    assert!(refused(&mut c, bad).contains("runtime_export.endpoints[0]"));
    let mut bad = runtime("east", "shop/web");
    bad.endpoints.clear();
    assert!(refused(&mut c, bad).contains("runtime_export.endpoints"));
    let mut bad = runtime("east", "shop/web");
    bad.target_ports = vec![9090, 9091];
    assert!(refused(&mut c, bad).contains("2 target ports for 1 ports"));
    let mut bad = runtime("east", "shop/web");
    bad.target_ports = vec![0];
    assert!(refused(&mut c, bad).contains("runtime_export.target_ports[0]"));
    let mut bad = runtime("east", "shop/web");
    bad.export.ports.clear();
    assert!(refused(&mut c, bad).contains("runtime_export.export.ports"));

    c.apply(&Command::PutRuntimeExport(runtime("east", "shop/web")))
        .unwrap();
    c.apply(&Command::PutRuntimeExport(runtime("east", "shop/web")))
        .expect("a replacement is not a new one");
    let full = refused(&mut c, runtime("east", "shop/api"));
    assert!(full.contains("1 runtime exports already"), "{full}");

    let mut registration = cluster("east");
    registration.runtime_exports = Some(vec![]);
    let err = c
        .apply(&Command::RegisterCluster(registration))
        .unwrap_err();
    assert!(err.to_string().contains("cluster.runtime_exports"), "{err}");
}
