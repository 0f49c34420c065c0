//! `TrafficPolicy`: how this cluster's gateway sends new connections of one imported
//! service to the clusters exporting it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::{self, FieldProblem};

/// Largest weight of one cluster: weights are relative, 10,000 gives 0.01 % steps.
pub const MAX_TRAFFIC_WEIGHT: u32 = 10_000;
/// Most clusters a weighted split may name: more than a federation is designed for.
pub const MAX_WEIGHTED_CLUSTERS: usize = 256;
/// Most attempts per client connection (the first included): each may wait a
/// connect timeout.
pub const MAX_TRAFFIC_ATTEMPTS: u32 = 10;
/// Longest ejection, in seconds: after an hour an operator should look.
pub const MAX_EJECTION_SECONDS: u32 = 3600;
/// Largest connection limit per (service, cluster): above what one process can open.
pub const MAX_CONNECTION_LIMIT: u32 = 1_000_000;
/// Longest injected delay, in milliseconds: longer looks like an outage.
pub const MAX_FAULT_DELAY_MILLIS: u32 = 60_000;
/// Most importing clusters one policy may name in `applyTo`: a federation is
/// designed for about 100.
pub const MAX_APPLY_TO: usize = 256;

/// How a new connection picks among the exporting clusters.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TrafficRouting {
    /// The healthy cluster with the lowest measured RTT.
    #[default]
    Nearest,
    /// This cluster's own endpoints when it exports the service too, else nearest.
    LocalFirst,
    /// A random draw by `weights` (a cross-cluster canary).
    Weighted,
    /// Only the `pinned` cluster.
    Pinned,
}

/// The traffic policy of one imported service, enforced by this cluster's gateway
/// on new connections from local clients.
///
/// Namespaced: it governs the imported service of the same namespace named in
/// `spec.service`, so the team that owns a namespace sets its own canaries and
/// limits. One policy per service.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "causeway.dev",
    version = "v1alpha1",
    kind = "TrafficPolicy",
    plural = "trafficpolicies",
    shortname = "ctp",
    category = "causeway",
    namespaced,
    status = "TrafficPolicyStatus",
    derive = "PartialEq",
    doc = "How this cluster's gateway spreads new connections of one imported service over the exporting clusters: routing, outlier ejection, limits, retries, timeouts, faults.",
    printcolumn = r#"{"name":"Service","type":"string","jsonPath":".spec.service"}"#,
    printcolumn = r#"{"name":"Routing","type":"string","jsonPath":".spec.routing"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicySpec {
    /// The imported service in this namespace.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub service: String,
    /// `nearest` (default), `local-first`, `weighted` or `pinned`.
    #[serde(default)]
    pub routing: TrafficRouting,
    /// Relative weight per cluster name, for `weighted`; unlisted clusters get none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, u32>,
    /// The cluster for `pinned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
    /// Outlier ejection; off when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetectionSpec>,
    /// Circuit breaking per exporting cluster.
    #[serde(default)]
    pub connection_limits: ConnectionLimitsSpec,
    /// Retries on another cluster and the per-attempt connect timeout.
    #[serde(default)]
    pub retries: RetriesSpec,
    /// Close a connection that carried no byte either way for this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<u32>,
    /// Faults injected for resilience tests; off when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<FaultsSpec>,
    /// The importing clusters whose gateways apply the policy, by name, or `["*"]`
    /// for every cluster of the federation; this cluster only when left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub apply_to: Vec<String>,
}

/// When a failing cluster is taken out of rotation for this service.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetectionSpec {
    /// Consecutive connect failures or stream errors that eject a cluster.
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
    /// The failures must fall within this many seconds.
    #[serde(default = "default_interval_seconds")]
    pub interval_seconds: u32,
    /// First ejection; the n-th in a row lasts n times as long.
    #[serde(default = "default_base_ejection_seconds")]
    pub base_ejection_seconds: u32,
    /// Longest ejection.
    #[serde(default = "default_max_ejection_seconds")]
    pub max_ejection_seconds: u32,
    /// Most exporting clusters ejected at once, in per cent (rounded down).
    #[serde(default = "default_max_ejection_percent")]
    pub max_ejection_percent: u32,
}

fn default_consecutive_failures() -> u32 {
    5
}
fn default_interval_seconds() -> u32 {
    10
}
fn default_base_ejection_seconds() -> u32 {
    30
}
fn default_max_ejection_seconds() -> u32 {
    300
}
fn default_max_ejection_percent() -> u32 {
    50
}

/// Connection limits per (service, cluster); unlimited when left out.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionLimitsSpec {
    /// Connections open at once; more are refused at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_streams: Option<u32>,
    /// Connections waiting for the exporting gateway's answer at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending: Option<u32>,
}

/// Retries of a connection that found a cluster unable to serve it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetriesSpec {
    /// Attempts per connection, the first included.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Retries add at most this many per cent to the service's opens (plus a
    /// small reserve).
    #[serde(default = "default_budget_percent")]
    pub budget_percent: u32,
    /// How long one attempt may take; the gateway's answer timeout when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_millis: Option<u32>,
}

impl Default for RetriesSpec {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            budget_percent: default_budget_percent(),
            connect_timeout_millis: None,
        }
    }
}

fn default_attempts() -> u32 {
    3
}
fn default_budget_percent() -> u32 {
    20
}

/// Faults injected into new connections.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaultsSpec {
    /// Delay added before opening, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_millis: Option<u32>,
    /// Share of new connections delayed, per cent.
    #[serde(default)]
    pub delay_percent: f64,
    /// Share of new connections refused, per cent.
    #[serde(default)]
    pub abort_percent: f64,
}

/// Condition type: the gateway applies the policy (False with the reason when the
/// spec is invalid).
pub const CONDITION_TRAFFIC_ACCEPTED: &str = "Accepted";

/// What the gateway observed of a traffic policy.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicyStatus {
    /// `Accepted`: True, False (with the reason) or Unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // One condition per type, so server-side apply merges them by type.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Exporting clusters ejected now, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ejected_clusters: Vec<String>,
}

impl TrafficPolicySpec {
    /// Every problem with the spec, each with its field path; the same bounds the
    /// gateway's `[[traffic_policy]]` enforces.
    pub fn validate(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| {
            problems.push(FieldProblem::new(format!("spec.{field}"), message));
        };
        if let Some(why) = validate::dns_label(&self.service) {
            problem("service", why);
        }
        if self.apply_to.len() > MAX_APPLY_TO {
            problem(
                "applyTo",
                format!(
                    "lists {} clusters; at most {MAX_APPLY_TO} (\"*\" for every cluster)",
                    self.apply_to.len()
                ),
            );
        }
        if self.apply_to.iter().any(|c| c == "*") && self.apply_to.len() > 1 {
            problem(
                "applyTo",
                "\"*\" already names every cluster; list it alone".into(),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, cluster) in self.apply_to.iter().enumerate() {
            if cluster != "*"
                && let Some(why) = validate::dns_label(cluster)
            {
                problem(&format!("applyTo[{i}]"), why);
            } else if !seen.insert(cluster) {
                problem(
                    &format!("applyTo[{i}]"),
                    format!("{cluster:?} is listed twice"),
                );
            }
        }
        match self.routing {
            TrafficRouting::Weighted if self.weights.values().all(|w| *w == 0) => {
                problem("weights", "weighted routing needs a weight above 0".into());
            }
            TrafficRouting::Pinned if self.pinned.is_none() => {
                problem("pinned", "pinned routing needs a cluster".into());
            }
            _ => {}
        }
        if self.routing != TrafficRouting::Weighted && !self.weights.is_empty() {
            problem("weights", "only used with routing: weighted".into());
        }
        if self.routing != TrafficRouting::Pinned && self.pinned.is_some() {
            problem("pinned", "only used with routing: pinned".into());
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
            if let Some(why) = validate::dns_label(cluster) {
                problem(&format!("weights.{cluster}"), why);
            }
            if *weight > MAX_TRAFFIC_WEIGHT {
                problem(
                    &format!("weights.{cluster}"),
                    format!("{weight} is not in 0-{MAX_TRAFFIC_WEIGHT}"),
                );
            }
        }
        if let Some(pinned) = &self.pinned
            && let Some(why) = validate::dns_label(pinned)
        {
            problem("pinned", why);
        }
        if let Some(o) = &self.outlier_detection {
            let in_range = |v: u32, lo: u32, hi: u32| (lo..=hi).contains(&v);
            for (field, value, lo, hi) in [
                ("consecutiveFailures", o.consecutive_failures, 1, 1000),
                (
                    "intervalSeconds",
                    o.interval_seconds,
                    1,
                    MAX_EJECTION_SECONDS,
                ),
                (
                    "baseEjectionSeconds",
                    o.base_ejection_seconds,
                    1,
                    MAX_EJECTION_SECONDS,
                ),
                ("maxEjectionPercent", o.max_ejection_percent, 0, 100),
            ] {
                if !in_range(value, lo, hi) {
                    problem(
                        &format!("outlierDetection.{field}"),
                        format!("{value} is not in {lo}-{hi}"),
                    );
                }
            }
            if !in_range(
                o.max_ejection_seconds,
                o.base_ejection_seconds,
                MAX_EJECTION_SECONDS,
            ) {
                problem(
                    "outlierDetection.maxEjectionSeconds",
                    format!(
                        "must be at least baseEjectionSeconds and at most {MAX_EJECTION_SECONDS}"
                    ),
                );
            }
        }
        for (field, limit) in [
            ("maxStreams", self.connection_limits.max_streams),
            ("maxPending", self.connection_limits.max_pending),
        ] {
            if let Some(n) = limit
                && !(1..=MAX_CONNECTION_LIMIT).contains(&n)
            {
                problem(
                    &format!("connectionLimits.{field}"),
                    format!("{n} is not in 1-{MAX_CONNECTION_LIMIT}"),
                );
            }
        }
        let r = &self.retries;
        if !(1..=MAX_TRAFFIC_ATTEMPTS).contains(&r.attempts) {
            problem(
                "retries.attempts",
                format!("{} is not in 1-{MAX_TRAFFIC_ATTEMPTS}", r.attempts),
            );
        }
        if r.budget_percent > 100 {
            problem(
                "retries.budgetPercent",
                format!("{} is not in 0-100", r.budget_percent),
            );
        }
        if let Some(ms) = r.connect_timeout_millis
            && !(10..=300_000).contains(&ms)
        {
            problem(
                "retries.connectTimeoutMillis",
                format!("{ms} is not in 10-300000"),
            );
        }
        if let Some(s) = self.idle_timeout_seconds
            && !(1..=7 * 24 * 3600).contains(&s)
        {
            problem("idleTimeoutSeconds", format!("{s} is not in 1-604800"));
        }
        if let Some(f) = &self.faults {
            for (field, percent) in [
                ("delayPercent", f.delay_percent),
                ("abortPercent", f.abort_percent),
            ] {
                if !(0.0..=100.0).contains(&percent) {
                    problem(
                        &format!("faults.{field}"),
                        format!("{percent} is not in 0-100"),
                    );
                }
            }
            if let Some(ms) = f.delay_millis
                && ms > MAX_FAULT_DELAY_MILLIS
            {
                problem(
                    "faults.delayMillis",
                    format!("{ms} is above {MAX_FAULT_DELAY_MILLIS}"),
                );
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_example_shape_and_validates() {
        let yaml = r#"
service: web
routing: weighted
weights: { west: 90, east: 10 }
outlierDetection:
  consecutiveFailures: 5
  baseEjectionSeconds: 30
connectionLimits: { maxStreams: 1000 }
retries: { attempts: 2, connectTimeoutMillis: 2000 }
idleTimeoutSeconds: 3600
"#;
        let spec: TrafficPolicySpec = serde_norway::from_str(yaml).expect("parses");
        assert_eq!(spec.routing, TrafficRouting::Weighted);
        assert_eq!(spec.weights["west"], 90);
        let outlier = spec.outlier_detection.as_ref().expect("set");
        assert_eq!(outlier.max_ejection_percent, 50);
        assert_eq!(spec.retries.budget_percent, 20);
        assert!(spec.apply_to.is_empty(), "this cluster only by default");
        assert!(spec.validate().is_empty(), "{:?}", spec.validate());
    }

    #[test]
    fn apply_to_names_clusters_or_every_cluster_alone() {
        let spec = |apply_to: &[&str]| TrafficPolicySpec {
            apply_to: apply_to.iter().map(|c| (*c).to_owned()).collect(),
            ..serde_norway::from_str("service: web").expect("parses")
        };
        assert_eq!(spec(&["*"]).validate(), []);
        assert_eq!(spec(&["east", "north"]).validate(), []);
        let fields = |s: TrafficPolicySpec| -> Vec<String> {
            s.validate().into_iter().map(|p| p.field).collect()
        };
        assert_eq!(fields(spec(&["east", "*"])), ["spec.applyTo"]);
        assert_eq!(fields(spec(&["east", "x_y"])), ["spec.applyTo[1]"]);
        assert_eq!(fields(spec(&["east", "east"])), ["spec.applyTo[1]"]);
        let many: Vec<String> = (0..=MAX_APPLY_TO).map(|i| format!("c{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(fields(spec(&refs)), ["spec.applyTo"]);
    }

    #[test]
    fn reports_bad_fields_with_paths() {
        let spec = TrafficPolicySpec {
            service: "Web".into(),
            routing: TrafficRouting::Pinned,
            weights: BTreeMap::from([("west".into(), 20_000)]),
            pinned: None,
            outlier_detection: Some(OutlierDetectionSpec {
                consecutive_failures: 0,
                interval_seconds: 10,
                base_ejection_seconds: 30,
                max_ejection_seconds: 10,
                max_ejection_percent: 101,
            }),
            connection_limits: ConnectionLimitsSpec {
                max_streams: Some(0),
                max_pending: None,
            },
            retries: RetriesSpec {
                attempts: 0,
                budget_percent: 101,
                connect_timeout_millis: Some(1),
            },
            idle_timeout_seconds: Some(0),
            faults: Some(FaultsSpec {
                delay_millis: Some(61_000),
                delay_percent: 101.0,
                abort_percent: -1.0,
            }),
            apply_to: vec!["*".into(), "East".into()],
        };
        let fields: Vec<String> = spec.validate().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "spec.service",
                "spec.applyTo",
                "spec.applyTo[1]",
                "spec.pinned",
                "spec.weights",
                "spec.weights.west",
                "spec.outlierDetection.consecutiveFailures",
                "spec.outlierDetection.maxEjectionPercent",
                "spec.outlierDetection.maxEjectionSeconds",
                "spec.connectionLimits.maxStreams",
                "spec.retries.attempts",
                "spec.retries.budgetPercent",
                "spec.retries.connectTimeoutMillis",
                "spec.idleTimeoutSeconds",
                "spec.faults.delayPercent",
                "spec.faults.abortPercent",
                "spec.faults.delayMillis",
            ]
        );
    }
}
