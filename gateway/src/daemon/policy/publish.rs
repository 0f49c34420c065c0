//! The access policy publisher: keeps the catalog's copies of this gateway's own
//! policies equal to what it declares (the config file's `[access]` and the
//! platform's `AccessPolicy` objects), and records the federation default on the
//! gateway that started the federation.

use std::collections::BTreeMap;
use std::sync::Arc;

use causeway_policy::{AccessPolicy, PolicyAction};
use causeway_registry::{Command, NodeError};
use tracing::info;

use super::AccessPolicies;
use crate::daemon::Local;
use crate::daemon::members::{Membership, keep_publishing, propose_in_order};

/// Keeps the catalog in step with this gateway's own policies (published as
/// `<cluster>-<name>`, naming this cluster as the exporter) and, on the gateway that
/// started the federation, records the federation default when none is set yet.
pub(crate) async fn publish(
    access: Arc<AccessPolicies>,
    membership: Arc<Membership>,
    local: Arc<Local>,
) {
    // On Kubernetes, `AccessPolicy` objects are this gateway's policies too: keep
    // their catalog copies until the controller has listed them.
    if local.config.kubernetes.enabled(|k| std::env::var(k).ok()) {
        access.await_platform_policies();
    }
    let once = || publish_once(&access, &membership, &local);
    keep_publishing("access policies", &local.cancel, &access.republish, once).await;
}

async fn publish_once(
    access: &AccessPolicies,
    membership: &Membership,
    local: &Local,
) -> Result<(), NodeError> {
    let cluster = &local.cluster;
    let node = membership.node();
    let (config_default, awaiting_platform, wanted): (
        PolicyAction,
        bool,
        BTreeMap<String, AccessPolicy>,
    ) = {
        let inputs = access.inputs.lock().expect("policy lock");
        (
            inputs.config.default,
            inputs.platform.is_none(),
            // The platform's first, so the file's win on a name clash.
            inputs
                .platform
                .iter()
                .flatten()
                .chain(&inputs.config.policies)
                .filter_map(|p| p.catalog_policy(cluster))
                .map(|p| (p.name.to_string(), p))
                .collect(),
        )
    };
    let prefix = format!("{cluster}-");
    let (default, commands) = node.read_local(|catalog| {
        let mut commands = Vec::new();
        for p in catalog.policies() {
            let p = &p.value;
            let ours =
                p.to_cluster.as_ref() == Some(cluster) && p.name.as_str().starts_with(&prefix);
            if ours && !awaiting_platform && !wanted.contains_key(p.name.as_str()) {
                commands.push(Command::DeletePolicy {
                    name: p.name.clone(),
                });
            }
        }
        for (name, p) in &wanted {
            let current = catalog.policies().find(|c| c.value.name.as_str() == name);
            if current.is_none_or(|c| c.value != *p) {
                commands.push(Command::PutPolicy(p.clone()));
            }
        }
        (catalog.default_access(), commands)
    });
    // Only the gateway that started the federation records its default; a joining
    // gateway follows the federation's, whatever its own config says.
    if default.is_none() && local.config.registry.join.is_empty() {
        info!(default = %config_default, "recording the federation's default access");
        node.propose(&Command::SetDefaultAccess(config_default))
            .await?;
    }
    propose_in_order(&node, commands, "publishing an access policy").await
}
