//! The commands that bring this cluster's exports in the catalog to the wanted set.

use causeway_registry::{Command, Export, Node, ServiceKey};
use causeway_trust::ClusterName;

/// Most single-export commands sent for one change; beyond it one replacement of
/// the whole set is cheaper.
const INCREMENTAL_LIMIT: usize = 32;

/// The puts of the exports of `wanted` that the local catalog lacks or holds
/// otherwise; nothing is deleted.
pub(super) fn puts(cluster: &ClusterName, node: &Node, wanted: Vec<Export>) -> Vec<Command> {
    node.read_local(|catalog| {
        wanted
            .into_iter()
            .filter(|e| {
                catalog
                    .export(cluster, &e.service)
                    .is_none_or(|c| !c.value.same_content(e))
            })
            .map(Command::PutExport)
            .collect()
    })
}

/// The commands that turn this cluster's exports in the local catalog into
/// `wanted`: one put or delete per difference, or one replacement when most differ.
pub(super) fn changes(cluster: &ClusterName, node: &Node, wanted: Vec<Export>) -> Vec<Command> {
    let current: std::collections::HashMap<ServiceKey, Export> = node.read_local(|catalog| {
        catalog
            .exports()
            .filter(|e| &e.value.cluster == cluster)
            .map(|e| (e.value.service.clone(), e.value.clone()))
            .collect()
    });
    let wanted_keys: std::collections::HashSet<&ServiceKey> =
        wanted.iter().map(|e| &e.service).collect();
    let mut commands: Vec<Command> = wanted
        .iter()
        .filter(|e| current.get(&e.service).is_none_or(|c| !c.same_content(e)))
        .map(|e| Command::PutExport(e.clone()))
        .collect();
    commands.extend(
        current
            .keys()
            .filter(|k| !wanted_keys.contains(k))
            .map(|k| Command::DeleteExport {
                cluster: cluster.clone(),
                service: k.clone(),
            }),
    );
    if commands.len() > INCREMENTAL_LIMIT {
        return vec![Command::ReplaceClusterExports {
            cluster: cluster.clone(),
            exports: wanted,
        }];
    }
    commands
}
