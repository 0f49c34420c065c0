//! The leader's sweep of gone replicas, on a real member: a replica whose registry
//! member the leader does not hear from leaves its cluster's list once the grace
//! period has passed, and a cluster none of whose gateways is heard loses its
//! exports.

mod support;

use std::time::{Duration, Instant};

use causeway_registry::{ClusterRecord, Command, MemberIds};
use support::{TestRegistry, eventually};

fn replica(cluster: &str, name: &str) -> ClusterRecord {
    ClusterRecord {
        identity: format!("spiffe://causeway.local/cluster/{cluster}/gateway/{name}")
            .parse()
            .unwrap(),
        registry_addr: format!("127.0.0.1:{}", 15444 + name.len()),
        ..support::cluster(cluster)
    }
}

#[tokio::test]
async fn unheard_replicas_leave_the_list_and_a_silent_clusters_exports_go() -> anyhow::Result<()> {
    let grace = Duration::from_millis(800);
    let reg = TestRegistry::start(1, |c| {
        c.replica_grace = grace;
        // The sweep maps replicas to members by their derived ids.
        c.member_ids = MemberIds::OfCluster;
    })
    .await?;
    reg.leader(&[1], Duration::from_secs(10)).await?;
    let node = reg.servers[&1].node().clone();
    // The members of east's replicas a and b never joined: the leader hears neither.
    let registered = Instant::now();
    for name in ["a", "b"] {
        node.propose(&Command::RegisterCluster(replica("east", name)))
            .await?;
    }
    let listed = || {
        node.read_local(|catalog| {
            let east = catalog.cluster(&"east".parse().unwrap())?;
            Some(
                east.value
                    .replicas
                    .iter()
                    .filter_map(|r| r.name.as_ref().map(ToString::to_string))
                    .collect::<Vec<_>>(),
            )
        })
    };
    node.propose(&Command::PutExport(support::export("east", "shop/web", 1)))
        .await?;
    assert_eq!(listed(), Some(vec!["a".to_owned(), "b".to_owned()]));
    eventually(
        Duration::from_secs(20),
        "east lists one replica",
        || async { (listed()? == ["a"]).then_some(()) },
    )
    .await?;
    assert!(
        registered.elapsed() >= grace,
        "swept within the grace period ({:?})",
        registered.elapsed()
    );
    // Neither replica is heard: east as a whole is gone, and its export with it.
    eventually(
        Duration::from_secs(20),
        "east's export withdrawn",
        || async {
            let cluster = "east".parse().unwrap();
            node.read_local(|c| c.cluster_exports(&cluster).next().is_none())
                .then_some(())
        },
    )
    .await?;
    assert_eq!(
        listed(),
        Some(vec!["a".to_owned()]),
        "east stays registered"
    );
    // That the last replica stays however long it is unheard is the rule's unit test
    // (`sweep.rs`): here it would take a sleep to show that nothing happens.
    Ok(())
}
