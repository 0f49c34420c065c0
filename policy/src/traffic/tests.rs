use std::time::Duration;

use causeway_trust::ClusterName;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

fn name(s: &str) -> ClusterName {
    s.parse().expect("valid cluster name")
}

fn candidates(names: &[ClusterName]) -> Vec<TrafficCandidate<'_>> {
    names
        .iter()
        .map(|cluster| TrafficCandidate {
            cluster,
            ejected: false,
            local: false,
        })
        .collect()
}

fn weighted(weights: &[(&str, u32)]) -> TrafficPolicy {
    TrafficPolicy {
        routing: RoutingMode::Weighted,
        weights: weights.iter().map(|(c, w)| (name(c), *w)).collect(),
        ..TrafficPolicy::default()
    }
}

// === validation ===

#[test]
fn the_default_policy_is_valid_and_bad_values_are_named_by_key() {
    assert!(TrafficPolicy::default().validate("p").is_empty());
    let bad = TrafficPolicy {
        routing: RoutingMode::Pinned,
        weights: [(name("west"), 20_000)].into(),
        outlier: Some(OutlierPolicy {
            consecutive_failures: 0,
            max_ejection_percent: 101,
            max_ejection_time: Duration::from_secs(1),
            ..OutlierPolicy::default()
        }),
        limits: ConnectionLimits {
            max_streams: Some(0),
            max_pending: None,
        },
        retries: RetryPolicy {
            attempts: 11,
            budget_percent: 101,
            connect_timeout: Some(Duration::from_millis(1)),
        },
        idle_timeout: Some(Duration::from_millis(10)),
        faults: FaultPolicy {
            delay: Some(Duration::from_secs(61)),
            delay_percent: -1.0,
            abort_percent: 100.5,
        },
        ..TrafficPolicy::default()
    };
    let keys: Vec<String> = bad.validate("p").into_iter().map(|p| p.path).collect();
    assert_eq!(
        keys,
        [
            "p.pinned",
            "p.weights",
            "p.weights.west",
            "p.outlier.consecutive_failures",
            "p.outlier.max_ejection_time",
            "p.outlier.max_ejection_percent",
            "p.limits.max_streams",
            "p.retries.attempts",
            "p.retries.budget_percent",
            "p.retries.connect_timeout",
            "p.idle_timeout",
            "p.faults.delay_percent",
            "p.faults.abort_percent",
            "p.faults.delay",
        ]
    );
    let zero = weighted(&[("west", 0)]);
    assert_eq!(zero.validate("p")[0].path, "p.weights");
    let empty = weighted(&[]);
    assert_eq!(empty.validate("")[0].path, "weights");
}

#[test]
fn routing_modes_parse_print_and_refuse_unknown_words() {
    for mode in RoutingMode::ALL {
        assert_eq!(mode.to_string().parse::<RoutingMode>(), Ok(mode));
    }
    let err = "random".parse::<RoutingMode>().unwrap_err();
    assert_eq!(err.field, "routing");
    assert_eq!(
        err.to_string(),
        "\"random\" is not one of nearest, local-first, weighted, pinned"
    );
    let long = "x".repeat(1000);
    assert!(long.parse::<RoutingMode>().unwrap_err().to_string().len() < 200);
}

#[test]
fn apply_to_lists_are_checked_entry_by_entry() {
    let paths = |items: &[&str]| -> Vec<String> {
        validate_apply_to(items, "apply_to")
            .into_iter()
            .map(|p| p.path)
            .collect()
    };
    assert!(paths(&["*"]).is_empty());
    assert!(paths(&["east", "north"]).is_empty());
    assert_eq!(paths(&[]), ["apply_to"]);
    assert_eq!(paths(&["east", "*"]), ["apply_to[1]"]);
    assert_eq!(paths(&["east", "x_y"]), ["apply_to[1]"]);
    assert_eq!(paths(&["east", "north", "east"]), ["apply_to[2]"]);
    let many: Vec<String> = (0..=MAX_APPLY_TO).map(|i| format!("c{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let problems = validate_apply_to(&many, "apply_to");
    assert_eq!(problems.len(), 1);
    assert!(problems[0].message.contains("257 clusters; at most 256"));
    let parsed = TrafficScope::Clusters(vec![name("east"), name("east")]);
    assert_eq!(parsed.validate("s")[0].path, "s[1]");
    assert!(TrafficScope::All.validate("s").is_empty());
}

// === choice ===

#[test]
fn nearest_keeps_the_ranked_order_and_skips_ejected_clusters() {
    let names = [name("east"), name("north"), name("west")];
    let mut c = candidates(&names);
    let policy = TrafficPolicy::default();
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(choose(&policy, &c, vec![1, 2, 0], &mut rng), [1, 2, 0]);
    c[1].ejected = true;
    assert_eq!(choose(&policy, &c, vec![1, 2, 0], &mut rng), [2, 0]);
    // Everything ejected: trying beats refusing.
    for x in &mut c {
        x.ejected = true;
    }
    assert_eq!(choose(&policy, &c, vec![1, 2, 0], &mut rng), [1, 2, 0]);
    // Clusters the ranking left out (out of rotation) stay out.
    assert_eq!(choose(&policy, &c, vec![2], &mut rng), [2]);
}

#[test]
fn local_first_puts_the_own_cluster_first_and_keeps_the_rest_ranked() {
    let names = [name("east"), name("west"), name("north")];
    let mut c = candidates(&names);
    c[1].local = true;
    let policy = TrafficPolicy {
        routing: RoutingMode::LocalFirst,
        ..TrafficPolicy::default()
    };
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(choose(&policy, &c, vec![0, 2, 1], &mut rng), [1, 0, 2]);
    assert_eq!(choose(&policy, &c, vec![0, 2], &mut rng), [0, 2]);
}

#[test]
fn pinned_uses_only_its_cluster() {
    let names = [name("east"), name("west")];
    let c = candidates(&names);
    let policy = TrafficPolicy {
        routing: RoutingMode::Pinned,
        pinned: Some(name("west")),
        ..TrafficPolicy::default()
    };
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(choose(&policy, &c, vec![0, 1], &mut rng), [1]);
    assert!(choose(&policy, &c, vec![0], &mut rng).is_empty());
}

#[test]
fn weighted_leaves_out_unweighted_clusters() {
    let names = [name("east"), name("west"), name("north")];
    let c = candidates(&names);
    let policy = weighted(&[("west", 90), ("east", 10)]);
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..100 {
        let order = choose(&policy, &c, vec![2, 0, 1], &mut rng);
        assert_eq!(order.len(), 2);
        assert!(order.contains(&0) && order.contains(&1));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// For any two weights, 10,000 draws land within 6 standard deviations of
    /// the expected share: sd = sqrt(n·p·(1-p)) ≤ 50, and P(|Z| > 6) ≈ 2e-9 per
    /// case, so a failure means a biased draw, not bad luck.
    #[test]
    fn weighted_draws_follow_the_weights(a in 1u32..=10_000, b in 1u32..=10_000, seed: u64) {
        let names = [name("east"), name("west")];
        let c = candidates(&names);
        let policy = weighted(&[("east", a), ("west", b)]);
        let mut rng = StdRng::seed_from_u64(seed);
        let n = 10_000f64;
        let east = (0..10_000)
            .filter(|_| choose(&policy, &c, vec![0, 1], &mut rng)[0] == 0)
            .count() as f64;
        let p = f64::from(a) / f64::from(a + b);
        let sd = (n * p * (1.0 - p)).sqrt();
        prop_assert!((east - n * p).abs() <= 6.0 * sd + 1.0, "east {east}, expected {}", n * p);
    }

    /// Whatever the policy, the order names each ranked cluster at most once and
    /// nothing the ranking left out.
    #[test]
    fn the_order_is_a_subset_of_the_ranking(
        mode in 0usize..4,
        ranked in proptest::sample::subsequence(vec![0usize, 1, 2, 3], 0..=4),
        ejected in proptest::collection::vec(any::<bool>(), 4),
        seed: u64,
    ) {
        let names = [name("a"), name("b"), name("c"), name("d")];
        let mut c = candidates(&names);
        for (x, e) in c.iter_mut().zip(&ejected) {
            x.ejected = *e;
        }
        c[3].local = true;
        let policy = TrafficPolicy {
            routing: RoutingMode::ALL[mode],
            weights: if mode == 2 { [(name("a"), 1), (name("c"), 3)].into() } else { Default::default() },
            pinned: (mode == 3).then(|| name("b")),
            ..TrafficPolicy::default()
        };
        let order = choose(&policy, &c, ranked.clone(), &mut StdRng::seed_from_u64(seed));
        let mut seen = std::collections::HashSet::new();
        for i in &order {
            prop_assert!(ranked.contains(i));
            prop_assert!(seen.insert(*i));
        }
    }
}
