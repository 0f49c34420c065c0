//! Catalog → import table → DNS and import listeners, in revision order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use causeway_mirror::{Import, ImportSink};
use causeway_registry::{CatalogEvent, Change, ClusterRecord, Revision, ServiceKey};
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
    /// Import listeners that are bound, by bind address, as last set.
    pub(crate) bound: HashMap<SocketAddr, TunnelImport>,
    /// Import listeners that failed to bind, with the reason.
    pub(crate) failed: HashMap<SocketAddr, String>,
    /// Why the last attempt to publish this cluster's exports failed, if it did.
    pub(crate) publish_error: Option<String>,
    /// Whether this cluster's whole export set was put in the catalog since the
    /// gateway started or re-seated; later changes go as single puts and deletes.
    pub(crate) exports_replaced: bool,
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
            match apply(&shared, &event) {
                Some(scope) => reconcile_listeners(&shared, scope).await,
                None => {
                    // A gap: start over from a snapshot.
                    shared.state.lock().expect("state lock").revision = 0;
                    break;
                }
            }
        }
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Which import listeners an event may have changed.
pub(crate) enum Scope {
    /// Every import (a snapshot, or a cluster's gateway address changed).
    All,
    /// Only these services.
    Services(HashSet<ServiceKey>),
}

/// Records the services whose imports changed.
#[derive(Default)]
struct Touched(HashSet<ServiceKey>);

impl ImportSink for Touched {
    fn on_import_added(&mut self, import: &Import) {
        self.0.insert(import.service.clone());
    }
    fn on_import_updated(&mut self, _previous: &Import, import: &Import) {
        self.0.insert(import.service.clone());
    }
    fn on_import_removed(&mut self, import: &Import) {
        self.0.insert(import.service.clone());
    }
}

/// Applies one event to the directory, the import table and DNS. Returns which
/// listeners to reconcile, or `None` when the table refused the event (a gap).
fn apply(shared: &Shared, event: &CatalogEvent) -> Option<Scope> {
    let (revision, clusters_changed) = match event {
        CatalogEvent::Snapshot(s) => (s.revision, true),
        CatalogEvent::Change(c) => (
            c.revision,
            c.changes
                .iter()
                .any(|c| matches!(c, Change::ClusterPut(_) | Change::ClusterDeleted { .. })),
        ),
    };
    shared
        .directory
        .write()
        .expect("directory lock")
        .apply(event);
    // Exports this cluster may not use never reach the mirror (no DNS, no listener).
    let filtered = super::policy::on_event(shared, event);
    let clusters_changed = clusters_changed || matches!(filtered, Some(CatalogEvent::Snapshot(_)));
    let mut touched = Touched::default();
    let mut mirror = shared.mirror.lock().expect("mirror lock");
    if let Err(e) = mirror.apply(filtered.as_ref().unwrap_or(event), &mut touched) {
        warn!(error = %e, "catalog gap; resyncing from a snapshot");
        return None;
    }
    if let Err(e) = mirror.publish() {
        warn!(error = %e, "saving import addresses failed");
    }
    drop(mirror);
    shared.state.lock().expect("state lock").revision = revision.0;
    shared.metrics.catalog_revision.set(revision.0 as i64);
    debug!(revision = revision.0, "catalog applied");
    Some(if clusters_changed {
        Scope::All
    } else {
        Scope::Services(touched.0)
    })
}

/// The listeners one import calls for: one per service port on the import's own
/// addresses (all exporting clusters), and one per port on each cluster-pinned
/// address (that cluster only) when more than one cluster exports it.
fn listeners_for(
    import: &Import,
    directory: &Directory,
    out: &mut HashMap<SocketAddr, TunnelImport>,
) {
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
        let serves =
            |c: &causeway_mirror::ImportedCluster| c.ports.iter().any(|p| p.port == port.port);
        let all: Vec<ImportPeer> = import
            .clusters
            .values()
            .filter(|c| c.weight > 0 && serves(c))
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
        for cluster in import.clusters.values().filter(|c| serves(c)) {
            let Some(one) = peer(&cluster.cluster, cluster.weight.max(1)) else {
                continue;
            };
            // A lone exporter's pinned name shares the service's address and listener.
            for ip in cluster
                .addresses
                .iter()
                .filter(|ip| !import.addresses.contains(ip))
            {
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

fn in_scope(scope: &Scope, target: &ServiceTarget) -> bool {
    match scope {
        Scope::All => true,
        // A set lookup, not a scan: one event may touch thousands of services.
        Scope::Services(keys) => {
            ServiceKey::new(&target.namespace, &target.service).is_ok_and(|key| keys.contains(&key))
        }
    }
}

/// Brings the tunnel's import listeners for `scope` in line with the table: starts
/// new ones, swaps the peers of changed ones (open connections stay), stops the rest.
/// Listeners already as desired are left alone, so a change touches only its own.
async fn reconcile_listeners(shared: &Shared, scope: Scope) {
    let desired = {
        let directory = shared.directory.read().expect("directory lock");
        let mirror = shared.mirror.lock().expect("mirror lock");
        let mut out = HashMap::new();
        match &scope {
            Scope::All => {
                for import in mirror.table().imports() {
                    listeners_for(import, &directory, &mut out);
                }
            }
            Scope::Services(keys) => {
                for key in keys {
                    if let Some(import) = mirror.table().get(key) {
                        listeners_for(import, &directory, &mut out);
                    }
                }
            }
        }
        out
    };
    let (stale, changed): (Vec<(SocketAddr, ServiceTarget)>, Vec<TunnelImport>) = {
        let state = shared.state.lock().expect("state lock");
        let stale = state
            .bound
            .iter()
            .filter(|(bind, import)| {
                in_scope(&scope, &import.target) && !desired.contains_key(bind)
            })
            .map(|(bind, import)| (*bind, import.target.clone()))
            .collect();
        let changed = desired
            .into_values()
            .filter(|want| state.bound.get(&want.bind) != Some(want))
            .collect();
        (stale, changed)
    };
    for (bind, target) in stale {
        shared.tunnel.remove_import(&target, bind);
        shared.state.lock().expect("state lock").bound.remove(&bind);
        info!(service = %target, listen = %bind, "import listener stopped");
    }
    for import in changed {
        let bind = import.bind;
        let result = shared.tunnel.add_import(import.clone()).await;
        let mut state = shared.state.lock().expect("state lock");
        match result {
            Ok(_) => {
                state.failed.remove(&bind);
                state.bound.insert(bind, import);
            }
            Err(e) => {
                warn!(service = %import.target, listen = %bind, error = %e, "import listener failed");
                state.bound.remove(&bind);
                state.failed.insert(bind, e.to_string());
            }
        }
    }
    let imports = shared.mirror.lock().expect("mirror lock").table().len();
    shared.metrics.imports.set(imports as i64);
}
