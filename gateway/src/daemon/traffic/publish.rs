//! The traffic policy publisher: keeps the catalog's records owned by this cluster
//! equal to the policies it declares (the file's `[[traffic_policy]]` and the
//! platform's `TrafficPolicy` objects).

use std::sync::Arc;

use causeway_registry::{Command, NodeError};
use causeway_trust::ClusterName;

use super::TrafficPolicies;
use crate::daemon::Local;
use crate::daemon::members::{Membership, keep_publishing, propose_in_order};

/// Keeps the catalog's records owned by this cluster equal to its declared
/// policies: puts what is missing or different, deletes what is no longer declared.
pub(crate) async fn publish(
    traffic: Arc<TrafficPolicies>,
    membership: Arc<Membership>,
    local: Arc<Local>,
) {
    let once = || publish_once(&traffic, &membership, &local.cluster);
    keep_publishing("traffic policies", &local.cancel, &traffic.republish, once).await;
}

async fn publish_once(
    traffic: &TrafficPolicies,
    membership: &Membership,
    cluster: &ClusterName,
) -> Result<(), NodeError> {
    let (wanted, prune) = traffic.wanted();
    let node = membership.node();
    let commands = node.read_local(|catalog| {
        let mut commands = Vec::new();
        if prune {
            for r in catalog.owner_traffic_policies(cluster) {
                if !wanted.contains_key(&r.value.service) {
                    commands.push(Command::DeleteTrafficPolicy {
                        owner: cluster.clone(),
                        service: r.value.service.clone(),
                    });
                }
            }
        }
        for (service, record) in &wanted {
            let current = catalog.traffic_policy(cluster, service);
            if current.is_none_or(|c| c.value != *record) {
                commands.push(Command::PutTrafficPolicy(record.clone()));
            }
        }
        commands
    });
    propose_in_order(&node, commands, "publishing a traffic policy").await
}
