//! What every client connection goes through before its attempts, with or without a
//! declared policy: the policy's faults, and the clusters offered to `choose`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_trust::ClusterName;
use rand::Rng;
use tracing::debug;

use super::{ImportState, candidates};
use crate::metrics::{Direction, FaultLabels, Metrics};
use crate::peers::{Candidate, PeerState};
use crate::{Endpoints, Shared};
use causeway_policy::{RoutingMode, TrafficCandidate, TrafficPolicy};

/// The clusters a new stream may go to, as `choose` and the attempts see them.
pub(super) struct Offer<'a> {
    /// Every exporting peer (in `state.peers` order), then, for local-first, this
    /// cluster's own endpoints.
    pub(super) traffic: Vec<TrafficCandidate<'a>>,
    /// The same clusters' health, RTT and weight, for ranking.
    pub(super) peers: Vec<Candidate>,
    /// This cluster's own endpoints of the service, offered under local-first at
    /// index `state.peers.len()`.
    pub(super) local: Option<Arc<Endpoints>>,
}

/// The candidates of a new stream under `policy`: every exporting peer with its
/// ejection (where outlier detection is on) and its health, and, for local-first,
/// this cluster's own endpoints when it exports the service too.
pub(super) fn offer<'a>(
    shared: &'a Shared,
    state: &'a ImportState,
    policy: &TrafficPolicy,
) -> Offer<'a> {
    let table = &shared.traffic;
    let clusters: Vec<&ClusterName> = state.peers.iter().map(|(_, p)| &p.cluster).collect();
    // Without outlier detection nothing is ejected, and the table is not consulted:
    // that is every connection of a service without a declared policy.
    let ejected = match policy.outlier {
        Some(_) => table.ejected(&state.key, &clusters, Instant::now()),
        None => vec![false; clusters.len()],
    };
    if policy.outlier.is_some() {
        for (cluster, ejected) in clusters.iter().zip(&ejected) {
            let labels = Metrics::traffic_labels(&state.key_label, cluster.as_str());
            shared
                .metrics
                .traffic_ejected
                .get_or_create(&labels)
                .set(i64::from(*ejected));
        }
    }
    let mut peers = candidates(state);
    let mut offered: Vec<TrafficCandidate<'_>> = clusters
        .iter()
        .zip(&ejected)
        .map(|(cluster, ejected)| TrafficCandidate {
            cluster,
            ejected: *ejected,
            local: *cluster == table.local(),
        })
        .collect();
    // Local-first: when this cluster exports the service too, its own endpoints
    // are one more candidate (index `peers.len()`), reached without the tunnel.
    let local = (policy.routing == RoutingMode::LocalFirst)
        .then(|| shared.services.load().get(&state.target).cloned())
        .flatten()
        .filter(|e| !e.addrs.is_empty());
    if local.is_some() {
        offered.push(TrafficCandidate {
            cluster: table.local(),
            ejected: table.ejected(&state.key, &[table.local()], Instant::now())[0],
            local: true,
        });
        peers.push(Candidate {
            state: PeerState::Up,
            rtt: Some(Duration::ZERO),
            weight: 1,
            connected: true,
        });
    }
    Offer {
        traffic: offered,
        peers,
        local,
    }
}

/// Draws the policy's faults for a new stream: waits out an injected delay, and
/// returns whether the stream is to be aborted.
pub(super) async fn inject_faults(
    shared: &Shared,
    state: &ImportState,
    policy: &TrafficPolicy,
) -> bool {
    let faults = &policy.faults;
    if !faults.is_active() {
        return false;
    }
    // The RNG is not `Send`: draw before any await.
    let (abort, delay) = {
        let mut rng = rand::rng();
        let abort = faults.abort_percent > 0.0 && rng.random_bool(faults.abort_percent / 100.0);
        let delay = faults.delay.filter(|_| {
            faults.delay_percent > 0.0 && rng.random_bool(faults.delay_percent / 100.0)
        });
        (abort, delay)
    };
    let count = |fault: &str| {
        shared
            .metrics
            .traffic_faults
            .get_or_create(&FaultLabels {
                service: state.key_label.clone(),
                fault: fault.to_owned(),
            })
            .inc();
    };
    if abort {
        count("abort");
        shared
            .metrics
            .failed("", &state.service_label, Direction::Outbound, "fault_abort");
        debug!("fault injected: stream aborted");
        return true;
    }
    if let Some(delay) = delay {
        count("delay");
        debug!(
            delay_ms = delay.as_millis() as u64,
            "fault injected: stream delayed"
        );
        tokio::time::sleep(delay).await;
    }
    false
}
