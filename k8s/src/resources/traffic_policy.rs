//! `TrafficPolicy`: how this cluster's gateway sends new connections of one imported
//! service to the clusters exporting it.

use std::collections::BTreeMap;
use std::time::Duration;

use causeway_policy::{
    ConnectionLimits, FaultPolicy, MAX_APPLY_TO, OutlierPolicy, Problem, RetryPolicy, RoutingMode,
    validate_apply_to,
};
use causeway_trust::ClusterName;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate;

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
    pub routing: RoutingMode,
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
    #[schemars(length(max = MAX_APPLY_TO))]
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

/// The policy model's key paths and the CRD fields they come from.
const FIELDS: [(&str, &str); 14] = [
    (
        "outlier.consecutive_failures",
        "outlierDetection.consecutiveFailures",
    ),
    ("outlier.interval", "outlierDetection.intervalSeconds"),
    (
        "outlier.base_ejection_time",
        "outlierDetection.baseEjectionSeconds",
    ),
    (
        "outlier.max_ejection_time",
        "outlierDetection.maxEjectionSeconds",
    ),
    (
        "outlier.max_ejection_percent",
        "outlierDetection.maxEjectionPercent",
    ),
    ("limits.max_streams", "connectionLimits.maxStreams"),
    ("limits.max_pending", "connectionLimits.maxPending"),
    ("retries.attempts", "retries.attempts"),
    ("retries.budget_percent", "retries.budgetPercent"),
    ("retries.connect_timeout", "retries.connectTimeoutMillis"),
    ("idle_timeout", "idleTimeoutSeconds"),
    ("faults.delay_percent", "faults.delayPercent"),
    ("faults.abort_percent", "faults.abortPercent"),
    ("faults.delay", "faults.delayMillis"),
];

/// The CRD field (under `spec.`) of a policy model key path.
fn crd_field(key: &str) -> String {
    FIELDS
        .iter()
        .find(|(model, _)| *model == key)
        .map_or_else(|| key.to_owned(), |(_, crd)| (*crd).to_owned())
}

impl TrafficPolicySpec {
    /// Every problem with the spec, each with its field path: its own fields
    /// (service, `applyTo`, cluster names), then the policy model's checks, the
    /// same a `[[traffic_policy]]` gets, under the CRD's field names.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(why) = validate::dns_label(&self.service) {
            problems.push(Problem::new("spec.service", why));
        }
        // Left out (empty) means this cluster only.
        if !self.apply_to.is_empty() {
            problems.extend(validate_apply_to(&self.apply_to, "spec.applyTo"));
        }
        let policy = match self.to_policy() {
            Ok(policy) => policy,
            Err(names) => {
                problems.extend(names);
                return problems;
            }
        };
        problems.extend(
            policy
                .validate("")
                .into_iter()
                .map(|p| Problem::new(format!("spec.{}", crd_field(&p.path)), p.message)),
        );
        problems
    }

    /// The policy model's form of the spec (seconds and milliseconds become
    /// durations), or the cluster names that are not cluster names.
    pub fn to_policy(&self) -> Result<causeway_policy::TrafficPolicy, Vec<Problem>> {
        let mut bad = Vec::new();
        let mut cluster = |field: String, name: &str| match name.parse::<ClusterName>() {
            Ok(c) => Some(c),
            Err(e) => {
                bad.push(Problem::new(
                    field,
                    format!("{name:?} is not a cluster name: {e}"),
                ));
                None
            }
        };
        let weights: BTreeMap<ClusterName, u32> = self
            .weights
            .iter()
            .filter_map(|(name, w)| Some((cluster(format!("spec.weights.{name}"), name)?, *w)))
            .collect();
        let pinned = self
            .pinned
            .as_deref()
            .and_then(|name| cluster("spec.pinned".into(), name));
        if !bad.is_empty() {
            return Err(bad);
        }
        Ok(causeway_policy::TrafficPolicy {
            routing: self.routing,
            weights,
            pinned,
            outlier: self
                .outlier_detection
                .as_ref()
                .map(OutlierDetectionSpec::to_policy),
            limits: ConnectionLimits {
                max_streams: self.connection_limits.max_streams,
                max_pending: self.connection_limits.max_pending,
            },
            retries: RetryPolicy {
                attempts: self.retries.attempts,
                budget_percent: self.retries.budget_percent,
                connect_timeout: self.retries.connect_timeout_millis.map(millis),
            },
            idle_timeout: self.idle_timeout_seconds.map(seconds),
            faults: self
                .faults
                .as_ref()
                .map(FaultsSpec::to_policy)
                .unwrap_or_default(),
        })
    }
}

impl OutlierDetectionSpec {
    fn to_policy(&self) -> OutlierPolicy {
        OutlierPolicy {
            consecutive_failures: self.consecutive_failures,
            interval: seconds(self.interval_seconds),
            base_ejection_time: seconds(self.base_ejection_seconds),
            max_ejection_time: seconds(self.max_ejection_seconds),
            // Above 255 is out of bounds either way; the model names the field.
            max_ejection_percent: u8::try_from(self.max_ejection_percent).unwrap_or(u8::MAX),
        }
    }
}

impl FaultsSpec {
    fn to_policy(&self) -> FaultPolicy {
        FaultPolicy {
            delay: self.delay_millis.map(millis),
            delay_percent: self.delay_percent,
            abort_percent: self.abort_percent,
        }
    }
}

fn seconds(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

fn millis(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
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
        assert_eq!(spec.routing, RoutingMode::Weighted);
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
            s.validate().into_iter().map(|p| p.path).collect()
        };
        assert_eq!(fields(spec(&["east", "*"])), ["spec.applyTo[1]"]);
        assert_eq!(fields(spec(&["east", "x_y"])), ["spec.applyTo[1]"]);
        assert_eq!(fields(spec(&["east", "east"])), ["spec.applyTo[1]"]);
        let many: Vec<String> = (0..=causeway_policy::MAX_APPLY_TO)
            .map(|i| format!("c{i}"))
            .collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(fields(spec(&refs)), ["spec.applyTo"]);
    }

    #[test]
    fn reports_bad_fields_with_paths() {
        let spec = TrafficPolicySpec {
            service: "Web".into(),
            routing: RoutingMode::Pinned,
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
        let fields: Vec<String> = spec.validate().into_iter().map(|p| p.path).collect();
        assert_eq!(
            fields,
            [
                "spec.service",
                "spec.applyTo[0]",
                "spec.applyTo[1]",
                "spec.pinned",
                "spec.weights",
                "spec.weights.west",
                "spec.outlierDetection.consecutiveFailures",
                "spec.outlierDetection.maxEjectionSeconds",
                "spec.outlierDetection.maxEjectionPercent",
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
