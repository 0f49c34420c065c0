//! `TrafficPolicy` objects → this gateway's traffic policies, applied and published
//! like the config file's `[[traffic_policy]]` entries.
//!
//! The CRD converts into the policy model (`TrafficPolicySpec::to_policy`: the CRD
//! counts whole seconds and milliseconds, the model takes durations), which is
//! what a [`TrafficPolicyConfig`] carries too.

use std::sync::Arc;

use causeway_k8s::controller::{PolicyObject, PolicySink, Refusal};
use causeway_k8s::resources::TrafficPolicySpec;

use crate::config::TrafficPolicyConfig;
use crate::daemon::traffic::TrafficPolicies;

/// Condition reason: the policy does not fit the gateway's own bounds for a
/// `[[traffic_policy]]` (the message names the field).
pub(crate) const REASON_INVALID: &str = "InvalidPolicy";
/// Condition reason: another `TrafficPolicy` of the namespace governs the same
/// service (the first by name wins).
pub(crate) const REASON_DUPLICATE: &str = "DuplicateService";
/// Condition reason: the config file has a `[[traffic_policy]]` for the same
/// service, which wins.
pub(crate) const REASON_OVERRIDDEN: &str = "OverriddenByConfig";

/// Never returned: applying policies cannot fail once they are converted.
#[derive(Debug, thiserror::Error)]
#[error("unreachable")]
pub(crate) enum Never {}

/// The gateway's traffic policies, as the `TrafficPolicy` controller's sink.
pub(crate) struct PlatformTraffic {
    traffic: Arc<TrafficPolicies>,
}

impl PlatformTraffic {
    /// The sink that hands `TrafficPolicy` objects to `traffic` (which wakes the
    /// task that applies them to the tunnel).
    pub(crate) fn new(traffic: Arc<TrafficPolicies>) -> Self {
        Self { traffic }
    }
}

/// The `[[traffic_policy]]` form of a `TrafficPolicy` in `namespace`, or why it has
/// none (a name the CRD's validation let through but the gateway cannot use).
pub(crate) fn policy_config(
    namespace: &str,
    spec: &TrafficPolicySpec,
) -> Result<TrafficPolicyConfig, String> {
    let policy = spec.to_policy().map_err(|problems| {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        problems.join("; ")
    })?;
    // Left out and empty read the same on the API server: this cluster only.
    let apply_to = (!spec.apply_to.is_empty()).then(|| spec.apply_to.clone());
    Ok(TrafficPolicyConfig::new(
        namespace,
        &spec.service,
        apply_to,
        policy,
    ))
}

/// The policies the gateway can apply, one per service, and a refusal for each of
/// the others.
pub(crate) fn accepted(
    policies: &[PolicyObject<TrafficPolicySpec>],
) -> (Vec<TrafficPolicyConfig>, Vec<Refusal>) {
    let refusal =
        |object: &PolicyObject<TrafficPolicySpec>, reason: &str, message: String| Refusal {
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            reason: reason.to_owned(),
            message,
        };
    let mut kept: Vec<TrafficPolicyConfig> = Vec::new();
    let mut owners: Vec<&str> = Vec::new();
    let mut refusals = Vec::new();
    // The controller sorts the set by namespace and name, so the first object of a
    // service is the same on every delivery.
    for object in policies {
        let namespace = object.namespace.as_deref().unwrap_or_default();
        let config = match policy_config(namespace, &object.spec) {
            Ok(config) => config,
            Err(message) => {
                refusals.push(refusal(object, REASON_INVALID, message));
                continue;
            }
        };
        let problems = crate::config::validate_traffic_policies(std::slice::from_ref(&config));
        if !problems.is_empty() {
            let message = problems
                .into_iter()
                .map(|problem| problem.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            refusals.push(refusal(object, REASON_INVALID, message));
        } else if let Some(i) = kept.iter().position(|k| k.key() == config.key()) {
            let message = format!(
                "TrafficPolicy {namespace}/{} already governs service {}; one policy per service",
                owners[i], config.name
            );
            refusals.push(refusal(object, REASON_DUPLICATE, message));
        } else {
            kept.push(config);
            owners.push(&object.name);
        }
    }
    (kept, refusals)
}

impl PolicySink<TrafficPolicySpec> for PlatformTraffic {
    type Error = Never;

    async fn replace(
        &self,
        policies: Vec<PolicyObject<TrafficPolicySpec>>,
    ) -> Result<Vec<Refusal>, Never> {
        let (kept, mut refusals) = accepted(&policies);
        let services: Vec<String> = kept.iter().map(|k| k.key().to_string()).collect();
        self.traffic.set_platform_policies(kept);
        // The file wins for a service both name: say so on the object.
        let from_file: Vec<String> = self
            .traffic
            .status()
            .declared
            .into_iter()
            .filter(|d| d.source == "file")
            .map(|d| d.service)
            .collect();
        for object in &policies {
            let namespace = object.namespace.as_deref().unwrap_or_default();
            let service = format!("{namespace}/{}", object.spec.service);
            let ours = services.contains(&service);
            let refused = refusals
                .iter()
                .any(|r| r.name == object.name && r.namespace == object.namespace);
            if ours && !refused && from_file.contains(&service) {
                refusals.push(Refusal {
                    namespace: object.namespace.clone(),
                    name: object.name.clone(),
                    reason: REASON_OVERRIDDEN.to_owned(),
                    message: format!(
                        "the gateway's config file has a [[traffic_policy]] for {service}, which is applied instead"
                    ),
                });
            }
        }
        Ok(refusals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    fn spec(spec: serde_json::Value) -> TrafficPolicySpec {
        serde_json::from_value(spec).expect("a TrafficPolicy spec")
    }

    fn object(name: &str, spec_: serde_json::Value) -> PolicyObject<TrafficPolicySpec> {
        PolicyObject {
            namespace: Some("shop".into()),
            name: name.into(),
            spec: spec(spec_),
        }
    }

    #[test]
    fn every_field_maps_onto_the_same_traffic_policy_entry_in_its_units() {
        let from_crd = policy_config(
            "shop",
            &spec(json!({
                "service": "web",
                "applyTo": ["*"],
                "routing": "weighted",
                "weights": {"west": 90, "east": 10},
                "outlierDetection": {
                    "consecutiveFailures": 5,
                    "intervalSeconds": 10,
                    "baseEjectionSeconds": 30,
                    "maxEjectionSeconds": 300,
                    "maxEjectionPercent": 50,
                },
                "connectionLimits": {"maxStreams": 1000, "maxPending": 100},
                "retries": {"attempts": 2, "budgetPercent": 20, "connectTimeoutMillis": 2000},
                "idleTimeoutSeconds": 3600,
                "faults": {"delayMillis": 100, "delayPercent": 10, "abortPercent": 5},
            })),
        )
        .expect("converts");
        let from_file =
            crate::config::traffic_tests::parse(crate::config::traffic_tests::EVERY_KEY)
                .expect("parses");
        assert_eq!(from_crd, from_file[0]);
    }

    #[test]
    fn defaults_match_the_files_and_apply_to_this_cluster_only() {
        let config = policy_config("shop", &spec(json!({"service": "db"}))).expect("converts");
        assert_eq!(config.apply_to, None, "this cluster only");
        let file: TrafficPolicyConfig =
            toml::from_str("namespace = \"shop\"\nname = \"db\"\n").expect("parses");
        assert_eq!(config, file);
    }

    #[test]
    fn one_policy_per_service_and_invalid_ones_are_refused_by_name() {
        let (kept, refusals) = accepted(&[
            object("a-web", json!({"service": "web", "routing": "nearest"})),
            object("b-web", json!({"service": "web", "routing": "local-first"})),
            object(
                "db",
                json!({"service": "db", "routing": "pinned", "pinned": "east"}),
            ),
        ]);
        let kept: Vec<String> = kept.iter().map(|k| k.key().to_string()).collect();
        assert_eq!(kept, ["shop/web", "shop/db"]);
        assert_eq!(refusals.len(), 1);
        assert_eq!(refusals[0].name, "b-web");
        assert_eq!(refusals[0].reason, REASON_DUPLICATE);
        assert!(
            refusals[0].message.contains("a-web"),
            "{}",
            refusals[0].message
        );
    }
}
