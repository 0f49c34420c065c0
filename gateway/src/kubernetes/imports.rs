//! The import table → mirrored Services and `ServiceImport`s, and their cluster IPs
//! back into the clusterset DNS.
//!
//! Only the replica leading the controllers writes the mirrored objects; the others
//! read the cluster IPs the leader's Services got, so every replica's DNS answers
//! alike. A replica that starts leading applies every import again and deletes what
//! no import wants.
//!
//! The mirrored EndpointSlices list every ready gateway pod (the ready endpoints of
//! the gateway's own Service), so imported traffic spreads over all replicas and a
//! replica that fails its readiness probe leaves rotation. That needs every replica
//! listening on the same pod port for a service port: each reads the mirrored
//! Service before anything else and adopts its ports (`ListenerPorts::adopt`), the
//! leader included, so a new leader keeps the ports its predecessor wrote.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_k8s::controller::imports::ImportWriter;
use causeway_k8s::controller::{ImportOutcome, ImportPort, ImportView, Mirrored};
use causeway_k8s::resources::Protocol;
use causeway_mirror::{Import, ImportSink};
use causeway_registry::ServiceKey;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::daemon::sync::Imports;
use crate::listener_ports::ListenerPorts;

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

/// Where the mirrored EndpointSlices' gateway pods come from.
pub(crate) struct GatewayPods {
    /// The gateway's namespace.
    pub(crate) namespace: String,
    /// The Service selecting the gateway pods there.
    pub(crate) service: String,
    /// This pod's address: listed when no pod is ready (a gateway with no such
    /// Service, or the first replica before its probe passes).
    pub(crate) own: IpAddr,
}

/// Keeps the mirrored objects in step with the import table until `cancel` fires.
pub(crate) async fn mirror_imports(
    imports: Arc<Imports>,
    mut writer: ImportWriter,
    pods: GatewayPods,
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
        if leading && refresh_pods(&mut writer, &pods).await {
            applied.clear();
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

/// Lists the ready gateway pods in the EndpointSlices written from now on; returns
/// whether they changed (every import is then written again). A failed read keeps
/// the last list.
async fn refresh_pods(writer: &mut ImportWriter, pods: &GatewayPods) -> bool {
    let mut ready = match writer.ready_pods(&pods.namespace, &pods.service).await {
        Ok(ready) => ready,
        Err(e) => {
            warn!(error = %e, "reading the ready gateway pods failed; the mirrored Services keep the last list");
            return false;
        }
    };
    if ready.is_empty() {
        ready.push(pods.own);
    }
    if ready == writer.gateway_pods() {
        return false;
    }
    info!(pods = ?ready, "mirrored Services list these gateway pods");
    writer.set_gateway_pods(ready);
    true
}

/// Reads the import's mirrored Service and adopts its listener ports; returns the
/// view with the ports this replica now listens on, what was read, and whether a
/// listener must move.
async fn adopt_mirrored(
    listener_ports: Option<&Mutex<ListenerPorts>>,
    writer: &ImportWriter,
    key: &ServiceKey,
    view: &ImportView,
) -> Result<(ImportView, Option<Mirrored>, bool), causeway_k8s::controller::imports::Error> {
    let observed = writer.observe(view).await?;
    let mut view = view.clone();
    let mut moved = false;
    if let (Some(mirrored), Some(ports)) = (&observed, listener_ports) {
        let mut ports = ports.lock().expect("listener ports lock");
        for port in &mut view.ports {
            if let Some(&listener) = mirrored.listener_ports.get(&port.port) {
                moved |= ports.adopt(key, port.port, listener);
                port.listener_port = ports.get(key, port.port).unwrap_or(port.listener_port);
            }
        }
    }
    Ok((view, observed, moved))
}

/// Mirrors one import: adopts the mirrored Service's ports, then writes the objects
/// (leading) or takes what the leader wrote. Sets `moved` when a listener must move.
async fn mirror_one(
    imports: &Imports,
    writer: &ImportWriter,
    key: &ServiceKey,
    view: &ImportView,
    moved: &mut bool,
) -> Result<(ImportView, ImportOutcome), causeway_k8s::controller::imports::Error> {
    let ports = imports.listener_ports.as_ref();
    let (view, observed, adopted) = adopt_mirrored(ports, writer, key, view).await?;
    *moved |= adopted;
    let outcome = if writer.leadership().is_leader() {
        writer.apply(&view).await?
    } else {
        observed.into()
    };
    Ok((view, outcome))
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
    let mut moved = false;
    for (key, view) in want {
        if applied.get(key) == Some(view) {
            continue;
        }
        match mirror_one(imports, writer, key, view, &mut moved).await {
            Ok((
                view,
                ImportOutcome::Applied {
                    service,
                    cluster_ip,
                },
            )) => {
                info!(import = %key, %service, %cluster_ip, "import mirrored");
                set_dns_address(imports, key, &cluster_ip);
                zone_changed = true;
                applied.insert(key.clone(), view);
            }
            Ok((view, ImportOutcome::NamespaceMissing { namespace })) => {
                warn!(import = %key, %namespace, "import not mirrored: its namespace does not exist (set [kubernetes] create_namespaces to create it)");
                applied.insert(key.clone(), view);
            }
            // Read again next round, until the leader has mirrored it.
            Ok((_, ImportOutcome::AwaitingLeader)) => {}
            Err(e) => warn!(import = %key, error = %e, "mirroring the import failed; retrying"),
        }
    }
    if moved {
        imports.rebind.notify_one();
    }
    // One zone rebuild for the whole round, not one per mirrored import.
    if zone_changed {
        imports.mirror.lock().expect("mirror lock").publish();
    }
    remove_gone(writer, want, applied).await;
}

/// Removes the mirrored objects of imports `want` no longer holds.
async fn remove_gone(
    writer: &ImportWriter,
    want: &BTreeMap<ServiceKey, ImportView>,
    applied: &mut BTreeMap<ServiceKey, ImportView>,
) {
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

#[cfg(test)]
mod tests {
    use causeway_k8s::leader::Leadership;
    use causeway_k8s::resources::Protocol;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;

    use super::*;

    fn view(listener_port: u16) -> ImportView {
        ImportView {
            namespace: "demo".into(),
            name: "web".into(),
            ports: vec![ImportPort {
                name: Some("http".into()),
                port: 80,
                protocol: Protocol::Tcp,
                listener_port,
            }],
            clusters: vec!["west".into()],
        }
    }

    /// A follower whose own allocation differs from the leader's Service moves its
    /// listener to the Service's port, and says that a listener must move.
    #[tokio::test]
    async fn a_replica_adopts_the_listener_port_of_the_mirrored_service() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let (_leading, leadership) = Leadership::channel(false);
        let writer = ImportWriter::new(client, Default::default(), leadership);
        let key: ServiceKey = "demo/web".parse().expect("key");
        let ports = Mutex::new(ListenerPorts::new([10, 244, 0, 2].into(), 20000..=20015));
        let own = ports.lock().unwrap().port_for(&key, 80).expect("a port");
        let leaders = if own == 20000 { 20001 } else { 20000 };
        let api = tokio::spawn(async move {
            let (request, respond) = handle.next_request().await.expect("a request");
            assert_eq!(
                request.uri().path(),
                "/api/v1/namespaces/demo/services/causeway-web"
            );
            let body = json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "causeway-web", "namespace": "demo",
                             "labels": {"app.kubernetes.io/managed-by": "causeway"}},
                "spec": {"clusterIP": "10.96.0.50",
                         "ports": [{"name": "http", "port": 80, "targetPort": leaders}]},
            });
            let response = Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&body).expect("json")))
                .expect("response");
            respond.send_response(response);
        });
        let (adopted, observed, moved) = adopt_mirrored(Some(&ports), &writer, &key, &view(own))
            .await
            .expect("read");
        api.await.expect("script");
        assert!(moved, "the listener moves");
        assert_eq!(adopted.ports[0].listener_port, leaders);
        assert_eq!(ports.lock().unwrap().get(&key, 80), Some(leaders));
        assert_eq!(
            ImportOutcome::from(observed),
            ImportOutcome::Applied {
                service: "causeway-web".into(),
                cluster_ip: "10.96.0.50".into()
            }
        );
    }
}
