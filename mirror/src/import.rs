//! The import table: which remote services this cluster sees, and where they live.
//!
//! An import exists for every service (namespace and name) exported by at least one
//! cluster other than ours. It lists the exporting clusters with their ports, weights
//! and, in standalone mode, the addresses allocated for it. The table is sans-IO: it is
//! fed catalog changes or a snapshot, and reports what changed to an [`ImportSink`]
//! (the gateway starts and stops outbound listeners there).
//!
//! Port conflicts follow the Multi-Cluster Services API: when clusters export the same
//! port number with different protocols, the oldest export wins (the lowest revision
//! the export was last written at, then the cluster name), the losing clusters do not
//! receive traffic for that port, and the conflict is listed for operators.

use std::collections::{BTreeMap, BTreeSet};

use litemap::LiteMap;
use std::fmt;
use std::net::IpAddr;

use causeway_registry::{
    CatalogChange, CatalogEvent, CatalogSnapshot, Change, Export, Protocol, Revision, ServiceKey,
    ServicePort, Versioned,
};
use causeway_trust::ClusterName;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::{info, warn};

use crate::alloc::AddressAllocator;
use crate::dns::{ClusterRecords, NamedPort, PortProtocol, ServiceRecords};

/// One exporting cluster of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedCluster {
    /// The exporting cluster.
    pub cluster: ClusterName,
    /// The ports traffic may use towards this cluster (conflicting ones left out).
    pub ports: Vec<ServicePort>,
    /// Its share of traffic among equally near clusters (0 drains it).
    pub weight: u32,
    /// How many ready endpoints it reported.
    pub endpoints: u32,
    /// The revision its export was last written at; lower is older.
    pub revision: Revision,
    /// Addresses pinned to this cluster (standalone mode; empty otherwise).
    pub addresses: Vec<IpAddr>,
}

/// Clusters that export one port number with different protocols.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConflict {
    /// The service.
    pub service: ServiceKey,
    /// The port number in dispute.
    pub port: u16,
    /// The cluster whose export is oldest and decides the protocol.
    pub winner: ClusterName,
    /// The protocol that was kept.
    pub protocol: Protocol,
    /// A cluster whose port was left out.
    pub loser: ClusterName,
    /// The protocol it exported.
    pub loser_protocol: Protocol,
}

impl fmt::Display for PortConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} port {}: {} exports {} but the older export of {} says {}; {} gets no traffic on it",
            self.service,
            self.port,
            self.loser,
            self.loser_protocol,
            self.winner,
            self.protocol,
            self.loser
        )
    }
}

/// A remote service as this cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The service.
    pub service: ServiceKey,
    /// The service's ports: for each number, the oldest export's name and protocol.
    pub ports: Vec<ServicePort>,
    /// The exporting clusters other than ours, by name (a sorted vector: most
    /// services have one or two).
    pub clusters: LiteMap<ClusterName, ImportedCluster>,
    /// The import's own addresses (standalone mode; empty otherwise).
    pub addresses: Vec<IpAddr>,
    /// Port conflicts among the exporters.
    pub conflicts: Vec<PortConflict>,
}

impl Import {
    /// What the DNS zone says about this import.
    pub fn dns_records(&self) -> ServiceRecords {
        ServiceRecords {
            namespace: self.service.namespace().to_owned(),
            name: self.service.name().to_owned(),
            addresses: self.addresses.clone(),
            clusters: self
                .clusters
                .values()
                .map(|c| ClusterRecords {
                    cluster: c.cluster.clone(),
                    addresses: c.addresses.clone(),
                    weight: u16::try_from(c.weight).unwrap_or(u16::MAX),
                    ports: c
                        .ports
                        .iter()
                        .map(|p| NamedPort {
                            name: p.name.clone(),
                            // Every catalog protocol rides on TCP.
                            protocol: PortProtocol::Tcp,
                            port: p.port,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Where import changes go: the gateway starts, changes and stops its outbound
/// listeners here, and the DNS zone follows the same calls.
pub trait ImportSink {
    /// A service became imported.
    fn on_import_added(&mut self, import: &Import);
    /// An import changed (clusters, ports, weights or addresses).
    fn on_import_updated(&mut self, previous: &Import, import: &Import);
    /// The last remote exporter went away.
    fn on_import_removed(&mut self, import: &Import);
}

/// A sink that ignores everything (for callers that only read the table).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSink;

impl ImportSink for NoSink {
    fn on_import_added(&mut self, _: &Import) {}
    fn on_import_updated(&mut self, _: &Import, _: &Import) {}
    fn on_import_removed(&mut self, _: &Import) {}
}

/// Why catalog input was not applied. The table is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// A change skipped revisions: the consumer must resync from a snapshot.
    #[error("catalog change at revision {got} does not follow revision {have}; a resync is needed")]
    RevisionGap {
        /// The revision the table is at.
        have: Revision,
        /// The revision of the change.
        got: Revision,
    },
}

/// The import table's metrics.
#[derive(Debug, Clone, Default)]
pub struct ImportMetrics {
    /// Imports in the table.
    pub imports: Gauge,
    /// Port conflicts in the table.
    pub conflicts: Gauge,
    /// Address allocations that failed (pool exhausted).
    pub allocation_failures: Counter,
    /// Catalog revision the table reflects.
    pub revision: Gauge,
}

impl ImportMetrics {
    /// Registers every metric under `causeway_mirror_`.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("causeway_mirror");
        sub.register("imports", "Imported services", self.imports.clone());
        sub.register(
            "port_conflicts",
            "Ports exported with different protocols by different clusters",
            self.conflicts.clone(),
        );
        sub.register(
            "address_allocation_failures",
            "Imports or pinned names left without an address because a pool is full",
            self.allocation_failures.clone(),
        );
        sub.register(
            "catalog_revision",
            "Catalog revision the import table reflects",
            self.revision.clone(),
        );
    }
}

/// Remote exports of one service, by cluster (a sorted vector, as above).
type Exporters = LiteMap<ClusterName, Versioned<Export>>;

/// The import table. See the module documentation.
#[derive(Debug)]
pub struct ImportTable {
    local: ClusterName,
    revision: Revision,
    exports: BTreeMap<ServiceKey, Exporters>,
    imports: BTreeMap<ServiceKey, Import>,
    allocator: Option<AddressAllocator>,
    metrics: ImportMetrics,
}

impl ImportTable {
    /// An empty table for cluster `local`. With an allocator, imports get addresses
    /// (standalone mode); without, the platform provides them (Kubernetes).
    pub fn new(local: ClusterName, allocator: Option<AddressAllocator>) -> Self {
        Self {
            local,
            revision: Revision::ZERO,
            exports: BTreeMap::new(),
            imports: BTreeMap::new(),
            allocator,
            metrics: ImportMetrics::default(),
        }
    }

    /// Reports to `metrics` from now on.
    pub fn with_metrics(mut self, metrics: ImportMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Our own cluster, whose exports are never imported.
    pub fn local_cluster(&self) -> &ClusterName {
        &self.local
    }

    /// The catalog revision the table reflects.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// One import.
    pub fn get(&self, service: &ServiceKey) -> Option<&Import> {
        self.imports.get(service)
    }

    /// Every import, ordered by service.
    pub fn imports(&self) -> impl Iterator<Item = &Import> {
        self.imports.values()
    }

    /// How many imports there are.
    pub fn len(&self) -> usize {
        self.imports.len()
    }

    /// Whether there are no imports.
    pub fn is_empty(&self) -> bool {
        self.imports.is_empty()
    }

    /// Every port conflict, ordered by service.
    pub fn conflicts(&self) -> impl Iterator<Item = &PortConflict> {
        self.imports.values().flat_map(|i| i.conflicts.iter())
    }

    /// The address allocator, if the table allocates.
    pub fn allocator(&self) -> Option<&AddressAllocator> {
        self.allocator.as_ref()
    }

    /// Gives an import the addresses the platform provides for it (on Kubernetes,
    /// the cluster IP of its mirrored Service), for a table that does not allocate
    /// addresses itself. A lone exporter's pinned name shares them. Returns whether
    /// the import exists; an allocating table ignores the call and returns false.
    pub fn set_platform_addresses(
        &mut self,
        service: &ServiceKey,
        addresses: Vec<IpAddr>,
        sink: &mut dyn ImportSink,
    ) -> bool {
        if self.allocator.is_some() {
            return false;
        }
        let Some(import) = self.imports.get_mut(service) else {
            return false;
        };
        if import.addresses == addresses {
            return true;
        }
        let previous = import.clone();
        import.addresses = addresses;
        if import.clusters.len() == 1 {
            for (_, cluster) in import.clusters.iter_mut() {
                cluster.addresses = import.addresses.clone();
            }
        }
        sink.on_import_updated(&previous, import);
        true
    }

    /// Applies one watch event.
    pub fn apply(
        &mut self,
        event: &CatalogEvent,
        sink: &mut dyn ImportSink,
    ) -> Result<(), ImportError> {
        match event {
            CatalogEvent::Snapshot(snapshot) => {
                self.resync(snapshot, sink);
                Ok(())
            }
            CatalogEvent::Change(change) => self.apply_change(change, sink),
        }
    }

    /// Applies one revision's changes. Changes at or below the table's revision were
    /// applied already and are ignored.
    pub fn apply_change(
        &mut self,
        change: &CatalogChange,
        sink: &mut dyn ImportSink,
    ) -> Result<(), ImportError> {
        if change.revision <= self.revision {
            return Ok(());
        }
        if change.revision != self.revision.next() {
            return Err(ImportError::RevisionGap {
                have: self.revision,
                got: change.revision,
            });
        }
        let mut dirty = BTreeSet::new();
        for c in &change.changes {
            match c {
                Change::ExportPut(export) => {
                    if export.cluster == self.local {
                        continue;
                    }
                    self.exports
                        .entry(export.service.clone())
                        .or_default()
                        .insert(
                            export.cluster.clone(),
                            Versioned {
                                mod_revision: change.revision,
                                value: export.clone(),
                            },
                        );
                    dirty.insert(export.service.clone());
                }
                Change::ExportDeleted { cluster, service } => {
                    if let Some(exporters) = self.exports.get_mut(service) {
                        if exporters.remove(cluster).is_some() {
                            dirty.insert(service.clone());
                        }
                        if exporters.is_empty() {
                            self.exports.remove(service);
                        }
                    }
                }
                Change::ClusterDeleted { cluster } => {
                    // The catalog reports the cluster's exports as deleted too; this
                    // keeps the table right even if it did not.
                    self.exports.retain(|service, exporters| {
                        if exporters.remove(cluster).is_some() {
                            dirty.insert(service.clone());
                        }
                        !exporters.is_empty()
                    });
                }
                Change::ClusterPut(_)
                | Change::PolicyPut(_)
                | Change::PolicyDeleted { .. }
                | Change::DefaultAccessSet { .. }
                | Change::IssuerDenied(_)
                | Change::TrafficPolicyPut(_)
                | Change::TrafficPolicyDeleted { .. } => {}
            }
        }
        self.revision = change.revision;
        self.refresh(dirty, sink);
        Ok(())
    }

    /// Replaces the table's view of the catalog with `snapshot`. Imports that did not
    /// change keep their addresses and produce no sink calls.
    pub fn resync(&mut self, snapshot: &CatalogSnapshot, sink: &mut dyn ImportSink) {
        let mut exports: BTreeMap<ServiceKey, Exporters> = BTreeMap::new();
        for versioned in &snapshot.exports {
            let export = &versioned.value;
            if export.cluster == self.local {
                continue;
            }
            exports
                .entry(export.service.clone())
                .or_default()
                .insert(export.cluster.clone(), versioned.clone());
        }
        let mut dirty: BTreeSet<ServiceKey> = self.exports.keys().cloned().collect();
        dirty.extend(exports.keys().cloned());
        self.exports = exports;
        self.revision = snapshot.revision;
        self.refresh(dirty, sink);
    }

    fn refresh(&mut self, dirty: BTreeSet<ServiceKey>, sink: &mut dyn ImportSink) {
        self.release_addresses(&dirty);
        for service in dirty {
            let next = self
                .exports
                .get(&service)
                .map(|exporters| self.build_import(&service, exporters));
            let previous = self.imports.remove(&service);
            match (previous, next) {
                (None, None) => {}
                (None, Some(import)) => {
                    let import = self.with_addresses(import, None);
                    info!(service = %service, clusters = import.clusters.len(), "import added");
                    report_conflicts(&import, None);
                    sink.on_import_added(&import);
                    self.imports.insert(service, import);
                }
                (Some(previous), Some(import)) => {
                    let import = self.with_addresses(import, Some(&previous));
                    if import != previous {
                        report_conflicts(&import, Some(&previous));
                        sink.on_import_updated(&previous, &import);
                    }
                    self.imports.insert(service, import);
                }
                (Some(previous), None) => {
                    info!(service = %service, "import removed");
                    sink.on_import_removed(&previous);
                }
            }
        }
        self.metrics.imports.set(self.imports.len() as i64);
        self.metrics.conflicts.set(self.conflicts().count() as i64);
        self.metrics.revision.set(self.revision.get() as i64);
    }

    /// The import for `exporters`, without addresses.
    fn build_import(&self, service: &ServiceKey, exporters: &Exporters) -> Import {
        let mut by_age: Vec<&Versioned<Export>> = exporters.values().collect();
        by_age.sort_by(|a, b| {
            (a.mod_revision, &a.value.cluster).cmp(&(b.mod_revision, &b.value.cluster))
        });
        // For each port number, the oldest export's port decides name and protocol.
        let mut winners: BTreeMap<u16, (&ServicePort, &ClusterName)> = BTreeMap::new();
        let mut conflicts = Vec::new();
        for versioned in &by_age {
            let export = &versioned.value;
            for port in &export.ports {
                match winners.get(&port.port) {
                    None => {
                        winners.insert(port.port, (port, &export.cluster));
                    }
                    Some((winner, cluster)) if winner.protocol != port.protocol => {
                        conflicts.push(PortConflict {
                            service: service.clone(),
                            port: port.port,
                            winner: (*cluster).clone(),
                            protocol: winner.protocol,
                            loser: export.cluster.clone(),
                            loser_protocol: port.protocol,
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        let clusters = exporters
            .values()
            .map(|versioned| {
                let export = &versioned.value;
                let ports = export
                    .ports
                    .iter()
                    .filter(|p| {
                        winners
                            .get(&p.port)
                            .is_some_and(|(w, _)| w.protocol == p.protocol)
                    })
                    .cloned()
                    .collect();
                let imported = ImportedCluster {
                    cluster: export.cluster.clone(),
                    ports,
                    weight: export.weight,
                    endpoints: export.endpoints,
                    revision: versioned.mod_revision,
                    addresses: Vec::new(),
                };
                (export.cluster.clone(), imported)
            })
            .collect();
        conflicts.sort_by(|a, b| (a.port, &a.loser).cmp(&(b.port, &b.loser)));
        Import {
            service: service.clone(),
            ports: winners.values().map(|(p, _)| (*p).clone()).collect(),
            clusters,
            addresses: Vec::new(),
            conflicts,
        }
    }
}

fn report_conflicts(import: &Import, previous: Option<&Import>) {
    for conflict in &import.conflicts {
        if previous.is_none_or(|p| !p.conflicts.contains(conflict)) {
            warn!(
                service = %conflict.service,
                port = conflict.port,
                winner = %conflict.winner,
                loser = %conflict.loser,
                "port conflict: {conflict}"
            );
        }
    }
}

mod addresses;
#[cfg(test)]
mod tests;
