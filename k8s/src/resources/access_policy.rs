//! `AccessPolicy`: who may reach which of this cluster's exported services.

use std::collections::BTreeMap;

use causeway_policy::{
    MAX_POLICY_LABELS, MAX_POLICY_PORTS, MAX_POLICY_SOURCES, PolicyAction, Problem, RuleFields,
    RuleText,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    pub action: PolicyAction,
    /// Calling clusters by name, or `["*"]` for every cluster of the federation.
    #[schemars(length(min = 1, max = MAX_POLICY_SOURCES))]
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
    #[schemars(length(max = MAX_POLICY_LABELS))]
    pub match_labels: BTreeMap<String, String>,
    /// Service ports; every port when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_POLICY_PORTS))]
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
    pub fn validate(&self) -> Vec<Problem> {
        let to = &self.to;
        let rule = RuleText {
            from: &self.from,
            namespace: to.namespace.as_deref(),
            service: to.service.as_deref(),
            labels: &to.match_labels,
            ports: &to.ports,
        };
        rule.validate(
            "spec",
            &RuleFields {
                from: "from",
                namespace: "to.namespace",
                service: "to.service",
                labels: "to.matchLabels",
                ports: "to.ports",
            },
        )
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
        assert_eq!(spec.action, PolicyAction::Allow);
        assert_eq!(spec.to.ports, vec![8080]);
        assert!(spec.validate().is_empty());
    }

    #[test]
    fn reports_bad_fields_with_paths() {
        let spec = AccessPolicySpec {
            action: PolicyAction::Deny,
            from: vec!["*".into(), "Not_A_Label".into()],
            to: AccessTarget {
                namespace: Some("a b".into()),
                service: None,
                match_labels: BTreeMap::new(),
                ports: vec![0],
            },
        };
        let fields: Vec<String> = spec.validate().into_iter().map(|p| p.path).collect();
        assert_eq!(
            fields,
            ["spec.from[1]", "spec.to.namespace", "spec.to.ports"]
        );
    }
}
