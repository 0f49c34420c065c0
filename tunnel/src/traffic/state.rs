//! Per-(service, cluster) state: outlier ejection and stream counts, and the
//! per-service retry budget. Clock readings come from the caller.

use std::time::{Duration, Instant};

use causeway_policy::OutlierPolicy;

/// What went wrong with one attempt, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection, no answer in time, or the stream broke before the answer.
    Connect,
    /// The peer answered `NoEndpoints` or `Overloaded`.
    Refused,
    /// An accepted stream was torn down by an error.
    Stream,
}

/// The state of one cluster for one imported service.
#[derive(Debug, Clone, Default)]
pub struct ClusterTraffic {
    consecutive_failures: u32,
    first_failure: Option<Instant>,
    ejected_until: Option<Instant>,
    /// Ejections in a row; each lasts this many base times. Forgotten after a
    /// max ejection time without a new one.
    ejections: u32,
    last_ejection_end: Option<Instant>,
    /// Streams opening or open now.
    pub(crate) streams: u32,
    /// Streams waiting for the peer's answer now.
    pub(crate) pending: u32,
}

impl ClusterTraffic {
    /// Whether the cluster is ejected at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }

    /// When the current ejection ends, if ejected at `now`.
    pub fn ejected_until(&self, now: Instant) -> Option<Instant> {
        self.ejected_until.filter(|until| now < *until)
    }

    /// Ejections in a row so far.
    pub fn ejections(&self) -> u32 {
        self.ejections
    }

    /// Streams opening or open now.
    pub fn streams(&self) -> u32 {
        self.streams
    }

    /// Streams waiting for an answer now.
    pub fn pending(&self) -> u32 {
        self.pending
    }

    /// An attempt succeeded: the failure streak ends.
    pub fn on_success(&mut self, now: Instant, policy: Option<&OutlierPolicy>) {
        self.consecutive_failures = 0;
        self.first_failure = None;
        if let (Some(p), Some(end)) = (policy, self.last_ejection_end)
            && now.saturating_duration_since(end) >= p.max_ejection_time
        {
            self.ejections = 0;
            self.last_ejection_end = None;
        }
    }

    /// An attempt failed at `now`. `may_eject` says whether the service's cap
    /// allows one more ejected cluster. Returns the ejection time when this
    /// failure ejected the cluster.
    pub fn on_failure(
        &mut self,
        now: Instant,
        policy: &OutlierPolicy,
        may_eject: bool,
    ) -> Option<Duration> {
        if self.is_ejected(now) {
            return None;
        }
        match self.first_failure {
            Some(first) if now.saturating_duration_since(first) <= policy.interval => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            }
            _ => {
                self.first_failure = Some(now);
                self.consecutive_failures = 1;
            }
        }
        if self.consecutive_failures < policy.consecutive_failures || !may_eject {
            return None;
        }
        if let Some(end) = self.last_ejection_end
            && now.saturating_duration_since(end) >= policy.max_ejection_time
        {
            self.ejections = 0;
        }
        self.ejections = self.ejections.saturating_add(1);
        let time = policy
            .base_ejection_time
            .saturating_mul(self.ejections)
            .min(policy.max_ejection_time);
        self.ejected_until = Some(now + time);
        self.last_ejection_end = Some(now + time);
        self.consecutive_failures = 0;
        self.first_failure = None;
        Some(time)
    }
}

/// Retries allowed without any opens to earn them: a quiet service can still
/// retry a few times. Also the most tokens a budget holds, so a burst of retries
/// after a calm spell stays small.
pub const RETRY_RESERVE: f64 = 10.0;
/// Tokens a budget earns per second with no traffic at all, up to the reserve:
/// an outage that spent the budget leaves the next request its retry (or hedge)
/// within a tenth of a second, not only after many new client connections.
pub const RETRY_REFILL_PER_SECOND: f64 = 10.0;

/// A token bucket that bounds retries: each first attempt deposits
/// `percent / 100` tokens, time deposits [`RETRY_REFILL_PER_SECOND`], each retry
/// takes one, and the bucket holds at most [`RETRY_RESERVE`]. Over any stretch of
/// `t` seconds, retries ≤ [`RETRY_RESERVE`] + [`RETRY_REFILL_PER_SECOND`] × `t` +
/// percent % of first attempts: under load the share dominates, and when quiet
/// the time refill keeps failover possible (as Finagle's and Envoy's budgets).
#[derive(Debug, Clone)]
pub struct RetryBudget {
    tokens: f64,
    refilled: Instant,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            tokens: RETRY_RESERVE,
            refilled: Instant::now(),
        }
    }
}

impl RetryBudget {
    /// A client connection made its first attempt.
    pub fn on_first_attempt(&mut self, percent: u32) {
        self.on_first_attempt_at(percent, Instant::now());
    }

    /// Takes a token for a retry; `false` when the budget is spent.
    pub fn try_retry(&mut self) -> bool {
        self.try_retry_at(Instant::now())
    }

    /// [`Self::on_first_attempt`] at `now`.
    pub fn on_first_attempt_at(&mut self, percent: u32, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens + f64::from(percent) / 100.0).min(RETRY_RESERVE);
    }

    /// [`Self::try_retry`] at `now`.
    pub fn try_retry_at(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * RETRY_REFILL_PER_SECOND).min(RETRY_RESERVE);
        self.refilled = self.refilled.max(now);
    }
}
