//! Import addresses in standalone mode: the catalog's slots of each import's exports
//! turned into addresses by the table's allocator.

use std::collections::BTreeSet;
use std::net::IpAddr;

use causeway_registry::ServiceKey;
use causeway_trust::ClusterName;
use prometheus_client::metrics::counter::Counter;
use tracing::warn;

use super::{Import, ImportTable};
use crate::alloc::{AddressAllocator, AddressOwner};

impl ImportTable {
    /// Releases every address the imports of `dirty` services hold, before any is
    /// given again: the catalog may have handed a slot one of them held to another
    /// (after a gap the changes of many commands arrive together), and the table
    /// would otherwise find it still held. Unchanged owners get the same addresses
    /// back, from the same slots.
    pub(super) fn release_addresses(&mut self, dirty: &BTreeSet<ServiceKey>) {
        let Some(allocator) = &mut self.allocator else {
            return;
        };
        for import in dirty.iter().filter_map(|s| self.imports.get(s)) {
            allocator.release(&AddressOwner::Service(import.service.clone()));
            for cluster in import.clusters.keys() {
                allocator.release(&AddressOwner::Pinned(
                    import.service.clone(),
                    cluster.clone(),
                ));
            }
        }
    }

    /// Gives `import` the addresses of its catalog slots (the previous import's were
    /// released by [`Self::release_addresses`]).
    pub(super) fn with_addresses(
        &mut self,
        mut import: Import,
        previous: Option<&Import>,
    ) -> Import {
        let Some(allocator) = &mut self.allocator else {
            // The platform's addresses (set_platform_addresses) stay until it changes
            // them; a lone exporter's pinned name shares them.
            import.addresses = previous.map(|p| p.addresses.clone()).unwrap_or_default();
            if import.clusters.len() == 1 {
                for (_, cluster) in import.clusters.iter_mut() {
                    cluster.addresses = import.addresses.clone();
                }
            }
            return import;
        };
        let failures = &self.metrics.allocation_failures;
        let slots = |cluster: Option<&ClusterName>| {
            let exporters = self.exports.get(&import.service)?;
            let export = match cluster {
                Some(cluster) => exporters.get(cluster)?,
                None => exporters.values().next()?,
            };
            let slots = export.value.slots?;
            Some(if cluster.is_some() {
                slots.pinned
            } else {
                slots.service
            })
        };
        import.addresses = allocate(
            allocator,
            failures,
            AddressOwner::Service(import.service.clone()),
            slots(None),
        );
        // A service with one exporting cluster needs no address of its own per
        // cluster: the pinned name answers with the service's address, which reaches
        // that cluster only. This halves the listeners of the common case (10,000
        // imports: 10,000 sockets, not 20,000); a second exporter gets both clusters
        // their own addresses, and the pinned name moves once (within the DNS TTL).
        let alone = import.clusters.len() == 1;
        for (name, cluster) in &mut import.clusters {
            let owner = AddressOwner::Pinned(import.service.clone(), name.clone());
            cluster.addresses = if alone {
                allocator.release(&owner);
                import.addresses.clone()
            } else {
                allocate(allocator, failures, owner, slots(Some(name)))
            };
        }
        import
    }
}

/// The addresses of `owner`'s slot; none (counted and logged) when they cannot be
/// given, so the rest of the import still works.
fn allocate(
    allocator: &mut AddressAllocator,
    failures: &Counter,
    owner: AddressOwner,
    slot: Option<u32>,
) -> Vec<IpAddr> {
    allocator.allocate(&owner, slot).unwrap_or_else(|e| {
        warn!(error = %e, owner = %owner, "import left without an address");
        failures.inc();
        Vec::new()
    })
}
