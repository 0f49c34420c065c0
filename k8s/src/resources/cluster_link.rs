//! `ClusterLink`: this cluster's membership link to one peer cluster.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use causeway_policy::Problem;

use super::validate;

/// Most registry addresses one link may list: a registry has at most a handful of
/// voting members, and each address is dialled in turn when joining.
pub const MAX_REGISTRY_ADDRESSES: usize = 16;

/// Longest probe period: a peer probed less often than every five minutes would leave
/// rotation far too late to matter for traffic.
pub const MAX_PROBE_PERIOD_SECONDS: u32 = 300;
/// Longest probe timeout; a probe answer slower than this is a dead peer in practice.
pub const MAX_PROBE_TIMEOUT_SECONDS: u32 = 60;
/// Most consecutive failed probes before the peer leaves rotation.
pub const MAX_PROBE_FAILURE_THRESHOLD: u32 = 100;

/// Condition type: this cluster's gateway is a member of the peer's federation
/// registry (it joined through one of `spec.registry`).
pub const CONDITION_JOINED: &str = "Joined";
/// Condition type: the peer's tunnel (`spec.gateway`) answers probes.
pub const CONDITION_GATEWAY_REACHABLE: &str = "GatewayReachable";
/// Condition type: the peer's certificate chains to this cluster's trust bundle and
/// names the expected SPIFFE identity.
pub const CONDITION_TRUST_VERIFIED: &str = "TrustVerified";

/// A link from this cluster to one peer cluster of the federation.
///
/// The resource is cluster-scoped on purpose: a cluster runs exactly one Causeway
/// gateway, and a link is a property of that cluster's federation membership (which
/// registry it joined, which tunnels it dials), not of any namespace or application.
/// A namespaced link would let two namespaces describe the same peer differently and
/// would need a namespace-wide RBAC grant for what is a cluster-wide decision.
///
/// Written by operators (or by `causeway link --name PEER ...`); the gateway's
/// controller reports the link's state in `status`.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "causeway.dev",
    version = "v1alpha1",
    kind = "ClusterLink",
    plural = "clusterlinks",
    shortname = "clink",
    category = "causeway",
    status = "ClusterLinkStatus",
    derive = "PartialEq",
    doc = "A link from this cluster's Causeway gateway to one peer cluster (cluster-scoped: one gateway per cluster).",
    printcolumn = r#"{"name":"Peer","type":"string","jsonPath":".spec.peer"}"#,
    printcolumn = r#"{"name":"Joined","type":"string","jsonPath":".status.conditions[?(@.type==\"Joined\")].status"}"#,
    printcolumn = r#"{"name":"Reachable","type":"string","jsonPath":".status.conditions[?(@.type==\"GatewayReachable\")].status"}"#,
    printcolumn = r#"{"name":"RTT(ms)","type":"number","jsonPath":".status.rttMillis"}"#,
    printcolumn = r#"{"name":"Imports","type":"integer","jsonPath":".status.importedServices"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterLinkSpec {
    /// The peer cluster's name: a lowercase DNS label, as in its gateway config.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub peer: String,
    /// Registry members of the federation to join through, as `host:port` (gRPC,
    /// TCP 15444 by default). Tried in order.
    #[schemars(length(min = 1, max = 16))]
    pub registry: Vec<String>,
    /// The peer gateway's tunnel address, `host:port` (QUIC, UDP 15443 by default).
    pub gateway: String,
    /// How the peer's tunnel is probed for liveness and RTT.
    #[serde(default)]
    pub probe: ProbeSpec,
    /// A Secret holding a join token from `causeway token create`, for a cluster
    /// whose gateway has no issuer yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
}

/// Probing of the peer's tunnel.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSpec {
    /// Seconds between probes.
    #[serde(default = "default_period_seconds")]
    #[schemars(range(min = 1, max = 300))]
    pub period_seconds: u32,
    /// Seconds to wait for a probe's answer.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: u32,
    /// Consecutive failed probes after which the peer leaves rotation.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: u32,
}

fn default_period_seconds() -> u32 {
    1
}
fn default_timeout_seconds() -> u32 {
    1
}
fn default_failure_threshold() -> u32 {
    3
}

impl Default for ProbeSpec {
    fn default() -> Self {
        Self {
            period_seconds: default_period_seconds(),
            timeout_seconds: default_timeout_seconds(),
            failure_threshold: default_failure_threshold(),
        }
    }
}

impl ProbeSpec {
    /// Time between probes.
    pub fn period(&self) -> Duration {
        Duration::from_secs(self.period_seconds.into())
    }

    /// Time a probe may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.into())
    }
}

/// A key of a Secret. The gateway's Role lets it read only the Secret
/// `causeway-join-token` in `causeway-system`, so that is the one a link may name
/// (`validate()` says so otherwise).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// Its namespace; default `causeway-system`, where the gateway runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The key whose value is the token.
    #[serde(default = "default_token_key")]
    pub key: String,
}

fn default_token_key() -> String {
    "token".into()
}

/// What the gateway's controller observed of a link.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterLinkStatus {
    /// `Joined`, `GatewayReachable` and `TrustVerified`, each True, False or Unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // One condition per type, so server-side apply merges them by type.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The last probe's round-trip time in milliseconds, rounded to 0.01 ms so the
    /// printer column reads `0.42` rather than float noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_millis: Option<f64>,
    /// Services of the federation imported through this peer.
    #[serde(default)]
    pub imported_services: u32,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl ClusterLinkStatus {
    /// Records a probe's round-trip time, rounded to 0.01 ms.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt_millis = Some((rtt.as_secs_f64() * 100_000.0).round() / 100.0);
    }

    /// The condition of type `type_`, if reported.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

impl ClusterLinkSpec {
    /// Every problem of this spec, each with its field path (`spec.registry[1]`);
    /// empty when the spec is valid. Mirrors the CRD schema's bounds and adds what a
    /// schema cannot say (addresses parse as `host:port`, timeout within period).
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(why) = validate::dns_label(&self.peer) {
            problems.push(Problem::new("spec.peer", why));
        }
        if self.registry.is_empty() || self.registry.len() > MAX_REGISTRY_ADDRESSES {
            problems.push(Problem::new(
                "spec.registry",
                format!(
                    "lists {} addresses; 1-{MAX_REGISTRY_ADDRESSES} are allowed",
                    self.registry.len()
                ),
            ));
        }
        for (i, addr) in self.registry.iter().enumerate() {
            if let Some(why) = validate::host_port(addr) {
                problems.push(Problem::new(format!("spec.registry[{i}]"), why));
            }
        }
        if let Some(why) = validate::host_port(&self.gateway) {
            problems.push(Problem::new("spec.gateway", why));
        }
        self.probe.validate_into(&mut problems);
        if let Some(secret) = &self.token_secret_ref {
            secret.validate_into("spec.tokenSecretRef", &mut problems);
        }
        problems
    }
}

impl ProbeSpec {
    fn validate_into(&self, problems: &mut Vec<Problem>) {
        let ranges = [
            (
                "periodSeconds",
                self.period_seconds,
                MAX_PROBE_PERIOD_SECONDS,
            ),
            (
                "timeoutSeconds",
                self.timeout_seconds,
                MAX_PROBE_TIMEOUT_SECONDS,
            ),
            (
                "failureThreshold",
                self.failure_threshold,
                MAX_PROBE_FAILURE_THRESHOLD,
            ),
        ];
        for (field, value, max) in ranges {
            if !(1..=max).contains(&value) {
                problems.push(Problem::new(
                    format!("spec.probe.{field}"),
                    format!("is {value}; 1-{max} is allowed"),
                ));
            }
        }
        if self.timeout_seconds > self.period_seconds {
            problems.push(Problem::new(
                "spec.probe.timeoutSeconds",
                format!(
                    "is {} but periodSeconds is {}: a probe must end before the next starts",
                    self.timeout_seconds, self.period_seconds
                ),
            ));
        }
    }
}

impl SecretKeyRef {
    fn validate_into(&self, path: &str, problems: &mut Vec<Problem>) {
        use crate::names::{JOIN_TOKEN_SECRET, NAMESPACE};
        if let Some(why) = validate::dns_subdomain(&self.name) {
            problems.push(Problem::new(format!("{path}.name"), why));
        } else if self.name != JOIN_TOKEN_SECRET {
            problems.push(Problem::new(
                format!("{path}.name"),
                format!(
                    "is {:?}, but the gateway may read only the Secret {JOIN_TOKEN_SECRET} (its Role names it)",
                    self.name
                ),
            ));
        }
        if let Some(why) = self.namespace.as_deref().and_then(validate::dns_label) {
            problems.push(Problem::new(format!("{path}.namespace"), why));
        } else if self.namespace.as_deref().is_some_and(|ns| ns != NAMESPACE) {
            problems.push(Problem::new(
                format!("{path}.namespace"),
                format!("the gateway may read Secrets only in {NAMESPACE}"),
            ));
        }
        if let Some(why) = validate::secret_key(&self.key) {
            problems.push(Problem::new(format!("{path}.key"), why));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClusterLinkSpec {
        ClusterLinkSpec {
            peer: "west".into(),
            registry: vec!["172.18.0.2:30444".into()],
            gateway: "172.18.0.2:30443".into(),
            probe: ProbeSpec::default(),
            token_secret_ref: None,
        }
    }

    #[test]
    fn a_good_spec_has_no_problems() {
        assert_eq!(spec().validate(), vec![]);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut s = spec();
        s.peer = "West_1".into();
        s.registry = vec!["ok.example:1".into(), "no-port".into()];
        s.gateway = "10.0.0.1:0".into();
        s.probe.period_seconds = 0;
        s.probe.failure_threshold = 1000;
        s.token_secret_ref = Some(SecretKeyRef {
            name: "causeway-join-token".into(),
            namespace: Some("Not A Label".into()),
            key: "a/b".into(),
        });
        let fields: Vec<String> = s.validate().into_iter().map(|p| p.path).collect();
        assert_eq!(
            fields,
            [
                "spec.peer",
                "spec.registry[1]",
                "spec.gateway",
                "spec.probe.periodSeconds",
                "spec.probe.failureThreshold",
                "spec.probe.timeoutSeconds",
                "spec.tokenSecretRef.namespace",
                "spec.tokenSecretRef.key",
            ]
        );
    }

    #[test]
    fn only_the_join_token_secret_is_readable() {
        let mut s = spec();
        s.token_secret_ref = Some(SecretKeyRef {
            name: "other".into(),
            namespace: Some("default".into()),
            key: "token".into(),
        });
        let fields: Vec<String> = s.validate().into_iter().map(|p| p.path).collect();
        assert_eq!(
            fields,
            ["spec.tokenSecretRef.name", "spec.tokenSecretRef.namespace"]
        );
        s.token_secret_ref = Some(SecretKeyRef {
            name: "causeway-join-token".into(),
            namespace: None,
            key: "token".into(),
        });
        assert_eq!(s.validate(), vec![]);
    }

    #[test]
    fn registry_count_is_bounded() {
        let mut s = spec();
        s.registry = vec![];
        assert_eq!(s.validate()[0].path, "spec.registry");
        s.registry = vec!["10.0.0.1:15444".into(); MAX_REGISTRY_ADDRESSES + 1];
        assert_eq!(s.validate()[0].path, "spec.registry");
    }

    #[test]
    fn defaults_fill_a_minimal_manifest() {
        let spec: ClusterLinkSpec = serde_json::from_value(serde_json::json!({
            "peer": "west",
            "registry": ["10.0.0.1:15444"],
            "gateway": "10.0.0.1:15443",
            "tokenSecretRef": {"name": "join"}
        }))
        .expect("a minimal spec parses");
        assert_eq!(spec.probe, ProbeSpec::default());
        assert_eq!(spec.token_secret_ref.expect("given").key, "token");
    }

    #[test]
    fn rtt_is_rounded_for_the_printer_column() {
        let mut status = ClusterLinkStatus::default();
        status.set_rtt(Duration::from_micros(423_456));
        assert_eq!(status.rtt_millis, Some(423.46));
    }
}
