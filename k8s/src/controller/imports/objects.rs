//! The objects the mirror keeps for an import, built from the import alone.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort as CoreServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::core::ObjectMeta;
use sha2::{Digest, Sha256};

use super::{GatewayBackend, ImportView, MirrorConfig};
use crate::controller::{protocol_name, slices};
use crate::resources::{
    LABEL_MANAGED_BY, LABEL_SERVICE_NAME, LABEL_SOURCE_CLUSTER, MANAGED_BY, ServiceImport,
    ServiceImportSpec, ServiceImportType, ServicePort,
};

/// Prefix of the mirrored Service's name.
pub const MIRROR_PREFIX: &str = "causeway-";

/// Longest Service name: Service names must be DNS labels (RFC 1035).
const MAX_SERVICE_NAME: usize = 63;

/// Hex digits of the hash suffix of a shortened mirror name: 40 bits, so two long
/// names sharing their first 44 characters collide with odds of one in a trillion.
const HASH_SUFFIX_LEN: usize = 10;

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

pub(super) fn mirror_service(import: &ImportView, config: &MirrorConfig) -> Service {
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
            selector: match &config.backend {
                GatewayBackend::Selector(selector) => Some(selector.clone()),
                GatewayBackend::Addresses(_) => None,
            },
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

pub(super) fn service_import(import: &ImportView, cluster_ip: &str) -> ServiceImport {
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
pub(super) fn carry_cluster_ip(existing: &Service, desired: &mut Service) {
    let (Some(old), Some(new)) = (existing.spec.as_ref(), desired.spec.as_mut()) else {
        return;
    };
    new.cluster_ip.clone_from(&old.cluster_ip);
    new.cluster_ips.clone_from(&old.cluster_ips);
    new.ip_families.clone_from(&old.ip_families);
    new.ip_family_policy.clone_from(&old.ip_family_policy);
}

/// The label naming an EndpointSlice's manager, so the EndpointSlice controller
/// leaves the mirror's slices alone.
const SLICE_MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The mirror's value of [`SLICE_MANAGED_BY_LABEL`].
const SLICE_MANAGER: &str = "causeway.dev/mirror";

/// The EndpointSlices of the selector-less mirrored `service`: one per address
/// family, named `<service>-ipv4` and `<service>-ipv6`, each listing the gateway
/// addresses of its family as ready with the listener ports under the Service's
/// port names, and owned by the Service. A family without addresses still gets its
/// (empty) slice, so that addresses leaving a family leave no stale slice behind.
pub(super) fn endpoint_slices(
    import: &ImportView,
    service: &Service,
    addresses: &[IpAddr],
) -> Vec<EndpointSlice> {
    let name = service.name_any();
    let owner = OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Service".to_owned(),
        name: name.clone(),
        uid: service.uid().unwrap_or_default(),
        controller: Some(true),
        // Blocking the owner's deletion needs `services/finalizers` update rights
        // where OwnerReferencesPermissionEnforcement is on; background collection
        // of the slices is all the mirror needs.
        block_owner_deletion: None,
    };
    let ports: Vec<EndpointPort> = import
        .ports
        .iter()
        .map(|p| EndpointPort {
            name: Some(p.name.clone().unwrap_or_default()),
            port: Some(i32::from(p.listener_port)),
            protocol: Some(protocol_name(p.protocol).to_owned()),
            app_protocol: None,
        })
        .collect();
    let families = [("IPv4", "ipv4", false), ("IPv6", "ipv6", true)];
    families
        .into_iter()
        .map(|(address_type, suffix, v6)| {
            let endpoints: Vec<Endpoint> = addresses
                .iter()
                .filter(|a| a.is_ipv6() == v6)
                .map(|a| Endpoint {
                    addresses: vec![a.to_string()],
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        serving: Some(true),
                        terminating: Some(false),
                    }),
                    ..Endpoint::default()
                })
                .collect();
            let mut labels = labels(import);
            labels.insert(slices::SERVICE_LABEL.to_owned(), name.clone());
            labels.insert(SLICE_MANAGED_BY_LABEL.to_owned(), SLICE_MANAGER.to_owned());
            let mut metadata = meta(&import.namespace, format!("{name}-{suffix}"), labels);
            metadata.owner_references = Some(vec![owner.clone()]);
            EndpointSlice {
                metadata,
                address_type: address_type.to_owned(),
                endpoints,
                ports: Some(ports.clone()),
            }
        })
        .collect()
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
}
