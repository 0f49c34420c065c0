use std::time::Duration;

use causeway_policy::{RoutingMode, TrafficCandidate, TrafficPolicy};
use causeway_trust::ClusterName;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::order;
use crate::peers::{Candidate, PeerState};

fn up(rtt_ms: u64) -> Candidate {
    Candidate {
        state: PeerState::Up,
        rtt: Some(Duration::from_millis(rtt_ms)),
        weight: 1,
        connected: true,
    }
}

fn state(state: PeerState) -> Candidate {
    Candidate {
        state,
        rtt: None,
        weight: 1,
        connected: false,
    }
}

fn offered(clusters: &[ClusterName]) -> Vec<TrafficCandidate<'_>> {
    clusters
        .iter()
        .map(|cluster| TrafficCandidate {
            cluster,
            ejected: false,
            local: false,
        })
        .collect()
}

fn names(names: &[&str]) -> Vec<ClusterName> {
    names.iter().map(|n| n.parse().unwrap()).collect()
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

#[test]
fn one_gateway_per_cluster_orders_exactly_as_choose_does() {
    let clusters = names(&["east", "west"]);
    let peers = [up(5), up(1)];
    let policy = TrafficPolicy::default();
    let got = order(&policy, &offered(&clusters), &peers, &[0, 9], &mut rng());
    assert_eq!(got, vec![1, 0], "nearest cluster first, load ignored");
}

#[test]
fn a_clusters_replicas_follow_it_least_loaded_first() {
    let clusters = names(&["east", "east", "east", "west"]);
    let peers = [up(1), up(1), up(1), up(3)];
    let policy = TrafficPolicy::default();
    let got = order(
        &policy,
        &offered(&clusters),
        &peers,
        &[5, 0, 2, 0],
        &mut rng(),
    );
    assert_eq!(got, vec![1, 2, 0, 3]);
}

#[test]
fn load_is_weighed_by_rtt() {
    let clusters = names(&["east", "east"]);
    // 3 streams on a 1 ms replica cost 4; 0 streams on a 10 ms one cost 10.
    let peers = [up(1), up(10)];
    let got = order(
        &TrafficPolicy::default(),
        &offered(&clusters),
        &peers,
        &[3, 0],
        &mut rng(),
    );
    assert_eq!(got, vec![0, 1]);
}

#[test]
fn a_dead_replica_leaves_rotation_while_its_siblings_serve() {
    let clusters = names(&["east", "east", "east"]);
    let peers = [up(1), state(PeerState::Down), state(PeerState::Draining)];
    let got = order(
        &TrafficPolicy::default(),
        &offered(&clusters),
        &peers,
        &[9, 0, 0],
        &mut rng(),
    );
    assert_eq!(got, vec![0]);
}

#[test]
fn replicas_never_dialled_are_used_next_to_a_busy_one() {
    let clusters = names(&["east", "east", "east"]);
    let peers = [up(1), state(PeerState::Unknown), state(PeerState::Unknown)];
    let got = order(
        &TrafficPolicy::default(),
        &offered(&clusters),
        &peers,
        &[4, 0, 0],
        &mut rng(),
    );
    assert_eq!(got.len(), 3);
    assert_eq!(got[2], 0, "the busy replica goes last: {got:?}");
}

#[test]
fn equal_replicas_share_new_streams() {
    let clusters = names(&["east", "east", "east"]);
    let peers = [up(1), up(1), up(1)];
    let mut firsts = [0usize; 3];
    let mut rng = rng();
    for _ in 0..3_000 {
        let got = order(
            &TrafficPolicy::default(),
            &offered(&clusters),
            &peers,
            &[0, 0, 0],
            &mut rng,
        );
        firsts[got[0]] += 1;
    }
    for n in firsts {
        assert!((800..=1_200).contains(&n), "uneven spread: {firsts:?}");
    }
}

#[test]
fn a_pinned_policy_keeps_only_the_pinned_clusters_replicas() {
    let clusters = names(&["east", "west", "east", "west"]);
    let peers = [up(1), up(5), up(1), up(5)];
    let policy = TrafficPolicy {
        routing: RoutingMode::Pinned,
        pinned: Some("west".parse().unwrap()),
        ..TrafficPolicy::default()
    };
    let mut got = order(
        &policy,
        &offered(&clusters),
        &peers,
        &[0, 1, 0, 0],
        &mut rng(),
    );
    assert_eq!(got.remove(0), 3, "the idle west replica first");
    assert_eq!(got, vec![1]);
}
