//! This cluster's exports: from the config file (and the admin API) to the catalog
//! and to the tunnel's table of local services.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use causeway_registry::{ClusterRecord, Command, Export, Protocol, ServiceKey, ServicePort};
use causeway_trust::SpiffeId;
use tracing::{info, warn};

use super::Shared;
use crate::config::ExportConfig;
use crate::tunnel::{LocalService, ServiceTarget};

/// Most single-export commands sent for one change; beyond it one replacement of
/// the whole set is cheaper.
const INCREMENTAL_LIMIT: usize = 32;

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

/// Every export this cluster wants: the config file's and the admin API's, then the
/// platform's for services the config does not export already.
fn wanted(shared: &Shared) -> Vec<(ExportConfig, Option<u32>)> {
    let configured = shared.exports.lock().expect("exports lock").clone();
    let platform = shared
        .platform_exports
        .lock()
        .expect("exports lock")
        .clone();
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
pub(crate) fn to_catalog(shared: &Shared, e: &ExportConfig) -> Result<Export> {
    Ok(Export {
        cluster: shared.cluster.clone(),
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
    })
}

/// Tells the tunnel which local endpoints serve each exported port.
pub(crate) fn apply_local_services(shared: &Shared) {
    let exports: Vec<ExportConfig> = wanted(shared).into_iter().map(|(e, _)| e).collect();
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
    shared.tunnel.set_local_services(services);
    shared.metrics.exports.set(exports.len() as i64);
}

fn record(shared: &Shared) -> ClusterRecord {
    let config = &shared.config;
    ClusterRecord {
        name: shared.cluster.clone(),
        gateway_addrs: vec![config.tunnel_advertise().to_string()],
        registry_addr: config.registry_advertise().to_string(),
        identity: SpiffeId::gateway(
            shared.identity.id().trust_domain.clone(),
            shared.cluster.clone(),
        ),
        joined_at_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default(),
        trust_bundle: shared.identity.bundle().fingerprints(),
        // What `causeway unlink` denies, so this cluster's certificates stop working.
        issuer_fingerprint: Some(
            causeway_trust::IssuerFingerprint::of_issuer(shared.identity.issuer()).to_string(),
        ),
    }
}

/// Keeps the catalog in step with this cluster: registers the cluster, then puts
/// its whole export set in one command (nothing stale survives a restart), again
/// whenever exports change or the registry member is re-seated.
pub(crate) async fn publish(shared: Arc<Shared>) {
    loop {
        let notified = shared.republish.notified();
        loop {
            match publish_once(&shared).await {
                Ok(()) => break,
                Err(e) => {
                    shared.state.lock().expect("state lock").publish_error = Some(e.to_string());
                    warn!(error = %e, "publishing this cluster to the registry failed; retrying");
                    tokio::select! {
                        _ = shared.cancel.cancelled() => return,
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        }
        shared.state.lock().expect("state lock").publish_error = None;
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = notified => {}
        }
    }
}

async fn publish_once(shared: &Shared) -> Result<()> {
    let generation = shared
        .export_generation
        .load(std::sync::atomic::Ordering::SeqCst);
    let node = shared.node();
    let needs_record = node.read_local(|catalog| {
        catalog.cluster(&shared.cluster).is_none_or(|existing| {
            let mut fresh = record(shared);
            fresh.joined_at_unix_ms = existing.value.joined_at_unix_ms;
            existing.value != fresh
        })
    });
    if needs_record {
        node.propose(&Command::RegisterCluster(record(shared)))
            .await?;
    }
    let wanted = wanted(shared)
        .iter()
        .map(|(e, ready)| {
            let mut export = to_catalog(shared, e)?;
            if let Some(ready) = ready {
                export.endpoints = *ready;
            }
            Ok(export)
        })
        .collect::<Result<Vec<_>>>()?;
    let count = wanted.len();
    let first = !shared.state.lock().expect("state lock").exports_replaced;
    let commands = if first {
        // After a start or a re-seat the whole set goes in one command, so nothing a
        // previous run exported survives.
        vec![Command::ReplaceClusterExports {
            cluster: shared.cluster.clone(),
            exports: wanted,
        }]
    } else {
        changes(shared, &node, wanted)
    };
    let mut revision = causeway_registry::Revision(0);
    for command in &commands {
        revision = node.propose(command).await?;
    }
    shared.state.lock().expect("state lock").exports_replaced = true;
    shared.published.send_if_modified(|p| {
        let newer = generation > *p;
        *p = (*p).max(generation);
        newer
    });
    info!(exports = count, revision = revision.0, "exports published");
    Ok(())
}

/// The commands that turn this cluster's exports in the local catalog into
/// `wanted`: one put or delete per difference, or one replacement when most differ.
fn changes(shared: &Shared, node: &causeway_registry::Node, wanted: Vec<Export>) -> Vec<Command> {
    let current: std::collections::HashMap<ServiceKey, Export> = node.read_local(|catalog| {
        catalog
            .exports()
            .filter(|e| e.value.cluster == shared.cluster)
            .map(|e| (e.value.service.clone(), e.value.clone()))
            .collect()
    });
    let wanted_keys: std::collections::HashSet<&ServiceKey> =
        wanted.iter().map(|e| &e.service).collect();
    let mut commands: Vec<Command> = wanted
        .iter()
        .filter(|e| current.get(&e.service) != Some(e))
        .map(|e| Command::PutExport(e.clone()))
        .collect();
    commands.extend(
        current
            .keys()
            .filter(|k| !wanted_keys.contains(k))
            .map(|k| Command::DeleteExport {
                cluster: shared.cluster.clone(),
                service: k.clone(),
            }),
    );
    if commands.len() > INCREMENTAL_LIMIT {
        return vec![Command::ReplaceClusterExports {
            cluster: shared.cluster.clone(),
            exports: wanted,
        }];
    }
    commands
}

/// Replaces the export set (validated as a whole) and republishes it. Returns the
/// change's generation, to wait for with [`committed`].
pub(crate) fn set_exports(shared: &Shared, exports: Vec<ExportConfig>) -> u64 {
    *shared.exports.lock().expect("exports lock") = exports;
    exports_changed(shared)
}

/// Puts (`Some`) or removes (`None`) one platform export and republishes. Returns
/// the change's generation, to wait for with [`committed`].
pub(crate) fn set_platform_export(
    shared: &Shared,
    service: ServiceKey,
    export: Option<PlatformExport>,
) -> u64 {
    {
        let mut platform = shared.platform_exports.lock().expect("exports lock");
        match export {
            Some(export) => platform.insert(service, export),
            None => platform.remove(&service),
        };
    }
    exports_changed(shared)
}

fn exports_changed(shared: &Shared) -> u64 {
    let generation = shared
        .export_generation
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        + 1;
    apply_local_services(shared);
    shared.republish.notify_one();
    generation
}

/// Waits until the registry has committed export change `generation`; false when
/// `timeout` passed first (it stays queued and is published once a quorum is back).
pub(crate) async fn committed(shared: &Shared, generation: u64, timeout: Duration) -> bool {
    let mut rx = shared.published.subscribe();
    tokio::time::timeout(timeout, rx.wait_for(|p| *p >= generation))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// Applies the `[[export]]` list of a reloaded config file (when it changed).
pub(crate) fn apply_reloaded(shared: &Shared, fresh: Vec<ExportConfig>, path: &Path) {
    let current = shared.exports.lock().expect("exports lock").clone();
    if fresh == current {
        return;
    }
    info!(
        exports = fresh.len(),
        "exports reloaded from {}",
        path.display()
    );
    set_exports(shared, fresh);
}
