//! The Kubernetes resources Causeway defines or implements: the `ClusterLink` CRD
//! (`causeway.dev/v1alpha1`) and the MCS API's `ServiceExport` and `ServiceImport`
//! (`multicluster.x-k8s.io/v1alpha1`), with their condition types, the labels Causeway
//! puts on objects it manages, and the CRDs `causeway install` applies.

mod access_policy;
mod cluster_link;
mod mcs;
mod traffic_policy;
pub(crate) mod validate;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use access_policy::{
    AccessPolicy, AccessPolicySpec, AccessPolicyStatus, AccessTarget, CONDITION_ACCEPTED,
};
pub use cluster_link::{
    CONDITION_GATEWAY_REACHABLE, CONDITION_JOINED, CONDITION_TRUST_VERIFIED, ClusterLink,
    ClusterLinkSpec, ClusterLinkStatus, MAX_PROBE_FAILURE_THRESHOLD, MAX_PROBE_PERIOD_SECONDS,
    MAX_PROBE_TIMEOUT_SECONDS, MAX_REGISTRY_ADDRESSES, ProbeSpec, SecretKeyRef,
};
pub use mcs::{
    ClusterStatus, MCS_GROUP, MCS_VERSION, Protocol, ServiceExport, ServiceExportStatus,
    ServiceImport, ServiceImportSpec, ServiceImportStatus, ServiceImportType, ServicePort,
    export_conditions,
};
pub use traffic_policy::{
    CONDITION_TRAFFIC_ACCEPTED, ConnectionLimitsSpec, FaultsSpec, OutlierDetectionSpec,
    RetriesSpec, TrafficPolicy, TrafficPolicySpec, TrafficPolicyStatus,
};

/// The API group of Causeway's own resources.
pub const CAUSEWAY_GROUP: &str = "causeway.dev";

/// Label on objects the mirror derives from an import: the imported service's name
/// (MCS API, KEP-1645).
pub const LABEL_SERVICE_NAME: &str = "multicluster.kubernetes.io/service-name";
/// Label naming the cluster an object describes (MCS API, KEP-1645).
pub const LABEL_SOURCE_CLUSTER: &str = "multicluster.kubernetes.io/source-cluster";
/// The standard label naming the tool that manages an object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The value of [`LABEL_MANAGED_BY`] on everything Causeway creates.
pub const MANAGED_BY: &str = "causeway";

/// The CRDs Causeway installs, in apply order: `ClusterLink`, `ServiceExport`,
/// `ServiceImport`, `AccessPolicy`, `TrafficPolicy`.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        ClusterLink::crd(),
        ServiceExport::crd(),
        ServiceImport::crd(),
        AccessPolicy::crd(),
        TrafficPolicy::crd(),
    ]
}

/// The OpenAPI v3 schema of `T` in the structural form the API server requires:
/// generated the way `#[derive(CustomResource)]` generates it, for the hand-written
/// resources.
fn structural_schema<T: schemars::JsonSchema>() -> schemars::Schema {
    schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(schemars::transform::AddNullable::default())
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .into_generator()
        .into_root_schema_for::<T>()
}
