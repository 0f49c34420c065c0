//! What `causeway install` prints: every object a cluster needs to run a Causeway
//! gateway, as typed `k8s-openapi` objects, serialized to multi-document YAML for
//! `kubectl apply -f -`. Also the `ClusterLink` manifest `causeway link --name`
//! prints.
//!
//! Nothing here talks to an API server; rendering is a pure function of
//! [`InstallOptions`] (and the trust files read by [`TrustMaterial::from_dir`]).

mod availability;
mod config;
mod rbac;
mod trust;
mod workload;

use std::collections::BTreeMap;
use std::net::IpAddr;

use causeway_trust::ClusterName;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::ObjectMeta;
use serde::Serialize;

use causeway_policy::Problem;

use crate::resources::{ClusterLink, ClusterLinkSpec, ProbeSpec, SecretKeyRef};

pub use availability::REPLICAS;
pub use trust::TrustMaterial;

pub use crate::names::{
    ADMIN_SERVICE, CONFIG_MAP, CONTROLLER_LEASE, DNS_SERVICE, GATEWAY, JOIN_TOKEN_SECRET,
    NAMESPACE, TRUST_SECRET,
};

/// Tunnel port (QUIC over UDP).
pub const TUNNEL_PORT: i32 = 15443;
/// Registry port (gRPC over TCP, mutual TLS).
pub const REGISTRY_PORT: i32 = 15444;
/// Admin HTTP port (`/metrics`, `/live`, `/ready`, `/v1/status`).
pub const ADMIN_PORT: i32 = 15090;
/// Port the DNS server listens on in the pod: above 1024 so it needs no capability;
/// the DNS Service maps 53 to it.
pub const DNS_CONTAINER_PORT: i32 = 5353;

/// The image `causeway install` uses unless told otherwise: this build's version.
pub const DEFAULT_IMAGE: &str =
    concat!("ghcr.io/causeway-dev/causeway:", env!("CARGO_PKG_VERSION"));

/// The Kubernetes NodePort range (`--service-node-port-range` default).
const NODE_PORT_RANGE: std::ops::RangeInclusive<i32> = 30000..=32767;

/// Why `causeway install` cannot render.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A file of the trust folder is missing.
    #[error(
        "{dir}: missing {file}; --trust-from needs a cluster issuer folder from `causeway trust issue-cluster` (issuer.pem, issuer.key, bundle.pem)"
    )]
    MissingTrustFile {
        /// The folder given.
        dir: std::path::PathBuf,
        /// The missing file's name.
        file: &'static str,
    },
    /// A trust file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    ReadTrustFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The options contradict each other or are out of range.
    #[error("{0}")]
    Options(String),
    /// YAML serialization failed.
    #[error("cannot render YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
}

/// How the gateway's tunnel and registry ports are exposed to other clusters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GatewayServiceType {
    /// A cloud load balancer (UDP 15443 and TCP 15444 on one address).
    #[default]
    LoadBalancer,
    /// A port on every node: for kind and bare-metal clusters.
    NodePort,
}

impl GatewayServiceType {
    fn as_str(self) -> &'static str {
        match self {
            Self::LoadBalancer => "LoadBalancer",
            Self::NodePort => "NodePort",
        }
    }
}

/// Everything `causeway install` takes.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// This cluster's name in the federation.
    pub cluster: ClusterName,
    /// The gateway image.
    pub image: String,
    /// How many gateway pods run, in [`REPLICAS`].
    pub replicas: u32,
    /// How the tunnel and registry are exposed.
    pub service_type: GatewayServiceType,
    /// With `NodePort`: the node port of the tunnel; chosen by Kubernetes when unset.
    pub node_port_tunnel: Option<i32>,
    /// With `NodePort`: the node port of the registry; chosen by Kubernetes when unset.
    pub node_port_registry: Option<i32>,
    /// The address other clusters reach this gateway at (load balancer or node
    /// address); the pod's own IP when unset, which works only on flat networks.
    pub advertise: Option<IpAddr>,
    /// The cluster issuer, rendered as the trust Secret; when unset the Secret must be
    /// created separately.
    pub trust: Option<TrustMaterial>,
}

impl InstallOptions {
    /// Options with defaults for `cluster`.
    pub fn new(cluster: ClusterName) -> Self {
        Self {
            cluster,
            image: DEFAULT_IMAGE.into(),
            replicas: 1,
            service_type: GatewayServiceType::default(),
            node_port_tunnel: None,
            node_port_registry: None,
            advertise: None,
            trust: None,
        }
    }

    /// Every contradiction or out-of-range value, as one message per line.
    fn check(&self) -> Result<(), InstallError> {
        let mut problems = Vec::new();
        let node_ports = [
            ("--node-port-tunnel", self.node_port_tunnel),
            ("--node-port-registry", self.node_port_registry),
        ];
        for (flag, port) in node_ports {
            let Some(port) = port else { continue };
            if self.service_type != GatewayServiceType::NodePort {
                problems.push(format!("{flag} needs --service-type NodePort"));
            } else if !NODE_PORT_RANGE.contains(&port) {
                problems.push(format!(
                    "{flag} {port} is outside the NodePort range {}-{}",
                    NODE_PORT_RANGE.start(),
                    NODE_PORT_RANGE.end()
                ));
            }
        }
        if self.node_port_tunnel.is_some() && self.node_port_tunnel == self.node_port_registry {
            problems.push("--node-port-tunnel and --node-port-registry must differ".into());
        }
        let known_ports = self.node_port_tunnel.is_some() && self.node_port_registry.is_some();
        if self.advertise.is_some()
            && self.service_type == GatewayServiceType::NodePort
            && !known_ports
        {
            problems.push(
                "--advertise with NodePort needs --node-port-tunnel and --node-port-registry, so the advertised ports are known".into(),
            );
        }
        if !REPLICAS.contains(&self.replicas) {
            problems.push(format!(
                "--replicas {} is outside {}-{}",
                self.replicas,
                REPLICAS.start(),
                REPLICAS.end()
            ));
        }
        if self.image.trim().is_empty() {
            problems.push("--image is empty".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InstallError::Options(problems.join("\n")))
        }
    }

    /// The tunnel and registry ports other clusters dial at the advertised address.
    fn advertised_ports(&self) -> (i32, i32) {
        match self.service_type {
            GatewayServiceType::NodePort => (
                self.node_port_tunnel.unwrap_or(TUNNEL_PORT),
                self.node_port_registry.unwrap_or(REGISTRY_PORT),
            ),
            GatewayServiceType::LoadBalancer => (TUNNEL_PORT, REGISTRY_PORT),
        }
    }
}

/// Every object of one install, in apply order.
#[derive(Debug, Clone)]
pub struct InstallBundle {
    /// `causeway-system`.
    pub namespace: Namespace,
    /// `ClusterLink`, `ServiceExport`, `ServiceImport`.
    pub crds: Vec<CustomResourceDefinition>,
    /// The gateway's identity towards the API server.
    pub service_account: ServiceAccount,
    /// Cluster-wide permissions (links, exports, imports, Services, EndpointSlices).
    pub cluster_role: ClusterRole,
    /// Grants the ClusterRole to the ServiceAccount.
    pub cluster_role_binding: ClusterRoleBinding,
    /// Permissions inside `causeway-system` only: the trust and join-token Secrets,
    /// and the controllers' Lease.
    pub role: Role,
    /// Grants the Role to the ServiceAccount.
    pub role_binding: RoleBinding,
    /// `gateway.toml`.
    pub config_map: ConfigMap,
    /// The cluster issuer, when `--trust-from` was given.
    pub trust_secret: Option<Secret>,
    /// The gateway.
    pub deployment: Deployment,
    /// Lets a drain take one replica at a time; none with a single replica.
    pub disruption_budget: Option<PodDisruptionBudget>,
    /// Tunnel + registry, clusterset DNS, admin.
    pub services: Vec<Service>,
}

/// Renders every object of an install.
pub fn install(options: &InstallOptions) -> Result<InstallBundle, InstallError> {
    options.check()?;
    let config_toml = config::gateway_toml(options)?;
    Ok(InstallBundle {
        namespace: Namespace {
            metadata: meta(NAMESPACE, None),
            ..Namespace::default()
        },
        crds: crate::resources::crds(),
        service_account: ServiceAccount {
            metadata: meta(GATEWAY, Some(NAMESPACE)),
            ..ServiceAccount::default()
        },
        cluster_role: rbac::cluster_role(),
        cluster_role_binding: rbac::cluster_role_binding(),
        role: rbac::role(),
        role_binding: rbac::role_binding(),
        config_map: ConfigMap {
            metadata: meta(CONFIG_MAP, Some(NAMESPACE)),
            data: Some(BTreeMap::from([(config::FILE_NAME.into(), config_toml)])),
            ..ConfigMap::default()
        },
        trust_secret: options.trust.as_ref().map(TrustMaterial::to_secret),
        deployment: workload::deployment(options),
        disruption_budget: availability::disruption_budget(options.replicas),
        services: workload::services(options),
    })
}

impl InstallBundle {
    /// The bundle as multi-document YAML with explanatory comments, for
    /// `kubectl apply -f -`.
    pub fn to_yaml(&self) -> Result<String, InstallError> {
        let mut out = String::from(
            "# Causeway gateway: `causeway install` output. Apply with `kubectl apply -f -`.\n",
        );
        push_doc(&mut out, &self.namespace)?;
        for crd in &self.crds {
            push_doc(&mut out, crd)?;
        }
        push_doc(&mut out, &self.service_account)?;
        push_doc(&mut out, &self.cluster_role)?;
        push_doc(&mut out, &self.cluster_role_binding)?;
        push_doc(&mut out, &self.role)?;
        push_doc(&mut out, &self.role_binding)?;
        push_doc(&mut out, &self.config_map)?;
        match &self.trust_secret {
            Some(secret) => push_doc(&mut out, secret)?,
            None => out.push_str(&format!(
                "---\n# No --trust-from: create the trust Secret from a cluster issuer folder:\n#   kubectl -n {NAMESPACE} create secret generic {TRUST_SECRET} --from-file=DIR/issuer.pem --from-file=DIR/issuer.key --from-file=DIR/bundle.pem\n"
            )),
        }
        push_doc(&mut out, &self.deployment)?;
        if let Some(budget) = &self.disruption_budget {
            push_doc(&mut out, budget)?;
        }
        for service in &self.services {
            push_doc(&mut out, service)?;
        }
        out.push_str("---\n");
        for line in coredns_instructions().lines() {
            out.push_str(format!("# {line}").trim_end());
            out.push('\n');
        }
        Ok(out)
    }
}

/// Just the CRDs, as `causeway install --crds-only` prints them.
pub fn crds_yaml() -> Result<String, InstallError> {
    let mut out = String::from(
        "# Causeway CRDs: ClusterLink (causeway.dev) and the MCS API's ServiceExport and\n# ServiceImport (multicluster.x-k8s.io). `causeway install --crds-only` output.\n",
    );
    for crd in crate::resources::crds() {
        push_doc(&mut out, &crd)?;
    }
    Ok(out)
}

/// The CoreDNS server block that forwards `clusterset.local` to the gateway's DNS
/// Service at `dns_service_ip`.
pub fn coredns_server_block(dns_service_ip: &str) -> String {
    format!("clusterset.local:53 {{\n    errors\n    cache 5\n    forward . {dns_service_ip}\n}}\n")
}

/// How to make the cluster's DNS answer `*.clusterset.local`: the CoreDNS stub
/// domain, with the command that finds the address it forwards to. (CoreDNS
/// `forward` takes addresses, not Service names, so the block cannot be final at
/// install time.)
pub fn coredns_instructions() -> String {
    format!(
        "clusterset.local DNS: add this server block to the Corefile of CoreDNS\n(`kubectl -n kube-system edit configmap coredns`), with CLUSTER-IP from\n`kubectl -n {NAMESPACE} get service {DNS_SERVICE} -o jsonpath='{{.spec.clusterIP}}'`:\n\n{}",
        coredns_server_block("CLUSTER-IP")
    )
}

/// What `causeway link --name PEER` needs to describe a link.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// The peer cluster's name.
    pub peer: String,
    /// Registry members to join through (`host:port`).
    pub registry: Vec<String>,
    /// The peer's tunnel address (`host:port`).
    pub gateway: String,
    /// Probing; defaults when unset.
    pub probe: ProbeSpec,
    /// A Secret holding a join token.
    pub token_secret_ref: Option<SecretKeyRef>,
}

/// A `ClusterLink` named after the peer, validated: every problem of the spec is
/// returned with its field path.
pub fn link_manifest(options: LinkOptions) -> Result<ClusterLink, Vec<Problem>> {
    let spec = ClusterLinkSpec {
        peer: options.peer,
        registry: options.registry,
        gateway: options.gateway,
        probe: options.probe,
        token_secret_ref: options.token_secret_ref,
    };
    let problems = spec.validate();
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut link = ClusterLink::new(&spec.peer.clone(), spec);
    link.metadata.labels = Some(part_of_labels());
    Ok(link)
}

/// A `ClusterLink` as YAML, ready for `kubectl apply -f -`.
pub fn link_yaml(link: &ClusterLink) -> Result<String, InstallError> {
    let mut out = String::new();
    push_doc(&mut out, link)?;
    Ok(out)
}

fn push_doc<T: Serialize>(out: &mut String, object: &T) -> Result<(), InstallError> {
    out.push_str("---\n");
    out.push_str(&serde_norway::to_string(object)?);
    Ok(())
}

/// Labels on every installed object. Deliberately not `app.kubernetes.io/managed-by:
/// causeway`: that label marks objects the gateway's controllers own and may delete
/// (mirrored Services, ServiceImports), which installed objects must never be taken
/// for.
fn part_of_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app.kubernetes.io/part-of".into(), "causeway".into())])
}

/// The gateway pod's labels (also its selector).
fn gateway_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "causeway".into()),
        ("app.kubernetes.io/component".into(), "gateway".into()),
    ])
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    let mut labels = part_of_labels();
    if namespace.is_some() {
        labels.extend(gateway_labels());
    }
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests;
