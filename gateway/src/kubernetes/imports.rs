//! The import table → mirrored Services and `ServiceImport`s, and their cluster IPs
//! back into the clusterset DNS.
//!
//! Only the replica leading the controllers writes the mirrored objects; the others
//! read the cluster IPs the leader's Services got, so every replica's DNS answers
//! alike. A replica that starts leading applies every import again (the objects
//! then list its pod as the endpoint) and deletes what no import wants.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_k8s::controller::imports::ImportWriter;
use causeway_k8s::controller::{ImportOutcome, ImportPort, ImportView};
use causeway_k8s::resources::Protocol;
use causeway_mirror::{Import, ImportSink};
use causeway_registry::ServiceKey;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::daemon::sync::Imports;

/// How often the mirror retries what failed and re-reads the import table even
/// without a change notice.
const RETRY_PERIOD: Duration = Duration::from_secs(5);
/// How often managed objects no import wants any more are looked for and deleted
/// (objects left behind while the gateway was down).
const RESYNC_PERIOD: Duration = Duration::from_secs(60);

/// Nothing listens on import addresses on Kubernetes (listeners use pod ports), so
/// address changes need no one told but DNS.
struct NoListeners;

impl ImportSink for NoListeners {
    fn on_import_added(&mut self, _: &Import) {}
    fn on_import_updated(&mut self, _: &Import, _: &Import) {}
    fn on_import_removed(&mut self, _: &Import) {}
}

/// What the mirror should hold now: one view per import, with the pod ports its
/// listeners use. Imports whose listeners have no port yet are left for later.
fn desired(imports: &Imports) -> BTreeMap<ServiceKey, ImportView> {
    let mirror = imports.mirror.lock().expect("mirror lock");
    let ports = imports
        .listener_ports
        .as_ref()
        .map(|p| p.lock().expect("listener ports lock"));
    let Some(ports) = ports else {
        return BTreeMap::new();
    };
    mirror
        .table()
        .imports()
        .filter_map(|import| {
            let ports = import
                .ports
                .iter()
                .map(|p| {
                    Some(ImportPort {
                        name: Some(p.name.clone()),
                        port: p.port,
                        protocol: Protocol::Tcp,
                        listener_port: ports.get(&import.service, p.port)?,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Some((
                import.service.clone(),
                ImportView {
                    namespace: import.service.namespace().to_owned(),
                    name: import.service.name().to_owned(),
                    ports,
                    clusters: import.clusters.keys().map(ToString::to_string).collect(),
                },
            ))
        })
        .collect()
}

/// Keeps the mirrored objects in step with the import table until `cancel` fires.
pub(crate) async fn mirror_imports(
    imports: Arc<Imports>,
    writer: ImportWriter,
    cancel: CancellationToken,
) {
    let mut applied: BTreeMap<ServiceKey, ImportView> = BTreeMap::new();
    let mut last_resync: Option<Instant> = None;
    let mut leadership = writer.leadership().clone();
    let mut leading = leadership.is_leader();
    loop {
        let changed = imports.changed.notified();
        if leadership.is_leader() != leading {
            // What this replica read as a follower is not what it wrote: write it all.
            leading = !leading;
            applied.clear();
            last_resync = None;
        }
        let want = desired(&imports);
        apply_round(&imports, &writer, &want, &mut applied).await;
        if last_resync.is_none_or(|t| t.elapsed() >= RESYNC_PERIOD) {
            resync_round(&imports, &writer, &want).await;
            last_resync = Some(Instant::now());
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = changed => {}
            _ = leadership.changed() => {}
            _ = tokio::time::sleep(RETRY_PERIOD) => {}
        }
    }
}

/// Mirrors what `want` adds or changes and removes what it no longer holds;
/// `applied` is what the API server has, as far as this task knows.
async fn apply_round(
    imports: &Imports,
    writer: &ImportWriter,
    want: &BTreeMap<ServiceKey, ImportView>,
    applied: &mut BTreeMap<ServiceKey, ImportView>,
) {
    let mut zone_changed = false;
    for (key, view) in want {
        if applied.get(key) == Some(view) {
            continue;
        }
        match writer.apply(view).await {
            Ok(ImportOutcome::Applied {
                service,
                cluster_ip,
            }) => {
                info!(import = %key, %service, %cluster_ip, "import mirrored");
                set_dns_address(imports, key, &cluster_ip);
                zone_changed = true;
                applied.insert(key.clone(), view.clone());
            }
            Ok(ImportOutcome::NamespaceMissing { namespace }) => {
                warn!(import = %key, %namespace, "import not mirrored: its namespace does not exist (set [kubernetes] create_namespaces to create it)");
                applied.insert(key.clone(), view.clone());
            }
            // Read again next round, until the leader has mirrored it.
            Ok(ImportOutcome::AwaitingLeader) => {}
            Err(e) => warn!(import = %key, error = %e, "mirroring the import failed; retrying"),
        }
    }
    // One zone rebuild for the whole round, not one per mirrored import.
    if zone_changed {
        imports.mirror.lock().expect("mirror lock").publish();
    }
    let gone: Vec<ServiceKey> = applied
        .keys()
        .filter(|k| !want.contains_key(*k))
        .cloned()
        .collect();
    for key in gone {
        match writer.remove(key.namespace(), key.name()).await {
            Ok(()) => {
                info!(import = %key, "mirrored import removed");
                applied.remove(&key);
            }
            Err(e) => {
                warn!(import = %key, error = %e, "removing the mirrored import failed; retrying")
            }
        }
    }
}

/// Deletes managed objects no import wants (left behind while the gateway was
/// down), and frees the listener ports of services neither mirrored nor imported.
async fn resync_round(
    imports: &Imports,
    writer: &ImportWriter,
    want: &BTreeMap<ServiceKey, ImportView>,
) {
    let views: Vec<ImportView> = want.values().cloned().collect();
    match writer.resync(&views).await {
        Ok(removed) if !removed.is_empty() => {
            info!(removed = ?removed, "stale mirrored objects removed");
        }
        Ok(_) => {}
        Err(e) => warn!(error = %e, "resync of mirrored objects failed"),
    }
    let live: HashSet<ServiceKey> = want.keys().cloned().collect();
    if let Some(ports) = &imports.listener_ports {
        let table: HashSet<ServiceKey> = imports
            .mirror
            .lock()
            .expect("mirror lock")
            .table()
            .imports()
            .map(|i| i.service.clone())
            .collect();
        ports
            .lock()
            .expect("listener ports lock")
            .retain(|service, _| live.contains(service) || table.contains(service));
    }
}

/// Gives `key` its mirrored Service's cluster IP for the clusterset DNS; the caller
/// publishes the zone once for all changes of a round.
fn set_dns_address(imports: &Imports, key: &ServiceKey, cluster_ip: &str) {
    let Ok(ip) = cluster_ip.parse::<IpAddr>() else {
        warn!(import = %key, cluster_ip, "the mirrored Service's cluster IP is not an address");
        return;
    };
    imports
        .mirror
        .lock()
        .expect("mirror lock")
        .set_platform_addresses(key, vec![ip], &mut NoListeners);
}
