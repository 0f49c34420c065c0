//! [`TrafficPolicy::validate`]: one function per section, every problem with its
//! key path.

use std::time::Duration;

use super::{
    ConnectionLimits, FaultPolicy, MAX_ATTEMPTS, MAX_CONNECT_TIMEOUT, MAX_CONNECTION_LIMIT,
    MAX_CONSECUTIVE_FAILURES, MAX_EJECTION_TIME, MAX_FAULT_DELAY, MAX_IDLE_TIMEOUT, MAX_WEIGHT,
    MAX_WEIGHTED_CLUSTERS, MIN_CONNECT_TIMEOUT, MIN_IDLE_TIMEOUT, OutlierPolicy, RetryPolicy,
    RoutingMode, TrafficPolicy,
};
use crate::{Problem, Problems};

impl TrafficPolicy {
    /// Every problem, each with its key path under `prefix` (e.g.
    /// `traffic_policy[0]`), in the order of the policy's sections.
    pub fn validate(&self, prefix: &str) -> Vec<Problem> {
        let mut problems = Problems::under(prefix);
        routing(self, &mut problems);
        if let Some(o) = &self.outlier {
            outlier(o, &mut problems);
        }
        limits(&self.limits, &mut problems);
        retries(&self.retries, &mut problems);
        if let Some(t) = self.idle_timeout
            && !(MIN_IDLE_TIMEOUT..=MAX_IDLE_TIMEOUT).contains(&t)
        {
            problems.push("idle_timeout", "must be between 1s and 7d");
        }
        faults(&self.faults, &mut problems);
        problems.into_vec()
    }
}

/// The routing mode and what it needs: weights for `weighted`, a cluster for
/// `pinned`, and neither where the mode does not use them.
fn routing(policy: &TrafficPolicy, problems: &mut Problems) {
    match policy.routing {
        RoutingMode::Weighted if policy.weights.is_empty() => {
            problems.push("weights", "weighted routing needs at least one weight");
        }
        RoutingMode::Weighted if policy.weights.values().all(|w| *w == 0) => {
            problems.push("weights", "at least one weight must be above 0");
        }
        RoutingMode::Pinned if policy.pinned.is_none() => {
            problems.push("pinned", "pinned routing needs a cluster");
        }
        _ => {}
    }
    let unused = |key: &str| {
        format!(
            "only used with routing = \"{key}\", not {:?}",
            policy.routing.as_str()
        )
    };
    if policy.routing != RoutingMode::Weighted && !policy.weights.is_empty() {
        problems.push("weights", unused("weighted"));
    }
    if policy.routing != RoutingMode::Pinned && policy.pinned.is_some() {
        problems.push("pinned", unused("pinned"));
    }
    if policy.weights.len() > MAX_WEIGHTED_CLUSTERS {
        problems.push(
            "weights",
            format!(
                "{} clusters; at most {MAX_WEIGHTED_CLUSTERS}",
                policy.weights.len()
            ),
        );
    }
    for (cluster, weight) in &policy.weights {
        if *weight > MAX_WEIGHT {
            problems.push(
                &format!("weights.{cluster}"),
                format!("{weight} is not in 0..={MAX_WEIGHT}"),
            );
        }
    }
}

fn outlier(o: &OutlierPolicy, problems: &mut Problems) {
    if !(1..=MAX_CONSECUTIVE_FAILURES).contains(&o.consecutive_failures) {
        problems.push(
            "outlier.consecutive_failures",
            format!(
                "{} is not in 1..={MAX_CONSECUTIVE_FAILURES}",
                o.consecutive_failures
            ),
        );
    }
    let above_zero = |d: Duration| !d.is_zero() && d <= MAX_EJECTION_TIME;
    let within = format!("must be above 0 and at most {MAX_EJECTION_TIME:?}");
    if !above_zero(o.interval) {
        problems.push("outlier.interval", within.clone());
    }
    if !above_zero(o.base_ejection_time) {
        problems.push("outlier.base_ejection_time", within);
    }
    if o.max_ejection_time < o.base_ejection_time || o.max_ejection_time > MAX_EJECTION_TIME {
        problems.push(
            "outlier.max_ejection_time",
            format!("must be at least base_ejection_time and at most {MAX_EJECTION_TIME:?}"),
        );
    }
    if o.max_ejection_percent > 100 {
        problems.push(
            "outlier.max_ejection_percent",
            format!("{} is not in 0..=100", o.max_ejection_percent),
        );
    }
}

fn limits(limits: &ConnectionLimits, problems: &mut Problems) {
    for (key, limit) in [
        ("limits.max_streams", limits.max_streams),
        ("limits.max_pending", limits.max_pending),
    ] {
        if let Some(n) = limit
            && !(1..=MAX_CONNECTION_LIMIT).contains(&n)
        {
            problems.push(key, format!("{n} is not in 1..={MAX_CONNECTION_LIMIT}"));
        }
    }
}

fn retries(r: &RetryPolicy, problems: &mut Problems) {
    if !(1..=MAX_ATTEMPTS).contains(&r.attempts) {
        problems.push(
            "retries.attempts",
            format!("{} is not in 1..={MAX_ATTEMPTS}", r.attempts),
        );
    }
    if r.budget_percent > 100 {
        problems.push(
            "retries.budget_percent",
            format!("{} is not in 0..=100", r.budget_percent),
        );
    }
    if let Some(t) = r.connect_timeout
        && !(MIN_CONNECT_TIMEOUT..=MAX_CONNECT_TIMEOUT).contains(&t)
    {
        problems.push("retries.connect_timeout", "must be between 10ms and 5m");
    }
}

fn faults(f: &FaultPolicy, problems: &mut Problems) {
    for (key, percent) in [
        ("faults.delay_percent", f.delay_percent),
        ("faults.abort_percent", f.abort_percent),
    ] {
        if !(0.0..=100.0).contains(&percent) {
            problems.push(key, format!("{percent} is not in 0..=100"));
        }
    }
    if let Some(d) = f.delay
        && d > MAX_FAULT_DELAY
    {
        problems.push("faults.delay", format!("at most {MAX_FAULT_DELAY:?}"));
    }
}
