//! `AccessPolicy` objects → this gateway's access policies, enforced and published to
//! the catalog like the config file's `[[access.policy]]` entries.

use std::sync::Arc;

use causeway_k8s::controller::{PolicyObject, PolicySink, Refusal};
use causeway_k8s::resources::AccessPolicySpec;
use causeway_trust::ClusterName;

use crate::config::{AccessSection, PolicyConfig};
use crate::daemon::policy::{self, AccessPolicies};
use causeway_tunnel::Tunnel;

/// Condition reason: the object's name cannot be published (not a DNS label, or
/// too long once prefixed with this cluster's name).
pub(crate) const REASON_UNPUBLISHABLE: &str = "UnpublishableName";
/// Condition reason: the config file has a policy of the same name, which wins.
pub(crate) const REASON_OVERRIDDEN: &str = "OverriddenByConfig";

/// Never returned: applying policies cannot fail once they are converted.
#[derive(Debug, thiserror::Error)]
#[error("unreachable")]
pub(crate) enum Never {}

/// The gateway's access policies, as the `AccessPolicy` controller's sink.
pub(crate) struct PlatformAccess {
    /// This cluster, whose name prefixes the objects' names in the catalog.
    cluster: ClusterName,
    access: Arc<AccessPolicies>,
    /// Where open streams are re-checked after a change (`enforce = "all"`).
    tunnel: Arc<Tunnel>,
}

impl PlatformAccess {
    /// The sink that applies `cluster`'s `AccessPolicy` objects to `access`.
    pub(crate) fn new(
        cluster: ClusterName,
        access: Arc<AccessPolicies>,
        tunnel: Arc<Tunnel>,
    ) -> Self {
        Self {
            cluster,
            access,
            tunnel,
        }
    }
}

/// The config-file form of an `AccessPolicy` named `name`: the same fields, so the
/// object is enforced and published exactly as an `[[access.policy]]` would be.
pub(crate) fn policy_config(name: &str, spec: &AccessPolicySpec) -> PolicyConfig {
    PolicyConfig {
        name: name.to_owned(),
        action: spec.action,
        from: spec.from.clone(),
        namespace: spec.to.namespace.clone(),
        service: spec.to.service.clone(),
        labels: spec.to.match_labels.clone(),
        ports: spec.to.ports.clone(),
    }
}

fn refusal(object: &PolicyObject<AccessPolicySpec>, reason: &str, message: String) -> Refusal {
    Refusal {
        namespace: object.namespace.clone(),
        name: object.name.clone(),
        reason: reason.to_owned(),
        message,
    }
}

impl PolicySink<AccessPolicySpec> for PlatformAccess {
    type Error = Never;

    async fn replace(
        &self,
        policies: Vec<PolicyObject<AccessPolicySpec>>,
    ) -> Result<Vec<Refusal>, Never> {
        let cluster = &self.cluster;
        let mut refusals = Vec::new();
        let mut accepted = Vec::new();
        for object in &policies {
            let config = policy_config(&object.name, &object.spec);
            // The spec passed its own validation; what is left is whether the
            // object's name makes a catalog name (`<cluster>-<name>`, a DNS label).
            let section = AccessSection {
                policies: vec![config.clone()],
                ..AccessSection::default()
            };
            let problems = section.validate(cluster);
            if problems.is_empty() {
                accepted.push(config);
            } else {
                let message = problems
                    .into_iter()
                    .map(|p| match p.path.strip_prefix("access.policy[0].") {
                        Some("name") => format!("metadata.name: {}", p.message),
                        Some(field) => format!("spec.{field}: {}", p.message),
                        None => p.message,
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                refusals.push(refusal(object, REASON_UNPUBLISHABLE, message));
            }
        }
        let clashes = policy::set_platform_access_policies(&self.access, &self.tunnel, accepted);
        for object in policies.iter().filter(|o| clashes.contains(&o.name)) {
            let message = format!(
                "the gateway's config file has an [[access.policy]] named {:?}, which is enforced instead",
                object.name
            );
            refusals.push(refusal(object, REASON_OVERRIDDEN, message));
        }
        Ok(refusals)
    }
}
