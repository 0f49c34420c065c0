//! Crashes and restarts: acknowledged writes survive, restarted members catch up from
//! their redb files, and a member that was down across compaction gets a snapshot.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use causeway_registry::{Command, ReadConsistency};
use support::*;

/// Three members, their leader, and a client of a follower through which cluster
/// west is registered.
async fn west_through_a_follower(
    tweak: impl Fn(&mut causeway_registry::NodeConfig),
) -> anyhow::Result<(TestRegistry, u64, causeway_registry::RegistryClient)> {
    let reg = TestRegistry::start(3, tweak).await?;
    let all = reg.running();
    let leader = reg.leader(&all, Duration::from_secs(10)).await?;
    let follower = *all.iter().find(|id| **id != leader).unwrap();
    let client = reg.client(follower);
    let register = Command::RegisterCluster(cluster("west"));
    propose_retrying(&client, &register, Duration::from_secs(5)).await?;
    Ok((reg, leader, client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_leader_crash() -> anyhow::Result<()> {
    let (mut reg, leader, client) = west_through_a_follower(|_| {}).await?;
    let all = reg.running();

    // Eight writers, each putting its own keys, record what was acknowledged.
    let acked: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut writers = Vec::new();
    for w in 0..8u32 {
        let client = client.clone();
        let acked = acked.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..10_000u32 {
                let service = format!("w{w}/s{i}");
                let command = Command::PutExport(export("west", &service, i));
                tokio::select! {
                    _ = stop.notified() => return,
                    result = client.propose(&command) => {
                        if result.is_ok() {
                            acked.lock().unwrap().insert(service, i);
                        }
                    }
                }
            }
        }));
    }
    eventually(
        Duration::from_secs(10),
        "some acknowledged writes",
        || async { (acked.lock().unwrap().len() >= 50).then_some(()) },
    )
    .await?;
    reg.kill(leader).await;
    let before_restart = acked.lock().unwrap().len();
    eventually(Duration::from_secs(10), "writes to resume", || async {
        (acked.lock().unwrap().len() >= before_restart + 50).then_some(())
    })
    .await?;
    reg.restart(leader).await?;
    let after_restart = acked.lock().unwrap().len();
    eventually(
        Duration::from_secs(10),
        "writes after the restart",
        || async { (acked.lock().unwrap().len() >= after_restart + 50).then_some(()) },
    )
    .await?;
    stop.notify_waiters();
    for w in writers {
        w.abort();
        let _ = w.await;
    }

    let revision = client.status().await?.revision.0;
    reg.converged(&all, revision, Duration::from_secs(10))
        .await?;
    let acked = acked.lock().unwrap().clone();
    for id in &all {
        let state = reg.servers[id].node().read_local(|c| c.snapshot());
        let exports: BTreeMap<String, u32> = state
            .exports
            .iter()
            .map(|e| (e.value.service.to_string(), e.value.endpoints))
            .collect();
        for (service, endpoints) in &acked {
            assert_eq!(
                exports.get(service),
                Some(endpoints),
                "member {id} lost acknowledged write {service}"
            );
        }
    }
    // Proposals still in flight when the writers stopped may land later; the members
    // must end up identical.
    eventually(Duration::from_secs(10), "identical members", || async {
        let states = reg.states(&all);
        states.windows(2).all(|w| w[0] == w[1]).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_down_across_compaction_catches_up_by_snapshot() -> anyhow::Result<()> {
    let mut reg = TestRegistry::start(3, |c| {
        c.snapshot_threshold = 20;
        c.snapshot_keep_entries = 5;
    })
    .await?;
    let all = reg.running();
    let leader = reg.leader(&all, Duration::from_secs(10)).await?;
    let down = *all.iter().find(|id| **id != leader).unwrap();
    let client = reg.client(leader);
    propose_retrying(
        &client,
        &Command::RegisterCluster(cluster("west")),
        Duration::from_secs(5),
    )
    .await?;
    let rev = client
        .propose(&Command::PutExport(export("west", "shop/first", 1)))
        .await?;
    reg.converged(&[down], rev.0, Duration::from_secs(5))
        .await?;
    let down_applied = reg.servers[&down].node().status().await?.applied_index;
    reg.kill(down).await;

    let mut last = rev.0;
    for i in 0..100u32 {
        last = client
            .propose(&Command::PutExport(export(
                "west",
                &format!("shop/s{i}"),
                i,
            )))
            .await?
            .0;
    }
    let leader_status = client.status().await?;
    assert!(
        leader_status.first_index > down_applied + 1,
        "the leader's log still reaches back to {}: {leader_status:?}",
        down_applied + 1
    );

    reg.restart(down).await?;
    reg.converged(&all, last, Duration::from_secs(10)).await?;
    let status = reg.servers[&down].node().status().await?;
    assert!(
        status.snapshot_index > down_applied,
        "member {down} did not install a snapshot: {status:?}"
    );
    let states = reg.states(&all);
    assert!(states.windows(2).all(|w| w[0] == w[1]), "members differ");
    let got = get_export(
        &reg.client(down),
        "west",
        "shop/s99",
        ReadConsistency::Local,
    )
    .await?;
    assert_eq!(got.map(|e| e.endpoints), Some(99));

    // It restarts again from its own snapshot and log.
    reg.kill(down).await;
    reg.restart(down).await?;
    reg.converged(&[down], last, Duration::from_secs(10))
        .await?;
    assert_eq!(reg.states(&[down]), reg.states(&[leader]));
    Ok(())
}

/// A write a follower forwarded to a leader that died is proposed again as soon as
/// a new leader is known: it is answered after the election, not after the request
/// timeout (set far beyond the deadline here, so waiting for it fails the test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_forwarded_to_a_dead_leader_is_proposed_again_to_the_next() -> anyhow::Result<()> {
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
    let (mut reg, leader, client) =
        west_through_a_follower(|c| c.request_timeout = REQUEST_TIMEOUT).await?;
    // The follower names the dead leader until its election timeout passes: a
    // write it takes now is forwarded there and lost with it.
    reg.kill(leader).await;
    let command = Command::PutExport(export("west", "shop/web", 7));
    let answered = tokio::time::timeout(REQUEST_TIMEOUT / 4, client.propose(&command)).await;
    let revision =
        answered.map_err(|_| anyhow::anyhow!("the write waited for the request timeout"))??;
    anyhow::ensure!(revision.0 > 0);
    let stored = get_export(&client, "west", "shop/web", ReadConsistency::Linearizable).await?;
    anyhow::ensure!(
        stored.is_some_and(|e| e.endpoints == 7),
        "the write is in the catalog"
    );
    Ok(())
}
