//! The import mirror: makes each service the federation imports into this cluster
//! reachable as a local Service, and describes it with an MCS `ServiceImport`.
//!
//! For an import `namespace/name` the mirror keeps two objects in `namespace`:
//!
//! - a ClusterIP Service named [`mirror_name`]`(name)` (`causeway-<name>`, never the
//!   application's own Service name), selecting the gateway pods, with one port per
//!   imported port whose `targetPort` is the gateway listener carrying it;
//! - a `ServiceImport` named `name`, as the MCS API names it after the exported
//!   service (clusterset DNS answers `name.namespace.svc.clusterset.local` from it),
//!   of type `ClusterSetIP` with the Service's cluster IP and `status.clusters`
//!   listing the exporting clusters.
//!
//! Both carry [`LABEL_MANAGED_BY`]` = `[`MANAGED_BY`], [`LABEL_SERVICE_NAME`]` = name`
//! and, when exactly one cluster exports the service, [`LABEL_SOURCE_CLUSTER`]. With
//! several exporting clusters a single label cannot name them, so it is left off and
//! `status.clusters` is the list.
//!
//! The mirror only ever modifies or deletes objects carrying the managed-by label: an
//! object of the same name without it belongs to someone else and is reported, not
//! touched.
//!
//! The Service selects pods by label, and a Service selects pods of its own namespace
//! only: the selector reaches the gateway when the gateway runs in (or is present in)
//! the import's namespace.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;

use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort as CoreServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::ObjectMeta;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tracing::{debug, info};

use super::protocol_name;
use crate::resources::{
    ClusterStatus, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, LABEL_SOURCE_CLUSTER, MANAGED_BY,
    Protocol, ServiceImport, ServiceImportSpec, ServiceImportType, ServicePort,
};

/// Prefix of the mirrored Service's name.
pub const MIRROR_PREFIX: &str = "causeway-";

/// Longest Service name: Service names must be DNS labels (RFC 1035).
const MAX_SERVICE_NAME: usize = 63;

/// Hex digits of the hash suffix of a shortened mirror name: 40 bits, so two long
/// names sharing their first 44 characters collide with odds of one in a trillion.
const HASH_SUFFIX_LEN: usize = 10;

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

/// How the mirror builds its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorConfig {
    /// The labels of the gateway pods: the mirrored Services' selector.
    pub gateway_selector: BTreeMap<String, String>,
    /// Create an import's namespace when it is missing, rather than skipping the
    /// import. Namespaces are never deleted.
    pub create_namespaces: bool,
}

impl Default for MirrorConfig {
    /// The gateway pod labels `causeway install` sets; namespaces are not created.
    fn default() -> Self {
        Self {
            gateway_selector: BTreeMap::from([
                ("app.kubernetes.io/name".to_owned(), "causeway".to_owned()),
                (
                    "app.kubernetes.io/component".to_owned(),
                    "gateway".to_owned(),
                ),
            ]),
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

/// The name of the Service mirroring the import `name`: `causeway-<name>`, shortened
/// with a hash of `name` when that would exceed 63 characters, so that it is
/// deterministic, a valid DNS label, and distinct for distinct long names.
pub fn mirror_name(name: &str) -> String {
    let full = format!("{MIRROR_PREFIX}{name}");
    if full.len() <= MAX_SERVICE_NAME {
        return full;
    }
    let digest = Sha256::digest(name.as_bytes());
    let hash: String = digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .chars()
        .take(HASH_SUFFIX_LEN)
        .collect();
    // Names are ASCII DNS labels, so byte slicing lands on a character boundary.
    let keep = MAX_SERVICE_NAME - HASH_SUFFIX_LEN - 1;
    let head = full.get(..keep).unwrap_or(&full).trim_end_matches('-');
    format!("{head}-{hash}")
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
        mirror_service(import, config),
        carry_cluster_ip,
    )
    .await?;
    let cluster_ip = service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .filter(|ip| !ip.is_empty() && ip != "None")
        .ok_or_else(|| Error::NoClusterIp {
            namespace: namespace.clone(),
            name: service.name_any(),
        })?;

    let imports: Api<ServiceImport> = Api::namespaced(client.clone(), namespace);
    let object = upsert(
        &imports,
        "ServiceImport",
        service_import(import, &cluster_ip),
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

// === The objects ===

fn labels(import: &ImportView) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_SERVICE_NAME.to_owned(), import.name.clone()),
    ]);
    if let [cluster] = import.clusters.as_slice() {
        labels.insert(LABEL_SOURCE_CLUSTER.to_owned(), cluster.clone());
    }
    labels
}

fn meta(namespace: &str, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

fn mirror_service(import: &ImportView, config: &MirrorConfig) -> Service {
    let ports = import
        .ports
        .iter()
        .map(|p| CoreServicePort {
            name: p.name.clone(),
            port: i32::from(p.port),
            protocol: Some(protocol_name(p.protocol).to_owned()),
            target_port: Some(IntOrString::Int(i32::from(p.listener_port))),
            ..CoreServicePort::default()
        })
        .collect();
    Service {
        metadata: meta(&import.namespace, mirror_name(&import.name), labels(import)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(config.gateway_selector.clone()),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn service_import(import: &ImportView, cluster_ip: &str) -> ServiceImport {
    let ports = import
        .ports
        .iter()
        .map(|p| ServicePort {
            name: p.name.clone(),
            protocol: p.protocol,
            port: i32::from(p.port),
            app_protocol: None,
        })
        .collect();
    ServiceImport {
        metadata: meta(&import.namespace, import.name.clone(), labels(import)),
        spec: ServiceImportSpec {
            ports,
            ips: vec![cluster_ip.to_owned()],
            type_: ServiceImportType::ClusterSetIP,
            session_affinity: None,
        },
        status: None,
    }
}

/// A Service's cluster IP cannot change: an update carries over the allocated one.
fn carry_cluster_ip(existing: &Service, desired: &mut Service) {
    let (Some(old), Some(new)) = (existing.spec.as_ref(), desired.spec.as_mut()) else {
        return;
    };
    new.cluster_ip.clone_from(&old.cluster_ip);
    new.cluster_ips.clone_from(&old.cluster_ips);
    new.ip_families.clone_from(&old.ip_families);
    new.ip_family_policy.clone_from(&old.ip_family_policy);
}

// === API helpers ===

fn api_error(
    action: &'static str,
    kind: &'static str,
    namespace: &str,
    name: &str,
    source: kube::Error,
) -> Error {
    Error::Api {
        action,
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source: Box::new(source),
    }
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(response) if response.code == code)
}

fn is_managed<K: Resource>(object: &K) -> bool {
    object.labels().get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY)
}

/// Whether `namespace` exists, creating it first when allowed.
async fn ensure_namespace(client: &Client, namespace: &str, create: bool) -> Result<bool, Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let found = namespaces
        .get_opt(namespace)
        .await
        .map_err(|source| api_error("reading", "Namespace", "", namespace, source))?;
    if found.is_some() {
        return Ok(true);
    }
    if !create {
        return Ok(false);
    }
    let object = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                LABEL_MANAGED_BY.to_owned(),
                MANAGED_BY.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match namespaces.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(true),
        Err(e) if is_status(&e, 409) => Ok(true),
        Err(source) => Err(api_error("creating", "Namespace", "", namespace, source)),
    }
}

/// Makes the object `desired` names what it says: creates it when missing, and
/// replaces it when it is ours and differs (in labels or anything but metadata and
/// status). `carry` copies into `desired` what must survive an update.
async fn upsert<K>(
    api: &Api<K>,
    kind: &'static str,
    mut desired: K,
    carry: impl Fn(&K, &mut K),
) -> Result<K, Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let fail = |action, source| api_error(action, kind, &namespace, &name, source);
    let existing = match api.get_opt(&name).await.map_err(|e| fail("reading", e))? {
        Some(existing) => existing,
        None => match api.create(&PostParams::default(), &desired).await {
            Ok(created) => return Ok(created),
            // Created since we looked: treat it as found.
            Err(e) if is_status(&e, 409) => api.get(&name).await.map_err(|e| fail("reading", e))?,
            Err(e) => return Err(fail("creating", e)),
        },
    };
    if !is_managed(&existing) {
        return Err(Error::Unmanaged {
            kind,
            namespace: namespace.clone(),
            name: name.clone(),
        });
    }
    carry(&existing, &mut desired);
    if !differs(&existing, &desired) {
        return Ok(existing);
    }
    keep_foreign_metadata(&existing, &mut desired);
    desired.meta_mut().resource_version = existing.meta().resource_version.clone();
    api.replace(&name, &PostParams::default(), &desired)
        .await
        .map_err(|e| fail("replacing", e))
}

/// The labels the mirror sets; other labels on a mirrored object are someone
/// else's and are kept.
const OWNED_LABELS: [&str; 3] = [LABEL_MANAGED_BY, LABEL_SERVICE_NAME, LABEL_SOURCE_CLUSTER];

/// Copies into `desired` the labels and annotations of `existing` that the mirror
/// does not own, so that an update leaves them in place.
fn keep_foreign_metadata<K: Resource>(existing: &K, desired: &mut K) {
    let foreign: Vec<(String, String)> = existing
        .labels()
        .iter()
        .filter(|(k, _)| !OWNED_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    desired.labels_mut().extend(foreign);
    let annotations = existing.annotations().clone();
    desired.annotations_mut().extend(annotations);
}

/// Whether `existing` differs from `desired` in a label the mirror owns, or outside
/// metadata and status.
fn differs<K: Serialize + Resource>(existing: &K, desired: &K) -> bool {
    let labels_differ = OWNED_LABELS
        .iter()
        .any(|k| existing.labels().get(*k) != desired.labels().get(*k));
    let body = |object: &K| {
        let mut value = serde_json::to_value(object).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.remove("metadata");
            map.remove("status");
        }
        value
    };
    labels_differ || !spec_covers(&body(existing), &body(desired))
}

/// Whether every field `desired` sets has that value in `existing`; fields the API
/// server defaults (`sessionAffinity`, `internalTrafficPolicy`, ...) are not a
/// difference.
fn spec_covers(existing: &serde_json::Value, desired: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (existing, desired) {
        (_, Value::Null) => true,
        (Value::Object(e), Value::Object(d)) => d
            .iter()
            .all(|(k, v)| spec_covers(e.get(k).unwrap_or(&Value::Null), v)),
        (Value::Array(e), Value::Array(d)) => {
            e.len() == d.len() && e.iter().zip(d).all(|(e, d)| spec_covers(e, d))
        }
        (e, d) => e == d,
    }
}

/// Deletes the object `kind namespace/name` if it exists and is ours.
async fn delete_managed<K>(
    api: &Api<K>,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let Some(existing) = api
        .get_opt(name)
        .await
        .map_err(|e| api_error("reading", kind, namespace, name, e))?
    else {
        return Ok(());
    };
    if !is_managed(&existing) {
        return Err(Error::Unmanaged {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
    }
    delete(api, kind, namespace, name, existing.uid()).await
}

/// Deletes `namespace/name`, only if it is still the object with `uid`; gone is
/// fine.
async fn delete<K>(
    api: &Api<K>,
    kind: &'static str,
    namespace: &str,
    name: &str,
    uid: Option<String>,
) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let params = DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(api_error("deleting", kind, namespace, name, e)),
    }
}

async fn list_managed<K>(api: &Api<K>, kind: &'static str) -> Result<Vec<K>, Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    // The service-name label narrows the list to mirrored objects: nothing else
    // Causeway creates carries it.
    let selector = format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_SERVICE_NAME}");
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| api_error("listing", kind, "", "", e))?;
    Ok(list.items)
}

async fn delete_listed<K>(client: &Client, kind: &'static str, object: &K) -> Result<String, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    delete(&api, kind, &namespace, &name, object.uid()).await?;
    Ok(format!("{kind} {namespace}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_names_are_prefixed_and_fit_a_dns_label() {
        assert_eq!(mirror_name("web"), "causeway-web");
        let long = "a".repeat(63);
        let shortened = mirror_name(&long);
        assert_eq!(shortened.len(), MAX_SERVICE_NAME);
        assert!(shortened.starts_with("causeway-aaaa"));
        assert_eq!(shortened, mirror_name(&long), "deterministic");
        let other = format!("{}b", "a".repeat(62));
        assert_ne!(
            mirror_name(&other),
            shortened,
            "distinct long names stay distinct"
        );
        let exact = "b".repeat(MAX_SERVICE_NAME - MIRROR_PREFIX.len());
        assert_eq!(mirror_name(&exact), format!("causeway-{exact}"));
    }

    #[test]
    fn server_defaults_are_not_a_difference() {
        let desired = serde_json::json!({"spec": {"ports": [{"port": 80}], "type": "ClusterIP"}});
        let existing = serde_json::json!({"spec": {
            "ports": [{"port": 80, "protocol": "TCP"}],
            "type": "ClusterIP",
            "sessionAffinity": "None",
        }});
        assert!(spec_covers(&existing, &desired));
        let moved = serde_json::json!({"spec": {"ports": [{"port": 81}], "type": "ClusterIP"}});
        assert!(!spec_covers(&moved, &desired));
        let extra = serde_json::json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}});
        assert!(!spec_covers(&extra, &desired));
    }
}
