//! The gateway's Deployment and its three Services.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::availability;
use super::config::{CONFIG_DIR, DATA_DIR, FILE_NAME, TRUST_DIR};
use super::{
    ADMIN_PORT, ADMIN_SERVICE, CONFIG_MAP, DNS_CONTAINER_PORT, DNS_SERVICE, GATEWAY,
    GatewayServiceType, InstallOptions, NAMESPACE, REGISTRY_PORT, TRUST_SECRET, TUNNEL_PORT,
    gateway_labels, meta,
};

/// The uid and gid the gateway runs as: distroless' `nonroot`, also used by the
/// image's Dockerfile.
pub(crate) const RUN_AS: i64 = 65532;

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".into(), Quantity(cpu.into())),
        ("memory".into(), Quantity(memory.into())),
    ])
}

fn http_probe(path: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn container_port(name: &str, port: i32, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some(protocol.into()),
        ..ContainerPort::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

/// A variable the kubelet fills from the pod's own `field_path` (the downward API).
fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// Who this pod is among the cluster's replicas: its name is the replica name
/// (`gateway run` reads `CAUSEWAY_REPLICA`) and the holder identity of the
/// controllers' Lease; its namespace is where that Lease lives.
fn identity_env() -> Vec<EnvVar> {
    vec![
        field_env("CAUSEWAY_REPLICA", "metadata.name"),
        field_env("CAUSEWAY__KUBERNETES__POD_NAME", "metadata.name"),
        field_env("CAUSEWAY__KUBERNETES__NAMESPACE", "metadata.namespace"),
    ]
}

/// Without `--advertise`, peers are told the pod's IP (Kubernetes expands
/// `$(POD_IP)` from the variable defined before it).
///
/// The pod's IP is always passed as `CAUSEWAY__KUBERNETES__POD_IP`: mirrored
/// Services of imports list it as their endpoint.
fn advertise_env(options: &InstallOptions) -> Vec<EnvVar> {
    let mut vars = vec![
        field_env("POD_IP", "status.podIP"),
        env("CAUSEWAY__KUBERNETES__POD_IP", "$(POD_IP)"),
    ];
    if options.advertise.is_none() {
        vars.push(env(
            "CAUSEWAY__ADVERTISE__TUNNEL",
            &format!("$(POD_IP):{TUNNEL_PORT}"),
        ));
        vars.push(env(
            "CAUSEWAY__ADVERTISE__REGISTRY",
            &format!("$(POD_IP):{REGISTRY_PORT}"),
        ));
    }
    vars
}

fn container(options: &InstallOptions) -> Container {
    Container {
        name: "gateway".into(),
        image: Some(options.image.clone()),
        args: Some(
            [
                "gateway",
                "run",
                "--config",
                &format!("{CONFIG_DIR}/{FILE_NAME}"),
                "--log-format",
                "json",
            ]
            .map(String::from)
            .to_vec(),
        ),
        env: Some([identity_env(), advertise_env(options)].concat()),
        ports: Some(vec![
            container_port("tunnel", TUNNEL_PORT, "UDP"),
            container_port("registry", REGISTRY_PORT, "TCP"),
            container_port("dns-udp", DNS_CONTAINER_PORT, "UDP"),
            container_port("dns-tcp", DNS_CONTAINER_PORT, "TCP"),
            container_port("admin", ADMIN_PORT, "TCP"),
        ]),
        liveness_probe: Some(http_probe("/live", 10, 3)),
        readiness_probe: Some(http_probe("/ready", 5, 2)),
        resources: Some(ResourceRequirements {
            requests: Some(quantities("100m", "128Mi")),
            limits: Some(quantities("2", "512Mi")),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount("config", CONFIG_DIR, true),
            mount("trust", TRUST_DIR, true),
            mount("data", DATA_DIR, false),
            mount("tmp", "/tmp", false),
        ]),
        ..Container::default()
    }
}

fn volumes() -> Vec<Volume> {
    vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: CONFIG_MAP.into(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "trust".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(TRUST_SECRET.into()),
                // Owner-only, like `causeway trust issue-cluster` writes issuer.key.
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        // The registry's Raft log and snapshots. An emptyDir is lost with the pod, so
        // the gateway rejoins and catches up from its peers on every restart; replace
        // it with a PersistentVolumeClaim to keep the log across restarts.
        Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ]
}

/// The gateway: `options.replicas` pods, each its own replica (see
/// `availability.rs` for how they are replaced, spread and protected).
pub(crate) fn deployment(options: &InstallOptions) -> Deployment {
    let labels = gateway_labels();
    let replicas = i32::try_from(options.replicas).expect("replicas are checked against REPLICAS");
    Deployment {
        metadata: meta(GATEWAY, Some(NAMESPACE)),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            strategy: Some(availability::strategy()),
            template: PodTemplateSpec {
                metadata: Some(kube::core::ObjectMeta {
                    labels: Some(labels),
                    ..kube::core::ObjectMeta::default()
                }),
                spec: Some(pod_spec(options)),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn pod_spec(options: &InstallOptions) -> PodSpec {
    PodSpec {
        service_account_name: Some(GATEWAY.into()),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        containers: vec![container(options)],
        volumes: Some(volumes()),
        affinity: Some(availability::affinity()),
        topology_spread_constraints: Some(availability::spread()),
        termination_grace_period_seconds: Some(40),
        ..PodSpec::default()
    }
}

fn service_port(
    name: &str,
    port: i32,
    target: &str,
    protocol: &str,
    node_port: Option<i32>,
) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(target.into())),
        protocol: Some(protocol.into()),
        node_port,
        ..ServicePort::default()
    }
}

/// Every Service keeps the gateway pod as its endpoint even while `/ready` fails:
/// with one replica, hiding it would only cut peers and clients off from a gateway
/// that still carries traffic (say, while its registry rejoins after a quorum loss).
/// Readiness still gates `kubectl rollout status`.
fn service(name: &str, type_: &str, ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: meta(name, Some(NAMESPACE)),
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            selector: Some(gateway_labels()),
            publish_not_ready_addresses: Some(true),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The tunnel and registry for other clusters; clusterset DNS and admin in-cluster.
pub(crate) fn services(options: &InstallOptions) -> Vec<Service> {
    let (tunnel_node_port, registry_node_port) = match options.service_type {
        GatewayServiceType::NodePort => (options.node_port_tunnel, options.node_port_registry),
        GatewayServiceType::LoadBalancer => (None, None),
    };
    vec![
        service(
            GATEWAY,
            options.service_type.as_str(),
            vec![
                service_port("tunnel", TUNNEL_PORT, "tunnel", "UDP", tunnel_node_port),
                service_port(
                    "registry",
                    REGISTRY_PORT,
                    "registry",
                    "TCP",
                    registry_node_port,
                ),
            ],
        ),
        service(
            DNS_SERVICE,
            "ClusterIP",
            vec![
                service_port("dns-udp", 53, "dns-udp", "UDP", None),
                service_port("dns-tcp", 53, "dns-tcp", "TCP", None),
            ],
        ),
        service(
            ADMIN_SERVICE,
            "ClusterIP",
            vec![service_port("admin", ADMIN_PORT, "admin", "TCP", None)],
        ),
    ]
}
