//! The import mirror: makes each service the federation imports into this cluster
//! reachable as a local Service, and describes it with an MCS `ServiceImport`.
//!
//! For an import `namespace/name` the mirror keeps these objects in `namespace`:
//!
//! - a ClusterIP Service named [`mirror_name`]`(name)` (`causeway-<name>`, never the
//!   application's own Service name), reaching the gateway pods, with one port per
//!   imported port whose `targetPort` is the gateway listener carrying it;
//! - a `ServiceImport` named `name`, as the MCS API names it after the exported
//!   service (clusterset DNS answers `name.namespace.svc.clusterset.local` from it),
//!   of type `ClusterSetIP` with the Service's cluster IP and `status.clusters`
//!   listing the exporting clusters.
//!
//! All carry [`LABEL_MANAGED_BY`]` = `[`MANAGED_BY`], [`LABEL_SERVICE_NAME`]` = name`
//! and, when exactly one cluster exports the service, [`LABEL_SOURCE_CLUSTER`]. With
//! several exporting clusters a single label cannot name them, so it is left off and
//! `status.clusters` is the list.
//!
//! The mirror only ever modifies or deletes objects carrying the managed-by label: an
//! object of the same name without it belongs to someone else and is reported, not
//! touched.
//!
//! How the Service reaches the gateway is the [`GatewayBackend`]: a label selector,
//! which only selects pods in the Service's own namespace, or the gateway pods'
//! addresses, written by the mirror into an EndpointSlice of the Service (owned by
//! it, so deleting the Service deletes the slice).
//!
//! [`LABEL_SERVICE_NAME`]: crate::resources::LABEL_SERVICE_NAME
//! [`LABEL_SOURCE_CLUSTER`]: crate::resources::LABEL_SOURCE_CLUSTER

mod api;
mod objects;
mod writer;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use tracing::{debug, info};

use self::api::{
    api_error, delete_listed, delete_managed, ensure_namespace, is_managed, list_managed, upsert,
};
use super::slices;
use crate::resources::{ClusterStatus, LABEL_MANAGED_BY, MANAGED_BY, Protocol, ServiceImport};

pub use self::objects::{MIRROR_PREFIX, mirror_name};
pub use self::writer::ImportWriter;

/// One port of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportPort {
    /// The port's name, as the exporting clusters name it.
    pub name: Option<String>,
    /// The service port applications connect to.
    pub port: u16,
    /// The transport protocol.
    pub protocol: Protocol,
    /// The gateway pod port whose listener carries this import port.
    pub listener_port: u16,
}

/// A service the federation imports into this cluster, as the mirror needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportView {
    /// The namespace the service is exported from, and imported into.
    pub namespace: String,
    /// The exported service's name.
    pub name: String,
    /// The service's ports.
    pub ports: Vec<ImportPort>,
    /// The clusters exporting it.
    pub clusters: Vec<String>,
}

/// How the mirrored Services reach the gateway pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayBackend {
    /// A selector over the gateway pods' labels. A Service selects pods of its own
    /// namespace only, so this reaches the gateway when it runs in the import's
    /// namespace.
    Selector(BTreeMap<String, String>),
    /// The gateway pods' addresses: the Service has no selector, and the mirror
    /// keeps an EndpointSlice per address family listing these addresses with the
    /// listener ports. Reaches the gateway from any namespace.
    Addresses(Vec<IpAddr>),
}

/// How the mirror builds its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorConfig {
    /// How the mirrored Services reach the gateway pods.
    pub backend: GatewayBackend,
    /// Create an import's namespace when it is missing, rather than skipping the
    /// import. Namespaces are never deleted.
    pub create_namespaces: bool,
}

impl Default for MirrorConfig {
    /// A selector over the gateway pod labels `causeway install` sets; namespaces
    /// are not created.
    fn default() -> Self {
        Self {
            backend: GatewayBackend::Selector(BTreeMap::from([
                ("app.kubernetes.io/name".to_owned(), "causeway".to_owned()),
                (
                    "app.kubernetes.io/component".to_owned(),
                    "gateway".to_owned(),
                ),
            ])),
            create_namespaces: false,
        }
    }
}

/// What [`apply_import`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    /// The Service and the `ServiceImport` are in place.
    Applied {
        /// The mirrored Service's name.
        service: String,
        /// Its cluster IP, also the `ServiceImport`'s address.
        cluster_ip: String,
    },
    /// The import's namespace does not exist, and the mirror may not create it:
    /// nothing was created.
    NamespaceMissing {
        /// The missing namespace.
        namespace: String,
    },
    /// This replica does not lead, and the leader has not mirrored the import yet:
    /// there is no cluster IP to answer with.
    AwaitingLeader,
}

/// A mirrored Service as the API server has it: what every replica reads, the
/// leader before it writes, so that they all use the same listener ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrored {
    /// The Service's name.
    pub service: String,
    /// Its cluster IP, when allocated.
    pub cluster_ip: Option<String>,
    /// Service port → the gateway pod port it targets.
    pub listener_ports: BTreeMap<u16, u16>,
}

impl Mirrored {
    fn of(service: &Service) -> Self {
        let listener_ports = service
            .spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .filter_map(|p| {
                let target = match p.target_port.as_ref()? {
                    IntOrString::Int(n) => u16::try_from(*n).ok()?,
                    IntOrString::String(_) => return None,
                };
                Some((u16::try_from(p.port).ok()?, target))
            })
            .collect();
        Self {
            service: service.name_any(),
            cluster_ip: cluster_ip(service),
            listener_ports,
        }
    }
}

impl From<Option<Mirrored>> for ImportOutcome {
    /// What a replica that does not lead makes of the Service it read: applied once
    /// the leader's Service has a cluster IP, awaited until then.
    fn from(observed: Option<Mirrored>) -> Self {
        match observed {
            Some(Mirrored {
                service,
                cluster_ip: Some(cluster_ip),
                ..
            }) => ImportOutcome::Applied {
                service,
                cluster_ip,
            },
            _ => ImportOutcome::AwaitingLeader,
        }
    }
}

/// Reads the mirrored Service of the import `namespace/name`; `None` when there is
/// none or it is not Causeway's.
pub async fn observe(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Mirrored>, Error> {
    let name = mirror_name(name);
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let service = services
        .get_opt(&name)
        .await
        .map_err(|e| api_error("reading", "Service", namespace, &name, e))?;
    Ok(service.filter(is_managed).map(|s| Mirrored::of(&s)))
}

/// The addresses of the ready pods behind the Service `namespace/service` (the
/// gateway's own Service: its replicas that pass their readiness probe).
pub async fn ready_pods(
    client: &Client,
    namespace: &str,
    service: &str,
) -> Result<Vec<IpAddr>, Error> {
    let list = slices::of_service(client, namespace, service)
        .await
        .map_err(|e| {
            api_error(
                "listing the EndpointSlices of",
                "Service",
                namespace,
                service,
                e,
            )
        })?;
    Ok(slices::ready_addresses(&list))
}

/// Why mirroring an import failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("{action} {kind} {namespace}/{name}: {source}")]
    Api {
        /// What was being done: `reading`, `creating`, ...
        action: &'static str,
        /// The object's kind.
        kind: &'static str,
        /// The object's namespace.
        namespace: String,
        /// The object's name (empty for a list).
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// An object the mirror needs exists without the managed-by label: it belongs to
    /// someone else and is left alone.
    #[error(
        "{kind} {namespace}/{name} exists and is not managed by Causeway (no {LABEL_MANAGED_BY}={MANAGED_BY} label); it is left untouched"
    )]
    Unmanaged {
        /// The object's kind.
        kind: &'static str,
        /// The object's namespace.
        namespace: String,
        /// The object's name.
        name: String,
    },
    /// The API server returned the mirrored Service without a cluster IP.
    #[error("Service {namespace}/{name} has no cluster IP")]
    NoClusterIp {
        /// The Service's namespace.
        namespace: String,
        /// The Service's name.
        name: String,
    },
}

/// Creates or updates the Service and the `ServiceImport` of `import`.
pub async fn apply_import(
    client: &Client,
    import: &ImportView,
    config: &MirrorConfig,
) -> Result<ImportOutcome, Error> {
    let namespace = &import.namespace;
    if !ensure_namespace(client, namespace, config.create_namespaces).await? {
        info!(namespace = %namespace, import = %import.name, "namespace missing; import not mirrored");
        return Ok(ImportOutcome::NamespaceMissing {
            namespace: namespace.clone(),
        });
    }

    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let service = upsert(
        &services,
        "Service",
        objects::mirror_service(import, config),
        objects::carry_cluster_ip,
    )
    .await?;
    if let GatewayBackend::Addresses(addresses) = &config.backend {
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
        for slice in objects::endpoint_slices(import, &service, addresses) {
            upsert(&slices, "EndpointSlice", slice, |_, _| {}).await?;
        }
    }
    let cluster_ip = cluster_ip(&service).ok_or_else(|| Error::NoClusterIp {
        namespace: namespace.clone(),
        name: service.name_any(),
    })?;

    let imports: Api<ServiceImport> = Api::namespaced(client.clone(), namespace);
    let object = upsert(
        &imports,
        "ServiceImport",
        objects::service_import(import, &cluster_ip),
        |_, _| {},
    )
    .await?;
    let clusters: Vec<ClusterStatus> = import
        .clusters
        .iter()
        .map(|c| ClusterStatus { cluster: c.clone() })
        .collect();
    let current = object
        .status
        .as_ref()
        .map(|s| s.clusters.as_slice())
        .unwrap_or_default();
    if current != clusters.as_slice() {
        let patch = serde_json::json!({ "status": { "clusters": clusters } });
        imports
            .patch_status(&import.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| {
                api_error(
                    "patching the status of",
                    "ServiceImport",
                    namespace,
                    &import.name,
                    source,
                )
            })?;
    }
    debug!(import = %format!("{namespace}/{}", import.name), %cluster_ip, "import mirrored");
    Ok(ImportOutcome::Applied {
        service: service.name_any(),
        cluster_ip,
    })
}

/// The cluster IP of a Service that has one (not headless, allocated).
fn cluster_ip(service: &Service) -> Option<String> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .filter(|ip| !ip.is_empty() && ip != "None")
}

/// Deletes the `ServiceImport` and the Service of the import `namespace/name`.
/// Objects already gone are fine; objects not managed by Causeway are an error and
/// stay.
pub async fn remove_import(client: &Client, namespace: &str, name: &str) -> Result<(), Error> {
    let imports: Api<ServiceImport> = Api::namespaced(client.clone(), namespace);
    delete_managed(&imports, "ServiceImport", namespace, name).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    delete_managed(&services, "Service", namespace, &mirror_name(name)).await
}

/// Deletes every mirrored Service and `ServiceImport` (found by their managed-by and
/// service-name labels, in all namespaces) that no import in `desired` accounts for,
/// and returns them as `Kind namespace/name`. Creating what is desired is
/// [`apply_import`]'s work.
pub async fn resync(client: &Client, desired: &[ImportView]) -> Result<Vec<String>, Error> {
    let wanted: HashSet<(&str, &str)> = desired
        .iter()
        .map(|i| (i.namespace.as_str(), i.name.as_str()))
        .collect();
    let mut removed = Vec::new();
    let imports: Api<ServiceImport> = Api::all(client.clone());
    for object in list_managed(&imports, "ServiceImport").await? {
        let namespace = object.namespace().unwrap_or_default();
        if !wanted.contains(&(namespace.as_str(), object.name_any().as_str())) {
            removed.push(delete_listed(client, "ServiceImport", &object).await?);
        }
    }
    let wanted_services: HashSet<(&str, String)> = wanted
        .iter()
        .map(|(ns, name)| (*ns, mirror_name(name)))
        .collect();
    let services: Api<Service> = Api::all(client.clone());
    for object in list_managed(&services, "Service").await? {
        let namespace = object.namespace().unwrap_or_default();
        if !wanted_services.contains(&(namespace.as_str(), object.name_any())) {
            removed.push(delete_listed(client, "Service", &object).await?);
        }
    }
    if !removed.is_empty() {
        info!(removed = ?removed, "stale mirrored objects deleted");
    }
    Ok(removed)
}
