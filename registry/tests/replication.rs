//! Replication over real gRPC + mutual TLS: writes on any member are visible on all,
//! leader failover, minority partitions, membership changes.

mod support;

use std::time::{Duration, Instant};

use causeway_registry::{Command, ReadConsistency};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_any_member_are_visible_on_all() -> anyhow::Result<()> {
    let reg = TestRegistry::start(3, |_| {}).await?;
    let all = reg.running();
    reg.leader(&all, Duration::from_secs(10)).await?;
    let c1 = reg.client(1);
    propose_retrying(
        &c1,
        &Command::RegisterCluster(cluster("west")),
        Duration::from_secs(5),
    )
    .await?;
    let mut last = 0;
    for (i, id) in all.iter().enumerate() {
        let client = reg.client(*id);
        last = client
            .propose(&Command::PutExport(export(
                "west",
                &format!("shop/svc{i}"),
                i as u32,
            )))
            .await?
            .0;
    }
    for id in &all {
        let client = reg.client(*id);
        for i in 0..all.len() {
            let e = get_export(
                &client,
                "west",
                &format!("shop/svc{i}"),
                ReadConsistency::Linearizable,
            )
            .await?
            .expect("export replicated");
            assert_eq!(e.endpoints, i as u32);
        }
    }
    reg.converged(&all, last, Duration::from_secs(5)).await?;
    let states = reg.states(&all);
    assert!(states.windows(2).all(|w| w[0] == w[1]), "members differ");
    let status = reg.client(2).status().await?;
    assert!(status.fault_tolerant);
    assert_eq!(status.members.iter().filter(|m| m.voter).count(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_replicate_and_a_killed_leader_is_replaced() -> anyhow::Result<()> {
    let mut reg = TestRegistry::start(5, |_| {}).await?;
    let all = reg.running();
    let leader = reg.leader(&all, Duration::from_secs(10)).await?;
    let c = reg.client(3);
    propose_retrying(
        &c,
        &Command::RegisterCluster(cluster("west")),
        Duration::from_secs(5),
    )
    .await?;
    let before = c
        .propose(&Command::PutExport(export("west", "shop/a", 1)))
        .await?;
    reg.converged(&all, before.0, Duration::from_secs(5))
        .await?;

    reg.kill(leader).await;
    let killed_at = Instant::now();
    let survivors = reg.running();
    let new_leader = reg.leader(&survivors, Duration::from_secs(2)).await?;
    assert_ne!(new_leader, leader);
    eprintln!("new leader after {:?}", killed_at.elapsed());

    let writer = reg.client(survivors[0]);
    let after = propose_retrying(
        &writer,
        &Command::PutExport(export("west", "shop/b", 2)),
        Duration::from_secs(5),
    )
    .await?;
    assert!(after > before.0);
    reg.converged(&survivors, after, Duration::from_secs(5))
        .await?;
    let states = reg.states(&survivors);
    assert!(states.windows(2).all(|w| w[0] == w[1]), "members differ");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_cannot_commit_and_healing_converges() -> anyhow::Result<()> {
    let reg = TestRegistry::start(5, |_| {}).await?;
    let all = reg.running();
    let leader = reg.leader(&all, Duration::from_secs(10)).await?;
    let c = reg.client(1);
    propose_retrying(
        &c,
        &Command::RegisterCluster(cluster("west")),
        Duration::from_secs(5),
    )
    .await?;

    // The old leader and one follower end up on the small side.
    let follower = *all.iter().find(|id| **id != leader).unwrap();
    let minority = [leader, follower];
    let majority: Vec<u64> = all
        .iter()
        .copied()
        .filter(|id| !minority.contains(id))
        .collect();
    reg.switch.partition(&minority, &majority);

    let refused = reg
        .client(follower)
        .propose(&Command::PutExport(export("west", "shop/minority", 1)))
        .await;
    assert!(refused.is_err(), "a minority committed: {refused:?}");

    let new_leader = reg.leader(&majority, Duration::from_secs(10)).await?;
    assert!(majority.contains(&new_leader));
    let committed = propose_retrying(
        &reg.client(majority[0]),
        &Command::PutExport(export("west", "shop/majority", 3)),
        Duration::from_secs(5),
    )
    .await?;

    reg.switch.heal();
    reg.converged(&all, committed, Duration::from_secs(10))
        .await?;
    let last = propose_retrying(
        &reg.client(follower),
        &Command::PutExport(export("west", "shop/after", 1)),
        Duration::from_secs(5),
    )
    .await?;
    reg.converged(&all, last, Duration::from_secs(10)).await?;
    let states = reg.states(&all);
    assert!(
        states.windows(2).all(|w| w[0] == w[1]),
        "members differ after healing"
    );
    for id in &all {
        let client = reg.client(*id);
        assert!(
            get_export(&client, "west", "shop/majority", ReadConsistency::Local)
                .await?
                .is_some()
        );
        assert!(
            get_export(&client, "west", "shop/minority", ReadConsistency::Local)
                .await?
                .is_none()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_as_learners_get_promoted_and_leave() -> anyhow::Result<()> {
    let mut reg = TestRegistry::start(3, |_| {}).await?;
    let all = reg.running();
    reg.leader(&all, Duration::from_secs(10)).await?;
    let c = reg.client(2);
    propose_retrying(
        &c,
        &Command::RegisterCluster(cluster("west")),
        Duration::from_secs(5),
    )
    .await?;
    let rev = c
        .propose(&Command::PutExport(export("west", "shop/web", 1)))
        .await?;

    let addr = reg.add_joiner(4).await?;
    let members = c.join(4, &addr.to_string()).await?;
    assert!(members.iter().any(|m| m.id == 4), "{members:?}");
    eventually(
        Duration::from_secs(10),
        "member 4 to become a voter",
        || async {
            let s = c.status().await.ok()?;
            s.members.iter().any(|m| m.id == 4 && m.voter).then_some(())
        },
    )
    .await?;
    reg.converged(&[4], rev.0, Duration::from_secs(5)).await?;
    assert_eq!(reg.states(&[1]), reg.states(&[4]));

    // Member 4 leaves; then member 3 dies and an operator removes it.
    c.leave(4).await?;
    reg.kill(3).await;
    eventually(
        Duration::from_secs(10),
        "member 3 to be removed",
        || async { c.leave(3).await.ok() },
    )
    .await?;
    let status = eventually(Duration::from_secs(10), "two voters", || async {
        let s = c.status().await.ok()?;
        (s.members.len() == 2).then_some(s)
    })
    .await?;
    assert!(!status.fault_tolerant, "two voters cannot lose one");
    let after = propose_retrying(
        &c,
        &Command::PutExport(export("west", "shop/api", 1)),
        Duration::from_secs(5),
    )
    .await?;
    assert!(after > rev.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_member_registry_works() -> anyhow::Result<()> {
    let reg = TestRegistry::start(1, |_| {}).await?;
    reg.leader(&[1], Duration::from_secs(10)).await?;
    let c = reg.client(1);
    propose_retrying(
        &c,
        &Command::RegisterCluster(cluster("west")),
        Duration::from_secs(5),
    )
    .await?;
    let rev = c
        .propose(&Command::PutExport(export("west", "shop/web", 4)))
        .await?;
    let got = get_export(&c, "west", "shop/web", ReadConsistency::Linearizable).await?;
    assert_eq!(got.map(|e| e.endpoints), Some(4));
    let status = c.status().await?;
    assert_eq!(status.revision, rev);
    assert!(!status.fault_tolerant);
    assert_eq!(status.role, "leader");
    Ok(())
}
