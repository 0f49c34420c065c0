//! `AccessPolicy`: who may reach which of this cluster's exported services.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::{self, FieldProblem};

/// Most calling clusters one policy may name: a federation is designed for about 100.
pub const MAX_POLICY_SOURCES: usize = 256;
/// Most labels one selector may require; exports carry few labels.
pub const MAX_POLICY_LABELS: usize = 16;
/// Most ports one policy may list; a service has at most a few dozen.
pub const MAX_POLICY_PORTS: usize = 64;

/// Allow or deny.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccessAction {
    /// Matching streams are allowed.
    Allow,
    /// Matching streams are denied; deny wins over allow.
    Deny,
}

/// Who may reach which exported services of this cluster, enforced by its gateway on
/// every new stream with the caller's verified SPIFFE identity.
///
/// Cluster-scoped like `ClusterLink`: access to a cluster's exports is a property of
/// the cluster's federation membership, and one policy may cover services in many
/// namespaces. Traffic no policy matches gets the federation's default (`deny` for a
/// new federation, shown by `causeway status`).
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "causeway.dev",
    version = "v1alpha1",
    kind = "AccessPolicy",
    plural = "accesspolicies",
    shortname = "cap",
    category = "causeway",
    status = "AccessPolicyStatus",
    derive = "PartialEq",
    doc = "Who may reach which of this cluster's exported services (cluster-scoped; deny wins over allow).",
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action"}"#,
    printcolumn = r#"{"name":"From","type":"string","jsonPath":".spec.from"}"#,
    printcolumn = r#"{"name":"Namespace","type":"string","jsonPath":".spec.to.namespace"}"#,
    printcolumn = r#"{"name":"Service","type":"string","jsonPath":".spec.to.service"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicySpec {
    /// `allow` or `deny`.
    pub action: AccessAction,
    /// Calling clusters by name, or `["*"]` for every cluster of the federation.
    #[schemars(length(min = 1, max = 256))]
    pub from: Vec<String>,
    /// The services it applies to.
    #[serde(default)]
    pub to: AccessTarget,
}

/// The exported services and ports a policy applies to; an empty target is every
/// service of this cluster.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessTarget {
    /// The services' namespace; any when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The service's name; any when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Labels the export must carry, all of them; any service when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 16))]
    pub match_labels: BTreeMap<String, String>,
    /// Service ports; every port when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub ports: Vec<u16>,
}

/// Condition type: the gateway took the policy into its policy set (False with the
/// reason when the spec is invalid).
pub const CONDITION_ACCEPTED: &str = "Accepted";

/// What the gateway observed of a policy.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicyStatus {
    /// `Accepted`: True, False (with the reason) or Unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // One condition per type, so server-side apply merges them by type.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl AccessPolicySpec {
    /// Every problem with the spec, each with its field path.
    pub fn validate(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        if self.from.is_empty() || self.from.len() > MAX_POLICY_SOURCES {
            problems.push(FieldProblem::new(
                "spec.from",
                format!(
                    "lists {} clusters; 1-{MAX_POLICY_SOURCES} are allowed (\"*\" for every cluster)",
                    self.from.len()
                ),
            ));
        }
        for (i, from) in self.from.iter().enumerate() {
            if from != "*"
                && let Some(why) = validate::dns_label(from)
            {
                problems.push(FieldProblem::new(format!("spec.from[{i}]"), why));
            }
        }
        let to = &self.to;
        for (field, value) in [("namespace", &to.namespace), ("service", &to.service)] {
            if let Some(value) = value
                && let Some(why) = validate::dns_label(value)
            {
                problems.push(FieldProblem::new(format!("spec.to.{field}"), why));
            }
        }
        if to.match_labels.len() > MAX_POLICY_LABELS {
            problems.push(FieldProblem::new(
                "spec.to.matchLabels",
                format!(
                    "{} labels; at most {MAX_POLICY_LABELS}",
                    to.match_labels.len()
                ),
            ));
        }
        for (k, v) in &to.match_labels {
            if k.is_empty() || k.len() > 63 || v.len() > 63 {
                problems.push(FieldProblem::new(
                    format!("spec.to.matchLabels.{k}"),
                    "label keys must be 1-63 and values 0-63 characters",
                ));
            }
        }
        if to.ports.len() > MAX_POLICY_PORTS {
            problems.push(FieldProblem::new(
                "spec.to.ports",
                format!("{} ports; at most {MAX_POLICY_PORTS}", to.ports.len()),
            ));
        }
        if to.ports.contains(&0) {
            problems.push(FieldProblem::new("spec.to.ports", "0 is not a port"));
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
action: allow
from: ["east"]
to:
  namespace: shop
  service: web
  matchLabels: { tier: public }
  ports: [8080]
"#;
        let spec: AccessPolicySpec = serde_norway::from_str(yaml).expect("parses");
        assert_eq!(spec.action, AccessAction::Allow);
        assert_eq!(spec.to.ports, vec![8080]);
        assert!(spec.validate().is_empty());
    }

    #[test]
    fn reports_bad_fields_with_paths() {
        let spec = AccessPolicySpec {
            action: AccessAction::Deny,
            from: vec!["*".into(), "Not_A_Label".into()],
            to: AccessTarget {
                namespace: Some("a b".into()),
                service: None,
                match_labels: BTreeMap::new(),
                ports: vec![0],
            },
        };
        let fields: Vec<String> = spec.validate().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            ["spec.from[1]", "spec.to.namespace", "spec.to.ports"]
        );
    }
}
