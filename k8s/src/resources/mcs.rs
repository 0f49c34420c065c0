//! The Multi-Cluster Services API (KEP-1645, `multicluster.x-k8s.io/v1alpha1`):
//! `ServiceExport` and `ServiceImport`, with the condition types and reasons of the
//! upstream API so other MCS tooling reads Causeway's status the same way.

use std::borrow::Cow;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use kube::core::ObjectMeta;
use kube::core::object::HasStatus;
use schemars::JsonSchema;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};

/// The MCS API group.
pub const MCS_GROUP: &str = "multicluster.x-k8s.io";
/// The MCS API version Causeway serves.
pub const MCS_VERSION: &str = "v1alpha1";

/// `ServiceExport` condition types and reasons, as named by KEP-1645 and the
/// upstream `sigs.k8s.io/mcs-api` package.
pub mod export_conditions {
    /// True when the export names an exportable Service.
    pub const VALID: &str = "Valid";
    /// True when the Service is exported to the federation.
    pub const READY: &str = "Ready";
    /// True when clusters export the same name with incompatible properties.
    pub const CONFLICT: &str = "Conflict";

    /// `Valid=True`: the Service exists and can be exported.
    pub const REASON_VALID: &str = "Valid";
    /// `Valid=False`: no Service with the export's name exists in its namespace.
    pub const REASON_NO_SERVICE: &str = "NoService";
    /// `Valid=False`: the Service's type cannot be exported (ExternalName).
    pub const REASON_INVALID_SERVICE_TYPE: &str = "InvalidServiceType";

    /// `Ready=True`: the export is published in the federation's registry.
    pub const REASON_EXPORTED: &str = "Exported";
    /// `Ready=True`: the export is ready to be imported.
    pub const REASON_READY: &str = "Ready";
    /// `Ready=False`: publication is in progress.
    pub const REASON_PENDING: &str = "Pending";
    /// `Ready=False`: the export is not valid (see `Valid`).
    pub const REASON_INVALID: &str = "Invalid";
    /// `Ready=False`: the export conflicts with another cluster's (see `Conflict`).
    pub const REASON_CONFLICT: &str = "Conflict";

    /// `Conflict=True`: the exporting clusters disagree on ports.
    pub const REASON_PORT_CONFLICT: &str = "PortConflict";
    /// `Conflict=True`: the exporting clusters disagree on the Service type.
    pub const REASON_TYPE_CONFLICT: &str = "TypeConflict";
    /// `Conflict=True`: the exporting clusters disagree on session affinity.
    pub const REASON_SESSION_AFFINITY_CONFLICT: &str = "SessionAffinityConflict";
    /// `Conflict=True`: the exporting clusters disagree on session affinity config.
    pub const REASON_SESSION_AFFINITY_CONFIG_CONFLICT: &str = "SessionAffinityConfigConflict";
    /// `Conflict=True`: the exporting clusters disagree on exported labels.
    pub const REASON_LABEL_CONFLICT: &str = "LabelConflict";
    /// `Conflict=True`: the exporting clusters disagree on exported annotations.
    pub const REASON_ANNOTATION_CONFLICT: &str = "AnnotationConflict";
    /// `Conflict=False`: every exporting cluster agrees.
    pub const REASON_NO_CONFLICTS: &str = "NoConflicts";
}

// === ServiceExport ===

/// Marks the Service of the same name and namespace for export to the federation.
///
/// Upstream defines no `spec` for it, and objects read from the API server carry
/// none, so this type is written by hand rather than derived: metadata plus an
/// optional status. It serializes with `apiVersion` and `kind` like any object.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[schemars(
    title = "ServiceExport",
    description = "Marks the Service of the same name and namespace for export to the federation."
)]
pub struct ServiceExport {
    /// Standard object metadata.
    #[serde(default)]
    #[schemars(skip)]
    pub metadata: ObjectMeta,
    /// What the exporting controller observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ServiceExportStatus>,
}

/// The status of a `ServiceExport`.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceExportStatus {
    /// `Valid`, `Ready` and `Conflict` (see [`export_conditions`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // One condition per type, so server-side apply merges them by type.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl ServiceExport {
    /// A `ServiceExport` for the Service `namespace/name`, without status.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            status: None,
        }
    }

    /// The CRD the API server needs to serve `ServiceExport`s.
    pub fn crd() -> CustomResourceDefinition {
        let schema = super::structural_schema::<Self>();
        let crd = serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "serviceexports.multicluster.x-k8s.io"},
            "spec": {
                "group": MCS_GROUP,
                "scope": "Namespaced",
                "names": {
                    "categories": [],
                    "plural": "serviceexports",
                    "singular": "serviceexport",
                    "kind": "ServiceExport",
                    "shortNames": ["svcex"],
                },
                "versions": [{
                    "name": MCS_VERSION,
                    "served": true,
                    "storage": true,
                    "schema": {"openAPIV3Schema": schema},
                    "additionalPrinterColumns": [
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
                    ],
                    "subresources": {"status": {}},
                }],
            },
        });
        serde_json::from_value(crd).expect("the ServiceExport CRD literal is a valid CRD")
    }
}

impl Serialize for ServiceExport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = if self.status.is_some() { 4 } else { 3 };
        let mut s = serializer.serialize_struct("ServiceExport", fields)?;
        s.serialize_field("apiVersion", &<Self as kube::Resource>::api_version(&()))?;
        s.serialize_field("kind", "ServiceExport")?;
        s.serialize_field("metadata", &self.metadata)?;
        if let Some(status) = &self.status {
            s.serialize_field("status", status)?;
        }
        s.end()
    }
}

impl kube::Resource for ServiceExport {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "ServiceExport".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        MCS_GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        MCS_VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "serviceexports".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl HasStatus for ServiceExport {
    type Status = ServiceExportStatus;

    fn status(&self) -> Option<&ServiceExportStatus> {
        self.status.as_ref()
    }
    fn status_mut(&mut self) -> &mut Option<ServiceExportStatus> {
        &mut self.status
    }
}

// === ServiceImport ===

/// A federation service imported into this cluster: its ports and local addresses.
/// Created and kept by the mirror, one per exported name, in the export's namespace.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "multicluster.x-k8s.io",
    version = "v1alpha1",
    kind = "ServiceImport",
    plural = "serviceimports",
    shortname = "svcim",
    namespaced,
    status = "ServiceImportStatus",
    derive = "PartialEq",
    doc = "A service of the federation imported into this cluster (MCS API, KEP-1645).",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"IP","type":"string","jsonPath":".spec.ips"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceImportSpec {
    /// The ports of the service, as the exporting clusters agree on them.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// The local addresses importers connect to (empty for Headless).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// How the service is reached: through one clusterset address, or per endpoint.
    #[serde(rename = "type")]
    pub type_: ServiceImportType,
    /// `ClientIP` or `None`, as on a Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<String>,
}

/// One port of an imported service.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// The port's name, required when there are several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The transport protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// The port number.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// The application protocol (`http`, `kubernetes.io/h2c`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

/// A Service port's transport protocol.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

/// How an imported service is addressed.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
pub enum ServiceImportType {
    /// One virtual address for the whole clusterset.
    ClusterSetIP,
    /// No virtual address: DNS answers with the endpoints.
    Headless,
}

/// The status of a `ServiceImport`.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceImportStatus {
    /// The clusters that export the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<ClusterStatus>,
}

/// One cluster that exports an imported service.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
pub struct ClusterStatus {
    /// The exporting cluster's name.
    pub cluster: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    /// A ServiceExport as `kubectl get serviceexport web -o json` shows it: no spec.
    const FROM_API_SERVER: &str = r#"{
        "apiVersion": "multicluster.x-k8s.io/v1alpha1",
        "kind": "ServiceExport",
        "metadata": {
            "creationTimestamp": "2026-11-28T08:00:00Z",
            "generation": 1,
            "name": "web",
            "namespace": "demo",
            "resourceVersion": "4242",
            "uid": "1f6a3c9e-0000-4000-8000-000000000001"
        },
        "status": {
            "conditions": [{
                "lastTransitionTime": "2026-11-28T08:00:01Z",
                "message": "exported to the federation",
                "observedGeneration": 1,
                "reason": "Exported",
                "status": "True",
                "type": "Ready"
            }]
        }
    }"#;

    #[test]
    fn a_service_export_without_spec_deserializes() {
        let export: ServiceExport =
            serde_json::from_str(FROM_API_SERVER).expect("an API server object parses");
        assert_eq!(export.meta().name.as_deref(), Some("web"));
        assert_eq!(export.meta().namespace.as_deref(), Some("demo"));
        let ready = &export.status.as_ref().expect("has status").conditions[0];
        assert_eq!(ready.type_, export_conditions::READY);
        assert_eq!(ready.reason, export_conditions::REASON_EXPORTED);

        let bare: ServiceExport = serde_json::from_str(
            r#"{"apiVersion":"multicluster.x-k8s.io/v1alpha1","kind":"ServiceExport","metadata":{"name":"web","namespace":"demo"}}"#,
        )
        .expect("a new object without status parses");
        assert_eq!(bare, ServiceExport::new("demo", "web"));
    }

    #[test]
    fn a_service_export_round_trips_with_type_meta() {
        let export: ServiceExport = serde_json::from_str(FROM_API_SERVER).expect("parses");
        let json = serde_json::to_value(&export).expect("serializes");
        assert_eq!(json["apiVersion"], "multicluster.x-k8s.io/v1alpha1");
        assert_eq!(json["kind"], "ServiceExport");
        assert!(json.get("spec").is_none());
        let again: ServiceExport = serde_json::from_value(json).expect("parses again");
        assert_eq!(again, export);
    }

    #[test]
    fn service_export_names_its_api() {
        assert_eq!(
            ServiceExport::api_version(&()),
            "multicluster.x-k8s.io/v1alpha1"
        );
        assert_eq!(
            ServiceExport::url_path(&(), Some("demo")),
            "/apis/multicluster.x-k8s.io/v1alpha1/namespaces/demo/serviceexports"
        );
    }

    #[test]
    fn a_service_import_parses_with_defaults() {
        let import: ServiceImport = serde_json::from_str(
            r#"{"apiVersion":"multicluster.x-k8s.io/v1alpha1","kind":"ServiceImport",
                "metadata":{"name":"web","namespace":"demo"},
                "spec":{"type":"ClusterSetIP","ips":["10.96.7.7"],"ports":[{"port":80}]},
                "status":{"clusters":[{"cluster":"west"},{"cluster":"east"}]}}"#,
        )
        .expect("parses");
        assert_eq!(import.spec.ports[0].protocol, Protocol::Tcp);
        assert_eq!(import.spec.type_, ServiceImportType::ClusterSetIP);
        assert_eq!(import.status.expect("has status").clusters.len(), 2);
    }
}
