use std::collections::HashMap;
use std::time::Duration;

use super::{Seats, next_voter, seat_to_hand_over};

/// Members 1.. with their clusters: `("east", &[2, 3, 4])`.
fn seats(voters: &[u64], ready: &[u64], clusters: &[(&str, &[u64])]) -> Seats {
    let mut cluster = HashMap::new();
    for (name, ids) in clusters {
        for id in *ids {
            cluster.insert(*id, (*name).to_owned());
        }
    }
    Seats {
        voters: voters.iter().copied().collect(),
        ready: ready.to_vec(),
        cluster,
        max_voters: 5,
    }
}

const TWO: &[(&str, &[u64])] = &[("west", &[1]), ("east", &[2, 3, 4])];

#[test]
fn seats_go_to_clusters_without_one_first() {
    // west votes; east's replicas wait, the first one is promoted.
    assert_eq!(next_voter(&seats(&[1], &[2, 3, 4], TWO)), Some(2));
    let many: &[(&str, &[u64])] = &[("a", &[1, 2]), ("b", &[3]), ("c", &[4])];
    assert_eq!(next_voter(&seats(&[1], &[2, 3, 4], many)), Some(3));
    assert_eq!(next_voter(&seats(&[1, 3], &[2, 4], many)), Some(4));
    // Three clusters hold a seat each: a's second replica stays a learner.
    assert_eq!(next_voter(&seats(&[1, 3, 4], &[2], many)), None);
}

#[test]
fn a_cluster_gets_a_second_seat_only_to_reach_fault_tolerance() {
    assert_eq!(next_voter(&seats(&[1, 2], &[3, 4], TWO)), Some(3));
    assert_eq!(next_voter(&seats(&[1, 2, 3], &[4], TWO)), None);
}

#[test]
fn voters_never_exceed_the_maximum() {
    let clusters: Vec<(String, Vec<u64>)> = (1..=7).map(|i| (format!("c{i}"), vec![i])).collect();
    let refs: Vec<(&str, &[u64])> = clusters
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    assert_eq!(
        next_voter(&seats(&[1, 2, 3, 4], &[5, 6, 7], &refs)),
        Some(5)
    );
    assert_eq!(next_voter(&seats(&[1, 2, 3, 4, 5], &[6, 7], &refs)), None);
}

#[test]
fn members_the_catalog_does_not_list_are_clusters_of_their_own() {
    assert_eq!(next_voter(&seats(&[1, 2, 3], &[4], &[])), Some(4));
}

#[test]
fn a_lost_voters_seat_goes_to_a_live_learner_of_its_cluster() {
    let s = seats(&[1, 2, 3], &[4], TWO);
    let unheard = |id: u64| {
        if id == 3 {
            Duration::from_secs(60)
        } else {
            Duration::ZERO
        }
    };
    let lost_after = Duration::from_secs(10);
    assert_eq!(seat_to_hand_over(&s, 1, unheard, lost_after), Some(3));
    // Once demoted, the learner takes the seat.
    let after = seats(&[1, 2], &[4], TWO);
    assert_eq!(next_voter(&after), Some(4));
    // Not before the time is up, never the leader itself, and not without a taker.
    assert_eq!(
        seat_to_hand_over(&s, 1, |_| Duration::from_secs(5), lost_after),
        None
    );
    assert_eq!(seat_to_hand_over(&s, 3, unheard, lost_after), None);
    let nobody = seats(&[1, 2, 3], &[], TWO);
    assert_eq!(seat_to_hand_over(&nobody, 1, unheard, lost_after), None);
}

#[test]
fn a_lost_voter_of_a_single_gateway_federation_keeps_its_seat() {
    // Three clusters, one gateway each, no learner: nobody could take the seat, so
    // the voter keeps it and votes again when it comes back.
    let three: &[(&str, &[u64])] = &[("a", &[1]), ("b", &[2]), ("c", &[3])];
    let s = seats(&[1, 2, 3], &[], three);
    let unheard = |_| Duration::from_secs(600);
    assert_eq!(
        seat_to_hand_over(&s, 1, unheard, Duration::from_secs(10)),
        None
    );
}
