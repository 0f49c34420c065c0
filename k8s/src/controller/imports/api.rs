//! The mirror's API requests: create or update an object only when it is ours, and
//! delete only what is ours.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use kube::core::ObjectMeta;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;
use crate::resources::{LABEL_MANAGED_BY, LABEL_SERVICE_NAME, LABEL_SOURCE_CLUSTER, MANAGED_BY};

pub(super) fn api_error(
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

pub(super) fn is_managed<K: Resource>(object: &K) -> bool {
    object.labels().get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY)
}

/// Whether `namespace` exists, creating it first when allowed.
pub(super) async fn ensure_namespace(
    client: &Client,
    namespace: &str,
    create: bool,
) -> Result<bool, Error> {
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
pub(super) async fn upsert<K>(
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
pub(super) async fn delete_managed<K>(
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

pub(super) async fn list_managed<K>(api: &Api<K>, kind: &'static str) -> Result<Vec<K>, Error>
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

pub(super) async fn delete_listed<K>(
    client: &Client,
    kind: &'static str,
    object: &K,
) -> Result<String, Error>
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
