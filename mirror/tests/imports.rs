//! The import table against the registry's own catalog state machine: incremental
//! updates and snapshot resyncs agree, and the sink sees exactly the table's changes.

use std::collections::BTreeMap;

use causeway_mirror::alloc::{AddressAllocator, AddressConfig};
use causeway_mirror::import::{Import, ImportSink, ImportTable};
use causeway_registry::{
    Catalog, CatalogEvent, ClusterRecord, Command, Export, Limits, Protocol, ServiceKey,
    ServicePort,
};
use causeway_trust::{ClusterName, SpiffeId, TrustDomain};
use proptest::prelude::*;

const CLUSTERS: [&str; 4] = ["east", "west", "north", "south"];
const SERVICES: [&str; 3] = ["shop/web", "shop/db", "pay/api"];
const PORTS: [u16; 3] = [80, 443, 5432];
const PROTOCOLS: [Protocol; 3] = [Protocol::Tcp, Protocol::Http, Protocol::Grpc];

/// Rebuilds the imports from sink calls alone, as a gateway would.
#[derive(Debug, Default)]
struct Recording {
    imports: BTreeMap<ServiceKey, Import>,
    calls: usize,
}

impl ImportSink for Recording {
    fn on_import_added(&mut self, import: &Import) {
        assert!(
            self.imports
                .insert(import.service.clone(), import.clone())
                .is_none(),
            "added twice"
        );
        self.calls += 1;
    }
    fn on_import_updated(&mut self, previous: &Import, import: &Import) {
        assert_ne!(previous, import, "an update that changes nothing");
        let old = self.imports.insert(import.service.clone(), import.clone());
        assert_eq!(
            old.as_ref(),
            Some(previous),
            "the previous import is the one reported"
        );
        self.calls += 1;
    }
    fn on_import_removed(&mut self, import: &Import) {
        assert!(
            self.imports.remove(&import.service).is_some(),
            "removed an unknown import"
        );
        self.calls += 1;
    }
}

fn cluster(name: &str) -> ClusterName {
    name.parse().unwrap()
}

fn record(name: &str) -> ClusterRecord {
    ClusterRecord {
        name: cluster(name),
        gateway_addrs: vec!["127.0.0.1:15443".into()],
        registry_addr: "127.0.0.1:15444".into(),
        identity: SpiffeId::gateway(TrustDomain::default(), cluster(name)),
        joined_at_unix_ms: 0,
        trust_bundle: Vec::new(),
        issuer_fingerprint: None,
        replicas: Vec::new(),
        import_pools: Vec::new(),
        runtime_exports: None,
    }
}

fn export(c: usize, s: usize, ports: &[(usize, usize)], weight: u32) -> Export {
    let mut seen = std::collections::BTreeSet::new();
    Export {
        cluster: cluster(CLUSTERS[c]),
        service: SERVICES[s].parse().unwrap(),
        ports: ports
            .iter()
            .filter(|(p, _)| seen.insert(*p))
            .map(|(p, proto)| ServicePort {
                name: format!("p{}", PORTS[*p]),
                protocol: PROTOCOLS[*proto],
                port: PORTS[*p],
            })
            .collect(),
        endpoints: 1,
        labels: BTreeMap::new(),
        weight,
        slots: None,
    }
}

fn command() -> impl Strategy<Value = Command> {
    let ports = proptest::collection::vec((0..PORTS.len(), 0..PROTOCOLS.len()), 1..3);
    prop_oneof![
        2 => (0..CLUSTERS.len()).prop_map(|c| Command::RegisterCluster(record(CLUSTERS[c]))),
        1 => (0..CLUSTERS.len()).prop_map(|c| Command::RemoveCluster { cluster: cluster(CLUSTERS[c]) }),
        4 => (0..CLUSTERS.len(), 0..SERVICES.len(), ports.clone(), 0u32..200)
            .prop_map(|(c, s, p, w)| Command::PutExport(export(c, s, &p, w))),
        2 => (0..CLUSTERS.len(), 0..SERVICES.len()).prop_map(|(c, s)| Command::DeleteExport {
            cluster: cluster(CLUSTERS[c]),
            service: SERVICES[s].parse().unwrap(),
        }),
        1 => (0..CLUSTERS.len(), proptest::collection::vec((0..SERVICES.len(), ports), 0..3))
            .prop_map(|(c, list)| {
                let mut seen = std::collections::BTreeSet::new();
                Command::ReplaceClusterExports {
                    cluster: cluster(CLUSTERS[c]),
                    exports: list
                        .into_iter()
                        .filter(|(s, _)| seen.insert(*s))
                        .map(|(s, p)| export(c, s, &p, 100))
                        .collect(),
                }
            }),
    ]
}

fn table() -> ImportTable {
    // Addresses come from the catalog's slots, so a table that followed every change
    // and one resynced from a snapshot must agree on them too (a /64: no slot runs
    // past the pool).
    let allocator = AddressAllocator::new(&AddressConfig {
        pools: vec!["fd00:77::/64".parse().unwrap()],
    })
    .unwrap();
    ImportTable::new(cluster("east"), Some(allocator))
}

fn imports(t: &ImportTable) -> Vec<Import> {
    t.imports().cloned().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn incremental_updates_and_snapshots_agree(
        commands in proptest::collection::vec(command(), 1..60),
        split in 0usize..60,
    ) {
        let mut catalog = Catalog::new(Limits::default());
        let mut incremental = table();
        let mut sink = Recording::default();
        let mut resynced = table();
        let mut resynced_sink = Recording::default();
        let split = split.min(commands.len());
        for (i, command) in commands.iter().enumerate() {
            let Ok(change) = catalog.apply(command) else { continue };
            let event = CatalogEvent::Change(change);
            incremental.apply(&event, &mut sink).unwrap();
            if i < split {
                resynced.apply(&event, &mut resynced_sink).unwrap();
            }
        }
        let snapshot = CatalogEvent::Snapshot(catalog.snapshot());
        let mut fresh = table();
        fresh.apply(&snapshot, &mut Recording::default()).unwrap();
        resynced.apply(&snapshot, &mut resynced_sink).unwrap();

        let expected = imports(&incremental);
        prop_assert_eq!(&imports(&fresh), &expected);
        prop_assert_eq!(&imports(&resynced), &expected);
        prop_assert_eq!(fresh.revision(), incremental.revision());
        prop_assert_eq!(sink.imports.values().cloned().collect::<Vec<_>>(), expected.clone());
        prop_assert_eq!(resynced_sink.imports.values().cloned().collect::<Vec<_>>(), expected.clone());

        // Our own cluster never appears; every other exporter does.
        for import in &expected {
            prop_assert!(!import.clusters.contains_key(&cluster("east")));
            prop_assert!(!import.clusters.is_empty());
            prop_assert_eq!(import.addresses.len(), 1);
        }
        let remote_exports = catalog.exports().filter(|e| e.value.cluster.as_str() != "east").count();
        let listed: usize = expected.iter().map(|i| i.clusters.len()).sum();
        prop_assert_eq!(listed, remote_exports);

        // A second identical snapshot changes nothing and calls nobody.
        let calls = resynced_sink.calls;
        resynced.apply(&snapshot, &mut resynced_sink).unwrap();
        prop_assert_eq!(resynced_sink.calls, calls);
    }
}
