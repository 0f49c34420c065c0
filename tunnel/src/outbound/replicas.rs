//! Clusters that run several gateway replicas: `choose` orders clusters, then each
//! chosen cluster's replicas follow in order of load for their RTT.
//!
//! An import lists one peer per replica. Traffic policies speak of clusters (weights,
//! pinning, local-first, ejection), so `choose` sees one candidate per cluster: its
//! best replica's health and RTT. Within a cluster, the replicas `rank` keeps (those
//! in rotation, or in panic mode the slow but connected ones) are ordered by cost =
//! (streams open + 1) × RTT, ties at random: a least-loaded choice weighted by
//! latency, like Finagle's and Linkerd's peak-EWMA balancers. A replica never dialled
//! yet costs its cluster's best RTT, so new replicas are used without waiting for
//! probes, and a dead replica leaves rotation like any peer.

use std::time::Duration;

use causeway_policy::{TrafficCandidate, TrafficPolicy, choose};
use rand::Rng;
use rand::seq::SliceRandom;

use crate::peers::{Candidate, rank};

/// RTT assumed for a cluster none of whose replicas has been measured.
const UNMEASURED_RTT: Duration = Duration::from_millis(1);

/// The order in which a new stream tries the offer's candidates: clusters as
/// `choose` orders them under `policy`, each followed by its replicas (see the
/// module). `load[i]` is candidate `i`'s open streams.
pub(super) fn order<R: Rng + ?Sized>(
    policy: &TrafficPolicy,
    traffic: &[TrafficCandidate<'_>],
    peers: &[Candidate],
    load: &[u64],
    rng: &mut R,
) -> Vec<usize> {
    let groups = groups(traffic);
    if groups.iter().all(|g| g.len() == 1) {
        return choose(policy, traffic, rank(peers), rng);
    }
    let firsts: Vec<TrafficCandidate<'_>> = groups.iter().map(|g| traffic[g[0]]).collect();
    let best: Vec<Candidate> = groups.iter().map(|g| representative(g, peers)).collect();
    choose(policy, &firsts, rank(&best), rng)
        .into_iter()
        .flat_map(|c| within(&groups[c], peers, load, rng))
        .collect()
}

/// Candidates by cluster, in order of first appearance. This cluster's own endpoints
/// (local-first) are a group of their own: they are marked `local`, a peer is not.
fn groups(traffic: &[TrafficCandidate<'_>]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, t) in traffic.iter().enumerate() {
        let same = |g: &&mut Vec<usize>| {
            let first = &traffic[g[0]];
            first.cluster == t.cluster && first.local == t.local
        };
        match groups.iter_mut().find(same) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// One cluster as `rank` sees it: its best replica in rotation (lowest RTT), or its
/// first; connected when any replica is.
fn representative(group: &[usize], peers: &[Candidate]) -> Candidate {
    let members = || group.iter().map(|&i| peers[i]);
    let best = members()
        .filter(|c| c.state.in_rotation())
        .min_by_key(|c| c.rtt.unwrap_or(Duration::MAX))
        .or_else(|| members().find(|c| c.connected))
        .unwrap_or(peers[group[0]]);
    Candidate {
        connected: members().any(|c| c.connected),
        ..best
    }
}

/// The replicas of one cluster that `rank` keeps, cheapest first (ties at random).
fn within<R: Rng + ?Sized>(
    group: &[usize],
    peers: &[Candidate],
    load: &[u64],
    rng: &mut R,
) -> Vec<usize> {
    if group.len() == 1 {
        return group.to_vec();
    }
    let members: Vec<Candidate> = group.iter().map(|&i| peers[i]).collect();
    let floor = members
        .iter()
        .filter_map(|c| c.rtt)
        .min()
        .unwrap_or(UNMEASURED_RTT);
    let mut kept: Vec<usize> = rank(&members).into_iter().map(|m| group[m]).collect();
    kept.shuffle(rng);
    kept.sort_by_key(|&i| {
        let rtt = peers[i].rtt.unwrap_or(floor).max(Duration::from_micros(1));
        (load.get(i).copied().unwrap_or(0) + 1) as u128 * rtt.as_micros()
    });
    kept
}

#[cfg(test)]
mod tests;
