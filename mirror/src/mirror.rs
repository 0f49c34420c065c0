//! The mirror: catalog events in, imports out to the gateway and to DNS.

use causeway_registry::CatalogEvent;
use causeway_trust::ClusterName;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::warn;

use crate::alloc::{AddressAllocator, AddressConfig};
use crate::config::ConfigError;
use crate::dns::{DnsConfig, Metrics, ZoneBuilder, ZoneHandle};
use crate::import::{Import, ImportError, ImportSink, ImportTable};

/// The mirror's settings: the `[mirror]` table of the gateway's TOML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MirrorConfig {
    /// The DNS authority.
    pub dns: DnsConfig,
    /// Address pools for standalone mode.
    pub addresses: AddressConfig,
    /// Whether the mirror allocates addresses itself (standalone); on Kubernetes the
    /// cluster's Services provide them.
    pub allocate_addresses: bool,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        Self {
            dns: DnsConfig::default(),
            addresses: AddressConfig::default(),
            allocate_addresses: true,
        }
    }
}

impl MirrorConfig {
    /// Checks every section and returns all problems found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if let Err(e) = self.dns.validate() {
            problems.extend(e.problems);
        }
        if let (true, Err(e)) = (self.allocate_addresses, self.addresses.validate()) {
            problems.extend(e.problems);
        }
        ConfigError::check(problems)
    }
}

/// Why the mirror could not start or keep its state.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The catalog stream skipped revisions; watch again from a snapshot.
    #[error(transparent)]
    Import(#[from] ImportError),
}

/// The import table, the DNS zone built from it and the handle DNS servers answer from.
#[derive(Debug)]
pub struct Mirror {
    table: ImportTable,
    zone: ZoneBuilder,
    handle: ZoneHandle,
    dirty: bool,
}

impl Mirror {
    /// A mirror for cluster `local`, with an empty table being served, and the saved
    /// address state loaded if there is one.
    pub fn new(
        local: ClusterName,
        config: &MirrorConfig,
        metrics: Metrics,
    ) -> Result<Self, MirrorError> {
        config.validate()?;
        let allocator = if config.allocate_addresses {
            Some(AddressAllocator::new(&config.addresses)?)
        } else {
            None
        };
        let mut zone = ZoneBuilder::new(&config.dns)?;
        let handle = ZoneHandle::new(zone.build(), metrics);
        Ok(Self {
            table: ImportTable::new(local, allocator),
            zone,
            handle,
            dirty: false,
        })
    }

    /// The handle to give [`crate::dns::DnsServer::start`].
    pub fn zone(&self) -> &ZoneHandle {
        &self.handle
    }

    /// The import table.
    pub fn table(&self) -> &ImportTable {
        &self.table
    }

    /// Mutable access to the import table (e.g. to attach metrics).
    pub fn table_mut(&mut self) -> &mut ImportTable {
        &mut self.table
    }

    /// Applies one event to the table; changed imports go to `sink` and to the zone.
    /// Call [`Mirror::publish`] to make them visible in DNS.
    pub fn apply(
        &mut self,
        event: &CatalogEvent,
        sink: &mut dyn ImportSink,
    ) -> Result<(), ImportError> {
        let mut both = ZoneSink {
            zone: &mut self.zone,
            inner: sink,
            dirty: &mut self.dirty,
        };
        self.table.apply(event, &mut both)
    }

    /// Gives an import the addresses the platform provides for it (Kubernetes: its
    /// mirrored Service's cluster IP), so DNS answers with them; see
    /// [`ImportTable::set_platform_addresses`]. Call [`Mirror::publish`] after.
    pub fn set_platform_addresses(
        &mut self,
        service: &causeway_registry::ServiceKey,
        addresses: Vec<std::net::IpAddr>,
        sink: &mut dyn ImportSink,
    ) -> bool {
        let mut both = ZoneSink {
            zone: &mut self.zone,
            inner: sink,
            dirty: &mut self.dirty,
        };
        self.table
            .set_platform_addresses(service, addresses, &mut both)
    }

    /// Serves the zone as it is now, if anything changed.
    pub fn publish(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.handle.publish(self.zone.build());
    }

    /// Applies events from `events` until it closes, publishing after each burst (all
    /// events that were already waiting), so DNS follows within one rebuild.
    ///
    /// Returns an error when the stream skipped revisions: the caller watches again
    /// (the registry then starts with a snapshot) and calls `run` again.
    pub async fn run<S: ImportSink + Send>(
        &mut self,
        events: &mut mpsc::Receiver<CatalogEvent>,
        sink: &mut S,
    ) -> Result<(), MirrorError> {
        while let Some(event) = events.recv().await {
            self.apply(&event, sink)?;
            while let Ok(event) = events.try_recv() {
                self.apply(&event, sink)?;
            }
            self.publish();
        }
        Ok(())
    }
}

/// Forwards import changes to the gateway's sink and keeps the zone in step.
struct ZoneSink<'a> {
    zone: &'a mut ZoneBuilder,
    inner: &'a mut dyn ImportSink,
    dirty: &'a mut bool,
}

impl ZoneSink<'_> {
    fn upsert(&mut self, import: &Import) {
        if let Err(e) = self.zone.upsert(&import.dns_records()) {
            warn!(service = %import.service, error = %e, "import left out of DNS");
        }
        *self.dirty = true;
    }
}

impl ImportSink for ZoneSink<'_> {
    fn on_import_added(&mut self, import: &Import) {
        self.upsert(import);
        self.inner.on_import_added(import);
    }

    fn on_import_updated(&mut self, previous: &Import, import: &Import) {
        self.upsert(import);
        self.inner.on_import_updated(previous, import);
    }

    fn on_import_removed(&mut self, import: &Import) {
        self.zone
            .remove(import.service.namespace(), import.service.name());
        *self.dirty = true;
        self.inner.on_import_removed(import);
    }
}
