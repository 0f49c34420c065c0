//! `gateway.toml` for a gateway in a pod, in the format of
//! `examples/standalone/west.toml`: listeners on all addresses, trust from the
//! mounted Secret, data in the data volume.

use serde::Serialize;

use super::{
    ADMIN_PORT, DNS_CONTAINER_PORT, InstallError, InstallOptions, REGISTRY_PORT, TUNNEL_PORT,
};

/// The key of `gateway.toml` in the ConfigMap, and the file name in the pod.
pub(crate) const FILE_NAME: &str = "gateway.toml";
/// Where the ConfigMap is mounted.
pub(crate) const CONFIG_DIR: &str = "/etc/causeway";
/// Where the trust Secret is mounted (read-only).
pub(crate) const TRUST_DIR: &str = "/var/run/secrets/causeway.dev/trust";
/// Where the registry keeps its Raft log, snapshots and import state.
pub(crate) const DATA_DIR: &str = "/var/lib/causeway";

#[derive(Serialize)]
struct GatewayToml {
    cluster: String,
    trust: Trust,
    registry: Registry,
    tunnel: Listen,
    #[serde(skip_serializing_if = "Option::is_none")]
    advertise: Option<Advertise>,
    dns: Dns,
    admin: Listen,
    kubernetes: Kubernetes,
}

#[derive(Serialize)]
struct Kubernetes {
    mode: &'static str,
}

#[derive(Serialize)]
struct Trust {
    issuer_dir: &'static str,
}

#[derive(Serialize)]
struct Registry {
    listen: String,
    data_dir: &'static str,
    join: Vec<String>,
}

#[derive(Serialize)]
struct Listen {
    listen: String,
}

#[derive(Serialize)]
struct Advertise {
    tunnel: String,
    registry: String,
}

#[derive(Serialize)]
struct Dns {
    listen: String,
    zone: &'static str,
}

/// Renders `gateway.toml`. Without `--advertise` the advertise keys come from the
/// pod's IP through `CAUSEWAY__ADVERTISE__*` environment variables instead.
pub(crate) fn gateway_toml(options: &InstallOptions) -> Result<String, InstallError> {
    let advertise = options.advertise.map(|ip| {
        let (tunnel, registry) = options.advertised_ports();
        Advertise {
            tunnel: std::net::SocketAddr::new(ip, port(tunnel)).to_string(),
            registry: std::net::SocketAddr::new(ip, port(registry)).to_string(),
        }
    });
    let config = GatewayToml {
        cluster: options.cluster.to_string(),
        trust: Trust {
            issuer_dir: TRUST_DIR,
        },
        registry: Registry {
            listen: format!("0.0.0.0:{REGISTRY_PORT}"),
            data_dir: DATA_DIR,
            // Joining is a ClusterLink's job: a fresh gateway starts its own registry
            // and joins a federation when a link names one.
            join: Vec::new(),
        },
        tunnel: Listen {
            listen: format!("0.0.0.0:{TUNNEL_PORT}"),
        },
        advertise,
        dns: Dns {
            listen: format!("0.0.0.0:{DNS_CONTAINER_PORT}"),
            zone: "clusterset.local",
        },
        // On the pod IP so the kubelet can probe /live and /ready; the admin Service
        // is ClusterIP only.
        admin: Listen {
            listen: format!("0.0.0.0:{ADMIN_PORT}"),
        },
        // The controllers run; the pod's address (the endpoint of every mirrored
        // Service) comes from CAUSEWAY__KUBERNETES__POD_IP.
        kubernetes: Kubernetes { mode: "on" },
    };
    let body = toml::to_string(&config)
        .map_err(|e| InstallError::Options(format!("cannot render gateway.toml: {e}")))?;
    Ok(format!(
        "# Causeway gateway in Kubernetes (`causeway install`). Every key can be\n# overridden from the environment as CAUSEWAY__<SECTION>__<KEY>.\n{body}"
    ))
}

fn port(number: i32) -> u16 {
    u16::try_from(number).expect("ports are constants or checked node ports")
}
