use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use causeway_trust::ClusterName;

use causeway_policy::{
    ConnectionLimits, OutlierPolicy, RoutingMode, TrafficCandidate, TrafficPolicy,
};

use super::*;
use crate::peers::{Candidate, PeerState, rank};

fn name(s: &str) -> ClusterName {
    s.parse().expect("valid cluster name")
}

fn up(rtt_ms: u64, weight: u32) -> Candidate {
    Candidate {
        state: PeerState::Up,
        rtt: Some(Duration::from_millis(rtt_ms)),
        weight,
        connected: true,
    }
}

/// An exporting cluster as the outbound driver sees it: the policy's view and the
/// peer's health.
#[derive(Clone, Copy)]
struct Offered<'a> {
    traffic: TrafficCandidate<'a>,
    peer: Candidate,
}

fn candidates<'a>(names: &'a [ClusterName], peers: &[Candidate]) -> Vec<Offered<'a>> {
    names
        .iter()
        .zip(peers)
        .map(|(cluster, peer)| Offered {
            traffic: TrafficCandidate {
                cluster,
                ejected: false,
                local: false,
            },
            peer: *peer,
        })
        .collect()
}

/// The order the outbound driver tries: the peers ranked by health and RTT, then
/// chosen by the policy.
fn choose(policy: &TrafficPolicy, offered: &[Offered<'_>], rng: &mut StdRng) -> Vec<usize> {
    let traffic: Vec<TrafficCandidate<'_>> = offered.iter().map(|o| o.traffic).collect();
    let peers: Vec<Candidate> = offered.iter().map(|o| o.peer).collect();
    causeway_policy::choose(policy, &traffic, rank(&peers), rng)
}

fn weighted(weights: &[(&str, u32)]) -> TrafficPolicy {
    TrafficPolicy {
        routing: RoutingMode::Weighted,
        weights: weights.iter().map(|(c, w)| (name(c), *w)).collect(),
        ..TrafficPolicy::default()
    }
}

// === choice ===

#[test]
fn nearest_follows_rtt_and_skips_ejected_clusters() {
    let names = [name("east"), name("north"), name("west")];
    let peers = [up(30, 1), up(5, 1), up(10, 1)];
    let mut c = candidates(&names, &peers);
    let policy = TrafficPolicy::default();
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(choose(&policy, &c, &mut rng), [1, 2, 0]);
    c[1].traffic.ejected = true;
    assert_eq!(choose(&policy, &c, &mut rng), [2, 0]);
    // Everything ejected: trying beats refusing.
    for x in &mut c {
        x.traffic.ejected = true;
    }
    assert_eq!(choose(&policy, &c, &mut rng), [1, 2, 0]);
}

#[test]
fn local_first_prefers_the_own_cluster_then_nearest() {
    let names = [name("east"), name("west"), name("north")];
    let peers = [up(5, 1), up(50, 1), up(10, 1)];
    let mut c = candidates(&names, &peers);
    c[1].traffic.local = true;
    let policy = TrafficPolicy {
        routing: RoutingMode::LocalFirst,
        ..TrafficPolicy::default()
    };
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(choose(&policy, &c, &mut rng), [1, 0, 2]);
    c[1].peer.state = PeerState::Down;
    c[1].peer.connected = false;
    assert_eq!(choose(&policy, &c, &mut rng), [0, 2]);
}

#[test]
fn pinned_uses_only_its_cluster() {
    let names = [name("east"), name("west")];
    let peers = [up(5, 1), up(50, 1)];
    let mut c = candidates(&names, &peers);
    let policy = TrafficPolicy {
        routing: RoutingMode::Pinned,
        pinned: Some(name("west")),
        ..TrafficPolicy::default()
    };
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(choose(&policy, &c, &mut rng), [1]);
    c[1].peer.state = PeerState::Draining;
    assert!(choose(&policy, &c, &mut rng).is_empty());
}

#[test]
fn weighted_leaves_out_unweighted_clusters_and_orders_retries_by_weight() {
    let names = [name("east"), name("west"), name("north")];
    let peers = [up(5, 1), up(50, 1), up(1, 1)];
    let c = candidates(&names, &peers);
    let policy = weighted(&[("west", 90), ("east", 10)]);
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..100 {
        let order = choose(&policy, &c, &mut rng);
        assert_eq!(order.len(), 2);
        assert!(order.contains(&0) && order.contains(&1));
    }
}

#[test]
fn a_ninety_ten_split_holds_within_two_percent_over_ten_thousand_draws() {
    let names = [name("east"), name("west")];
    let peers = [up(5, 1), up(50, 1)];
    let c = candidates(&names, &peers);
    let policy = weighted(&[("west", 90), ("east", 10)]);
    let mut rng = StdRng::seed_from_u64(42);
    let west = (0..10_000)
        .filter(|_| choose(&policy, &c, &mut rng)[0] == 1)
        .count();
    assert!((8_800..=9_200).contains(&west), "west got {west} of 10000");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// For any two weights, 10,000 draws land within 6 standard deviations of
    /// the expected share: sd = sqrt(n·p·(1-p)) ≤ 50, and P(|Z| > 6) ≈ 2e-9 per
    /// case, so a failure means a biased draw, not bad luck.
    #[test]
    fn weighted_draws_follow_the_weights(a in 1u32..=10_000, b in 1u32..=10_000, seed: u64) {
        let names = [name("east"), name("west")];
        let peers = [up(1, 1), up(1, 1)];
        let c = candidates(&names, &peers);
        let policy = weighted(&[("east", a), ("west", b)]);
        let mut rng = StdRng::seed_from_u64(seed);
        let n = 10_000f64;
        let east = (0..10_000).filter(|_| choose(&policy, &c, &mut rng)[0] == 0).count() as f64;
        let p = f64::from(a) / f64::from(a + b);
        let sd = (n * p * (1.0 - p)).sqrt();
        prop_assert!((east - n * p).abs() <= 6.0 * sd + 1.0, "east {east}, expected {}", n * p);
    }

    /// Whatever fails, no more clusters are ejected at once than the cap allows.
    #[test]
    fn ejections_never_exceed_the_cap(
        clusters in 1usize..8,
        percent in 0u8..=100,
        failures in proptest::collection::vec((0usize..8, 0u64..2_000), 0..200),
    ) {
        let table = TrafficTable::new(name("local"));
        let key = PolicyKey::new("shop", "web");
        let names: Vec<ClusterName> = (0..clusters).map(|i| name(&format!("c{i}"))).collect();
        let policy = OutlierPolicy {
            consecutive_failures: 2,
            max_ejection_percent: percent,
            ..OutlierPolicy::default()
        };
        let t0 = Instant::now();
        let mut now = t0;
        for (which, step_ms) in failures {
            now += Duration::from_millis(step_ms);
            let cluster = &names[which % clusters];
            table.on_failure(&key, cluster, now, &policy, clusters);
            let refs: Vec<&ClusterName> = names.iter().collect();
            let ejected = table.ejected(&key, &refs, now).into_iter().filter(|e| *e).count();
            prop_assert!(ejected <= clusters * usize::from(percent) / 100);
        }
    }
}

// === ejection ===

#[test]
fn consecutive_failures_eject_for_a_growing_time_and_the_cluster_returns() {
    let policy = OutlierPolicy {
        consecutive_failures: 3,
        interval: Duration::from_secs(10),
        base_ejection_time: Duration::from_secs(30),
        max_ejection_time: Duration::from_secs(75),
        max_ejection_percent: 100,
    };
    let t0 = Instant::now();
    let mut t = ClusterTraffic::default();
    assert_eq!(t.on_failure(t0, &policy, true), None);
    assert_eq!(t.on_failure(t0, &policy, true), None);
    // A success ends the streak.
    t.on_success(t0, Some(&policy));
    assert_eq!(t.on_failure(t0, &policy, true), None);
    assert_eq!(t.on_failure(t0, &policy, true), None);
    assert_eq!(
        t.on_failure(t0, &policy, true),
        Some(Duration::from_secs(30))
    );
    assert!(t.is_ejected(t0 + Duration::from_secs(29)));
    let back = t0 + Duration::from_secs(30);
    assert!(!t.is_ejected(back));
    for _ in 0..2 {
        t.on_failure(back, &policy, true);
    }
    assert_eq!(
        t.on_failure(back, &policy, true),
        Some(Duration::from_secs(60))
    );
    let back = back + Duration::from_secs(60);
    for _ in 0..2 {
        t.on_failure(back, &policy, true);
    }
    // Capped at the max.
    assert_eq!(
        t.on_failure(back, &policy, true),
        Some(Duration::from_secs(75))
    );
    assert_eq!(t.ejections(), 3);
    // A success long after the last ejection forgets the streak of ejections.
    t.on_success(back + Duration::from_secs(75 + 75), Some(&policy));
    assert_eq!(t.ejections(), 0);
}

#[test]
fn failures_spread_wider_than_the_interval_do_not_eject() {
    let policy = OutlierPolicy {
        consecutive_failures: 2,
        interval: Duration::from_secs(1),
        ..OutlierPolicy::default()
    };
    let t0 = Instant::now();
    let mut t = ClusterTraffic::default();
    for i in 0..5 {
        assert_eq!(
            t.on_failure(t0 + Duration::from_secs(2 * i), &policy, true),
            None
        );
    }
    // At the cap, nothing is ejected either.
    assert_eq!(
        t.on_failure(t0 + Duration::from_secs(10), &policy, false),
        None
    );
}

// === limits and retries ===

#[test]
fn admission_counts_open_and_pending_streams() {
    let table = TrafficTable::new(name("local"));
    let key = PolicyKey::new("shop", "web");
    let west = name("west");
    let limits = ConnectionLimits {
        max_streams: Some(2),
        max_pending: Some(1),
    };
    assert_eq!(table.admit(&key, &west, &limits), Admission::Admitted);
    assert_eq!(table.admit(&key, &west, &limits), Admission::OverPending);
    table.answered(&key, &west);
    assert_eq!(table.admit(&key, &west, &limits), Admission::Admitted);
    table.answered(&key, &west);
    assert_eq!(table.admit(&key, &west, &limits), Admission::OverStreams);
    table.closed(&key, &west);
    assert_eq!(table.admit(&key, &west, &limits), Admission::Admitted);
}

#[test]
fn the_retry_budget_allows_the_reserve_plus_its_share_of_first_attempts() {
    // All at one instant: no time refill.
    let now = Instant::now();
    let mut budget = RetryBudget::default();
    let mut retries = 0;
    for _ in 0..1_000 {
        budget.on_first_attempt_at(20, now);
        if budget.try_retry_at(now) {
            retries += 1;
        }
    }
    // 10 reserve + 20 % of 1000.
    assert!(retries <= 210, "{retries} retries");
    assert!(retries >= 200, "{retries} retries");
    let mut none = RetryBudget::default();
    for _ in 0..10 {
        assert!(none.try_retry_at(now));
    }
    assert!(!none.try_retry_at(now));
}

#[test]
fn a_spent_retry_budget_refills_with_time_up_to_the_reserve() {
    // Clock readings after the budget's creation, as in use.
    let mut budget = RetryBudget::default();
    let start = Instant::now();
    while budget.try_retry_at(start) {}
    // A tenth of a second earns one retry at 10 per second.
    let later = start + Duration::from_millis(100);
    assert!(budget.try_retry_at(later));
    assert!(!budget.try_retry_at(later));
    // However long the calm, the bucket holds the reserve and no more.
    let much_later = later + Duration::from_secs(3600);
    let mut retries = 0;
    while budget.try_retry_at(much_later) {
        retries += 1;
    }
    assert_eq!(retries as f64, RETRY_RESERVE);
    // Over t seconds with no first attempts: at most reserve + rate × t.
    let mut budget = RetryBudget::default();
    let start = Instant::now();
    let mut retries = 0u32;
    for ms in 0..=5_000u64 {
        if budget.try_retry_at(start + Duration::from_millis(ms)) {
            retries += 1;
        }
    }
    let bound = RETRY_RESERVE + RETRY_REFILL_PER_SECOND * 5.0;
    assert!(f64::from(retries) <= bound + 1.0, "{retries} > {bound}");
    assert!(f64::from(retries) >= bound - 1.0, "{retries} < {bound}");
}

#[test]
fn new_policies_keep_state_of_services_that_keep_one() {
    let table = TrafficTable::new(name("local"));
    let web = PolicyKey::new("shop", "web");
    let db = PolicyKey::new("shop", "db");
    let policy = Arc::new(TrafficPolicy::default());
    table.set_policies([(web.clone(), policy.clone()), (db.clone(), policy.clone())].into());
    let west = name("west");
    let outlier = OutlierPolicy {
        consecutive_failures: 1,
        max_ejection_percent: 100,
        ..OutlierPolicy::default()
    };
    let now = Instant::now();
    assert!(table.on_failure(&web, &west, now, &outlier, 1).is_some());
    assert!(table.on_failure(&db, &west, now, &outlier, 1).is_some());
    assert_eq!(table.ejections(now).len(), 2);
    table.set_policies([(web.clone(), policy)].into());
    let left = table.ejections(now);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].service, "shop/web");
    assert!(table.policy(&db).is_none());
}
