//! Traffic policies of imported services as plain data: how an importing gateway
//! picks an exporting cluster, ejects a failing one, limits, retries and times out
//! streams, and which faults it injects.
//!
//! The tunnel enforces them; the registry stores them as records so that a policy
//! one cluster declares (the exporter's canary split) applies to the importers it
//! names ([`TrafficScope`]); the gateway's `[[traffic_policy]]` and the
//! `TrafficPolicy` CRD convert into [`TrafficPolicy`]. Every bound is a constant
//! here, and [`TrafficPolicy::validate`] is the one check all of them run.

mod choose;
mod scope;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use causeway_trust::ClusterName;
use serde::{Deserialize, Serialize};

pub use choose::{TrafficCandidate, choose};
pub use scope::{MAX_APPLY_TO, TrafficScope, validate_apply_to};

use crate::ParseError;

// === Bounds ===

/// Largest weight of one cluster in a weighted split: weights are relative, and
/// 10,000 gives 0.01 % steps without overflow concerns when summed over clusters.
pub const MAX_WEIGHT: u32 = 10_000;
/// Most clusters a weighted split may name: more than any federation has.
pub const MAX_WEIGHTED_CLUSTERS: usize = 256;
/// Most attempts one client connection may make (the first included): each
/// attempt can wait a connect timeout, and more clusters than this rarely exist.
pub const MAX_ATTEMPTS: u32 = 10;
/// Most consecutive failures before an ejection: beyond this, outlier detection
/// would never fire on a real fault.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 1000;
/// Longest delay fault: longer would look like an outage rather than latency.
pub const MAX_FAULT_DELAY: Duration = Duration::from_secs(60);
/// Longest ejection (and failure interval): after an hour an operator should look,
/// not the gateway wait.
pub const MAX_EJECTION_TIME: Duration = Duration::from_secs(3600);
/// Largest connection limit per (service, cluster): more than the descriptors one
/// process gets.
pub const MAX_CONNECTION_LIMIT: u32 = 1_000_000;
/// Shortest per-attempt connect timeout: below a loopback round trip plus an
/// endpoint's accept, every attempt would fail.
pub const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(10);
/// Longest per-attempt connect timeout: a client has long given up by then.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(300);
/// Shortest idle timeout: below a second, interactive protocols would be cut
/// between keystrokes.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest idle timeout, a week: longer is no timeout at all.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

// === Types ===

/// How a new stream picks among the clusters exporting a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RoutingMode {
    /// The healthy cluster with the lowest measured RTT (weights break ties).
    #[default]
    Nearest,
    /// This gateway's own cluster when it exports the service too, else nearest.
    LocalFirst,
    /// A random draw by the policy's `weights` (a canary split).
    Weighted,
    /// Only the policy's `pinned` cluster.
    Pinned,
}

impl RoutingMode {
    /// Every mode, in the order documentation lists them.
    pub const ALL: [RoutingMode; 4] = [
        RoutingMode::Nearest,
        RoutingMode::LocalFirst,
        RoutingMode::Weighted,
        RoutingMode::Pinned,
    ];

    /// The mode as configuration writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RoutingMode::Nearest => "nearest",
            RoutingMode::LocalFirst => "local-first",
            RoutingMode::Weighted => "weighted",
            RoutingMode::Pinned => "pinned",
        }
    }
}

impl fmt::Display for RoutingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RoutingMode {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        RoutingMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                ParseError::not_one_of("routing", s, "nearest, local-first, weighted, pinned")
            })
    }
}

/// Outlier ejection: a cluster that keeps failing is taken out of rotation for a
/// while, per service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierPolicy {
    /// Consecutive failures (connect failures, refusals with `NoEndpoints` or
    /// `Overloaded`, stream errors) that eject a cluster.
    pub consecutive_failures: u32,
    /// The failures must fall within this interval of the first one.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// First ejection time; the n-th ejection in a row lasts `n` times as long.
    #[serde(with = "humantime_serde")]
    pub base_ejection_time: Duration,
    /// Longest ejection.
    #[serde(with = "humantime_serde")]
    pub max_ejection_time: Duration,
    /// Most clusters of one service ejected at once, in per cent of its exporters
    /// (rounded down): a federation-wide fault must not eject everything.
    pub max_ejection_percent: u8,
}

impl Default for OutlierPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

/// Circuit breaking per (service, cluster); `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Streams open (being opened or carrying bytes) at once.
    pub max_streams: Option<u32>,
    /// Streams being opened (waiting for the peer's answer) at once.
    pub max_pending: Option<u32>,
}

/// Retries of a client connection on another cluster, and per-attempt timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts per client connection, the first included (1: no retry).
    pub attempts: u32,
    /// Retries may add at most this many per cent to the opens of the service
    /// (plus a small reserve the tunnel keeps, so a quiet service can retry).
    pub budget_percent: u32,
    /// How long one attempt may take to get the peer's answer; the tunnel's
    /// `answer_timeout_ms` when unset.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            budget_percent: 20,
            connect_timeout: None,
        }
    }
}

/// Faults injected into new streams, for resilience tests. Off unless set.
///
/// Equality compares the percentages bit for bit, so that it is an equivalence
/// (`NaN` equals itself) and a policy survives any round trip unchanged: the catalog
/// compares records and a gateway compares what it published with what is stored.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultPolicy {
    /// Delay added before opening the stream.
    #[serde(with = "humantime_serde")]
    pub delay: Option<Duration>,
    /// Share of new streams delayed, per cent (0-100).
    pub delay_percent: f64,
    /// Share of new streams refused at once, per cent (0-100).
    pub abort_percent: f64,
}

impl PartialEq for FaultPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.delay == other.delay
            && self.delay_percent.to_bits() == other.delay_percent.to_bits()
            && self.abort_percent.to_bits() == other.abort_percent.to_bits()
    }
}

impl Eq for FaultPolicy {}

impl FaultPolicy {
    /// Whether any fault may be injected.
    pub fn is_active(&self) -> bool {
        self.abort_percent > 0.0 || (self.delay.is_some() && self.delay_percent > 0.0)
    }
}

/// The traffic policy of one imported service (all its ports).
///
/// The default value is what a service without a declared policy follows.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrafficPolicy {
    /// How a cluster is picked.
    pub routing: RoutingMode,
    /// Relative weights per cluster for `weighted`; unlisted clusters get nothing.
    pub weights: BTreeMap<ClusterName, u32>,
    /// The one cluster for `pinned`.
    pub pinned: Option<ClusterName>,
    /// Outlier ejection; off when unset.
    pub outlier: Option<OutlierPolicy>,
    /// Circuit breaking.
    pub limits: ConnectionLimits,
    /// Retries and per-attempt timeout.
    pub retries: RetryPolicy,
    /// A stream that carries no byte either way for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// Injected faults.
    pub faults: FaultPolicy,
}

impl TrafficPolicy {
    /// The same policy with every duration cut to whole milliseconds: the catalog
    /// stores durations as milliseconds, so this is the form a record carries.
    pub fn in_whole_millis(&self) -> TrafficPolicy {
        let ms =
            |d: Duration| Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut out = self.clone();
        if let Some(o) = &mut out.outlier {
            o.interval = ms(o.interval);
            o.base_ejection_time = ms(o.base_ejection_time);
            o.max_ejection_time = ms(o.max_ejection_time);
        }
        out.retries.connect_timeout = out.retries.connect_timeout.map(ms);
        out.idle_timeout = out.idle_timeout.map(ms);
        out.faults.delay = out.faults.delay.map(ms);
        out
    }

    /// Every duration with its key, for checks that apply to all of them.
    pub fn durations(&self) -> Vec<(&'static str, Duration)> {
        let mut out = Vec::new();
        if let Some(o) = &self.outlier {
            out.push(("outlier.interval", o.interval));
            out.push(("outlier.base_ejection_time", o.base_ejection_time));
            out.push(("outlier.max_ejection_time", o.max_ejection_time));
        }
        out.extend(
            self.retries
                .connect_timeout
                .map(|d| ("retries.connect_timeout", d)),
        );
        out.extend(self.idle_timeout.map(|d| ("idle_timeout", d)));
        out.extend(self.faults.delay.map(|d| ("faults.delay", d)));
        out
    }
}

#[cfg(test)]
mod tests;
