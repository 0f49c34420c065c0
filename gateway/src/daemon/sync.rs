//! Catalog → import table → DNS and import listeners, in revision order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use causeway_mirror::{Import, ImportSink, Mirror};
use causeway_registry::{CatalogEvent, Change, ClusterRecord, Revision, ServiceKey};
use causeway_trust::{ClusterName, ReplicaName};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::Shared;
use super::metrics::GatewayMetrics;
use crate::listener_ports::ListenerPorts;
use causeway_tunnel::{Import as TunnelImport, ImportPeer, ServiceTarget, Tunnel};

/// What this cluster imports: the import table and DNS (the mirror), where other
/// clusters' gateways are, and which import listeners are bound.
pub(crate) struct Imports {
    /// The import table and the DNS zone built from it.
    pub(crate) mirror: Mutex<Mirror>,
    /// Where other clusters' gateways are, as the catalog says.
    pub(crate) directory: RwLock<Directory>,
    /// How far the import table and the listeners have followed the catalog.
    pub(crate) state: Mutex<SyncState>,
    /// On Kubernetes: the pod ports carrying imported service ports (import
    /// listeners bind these instead of per-import addresses).
    pub(crate) listener_ports: Option<Mutex<ListenerPorts>>,
    /// Wakes the Kubernetes import mirror after the import table changed.
    pub(crate) changed: Notify,
    /// Asks for the import listeners to be bound again: the Kubernetes import mirror
    /// moved a service port to the pod port the mirrored Service names.
    pub(crate) rebind: Notify,
    /// The last catalog revision applied (what `state.revision` says), for callers
    /// that wait until a change of theirs has taken effect here.
    pub(crate) applied: tokio::sync::watch::Sender<u64>,
}

impl Imports {
    /// Imports through `mirror`, whose listeners bind `listener_ports` when given.
    pub(crate) fn new(mirror: Mirror, listener_ports: Option<ListenerPorts>) -> Self {
        Self {
            mirror: Mutex::new(mirror),
            directory: RwLock::default(),
            state: Mutex::default(),
            listener_ports: listener_ports.map(Mutex::new),
            changed: Notify::new(),
            rebind: Notify::new(),
            applied: tokio::sync::watch::channel(0).0,
        }
    }

    /// Makes the next watch start from a snapshot: the member was re-seated, and
    /// the new registry's revisions do not continue the old one's.
    pub(crate) fn restart_from_snapshot(&self) {
        self.state.lock().expect("state lock").revision = 0;
    }

    /// The issuer fingerprint `cluster` published, when the catalog knows it.
    pub(crate) fn issuer_of(&self, cluster: &ClusterName) -> Option<String> {
        self.directory
            .read()
            .expect("directory lock")
            .clusters
            .get(cluster)
            .and_then(|c| c.issuer_fingerprint.clone())
    }
}

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

    /// One import peer per live replica of `cluster`'s gateway.
    fn import_peers(&self, cluster: &ClusterName, weight: u32) -> Vec<ImportPeer> {
        self.gateways(cluster)
            .into_iter()
            .map(|(replica, gateway)| ImportPeer {
                cluster: cluster.clone(),
                replica,
                gateway,
                weight,
            })
            .collect()
    }

    /// Whether `cluster`'s record lists `replica` (a cluster not registered yet, or
    /// registered before replicas existed, counts as listing it: the publisher
    /// registers it in its own time).
    pub(crate) fn lists(&self, cluster: &ClusterName, replica: &Option<ReplicaName>) -> bool {
        self.clusters
            .get(cluster)
            .is_none_or(|c| c.replicas.is_empty() || c.replicas.iter().any(|r| &r.name == replica))
    }

    /// The registry member id of each replica of `cluster` (its unnamed gateway's
    /// too, which a cluster registered before replicas has).
    pub(crate) fn member_ids(&self, cluster: &ClusterName) -> Vec<u64> {
        let named = self
            .clusters
            .get(cluster)
            .into_iter()
            .flat_map(|c| &c.replicas);
        let mut ids: Vec<u64> = named
            .map(|r| causeway_registry::member_id(cluster, r.name.as_ref()))
            .collect();
        ids.push(causeway_registry::member_id(cluster, None));
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Who holds registry member `id`: `cluster`, or `cluster/replica`.
    pub(crate) fn member_name(&self, id: u64) -> Option<String> {
        self.clusters.keys().find_map(|cluster| {
            if causeway_registry::member_id(cluster, None) == id {
                return Some(cluster.to_string());
            }
            let replicas = &self.clusters[cluster].replicas;
            let r = replicas
                .iter()
                .find(|r| causeway_registry::member_id(cluster, r.name.as_ref()) == id)?;
            Some(format!(
                "{cluster}/{}",
                r.name.as_ref().map_or("-", |n| n.as_str())
            ))
        })
    }

    /// Each live replica of `cluster`'s gateway with its first tunnel address that
    /// parses (a cluster registered before replicas existed: its one gateway).
    pub(crate) fn gateways(&self, cluster: &ClusterName) -> Vec<(Option<ReplicaName>, SocketAddr)> {
        let Some(record) = self.clusters.get(cluster) else {
            return Vec::new();
        };
        let first = |addrs: &[String]| addrs.iter().find_map(|a| a.parse().ok());
        if record.replicas.is_empty() {
            return first(&record.gateway_addrs)
                .map(|a| (None, a))
                .into_iter()
                .collect();
        }
        record
            .replicas
            .iter()
            .filter_map(|r| Some((r.name.clone(), first(&r.gateway_addrs)?)))
            .collect()
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
}

/// Follows the current registry member's watch stream for as long as the gateway
/// runs, re-watching (from a snapshot) after a gap or a re-seat. Every event also
/// passes the access and traffic policies (which see the whole catalog, and may
/// hide some of it from the mirror), so this task takes the whole gateway.
pub(crate) async fn follow_catalog(shared: Shared) {
    let imports = &shared.imports;
    let cancel = &shared.local.cancel;
    loop {
        let from = imports.state.lock().expect("state lock").revision;
        let mut watch = shared.membership.node().watch(Revision(from));
        loop {
            let metrics = &shared.telemetry.metrics;
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = imports.rebind.notified() => {
                    reconcile_listeners(imports, &shared.tunnel, metrics, Scope::All).await;
                    continue;
                }
                event = watch.next() => event,
            };
            let Some(event) = event else { break };
            match apply(&shared, &event) {
                Some(scope) => {
                    reconcile_listeners(imports, &shared.tunnel, metrics, scope).await;
                    imports.changed.notify_one();
                }
                None => {
                    // A gap: start over from a snapshot.
                    imports.restart_from_snapshot();
                    break;
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
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

/// Tells the exports when the catalog lost some of this cluster's: deleted by a
/// change, or absent from a snapshot (one that replaced a long-stale copy).
fn notice_withdrawn(shared: &Shared, event: &CatalogEvent) {
    let local = &shared.local.cluster;
    match event {
        CatalogEvent::Change(c) => {
            // Most changes delete nothing of ours: then the export set is not read.
            let deleted: Vec<&ServiceKey> = c
                .changes
                .iter()
                .filter_map(|change| match change {
                    Change::ExportDeleted { cluster, service } if cluster == local => Some(service),
                    _ => None,
                })
                .collect();
            if !deleted.is_empty() {
                shared.exports.withdrawn(|namespace, name| {
                    deleted
                        .iter()
                        .any(|s| s.namespace() == namespace && s.name() == name)
                });
            }
        }
        CatalogEvent::Snapshot(s) => {
            let present: std::collections::HashSet<(&str, &str)> = s
                .exports
                .iter()
                .map(|e| &e.value)
                .filter(|e| &e.cluster == local)
                .map(|e| (e.service.namespace(), e.service.name()))
                .collect();
            shared
                .exports
                .withdrawn(|namespace, name| !present.contains(&(namespace, name)));
        }
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
    let imports = &shared.imports;
    let mut directory = imports.directory.write().expect("directory lock");
    directory.apply(event);
    if clusters_changed && !directory.lists(&shared.local.cluster, &shared.local.config.replica) {
        shared.exports.registration_lost();
    }
    let own = clusters_changed
        .then(|| directory.clusters.get(&shared.local.cluster))
        .flatten()
        .map(|record| record.runtime_exports.clone());
    drop(directory);
    // Before the withdrawn check: a runtime export unexported through a sibling is
    // not wanted here any more, so its deletion is not put back.
    if let Some(listed) = own {
        super::exports::follow_runtime(&shared.exports, listed.as_deref());
    }
    notice_withdrawn(shared, event);
    // Exports this cluster may not use never reach the mirror (no DNS, no listener).
    let filtered = super::policy::on_event(shared, event);
    let metrics = &shared.telemetry.metrics;
    super::traffic::on_event(&shared.traffic, &shared.tunnel, metrics, event);
    let clusters_changed = clusters_changed || matches!(filtered, Some(CatalogEvent::Snapshot(_)));
    let mut touched = Touched::default();
    let mut mirror = imports.mirror.lock().expect("mirror lock");
    if let Err(e) = mirror.apply(filtered.as_ref().unwrap_or(event), &mut touched) {
        warn!(error = %e, "catalog gap; resyncing from a snapshot");
        return None;
    }
    mirror.publish();
    drop(mirror);
    imports.state.lock().expect("state lock").revision = revision.0;
    imports.applied.send_replace(revision.0);
    metrics.catalog_revision.set(revision.0 as i64);
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
///
/// On Kubernetes (`pod_ports`) each service port instead gets one listener on a pod
/// port of its own, at the pod's address: the mirrored Service sends traffic there.
fn listeners_for(
    import: &Import,
    directory: &Directory,
    mut pod_ports: Option<&mut ListenerPorts>,
    out: &mut HashMap<SocketAddr, TunnelImport>,
) {
    let peer = |cluster: &ClusterName, weight: u32| directory.import_peers(cluster, weight);
    for port in &import.ports {
        let target =
            ServiceTarget::new(import.service.namespace(), import.service.name(), port.port);
        let serves =
            |c: &causeway_mirror::ImportedCluster| c.ports.iter().any(|p| p.port == port.port);
        let all: Vec<ImportPeer> = import
            .clusters
            .values()
            .filter(|c| c.weight > 0 && serves(c))
            .flat_map(|c| peer(&c.cluster, c.weight))
            .collect();
        if let Some(ports) = pod_ports.as_deref_mut() {
            match ports.port_for(&import.service, port.port) {
                Some(pod_port) => {
                    let bind = SocketAddr::new(ports.bind_ip(), pod_port);
                    out.insert(
                        bind,
                        TunnelImport {
                            target: target.clone(),
                            bind,
                            peers: all.clone(),
                        },
                    );
                }
                None => {
                    warn!(service = %import.service, port = port.port, "no free listener port left in [kubernetes] listener_ports")
                }
            }
            continue;
        }
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
            let one = peer(&cluster.cluster, cluster.weight.max(1));
            if one.is_empty() {
                continue;
            }
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
                        peers: one.clone(),
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
async fn reconcile_listeners(
    imports: &Imports,
    tunnel: &Tunnel,
    metrics: &GatewayMetrics,
    scope: Scope,
) {
    let desired = {
        let directory = imports.directory.read().expect("directory lock");
        let mirror = imports.mirror.lock().expect("mirror lock");
        let mut pod_ports = imports
            .listener_ports
            .as_ref()
            .map(|p| p.lock().expect("listener ports lock"));
        let mut out = HashMap::new();
        match &scope {
            Scope::All => {
                for import in mirror.table().imports() {
                    listeners_for(import, &directory, pod_ports.as_deref_mut(), &mut out);
                }
            }
            Scope::Services(keys) => {
                for key in keys {
                    if let Some(import) = mirror.table().get(key) {
                        listeners_for(import, &directory, pod_ports.as_deref_mut(), &mut out);
                    }
                }
            }
        }
        out
    };
    let (stale, changed): (Vec<(SocketAddr, ServiceTarget)>, Vec<TunnelImport>) = {
        let state = imports.state.lock().expect("state lock");
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
        tunnel.remove_import(&target, bind);
        imports
            .state
            .lock()
            .expect("state lock")
            .bound
            .remove(&bind);
        info!(service = %target, listen = %bind, "import listener stopped");
    }
    for import in changed {
        let bind = import.bind;
        let result = tunnel.add_import(import.clone()).await;
        let mut state = imports.state.lock().expect("state lock");
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
    let count = imports.mirror.lock().expect("mirror lock").table().len();
    metrics.imports.set(count as i64);
}

#[cfg(test)]
mod tests {
    use causeway_mirror::ImportedCluster;
    use causeway_registry::{Protocol, ServicePort};
    use causeway_trust::SpiffeId;

    use super::*;

    fn record(name: &str, gateway: &str) -> ClusterRecord {
        ClusterRecord {
            name: name.parse().unwrap(),
            gateway_addrs: vec![gateway.into()],
            registry_addr: "127.0.0.1:1".into(),
            identity: SpiffeId::gateway("causeway.local".parse().unwrap(), name.parse().unwrap()),
            joined_at_unix_ms: 0,
            trust_bundle: Vec::new(),
            issuer_fingerprint: None,
            replicas: Vec::new(),
            import_pools: Vec::new(),
            runtime_exports: None,
        }
    }

    fn import(service: &str, addresses: &[&str], clusters: &[(&str, &[&str])]) -> Import {
        let port = ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
        };
        Import {
            service: service.parse().unwrap(),
            ports: vec![port.clone()],
            clusters: clusters
                .iter()
                .map(|(name, pinned)| {
                    (
                        name.parse().unwrap(),
                        ImportedCluster {
                            cluster: name.parse().unwrap(),
                            ports: vec![port.clone()],
                            weight: 100,
                            endpoints: 1,
                            revision: Revision(1),
                            addresses: pinned.iter().map(|a| a.parse().unwrap()).collect(),
                        },
                    )
                })
                .collect(),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            conflicts: Vec::new(),
        }
    }

    fn directory() -> Directory {
        Directory {
            clusters: [("west", "127.0.0.1:7001"), ("north", "127.0.0.1:7002")]
                .into_iter()
                .map(|(n, g)| (n.parse().unwrap(), record(n, g)))
                .collect(),
        }
    }

    fn binds(out: &HashMap<SocketAddr, TunnelImport>) -> Vec<(String, Vec<String>)> {
        let mut v: Vec<(String, Vec<String>)> = out
            .values()
            .map(|i| {
                (
                    i.bind.to_string(),
                    i.peers.iter().map(|p| p.cluster.to_string()).collect(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn standalone_listeners_bind_the_service_and_pinned_addresses() {
        let mut out = HashMap::new();
        let two = import(
            "shop/web",
            &["127.77.0.1"],
            &[("west", &["127.77.0.2"]), ("north", &["127.77.0.3"])],
        );
        listeners_for(&two, &directory(), None, &mut out);
        assert_eq!(
            binds(&out),
            [
                ("127.77.0.1:80".into(), vec!["north".into(), "west".into()]),
                ("127.77.0.2:80".into(), vec!["west".into()]),
                ("127.77.0.3:80".into(), vec!["north".into()]),
            ]
        );
        // A lone exporter's pinned name shares the service's address: one listener.
        let mut out = HashMap::new();
        let one = import("shop/db", &["127.77.0.4"], &[("west", &["127.77.0.4"])]);
        listeners_for(&one, &directory(), None, &mut out);
        assert_eq!(binds(&out), [("127.77.0.4:80".into(), vec!["west".into()])]);
    }

    #[test]
    fn kubernetes_listeners_bind_one_pod_port_per_service_port() {
        let mut ports = ListenerPorts::new([127, 0, 0, 9].into(), 20000..=20099);
        let mut out = HashMap::new();
        // On Kubernetes the import's address is its Service's cluster IP, which is
        // not on this pod: nothing binds it.
        let two = import(
            "shop/web",
            &["10.96.0.10"],
            &[("west", &[]), ("north", &[])],
        );
        listeners_for(&two, &directory(), Some(&mut ports), &mut out);
        let port = ports
            .get(&"shop/web".parse().unwrap(), 80)
            .expect("allocated");
        assert_eq!(
            binds(&out),
            [(
                format!("127.0.0.9:{port}"),
                vec!["north".to_string(), "west".to_string()]
            )]
        );
        // The same import asks for the same port again.
        let mut again = HashMap::new();
        listeners_for(&two, &directory(), Some(&mut ports), &mut again);
        assert_eq!(binds(&again), binds(&out));
    }
}
