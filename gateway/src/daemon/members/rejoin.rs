//! Coming back after the registry removed this member.
//!
//! The leader removes a member no cluster lists that it has not heard from for the
//! grace period (the registry's `sweep.rs`): a replica that drained, or one taken
//! off its cluster's list while it was cut off. Once removed, the member hears
//! nothing more and knows no leader for ever. So when this one has known no leader
//! for [`LEADERLESS_ELECTIONS`] election timeouts, it asks the members it knows to
//! add it: a join is a no-op for a member at the same address, and brings a removed
//! one back as a learner. A member cut off by a partition just fails to reach them
//! and asks again later; one of a registry without a quorum is told there is no
//! leader.

use std::sync::Arc;
use std::time::Duration;

use causeway_registry::{Node, RegistryClient};
use tokio::time::Instant;
use tracing::{debug, info};

use super::{Local, Membership, member_id, tls};
use crate::config::GatewayConfig;

/// Election timeouts without a known leader before this member asks to be added.
const LEADERLESS_ELECTIONS: u32 = 20;
/// How long one join attempt may take.
const ATTEMPT: Duration = Duration::from_secs(3);

/// Watches this member's leader until the gateway stops, and asks to be added again
/// when it has known none for long (see the module documentation).
pub(crate) async fn rejoin_when_removed(membership: Arc<Membership>, local: Arc<Local>) {
    let election = local.config.registry.election_timeout;
    let patience = election * LEADERLESS_ELECTIONS;
    let mut leaderless_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = local.cancel.cancelled() => return,
            _ = tokio::time::sleep(election) => {}
        }
        // The status the metrics poller refreshes every 250 ms: no second poller.
        let leader = membership.last_status().map_or(0, |(s, _)| s.leader);
        if leader != 0 {
            leaderless_since = None;
            continue;
        }
        let since = *leaderless_since.get_or_insert_with(Instant::now);
        if since.elapsed() < patience {
            continue;
        }
        leaderless_since = None;
        let peers = known_members(&membership.node(), &local.config);
        if let Some(via) = join_once(&peers, &local).await {
            info!(%via, "no leader known for {patience:?}: asked to be added to the registry again, and was");
        }
    }
}

/// The registry addresses of every gateway the local catalog lists, and those of
/// `registry.join`, without this member's own.
fn known_members(node: &Node, config: &GatewayConfig) -> Vec<String> {
    let own = config.registry_advertise().to_string();
    let mut peers: Vec<String> = node.read_local(|catalog| {
        catalog
            .clusters()
            .flat_map(|c| {
                let replicas = c.value.replicas.iter().map(|r| r.registry_addr.clone());
                std::iter::once(c.value.registry_addr.clone()).chain(replicas)
            })
            .collect()
    });
    peers.extend(config.registry.join.iter().map(ToString::to_string));
    peers.sort();
    peers.dedup();
    peers.retain(|p| *p != own);
    peers
}

/// Asks `peers` in turn to add this member; returns the one that answered.
async fn join_once(peers: &[String], local: &Local) -> Option<String> {
    let config = &local.config;
    let id = member_id(&config.cluster, config.replica.as_ref());
    let advertise = config.registry_advertise().to_string();
    let client_tls = tls(&local.identity).client;
    for peer in peers {
        let attempt = async {
            let client = RegistryClient::connect(peer, client_tls.clone())?;
            client.join(id, &advertise).await
        };
        match tokio::time::timeout(ATTEMPT, attempt).await {
            Ok(Ok(_)) => return Some(peer.clone()),
            Ok(Err(e)) => debug!(%peer, error = %e, "rejoin attempt failed"),
            Err(_) => debug!(%peer, "rejoin attempt timed out"),
        }
    }
    None
}
