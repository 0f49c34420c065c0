use std::collections::BTreeMap;

use causeway_registry::{
    AddressSlots, CatalogChange, Change, Export, Protocol, Revision, ServiceKey, ServicePort,
};

use super::*;
use crate::alloc::{AddressAllocator, AddressConfig};

#[derive(Debug, Default)]
struct Recording {
    calls: Vec<String>,
}

impl ImportSink for Recording {
    fn on_import_added(&mut self, import: &Import) {
        self.calls.push(format!(
            "added {} {:?}",
            import.service,
            import.clusters.keys().collect::<Vec<_>>()
        ));
    }
    fn on_import_updated(&mut self, _: &Import, import: &Import) {
        self.calls.push(format!(
            "updated {} {:?}",
            import.service,
            import.clusters.keys().collect::<Vec<_>>()
        ));
    }
    fn on_import_removed(&mut self, import: &Import) {
        self.calls.push(format!("removed {}", import.service));
    }
}

/// An export as the catalog hands it out, with fixed slots: one per service, one per
/// service and cluster.
fn export(cluster: &str, service: &str, ports: &[(&str, Protocol, u16)]) -> Export {
    let index = |names: &[&str], name: &str| names.iter().position(|n| *n == name).unwrap() as u32;
    let service_slot = index(&["shop/web", "shop/db", "shop/api"], service);
    let cluster_index = index(&["east", "west", "north"], cluster);
    Export {
        cluster: cluster.parse().unwrap(),
        service: service.parse().unwrap(),
        ports: ports
            .iter()
            .map(|(name, protocol, port)| ServicePort {
                name: (*name).into(),
                protocol: *protocol,
                port: *port,
            })
            .collect(),
        endpoints: 1,
        labels: BTreeMap::new(),
        weight: 100,
        slots: Some(AddressSlots {
            service: service_slot,
            pinned: 10 + 10 * service_slot + cluster_index,
        }),
    }
}

fn put(revision: u64, export: Export) -> CatalogChange {
    CatalogChange {
        revision: Revision(revision),
        changes: vec![Change::ExportPut(export)],
    }
}

fn delete(revision: u64, cluster: &str, service: &str) -> CatalogChange {
    CatalogChange {
        revision: Revision(revision),
        changes: vec![Change::ExportDeleted {
            cluster: cluster.parse().unwrap(),
            service: service.parse().unwrap(),
        }],
    }
}

fn table() -> ImportTable {
    let allocator = AddressAllocator::new(&AddressConfig::default()).unwrap();
    ImportTable::new("east".parse().unwrap(), Some(allocator))
}

#[test]
fn imports_follow_remote_exporters_and_ignore_our_own() {
    let mut t = table();
    let mut sink = Recording::default();
    let http = [("http", Protocol::Http, 80)];
    t.apply_change(&put(1, export("east", "shop/web", &http)), &mut sink)
        .unwrap();
    assert!(t.is_empty(), "our own export is not an import");
    t.apply_change(&put(2, export("west", "shop/web", &http)), &mut sink)
        .unwrap();
    t.apply_change(&put(3, export("north", "shop/web", &http)), &mut sink)
        .unwrap();
    let key: ServiceKey = "shop/web".parse().unwrap();
    let import = t.get(&key).unwrap();
    assert_eq!(import.clusters.len(), 2);
    assert_eq!(import.addresses.len(), 1);
    let address = import.addresses[0];
    let pinned = import.clusters[&"west".parse().unwrap()].addresses.clone();
    assert_ne!(pinned[0], address);

    t.apply_change(&delete(4, "west", "shop/web"), &mut sink)
        .unwrap();
    let import = t.get(&key).unwrap();
    assert_eq!(
        import.addresses,
        vec![address],
        "the address stays while the import exists"
    );
    let allocator = t.allocator().unwrap();
    assert!(
        allocator.owner_of(pinned[0]).is_none(),
        "west's pinned address is released"
    );
    let north = &import.clusters[&"north".parse().unwrap()];
    assert_eq!(
        north.addresses,
        vec![address],
        "a lone exporter's pinned name shares the service's address"
    );
    assert_eq!(
        allocator.len(),
        1,
        "no pinned address is held for a lone exporter"
    );

    t.apply_change(&delete(5, "north", "shop/web"), &mut sink)
        .unwrap();
    assert!(t.get(&key).is_none());
    assert!(
        t.allocator().unwrap().is_empty(),
        "every address is released"
    );
    assert_eq!(
        sink.calls,
        [
            "added shop/web [ClusterName(\"west\")]",
            "updated shop/web [ClusterName(\"north\"), ClusterName(\"west\")]",
            "updated shop/web [ClusterName(\"north\")]",
            "removed shop/web",
        ]
    );
}

#[test]
fn the_oldest_export_wins_a_port_conflict() {
    let mut t = table();
    let mut sink = Recording::default();
    t.apply_change(
        &put(
            1,
            export("west", "shop/db", &[("sql", Protocol::Tcp, 5432)]),
        ),
        &mut sink,
    )
    .unwrap();
    t.apply_change(
        &put(
            2,
            export(
                "north",
                "shop/db",
                &[
                    ("web", Protocol::Http, 5432),
                    ("admin", Protocol::Http, 8080),
                ],
            ),
        ),
        &mut sink,
    )
    .unwrap();
    let key: ServiceKey = "shop/db".parse().unwrap();
    let import = t.get(&key).unwrap();
    let conflicts: Vec<&PortConflict> = t.conflicts().collect();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].winner.as_str(), "west");
    assert_eq!(conflicts[0].loser.as_str(), "north");
    assert_eq!(conflicts[0].port, 5432);
    assert!(conflicts[0].to_string().contains("north gets no traffic"));
    assert_eq!(
        import
            .ports
            .iter()
            .map(|p| (p.port, p.protocol))
            .collect::<Vec<_>>(),
        [(5432, Protocol::Tcp), (8080, Protocol::Http)]
    );
    let north = &import.clusters[&"north".parse().unwrap()];
    assert_eq!(
        north.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
        [8080]
    );

    // When west withdraws, north's port is no longer in conflict.
    t.apply_change(&delete(3, "west", "shop/db"), &mut sink)
        .unwrap();
    assert_eq!(t.conflicts().count(), 0);
    let north = &t.get(&key).unwrap().clusters[&"north".parse().unwrap()];
    assert_eq!(north.ports.len(), 2);
}

#[test]
fn gaps_are_refused_and_replays_ignored() {
    let mut t = table();
    let http = [("http", Protocol::Http, 80)];
    t.apply_change(&put(1, export("west", "shop/web", &http)), &mut NoSink)
        .unwrap();
    let err = t
        .apply_change(&put(3, export("west", "shop/api", &http)), &mut NoSink)
        .unwrap_err();
    assert_eq!(
        err,
        ImportError::RevisionGap {
            have: Revision(1),
            got: Revision(3)
        }
    );
    let mut sink = Recording::default();
    t.apply_change(&delete(1, "west", "shop/web"), &mut sink)
        .unwrap();
    assert!(sink.calls.is_empty());
    assert_eq!(t.len(), 1);
}

#[test]
fn dns_records_name_every_cluster_and_port() {
    let mut t = table();
    t.apply_change(
        &put(
            1,
            export("west", "shop/web", &[("http", Protocol::Http, 80)]),
        ),
        &mut NoSink,
    )
    .unwrap();
    let records = t.imports().next().unwrap().dns_records();
    assert_eq!(
        (records.namespace.as_str(), records.name.as_str()),
        ("shop", "web")
    );
    assert_eq!(records.clusters[0].ports[0].port, 80);
    assert_eq!(records.clusters[0].weight, 100);
    assert_eq!(records.addresses.len(), 1);
}

#[test]
fn platform_addresses_are_kept_until_the_platform_changes_them() {
    let mut t = ImportTable::new("east".parse().unwrap(), None);
    let mut sink = Recording::default();
    let http = [("http", Protocol::Http, 80)];
    let key: ServiceKey = "shop/web".parse().unwrap();
    let ip: IpAddr = "10.96.7.7".parse().unwrap();
    assert!(
        !t.set_platform_addresses(&key, vec![ip], &mut sink),
        "no import yet"
    );
    t.apply_change(&put(1, export("west", "shop/web", &http)), &mut sink)
        .unwrap();
    assert!(t.get(&key).unwrap().addresses.is_empty());

    assert!(t.set_platform_addresses(&key, vec![ip], &mut sink));
    let import = t.get(&key).unwrap();
    assert_eq!(import.addresses, vec![ip]);
    assert_eq!(import.dns_records().addresses, vec![ip]);
    assert_eq!(
        import.clusters[&"west".parse().unwrap()].addresses,
        vec![ip],
        "a lone exporter's pinned name shares the address"
    );
    assert!(sink.calls.last().unwrap().starts_with("updated shop/web"));

    // An export change keeps the platform's address.
    t.apply_change(&put(2, export("north", "shop/web", &http)), &mut sink)
        .unwrap();
    let import = t.get(&key).unwrap();
    assert_eq!(import.addresses, vec![ip]);
    assert!(
        import.clusters.values().all(|c| c.addresses.is_empty()),
        "two exporters: pinned names have no platform address"
    );

    // An allocating table owns its addresses.
    let mut allocating = table();
    allocating
        .apply_change(&put(1, export("west", "shop/web", &http)), &mut sink)
        .unwrap();
    assert!(!allocating.set_platform_addresses(&key, vec![ip], &mut sink));
}
