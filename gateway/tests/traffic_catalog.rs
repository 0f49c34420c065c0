//! Traffic policies through the catalog: a policy one cluster declares for others
//! steers their clients, without a restart; a cluster's own policy wins over it;
//! withdrawing it returns them to the default.
//!
//! Topology: a [`LocalFederation`] of west, east and north on loopback, each
//! exporting `demo/echo`, whose answer names the cluster that served it. East's
//! clients are the ones watched; west declares the policy.

mod support;

use causeway_testing::{eventually, init_logs};
use support::pinned_echo;

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use causeway_gateway::admin::AdminApi as _;
use causeway_gateway::daemon::Gateway;
use causeway_gateway::federation::{ECHO_NAMESPACE, ECHO_SERVICE, LocalFederation};
use causeway_gateway::status::TrafficStatus;

const WEST: usize = 0;
const EAST: usize = 1;

/// How long a change may take from one gateway's declaration to another's new
/// streams: a Raft commit and a watch event, well under a second on loopback.
const PROPAGATION: Duration = Duration::from_secs(5);

/// Waits until every one of several new requests from `from` lands in `cluster`.
async fn lands_in(fed: &LocalFederation, from: usize, cluster: &str) -> Result<Duration> {
    let start = Instant::now();
    let name = LocalFederation::service_name();
    let hello = format!("hello from {cluster}");
    eventually(
        PROPAGATION,
        &format!(
            "requests from {} land in {cluster}",
            fed.members[from].cluster
        ),
        || async {
            for _ in 0..5 {
                let body = fed.request(from, &name).await.ok()?;
                if !body.contains(&hello) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await?;
    Ok(start.elapsed())
}

fn traffic(gateway: &Gateway) -> TrafficStatus {
    gateway.api().status().traffic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_declared_for_every_cluster_steers_another_clusters_clients() -> Result<()> {
    init_logs("error");
    let fed = LocalFederation::start(&["west", "east", "north"]).await?;
    fed.wait_converged(Duration::from_secs(60)).await?;
    let west = fed.gateway(WEST)?;
    let east = fed.gateway(EAST)?;
    let service = format!("{ECHO_NAMESPACE}/{ECHO_SERVICE}");

    // West declares, for every cluster, that the echo service goes to north.
    west.set_traffic_policies(&[pinned_echo("north", Some(&["*"]))?])?;
    let took = lands_in(&fed, EAST, "north").await?;
    eprintln!("west's policy steered east's new streams after {took:?}");
    let status = traffic(east);
    ensure!(
        status.in_effect.len() == 1
            && status.in_effect[0].service == service
            && status.in_effect[0].source == "catalog:west"
            && status.in_effect[0].routing == "pinned north",
        "east's status: {status:?}"
    );
    let declared = traffic(west).declared;
    ensure!(
        declared.len() == 1 && declared[0].apply_to == ["*"] && declared[0].source == "file",
        "west's declared policies: {declared:?}"
    );

    // East's own policy for the service wins over west's, which becomes a conflict.
    east.set_traffic_policies(&[pinned_echo("west", None)?])?;
    lands_in(&fed, EAST, "west").await?;
    let status = traffic(east);
    ensure!(
        status.in_effect.len() == 1 && status.in_effect[0].source == "file",
        "east's status: {status:?}"
    );
    ensure!(
        status.conflicts.len() == 1
            && status.conflicts[0].owner == "west"
            && status.conflicts[0].followed == "file",
        "east's conflicts: {:?}",
        status.conflicts
    );
    let metrics = east.api().metrics_text();
    ensure!(
        metrics.contains("causeway_traffic_policies 1")
            && metrics.contains("causeway_traffic_policies_not_followed 1"),
        "east's metrics:\n{metrics}"
    );
    // East's policy named only east: north still follows west's.
    let north = traffic(fed.gateway(2)?);
    ensure!(
        north.in_effect.len() == 1 && north.in_effect[0].source == "catalog:west",
        "north's status: {north:?}"
    );

    // Without its own policy, east follows west's again.
    east.set_traffic_policies(&[])?;
    lands_in(&fed, EAST, "north").await?;

    // West withdraws its policy: east is back to the default, with no restart.
    west.set_traffic_policies(&[])?;
    eventually(PROPAGATION, "west's record leaves east's view", || async {
        let status = traffic(east);
        (status.in_effect.is_empty() && status.conflicts.is_empty()).then_some(())
    })
    .await?;
    let body = fed.request(EAST, &LocalFederation::service_name()).await?;
    ensure!(
        body.starts_with("hello from "),
        "unexpected answer {body:?}"
    );
    fed.shutdown().await;
    Ok(())
}
