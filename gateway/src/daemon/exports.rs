//! This cluster's exports: from the config file (and the admin API) to the catalog
//! and to the tunnel's table of local services.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use causeway_registry::{
    ClusterRecord, Command, Export, Protocol, Revision, ServiceKey, ServicePort,
};
use causeway_trust::ClusterName;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

mod diff;
mod runtime;

use super::Local;
use super::members::Membership;
use crate::config::ExportConfig;
use crate::status::ExportSource;
use causeway_tunnel::{LocalService, ServiceTarget, Tunnel};
pub(crate) use runtime::{
    RuntimeExports, follow as follow_runtime, record_lists, seed as seed_runtime,
    to_record as runtime_record,
};

/// Wait between attempts to publish while the registry has no quorum.
const RETRY: Duration = Duration::from_millis(500);

/// The port name used in the catalog for an unnamed port.
fn port_name(name: &Option<String>, port: u64) -> String {
    name.clone().unwrap_or_else(|| format!("tcp-{port}"))
}

/// An export that comes from the platform (a Kubernetes `ServiceExport`), kept apart
/// from the config file's so a reload never drops it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlatformExport {
    /// What is exported and where streams go (the Service's cluster IP).
    pub(crate) export: ExportConfig,
    /// Ready endpoints behind it, as the platform counts them.
    pub(crate) ready_endpoints: u32,
}

/// How far publishing this cluster's exports got.
#[derive(Debug, Default)]
struct Publication {
    /// Why the last attempt to publish failed, if it did.
    error: Option<String>,
    /// Whether this cluster's whole export set was put in the catalog since the
    /// gateway started or re-seated; later changes go as single puts and deletes.
    replaced: bool,
    /// Someone else took some of the wanted exports out of the catalog: the next
    /// round puts them back, and deletes nothing unless the export set changed
    /// here too (two replicas whose sets differ then leave each other's alone
    /// instead of replacing each other's in turn).
    restore: bool,
}

/// This cluster's export set and its publication: what the config file, the admin
/// API and the platform export, and how far the catalog has it.
pub(crate) struct Exports {
    /// The config file's exports, then the runtime exports of services the file
    /// does not export; shared with the access check, which selects on their
    /// labels.
    configured: Arc<Mutex<Vec<ExportConfig>>>,
    /// The config file's exports.
    file: Mutex<Vec<ExportConfig>>,
    /// Exports made at run time (`causeway export`), kept in the data folder.
    runtime: Mutex<RuntimeExports>,
    /// Exports from the platform (Kubernetes `ServiceExport`s), by service.
    platform: Mutex<BTreeMap<ServiceKey, PlatformExport>>,
    /// Counts changes of the export set; the publisher reports the last one it
    /// committed on `published`, so callers can wait for their change.
    generation: AtomicU64,
    /// The last generation the registry committed.
    published: watch::Sender<u64>,
    /// Wakes the publisher after exports change or the registry is re-seated.
    republish: Notify,
    /// Set once this replica takes itself off its cluster's list (it drains): the
    /// publisher no longer registers it.
    leaving: AtomicBool,
    /// How far the publisher got, for status and for its next round.
    publication: Mutex<Publication>,
    /// Where exported ports are served from: the tunnel's table of local services.
    tunnel: Arc<Tunnel>,
    /// `causeway_exports`.
    gauge: Gauge,
}

impl Exports {
    /// The export set of the config file's `file` exports and the `runtime` ones,
    /// written into `configured` (shared with the access check), served through
    /// `tunnel` and counted on `gauge`. Nothing is published until [`publish`] runs.
    pub(crate) fn new(
        file: Vec<ExportConfig>,
        runtime: RuntimeExports,
        configured: Arc<Mutex<Vec<ExportConfig>>>,
        tunnel: Arc<Tunnel>,
        gauge: Gauge,
    ) -> Self {
        *configured.lock().expect("exports lock") = merged(&file, runtime.list());
        Self {
            configured,
            file: Mutex::new(file),
            runtime: Mutex::new(runtime),
            platform: Mutex::default(),
            generation: AtomicU64::new(0),
            published: watch::channel(0).0,
            republish: Notify::new(),
            leaving: AtomicBool::new(false),
            publication: Mutex::default(),
            tunnel,
            gauge,
        }
    }

    /// The catalog's record of this cluster no longer lists this replica (a sibling
    /// or an operator took it off, or this replica's view was stale when it last
    /// registered): registers it again, unless it is leaving.
    pub(crate) fn registration_lost(&self) {
        if !self.leaving.load(Ordering::SeqCst) {
            self.republish.notify_one();
        }
    }

    /// Whether the catalog lacks exports this gateway wants (`missing` says which it
    /// lacks, by namespace and name): someone else took them out (the registry
    /// leader withdraws the exports of a cluster it has not heard from for the
    /// grace period, or a sibling replica published another set). If so, the next
    /// round puts them back, unless this gateway is leaving.
    pub(crate) fn withdrawn(&self, missing: impl Fn(&str, &str) -> bool) {
        if self.leaving.load(Ordering::SeqCst) {
            return;
        }
        if wanted(self)
            .iter()
            .any(|(e, _)| missing(&e.namespace, &e.name))
        {
            info!("exports of this cluster were withdrawn from the catalog; putting them back");
            self.publication.lock().expect("publication lock").restore = true;
            self.republish.notify_one();
        }
    }

    /// The config file's exports and the runtime ones.
    pub(crate) fn configured(&self) -> Vec<ExportConfig> {
        self.configured.lock().expect("exports lock").clone()
    }

    /// Whether the config file exports `namespace/name`.
    pub(crate) fn in_file(&self, namespace: &str, name: &str) -> bool {
        let file = self.file.lock().expect("exports lock");
        file.iter()
            .any(|e| e.namespace == namespace && e.name == name)
    }

    /// Every export with where it comes from: the file's, the runtime ones, then
    /// the platform's for services neither exports.
    pub(crate) fn with_sources(&self) -> Vec<(ExportConfig, ExportSource)> {
        let file = self.file.lock().expect("exports lock").clone();
        let mut all: Vec<(ExportConfig, ExportSource)> = Vec::new();
        for e in self.configured() {
            let from_file = file
                .iter()
                .any(|f| f.namespace == e.namespace && f.name == e.name);
            let source = if from_file {
                ExportSource::File
            } else {
                ExportSource::Cli
            };
            all.push((e, source));
        }
        for p in self.platform.lock().expect("exports lock").values() {
            let shadowed = all
                .iter()
                .any(|(e, _)| e.namespace == p.export.namespace && e.name == p.export.name);
            if !shadowed {
                all.push((p.export.clone(), ExportSource::Kubernetes));
            }
        }
        all
    }

    /// Recomputes the merged set after the file's or the runtime exports changed.
    fn remerge(&self) {
        let file = self.file.lock().expect("exports lock");
        let runtime = self.runtime.lock().expect("exports lock");
        *self.configured.lock().expect("exports lock") = merged(&file, runtime.list());
    }

    /// The platform's export of `service`, if it has one.
    pub(crate) fn platform_export(&self, service: &ServiceKey) -> Option<PlatformExport> {
        self.platform
            .lock()
            .expect("exports lock")
            .get(service)
            .cloned()
    }

    /// Why the last attempt to publish failed, while it does.
    pub(crate) fn publish_error(&self) -> Option<String> {
        self.publication
            .lock()
            .expect("publication lock")
            .error
            .clone()
    }

    /// The last change of the export set, to wait for with [`committed`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Wakes the publisher (the registry member joined).
    pub(crate) fn republish(&self) {
        self.republish.notify_one();
    }

    /// Puts the whole export set in the catalog again on the next round: the
    /// member was re-seated, so nothing a previous registry held may survive.
    pub(crate) fn replace_all(&self) {
        self.publication.lock().expect("publication lock").replaced = false;
        self.republish.notify_one();
    }

    fn set_error(&self, error: Option<String>) {
        self.publication.lock().expect("publication lock").error = error;
    }
}

/// Every export this cluster wants: the config file's and the admin API's, then the
/// platform's for services the config does not export already.
fn wanted(exports: &Exports) -> Vec<(ExportConfig, Option<u32>)> {
    let configured = exports.configured();
    let platform = exports.platform.lock().expect("exports lock").clone();
    let mut all: Vec<(ExportConfig, Option<u32>)> =
        configured.into_iter().map(|e| (e, None)).collect();
    for p in platform.into_values() {
        let configured = all
            .iter()
            .any(|(e, _)| e.namespace == p.export.namespace && e.name == p.export.name);
        if !configured {
            all.push((p.export, Some(p.ready_endpoints)));
        }
    }
    all
}

/// The catalog form of a configured export. Config validation guarantees the
/// names are labels and the ports are ports.
pub(crate) fn to_catalog(cluster: &ClusterName, e: &ExportConfig) -> Result<Export> {
    Ok(Export {
        cluster: cluster.clone(),
        service: ServiceKey::new(&e.namespace, &e.name)?,
        ports: e
            .ports
            .iter()
            .map(|p| ServicePort {
                name: port_name(&p.name, p.port),
                protocol: Protocol::Tcp,
                port: p.port as u16,
            })
            .collect(),
        endpoints: e.endpoints.len() as u32,
        labels: e.labels.clone(),
        weight: e.weight,
        slots: None,
    })
}

/// Tells the tunnel which local endpoints serve each exported port.
pub(crate) fn apply_local_services(all: &Exports) {
    let exports: Vec<ExportConfig> = wanted(all).into_iter().map(|(e, _)| e).collect();
    let services = exports.iter().flat_map(|e| {
        e.ports.iter().map(move |p| LocalService {
            target: ServiceTarget::new(&e.namespace, &e.name, p.port as u16),
            endpoints: e
                .endpoints
                .iter()
                .map(|ip| SocketAddr::new(*ip, p.target_port.unwrap_or(p.port) as u16))
                .collect(),
        })
    });
    all.tunnel.set_local_services(services);
    all.gauge.set(exports.len() as i64);
}

fn record(local: &Local) -> ClusterRecord {
    let config = &local.config;
    ClusterRecord {
        name: local.cluster.clone(),
        gateway_addrs: vec![config.tunnel_advertise().to_string()],
        registry_addr: config.registry_advertise().to_string(),
        // Names this replica (if named): the registry lists it among the cluster's.
        identity: local.identity.id().clone(),
        joined_at_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default(),
        trust_bundle: local.identity.bundle().fingerprints(),
        // What `causeway unlink` denies, so this cluster's certificates stop working.
        issuer_fingerprint: Some(
            causeway_trust::IssuerFingerprint::of_issuer(local.identity.issuer()).to_string(),
        ),
        replicas: Vec::new(),
        import_pools: import_pools(config),
        runtime_exports: None,
    }
}

/// This gateway's import pools as its catalog record lists them.
pub(crate) fn import_pools(config: &crate::config::GatewayConfig) -> Vec<String> {
    config
        .imports
        .pools
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Whether the cluster's `existing` record lists the replica `fresh` registers, at
/// its addresses, with the same trust.
fn lists(existing: &ClusterRecord, fresh: &ClusterRecord) -> bool {
    let mine = fresh.registering_replica();
    existing.trust_bundle == fresh.trust_bundle
        && existing.issuer_fingerprint == fresh.issuer_fingerprint
        && existing.replicas.iter().any(|r| {
            r.name == mine.name
                && r.gateway_addrs == mine.gateway_addrs
                && r.registry_addr == mine.registry_addr
                && r.import_pools == mine.import_pools
        })
}

/// How long a draining replica tries to take itself off its cluster's list.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Takes this replica off its cluster's list of gateway replicas when it drains and
/// siblings remain, so that peers stop dialling it; the last replica stays listed
/// (the registry refuses to remove it: a cluster leaves only when unlinked).
pub(crate) async fn leave_replica_list(exports: &Exports, membership: &Membership, local: &Local) {
    exports.leaving.store(true, Ordering::SeqCst);
    let node = membership.node();
    let replica = local.config.replica.clone();
    let siblings = node.read_local(|catalog| {
        catalog.cluster(&local.cluster).is_some_and(|c| {
            let listed = &c.value.replicas;
            listed.len() > 1 && listed.iter().any(|r| r.name == replica)
        })
    });
    if !siblings {
        return;
    }
    let command = Command::RemoveReplica {
        cluster: local.cluster.clone(),
        replica,
    };
    match tokio::time::timeout(LEAVE_TIMEOUT, node.propose(&command)).await {
        Ok(Ok(_)) => info!("left the cluster's list of gateway replicas"),
        Ok(Err(e)) => warn!(error = %e, "could not leave the list of gateway replicas"),
        Err(_) => warn!("leaving the list of gateway replicas timed out"),
    }
}

/// Keeps the catalog in step with this cluster: registers the cluster, then puts
/// its whole export set in one command (nothing stale survives a restart), again
/// whenever exports change or the registry member is re-seated.
pub(crate) async fn publish(exports: Arc<Exports>, membership: Arc<Membership>, local: Arc<Local>) {
    loop {
        let notified = exports.republish.notified();
        loop {
            match publish_once(&exports, &membership, &local).await {
                Ok(()) => break,
                Err(e) => {
                    exports.set_error(Some(e.to_string()));
                    warn!(error = %e, "publishing this cluster to the registry failed; retrying");
                    tokio::select! {
                        _ = local.cancel.cancelled() => return,
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        }
        exports.set_error(None);
        tokio::select! {
            _ = local.cancel.cancelled() => return,
            _ = notified => {}
        }
    }
}

async fn publish_once(exports: &Exports, membership: &Membership, local: &Local) -> Result<()> {
    let generation = exports.generation.load(Ordering::SeqCst);
    let node = membership.node();
    let cluster = &local.cluster;
    let leaving = exports.leaving.load(Ordering::SeqCst);
    let needs_record = !leaving
        && node.read_local(|catalog| {
            let fresh = record(local);
            catalog
                .cluster(cluster)
                .is_none_or(|existing| !lists(&existing.value, &fresh))
        });
    if needs_record {
        node.propose(&Command::RegisterCluster(record(local)))
            .await?;
    }
    for command in runtime::seed(exports, &node, cluster) {
        node.propose(&command).await?;
    }
    let wanted = wanted(exports)
        .iter()
        .map(|(e, ready)| {
            let mut export = to_catalog(cluster, e)?;
            if let Some(ready) = ready {
                export.endpoints = *ready;
            }
            Ok(export)
        })
        .collect::<Result<Vec<_>>>()?;
    let count = wanted.len();
    let first = !exports
        .publication
        .lock()
        .expect("publication lock")
        .replaced;
    let restore = std::mem::take(
        &mut exports
            .publication
            .lock()
            .expect("publication lock")
            .restore,
    );
    let changed_here = generation > *exports.published.borrow();
    let commands = if first {
        // After a start or a re-seat the whole set goes in one command, so nothing a
        // previous run exported survives.
        vec![Command::ReplaceClusterExports {
            cluster: cluster.clone(),
            exports: wanted,
        }]
    } else if restore && !changed_here {
        diff::puts(cluster, &node, wanted)
    } else {
        diff::changes(cluster, &node, wanted)
    };
    let mut revision = Revision(0);
    for command in &commands {
        revision = node.propose(command).await?;
    }
    exports
        .publication
        .lock()
        .expect("publication lock")
        .replaced = true;
    exports.published.send_if_modified(|p| {
        let newer = generation > *p;
        *p = (*p).max(generation);
        newer
    });
    info!(exports = count, revision = revision.0, "exports published");
    Ok(())
}

/// Removes the runtime export of `namespace/name`, saved before it takes effect.
/// Returns the change's generation, or `None` when there is no such runtime
/// export.
pub(crate) fn remove_runtime(
    exports: &Exports,
    namespace: &str,
    name: &str,
) -> Result<Option<u64>> {
    let removed = (exports.runtime.lock().expect("exports lock")).remove(namespace, name)?;
    if !removed {
        return Ok(None);
    }
    exports.remerge();
    Ok(Some(exports_changed(exports)))
}

/// The merged set with `export` put: what a new runtime export would make.
pub(crate) fn with_runtime(exports: &Exports, export: &ExportConfig) -> Vec<ExportConfig> {
    let mut next = exports.configured();
    next.retain(|e| !(e.namespace == export.namespace && e.name == export.name));
    next.push(export.clone());
    next
}

/// The config file's exports, then the runtime exports of services it does not
/// export: the file wins on conflict.
fn merged(file: &[ExportConfig], runtime: &[ExportConfig]) -> Vec<ExportConfig> {
    let mut all = file.to_vec();
    for e in runtime {
        if !file
            .iter()
            .any(|f| f.namespace == e.namespace && f.name == e.name)
        {
            all.push(e.clone());
        }
    }
    all
}

/// Puts (`Some`) or removes (`None`) one platform export and republishes. Returns
/// the change's generation, to wait for with [`committed`].
pub(crate) fn set_platform_export(
    exports: &Exports,
    service: ServiceKey,
    export: Option<PlatformExport>,
) -> u64 {
    {
        let mut platform = exports.platform.lock().expect("exports lock");
        match export {
            Some(export) => platform.insert(service, export),
            None => platform.remove(&service),
        };
    }
    exports_changed(exports)
}

fn exports_changed(exports: &Exports) -> u64 {
    let generation = exports.generation.fetch_add(1, Ordering::SeqCst) + 1;
    apply_local_services(exports);
    exports.republish.notify_one();
    generation
}

/// Waits until the registry has committed export change `generation`; false when
/// `timeout` passed first (it stays queued and is published once a quorum is back).
pub(crate) async fn committed(exports: &Exports, generation: u64, timeout: Duration) -> bool {
    let mut rx = exports.published.subscribe();
    tokio::time::timeout(timeout, rx.wait_for(|p| *p >= generation))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// Applies the `[[export]]` list of a reloaded config file when it changed, and
/// returns the change's generation; the runtime and platform exports stay.
pub(crate) fn apply_reloaded(
    exports: &Exports,
    fresh: Vec<ExportConfig>,
    path: &Path,
) -> Option<u64> {
    {
        let mut file = exports.file.lock().expect("exports lock");
        if *file == fresh {
            return None;
        }
        *file = fresh;
    }
    exports.remerge();
    info!(
        file_exports = exports.file.lock().expect("exports lock").len(),
        "exports of {} reloaded; runtime exports kept",
        path.display()
    );
    Some(exports_changed(exports))
}
