//! Traffic policies of imported services as plain data: how an importing gateway
//! picks an exporting cluster, ejects a failing one, limits, retries and times out
//! streams, and which faults it injects. The gateway's tunnel enforces them; the
//! catalog stores them as [`TrafficPolicyRecord`]s so that a policy one cluster
//! declares (e.g. the exporter's canary split) applies to the importers it names.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use causeway_trust::ClusterName;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::types::{CommandError, ServiceKey};

/// Largest weight of one cluster in a weighted split: weights are relative, and
/// 10,000 gives 0.01 % steps without overflow concerns when summed over clusters.
pub const MAX_WEIGHT: u32 = 10_000;
/// Most clusters a weighted split may name: more than any federation has.
pub const MAX_WEIGHTED_CLUSTERS: usize = 256;
/// Most attempts one client connection may make (the first included): each
/// attempt can wait a connect timeout, and more clusters than this rarely exist.
pub const MAX_ATTEMPTS: u32 = 10;
/// Longest delay fault: longer would look like an outage rather than latency.
pub const MAX_FAULT_DELAY: Duration = Duration::from_secs(60);
/// Longest ejection: after an hour an operator should look, not the gateway wait.
pub const MAX_EJECTION_TIME: Duration = Duration::from_secs(3600);
/// Largest connection limit per (service, cluster): more than the descriptors one
/// process gets.
pub const MAX_CONNECTION_LIMIT: u32 = 1_000_000;

/// How a new stream picks among the clusters exporting a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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

impl std::fmt::Display for RoutingMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RoutingMode::Nearest => "nearest",
            RoutingMode::LocalFirst => "local-first",
            RoutingMode::Weighted => "weighted",
            RoutingMode::Pinned => "pinned",
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
    /// Every problem, each with its key path under `prefix` (e.g.
    /// `traffic_policy[0]`).
    pub fn validate(&self, prefix: &str) -> Vec<TrafficPolicyProblem> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| {
            problems.push(TrafficPolicyProblem {
                key: format!("{prefix}.{key}"),
                message,
            });
        };
        match self.routing {
            RoutingMode::Weighted => {
                if self.weights.is_empty() {
                    problem(
                        "weights",
                        "weighted routing needs at least one weight".into(),
                    );
                } else if self.weights.values().all(|w| *w == 0) {
                    problem("weights", "at least one weight must be above 0".into());
                }
            }
            RoutingMode::Pinned => {
                if self.pinned.is_none() {
                    problem("pinned", "pinned routing needs a cluster".into());
                }
            }
            RoutingMode::Nearest | RoutingMode::LocalFirst => {}
        }
        if self.routing != RoutingMode::Weighted && !self.weights.is_empty() {
            problem(
                "weights",
                format!(
                    "only used with routing = \"weighted\", not {:?}",
                    self.routing.to_string()
                ),
            );
        }
        if self.routing != RoutingMode::Pinned && self.pinned.is_some() {
            problem(
                "pinned",
                format!(
                    "only used with routing = \"pinned\", not {:?}",
                    self.routing.to_string()
                ),
            );
        }
        if self.weights.len() > MAX_WEIGHTED_CLUSTERS {
            problem(
                "weights",
                format!(
                    "{} clusters; at most {MAX_WEIGHTED_CLUSTERS}",
                    self.weights.len()
                ),
            );
        }
        for (cluster, weight) in &self.weights {
            if *weight > MAX_WEIGHT {
                problem(
                    &format!("weights.{cluster}"),
                    format!("{weight} is not in 0..={MAX_WEIGHT}"),
                );
            }
        }
        if let Some(o) = &self.outlier {
            if o.consecutive_failures == 0 || o.consecutive_failures > 1000 {
                problem(
                    "outlier.consecutive_failures",
                    format!("{} is not in 1..=1000", o.consecutive_failures),
                );
            }
            if o.interval.is_zero() || o.interval > MAX_EJECTION_TIME {
                problem(
                    "outlier.interval",
                    format!("must be above 0 and at most {MAX_EJECTION_TIME:?}"),
                );
            }
            if o.base_ejection_time.is_zero() || o.base_ejection_time > MAX_EJECTION_TIME {
                problem(
                    "outlier.base_ejection_time",
                    format!("must be above 0 and at most {MAX_EJECTION_TIME:?}"),
                );
            }
            if o.max_ejection_time < o.base_ejection_time || o.max_ejection_time > MAX_EJECTION_TIME
            {
                problem(
                    "outlier.max_ejection_time",
                    format!(
                        "must be at least base_ejection_time and at most {MAX_EJECTION_TIME:?}"
                    ),
                );
            }
            if o.max_ejection_percent > 100 {
                problem(
                    "outlier.max_ejection_percent",
                    format!("{} is not in 0..=100", o.max_ejection_percent),
                );
            }
        }
        for (key, limit) in [
            ("limits.max_streams", self.limits.max_streams),
            ("limits.max_pending", self.limits.max_pending),
        ] {
            if let Some(n) = limit
                && (n == 0 || n > MAX_CONNECTION_LIMIT)
            {
                problem(key, format!("{n} is not in 1..={MAX_CONNECTION_LIMIT}"));
            }
        }
        if self.retries.attempts == 0 || self.retries.attempts > MAX_ATTEMPTS {
            problem(
                "retries.attempts",
                format!("{} is not in 1..={MAX_ATTEMPTS}", self.retries.attempts),
            );
        }
        if self.retries.budget_percent > 100 {
            problem(
                "retries.budget_percent",
                format!("{} is not in 0..=100", self.retries.budget_percent),
            );
        }
        if let Some(t) = self.retries.connect_timeout
            && (t < Duration::from_millis(10) || t > Duration::from_secs(300))
        {
            problem(
                "retries.connect_timeout",
                "must be between 10ms and 5m".into(),
            );
        }
        if let Some(t) = self.idle_timeout
            && (t < Duration::from_secs(1) || t > Duration::from_secs(7 * 24 * 3600))
        {
            problem("idle_timeout", "must be between 1s and 7d".into());
        }
        for (key, percent) in [
            ("faults.delay_percent", self.faults.delay_percent),
            ("faults.abort_percent", self.faults.abort_percent),
        ] {
            if !(0.0..=100.0).contains(&percent) {
                problem(key, format!("{percent} is not in 0..=100"));
            }
        }
        if let Some(d) = self.faults.delay
            && d > MAX_FAULT_DELAY
        {
            problem("faults.delay", format!("at most {MAX_FAULT_DELAY:?}"));
        }
        problems
    }
}

impl FromStr for RoutingMode {
    type Err = CommandError;
    fn from_str(s: &str) -> Result<Self, CommandError> {
        Ok(match s {
            "nearest" => RoutingMode::Nearest,
            "local-first" => RoutingMode::LocalFirst,
            "weighted" => RoutingMode::Weighted,
            "pinned" => RoutingMode::Pinned,
            _ => {
                let shown: String = s.chars().take(64).collect();
                return Err(CommandError::invalid(
                    "routing",
                    format!("{shown:?} is not one of nearest, local-first, weighted, pinned"),
                ));
            }
        })
    }
}

/// One problem of a traffic policy: the key path and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct TrafficPolicyProblem {
    /// The key path, e.g. `traffic_policy[0].retries.attempts`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
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
    fn durations(&self) -> Vec<(&'static str, Duration)> {
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

// === Records ===

/// Which importing clusters a traffic policy record applies to.
///
/// Written as a list of cluster names, or `["*"]` for every cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrafficScope {
    /// Every cluster of the federation (`["*"]`).
    All,
    /// Only the clusters named.
    Clusters(Vec<ClusterName>),
}

impl TrafficScope {
    /// Whether the policy applies to `cluster`'s importers.
    pub fn includes(&self, cluster: &ClusterName) -> bool {
        match self {
            TrafficScope::All => true,
            TrafficScope::Clusters(clusters) => clusters.contains(cluster),
        }
    }

    /// The scope as configuration and status write it: `*` or cluster names.
    pub fn to_strings(&self) -> Vec<String> {
        match self {
            TrafficScope::All => vec!["*".to_owned()],
            TrafficScope::Clusters(clusters) => clusters.iter().map(ToString::to_string).collect(),
        }
    }

    /// Parses the list form; `*` must stand alone. On error, says which entry
    /// (by index) is wrong and why.
    pub fn from_strings<S: AsRef<str>>(items: &[S]) -> Result<Self, (usize, String)> {
        if let Some(i) = items.iter().position(|s| s.as_ref() == "*") {
            if items.len() > 1 {
                return Err((i, "\"*\" (every cluster) must be the only entry".into()));
            }
            return Ok(TrafficScope::All);
        }
        items
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_ref()
                    .parse()
                    .map_err(|e: causeway_trust::NameError| (i, e.to_string()))
            })
            .collect::<Result<_, _>>()
            .map(TrafficScope::Clusters)
    }
}

impl fmt::Display for TrafficScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_strings().join(","))
    }
}

impl Serialize for TrafficScope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_strings().serialize(s)
    }
}

impl<'de> Deserialize<'de> for TrafficScope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        TrafficScope::from_strings(&items)
            .map_err(|(i, e)| serde::de::Error::custom(format!("entry {i}: {e}")))
    }
}

/// A traffic policy one cluster declares for one service, and the importing
/// clusters it applies to. The catalog holds at most one per (owner, service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficPolicyRecord {
    /// The cluster that declared it; only that cluster's gateway (or an admin)
    /// writes it.
    pub owner: ClusterName,
    /// The imported service it governs (all its ports).
    pub service: ServiceKey,
    /// The importing clusters it applies to.
    pub apply_to: TrafficScope,
    /// The policy.
    pub policy: TrafficPolicy,
}

/// Checks a record on its own: the policy's rules, whole-millisecond durations
/// (the wire's unit), and a bounded, duplicate-free `apply_to`.
pub(crate) fn validate_record(
    record: &TrafficPolicyRecord,
    max_targets: usize,
) -> Result<(), CommandError> {
    if let Some(p) = record
        .policy
        .validate("traffic_policy.policy")
        .into_iter()
        .next()
    {
        return Err(CommandError::invalid(p.key, p.message));
    }
    for (key, d) in record.policy.durations() {
        if d.subsec_nanos() % 1_000_000 != 0 {
            return Err(CommandError::invalid(
                format!("traffic_policy.policy.{key}"),
                format!("{d:?} is not a whole number of milliseconds"),
            ));
        }
    }
    if let TrafficScope::Clusters(clusters) = &record.apply_to {
        if clusters.is_empty() {
            return Err(CommandError::invalid(
                "traffic_policy.apply_to",
                "names no cluster; list at least one, or \"*\" for every cluster",
            ));
        }
        if clusters.len() > max_targets {
            return Err(CommandError::invalid(
                "traffic_policy.apply_to",
                format!("{} clusters; at most {max_targets}", clusters.len()),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, c) in clusters.iter().enumerate() {
            if !seen.insert(c) {
                return Err(CommandError::invalid(
                    format!("traffic_policy.apply_to[{i}]"),
                    format!("{c} is listed twice"),
                ));
            }
        }
    }
    Ok(())
}
