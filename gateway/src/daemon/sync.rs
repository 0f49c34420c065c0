//! Catalog → import table → DNS and import listeners, in revision order.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use causeway_mirror::import::NoSink;
use causeway_registry::{CatalogEvent, Change, ClusterRecord, Revision};
use causeway_trust::ClusterName;
use tracing::{debug, info, warn};

use super::Shared;
use crate::tunnel::{Import as TunnelImport, ImportPeer, ServiceTarget};

/// What the catalog says about each cluster: where its gateway is.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    pub(crate) clusters: BTreeMap<ClusterName, ClusterRecord>,
}

impl Directory {
    fn apply(&mut self, event: &CatalogEvent) {
        match event {
            CatalogEvent::Snapshot(snapshot) => {
                self.clusters = snapshot
                    .clusters
                    .iter()
                    .map(|c| (c.value.name.clone(), c.value.clone()))
                    .collect();
            }
            CatalogEvent::Change(change) => {
                for c in &change.changes {
                    match c {
                        Change::ClusterPut(record) => {
                            self.clusters.insert(record.name.clone(), record.clone());
                        }
                        Change::ClusterDeleted { cluster } => {
                            self.clusters.remove(cluster);
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// The first gateway address of `cluster` that parses.
    pub(crate) fn gateway(&self, cluster: &ClusterName) -> Option<SocketAddr> {
        self.clusters
            .get(cluster)?
            .gateway_addrs
            .iter()
            .find_map(|a| a.parse().ok())
    }
}

/// How far the local view has followed the catalog.
#[derive(Debug, Default)]
pub(crate) struct SyncState {
    /// Revision applied to the import table and DNS.
    pub(crate) revision: u64,
    /// Import listeners that are bound, by bind address.
    pub(crate) bound: HashMap<SocketAddr, ServiceTarget>,
    /// Import listeners that failed to bind, with the reason.
    pub(crate) failed: HashMap<SocketAddr, String>,
    /// Why the last attempt to publish this cluster's exports failed, if it did.
    pub(crate) publish_error: Option<String>,
    /// Why joining the registry fails, while it does.
    pub(crate) registry_error: Option<String>,
}

/// Follows the current registry member's watch stream for as long as the gateway
/// runs, re-watching (from a snapshot) after a gap or a re-seat.
pub(crate) async fn follow_catalog(shared: Arc<Shared>) {
    loop {
        let from = shared.state.lock().expect("state lock").revision;
        let mut watch = shared.node().watch(Revision(from));
        loop {
            let event = tokio::select! {
                _ = shared.cancel.cancelled() => return,
                event = watch.next() => event,
            };
            let Some(event) = event else { break };
            if !apply(&shared, &event) {
                // A gap: start over from a snapshot.
                shared.state.lock().expect("state lock").revision = 0;
                break;
            }
            reconcile_listeners(&shared).await;
        }
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Applies one event to the directory, the import table and DNS. False when the
/// table refused it (a revision gap).
fn apply(shared: &Shared, event: &CatalogEvent) -> bool {
    let revision = match event {
        CatalogEvent::Snapshot(s) => s.revision,
        CatalogEvent::Change(c) => c.revision,
    };
    shared
        .directory
        .write()
        .expect("directory lock")
        .apply(event);
    let mut mirror = shared.mirror.lock().expect("mirror lock");
    if let Err(e) = mirror.apply(event, &mut NoSink) {
        warn!(error = %e, "catalog gap; resyncing from a snapshot");
        return false;
    }
    if let Err(e) = mirror.publish() {
        warn!(error = %e, "saving import addresses failed");
    }
    drop(mirror);
    shared.state.lock().expect("state lock").revision = revision.0;
    shared.metrics.catalog_revision.set(revision.0 as i64);
    debug!(revision = revision.0, "catalog applied");
    true
}

/// Every import listener the table calls for: one per service port on the import's
/// own addresses (all exporting clusters), and one per port on each cluster-pinned
/// address (that cluster only).
pub(crate) fn desired_listeners(shared: &Shared) -> HashMap<SocketAddr, TunnelImport> {
    let directory = shared.directory.read().expect("directory lock");
    let mirror = shared.mirror.lock().expect("mirror lock");
    let mut out = HashMap::new();
    for import in mirror.table().imports() {
        let peer = |cluster: &ClusterName, weight: u32| {
            directory.gateway(cluster).map(|gateway| ImportPeer {
                cluster: cluster.clone(),
                gateway,
                weight,
            })
        };
        for port in &import.ports {
            let target =
                ServiceTarget::new(import.service.namespace(), import.service.name(), port.port);
            let all: Vec<ImportPeer> = import
                .clusters
                .values()
                .filter(|c| c.weight > 0 && c.ports.iter().any(|p| p.port == port.port))
                .filter_map(|c| peer(&c.cluster, c.weight))
                .collect();
            for ip in &import.addresses {
                let bind = SocketAddr::new(*ip, port.port);
                out.insert(
                    bind,
                    TunnelImport {
                        target: target.clone(),
                        bind,
                        peers: all.clone(),
                    },
                );
            }
            for cluster in import.clusters.values() {
                if !cluster.ports.iter().any(|p| p.port == port.port) {
                    continue;
                }
                let Some(one) = peer(&cluster.cluster, cluster.weight.max(1)) else {
                    continue;
                };
                for ip in &cluster.addresses {
                    let bind = SocketAddr::new(*ip, port.port);
                    out.insert(
                        bind,
                        TunnelImport {
                            target: target.clone(),
                            bind,
                            peers: vec![one.clone()],
                        },
                    );
                }
            }
        }
    }
    out
}

/// Brings the tunnel's import listeners in line with the table: starts new ones,
/// swaps peers of changed ones (open connections stay), stops the rest.
async fn reconcile_listeners(shared: &Shared) {
    let desired = desired_listeners(shared);
    let stale: Vec<SocketAddr> = {
        let state = shared.state.lock().expect("state lock");
        state
            .bound
            .keys()
            .filter(|bind| !desired.contains_key(bind))
            .copied()
            .collect()
    };
    for bind in stale {
        let mut state = shared.state.lock().expect("state lock");
        if let Some(target) = state.bound.remove(&bind) {
            shared.tunnel.remove_import(&target, bind);
            info!(service = %target, listen = %bind, "import listener stopped");
        }
    }
    for (bind, import) in desired {
        let target = import.target.clone();
        let result = shared.tunnel.add_import(import).await;
        let mut state = shared.state.lock().expect("state lock");
        match result {
            Ok(_) => {
                state.failed.remove(&bind);
                state.bound.insert(bind, target);
            }
            Err(e) => {
                warn!(service = %target, listen = %bind, error = %e, "import listener failed");
                state.bound.remove(&bind);
                state.failed.insert(bind, e.to_string());
            }
        }
    }
    let imports = shared.mirror.lock().expect("mirror lock").table().len();
    shared.metrics.imports.set(imports as i64);
}
