//! A cluster's gateway replicas in its record: put by each replica's registration,
//! taken off one at a time, never below one.

use super::*;

fn replica(cluster_name: &str, replica: &str, port: u16) -> ClusterRecord {
    let mut record = cluster(cluster_name);
    record.identity = format!("spiffe://causeway.local/cluster/{cluster_name}/gateway/{replica}")
        .parse()
        .unwrap();
    record.gateway_addrs = vec![format!("127.0.0.1:{port}")];
    record
}

fn listed(catalog: &Catalog, cluster: &str) -> Vec<(String, String)> {
    catalog
        .cluster(&cluster.parse().unwrap())
        .unwrap()
        .value
        .replicas
        .iter()
        .map(|r| {
            let name = r.name.as_ref().map_or("-".into(), ToString::to_string);
            (name, r.gateway_addrs[0].clone())
        })
        .collect()
}

fn remove(cluster: &str, replica: &str) -> Command {
    Command::RemoveReplica {
        cluster: cluster.parse().unwrap(),
        replica: Some(replica.parse().unwrap()),
    }
}

#[test]
fn each_registration_puts_its_replica_and_keeps_the_others() {
    let mut c = Catalog::new(Limits::default());
    c.apply(&Command::RegisterCluster(replica("east", "b", 2)))
        .unwrap();
    c.apply(&Command::RegisterCluster(replica("east", "a", 1)))
        .unwrap();
    let change = c
        .apply(&Command::RegisterCluster(replica("east", "b", 3)))
        .unwrap();
    let want = vec![
        ("a".into(), "127.0.0.1:1".into()),
        ("b".into(), "127.0.0.1:3".into()),
    ];
    assert_eq!(listed(&c, "east"), want, "ordered by name, b moved");
    let Change::ClusterPut(put) = &change.changes[0] else {
        panic!("{change:?}")
    };
    assert_eq!(put.replicas.len(), 2, "watchers see the whole list");
}

#[test]
fn a_replica_is_taken_off_but_never_the_last() {
    let mut c = Catalog::new(Limits::default());
    for (name, port) in [("a", 1), ("b", 2)] {
        c.apply(&Command::RegisterCluster(replica("east", name, port)))
            .unwrap();
    }
    c.apply(&Command::PutExport(export("east", "shop/web", 1)))
        .unwrap();
    c.apply(&remove("east", "a")).unwrap();
    assert_eq!(listed(&c, "east"), vec![("b".into(), "127.0.0.1:2".into())]);
    assert_eq!(c.export_count(), 1, "the cluster's exports stay");
    let err = c.apply(&remove("east", "b")).unwrap_err();
    assert!(err.to_string().contains("last replica"), "{err}");
    let err = c.apply(&remove("east", "a")).unwrap_err();
    assert!(matches!(err, CommandError::NotFound { .. }), "{err}");
    let err = c.apply(&remove("west", "a")).unwrap_err();
    assert!(matches!(err, CommandError::NotFound { .. }), "{err}");
}

#[test]
fn replicas_per_cluster_are_bounded_and_a_registration_lists_none() {
    let limits = Limits {
        max_replicas_per_cluster: 2,
        ..Limits::default()
    };
    let mut c = Catalog::new(limits);
    for (name, port) in [("a", 1), ("b", 2)] {
        c.apply(&Command::RegisterCluster(replica("east", name, port)))
            .unwrap();
    }
    let err = c
        .apply(&Command::RegisterCluster(replica("east", "c", 3)))
        .unwrap_err();
    assert!(matches!(err, CommandError::LimitReached(_)), "{err}");
    c.apply(&Command::RegisterCluster(replica("east", "a", 4)))
        .expect("a listed replica may register again at the limit");
    let mut claimed = replica("east", "c", 3);
    claimed.replicas = vec![claimed.registering_replica()];
    let err = c.apply(&Command::RegisterCluster(claimed)).unwrap_err();
    assert!(err.to_string().contains("cluster.replicas"), "{err}");
}

#[test]
fn an_unnamed_gateway_is_one_replica_without_a_name() {
    let c = catalog_with(&["west"]);
    assert_eq!(
        listed(&c, "west"),
        vec![("-".into(), "west.example.net:15443".into())]
    );
}
