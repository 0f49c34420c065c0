//! `causeway install`: the manifests that run a gateway in a Kubernetes cluster,
//! printed as YAML for `kubectl apply -f -`. Rendering lives in `causeway-k8s`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use causeway_k8s::manifests::{self, GatewayServiceType, InstallOptions, TrustMaterial};
use causeway_trust::ClusterName;
use clap::{Args, ValueEnum};

/// How the gateway's tunnel and registry are exposed to other clusters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ServiceType {
    /// A cloud load balancer.
    #[default]
    #[value(name = "LoadBalancer")]
    LoadBalancer,
    /// A port on every node (kind, bare metal).
    #[value(name = "NodePort")]
    NodePort,
}

/// Arguments of `causeway install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// This cluster's name in the federation (a lowercase DNS label).
    #[arg(long, required_unless_present = "crds_only")]
    pub cluster: Option<ClusterName>,
    /// A cluster issuer folder from `causeway trust issue-cluster` (issuer.pem,
    /// issuer.key, bundle.pem), rendered as the trust Secret. Without it, create the
    /// Secret yourself (the output says how).
    #[arg(long, value_name = "DIR")]
    pub trust_from: Option<PathBuf>,
    /// The gateway image.
    #[arg(long, default_value = manifests::DEFAULT_IMAGE)]
    pub image: String,
    /// How many gateway pods run (1-16). With more than one, a PodDisruptionBudget
    /// keeps all but one through a drain, and the replica holding the controllers'
    /// Lease alone writes mirrored Services, ServiceImports and statuses.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub replicas: u32,
    /// How the tunnel (UDP 15443) and registry (TCP 15444) are exposed.
    #[arg(long, value_enum, default_value_t)]
    pub service_type: ServiceType,
    /// With NodePort: the tunnel's node port (30000-32767).
    #[arg(long, value_name = "PORT")]
    pub node_port_tunnel: Option<i32>,
    /// With NodePort: the registry's node port (30000-32767).
    #[arg(long, value_name = "PORT")]
    pub node_port_registry: Option<i32>,
    /// The IP address other clusters reach this gateway at (load balancer or node);
    /// default: the pod's IP, which works only where pod IPs are routable between
    /// clusters.
    #[arg(long, value_name = "IP")]
    pub advertise: Option<IpAddr>,
    /// Print only the CRDs (ClusterLink, ServiceExport, ServiceImport).
    #[arg(long, conflicts_with_all = ["cluster", "trust_from", "advertise", "node_port_tunnel", "node_port_registry", "replicas"])]
    pub crds_only: bool,
}

impl InstallArgs {
    fn options(&self, cluster: ClusterName) -> Result<InstallOptions> {
        let trust = self
            .trust_from
            .as_deref()
            .map(TrustMaterial::from_dir)
            .transpose()?;
        Ok(InstallOptions {
            cluster,
            image: self.image.clone(),
            replicas: self.replicas,
            service_type: match self.service_type {
                ServiceType::LoadBalancer => GatewayServiceType::LoadBalancer,
                ServiceType::NodePort => GatewayServiceType::NodePort,
            },
            node_port_tunnel: self.node_port_tunnel,
            node_port_registry: self.node_port_registry,
            advertise: self.advertise,
            trust,
        })
    }

    /// The YAML `causeway install` prints for these arguments.
    pub fn render(&self) -> Result<String> {
        if self.crds_only {
            return Ok(manifests::crds_yaml()?);
        }
        let cluster = self
            .cluster
            .clone()
            .context("--cluster is required (or --crds-only)")?;
        let bundle = manifests::install(&self.options(cluster)?)?;
        Ok(bundle.to_yaml()?)
    }
}

/// Runs `causeway install`.
pub fn install(args: InstallArgs) -> Result<ExitCode> {
    let yaml = args.render()?;
    if !args.crds_only && args.advertise.is_none() {
        eprintln!(
            "note: without --advertise the gateway tells peers its pod IP, which other clusters reach only on a flat network; pass the load balancer's or a node's address"
        );
    }
    print!("{yaml}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::GatewayConfig;

    fn args(line: &[&str]) -> InstallArgs {
        let cli =
            crate::cli::Cli::try_parse_from(["causeway", "install"].iter().chain(line).copied())
                .expect("arguments parse");
        match cli.command {
            crate::cli::Command::Install(a) => a,
            other => panic!("parsed as {other:?}"),
        }
    }

    fn bundle(args: &InstallArgs) -> manifests::InstallBundle {
        let cluster = args.cluster.clone().expect("--cluster given");
        manifests::install(&args.options(cluster).expect("options")).expect("renders")
    }

    fn gateway_toml(bundle: &manifests::InstallBundle) -> String {
        bundle.config_map.data.as_ref().expect("data")["gateway.toml"].clone()
    }

    #[test]
    fn the_installed_config_with_advertise_is_a_valid_gateway_config() {
        let args = args(&[
            "--cluster",
            "west",
            "--service-type",
            "NodePort",
            "--node-port-tunnel",
            "30443",
            "--node-port-registry",
            "30444",
            "--advertise",
            "172.18.0.2",
        ]);
        let text = gateway_toml(&bundle(&args));
        assert!(
            GatewayConfig::parse(&text, []).is_err(),
            "the controllers need the pod's IP"
        );
        let pod_ip = [(
            "CAUSEWAY__KUBERNETES__POD_IP".to_owned(),
            "10.244.0.5".to_owned(),
        )];
        let config = GatewayConfig::parse(&text, pod_ip).expect("gateway.toml is valid");
        assert_eq!(config.cluster.as_str(), "west");
        assert_eq!(config.kubernetes.mode, crate::config::KubernetesMode::On);
        assert_eq!(
            config.kubernetes.pod_ip,
            Some("10.244.0.5".parse().unwrap())
        );
        assert_eq!(config.tunnel_advertise().to_string(), "172.18.0.2:30443");
        assert_eq!(config.registry_advertise().to_string(), "172.18.0.2:30444");
    }

    #[test]
    fn without_advertise_the_pod_ip_variables_complete_the_config() {
        let bundle = bundle(&args(&["--cluster", "east"]));
        let pod = bundle
            .deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec");
        // What the kubelet does with `$(POD_IP)` for a pod at 10.244.0.5.
        let env: Vec<(String, String)> = pod.containers[0]
            .env
            .iter()
            .flatten()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .map(|(k, v)| (k, v.replace("$(POD_IP)", "10.244.0.5")))
            .collect();
        assert!(
            GatewayConfig::parse(&gateway_toml(&bundle), []).is_err(),
            "wildcard listeners need advertise"
        );
        let config =
            GatewayConfig::parse(&gateway_toml(&bundle), env).expect("valid with the pod's IP");
        assert_eq!(config.tunnel_advertise().to_string(), "10.244.0.5:15443");
        assert_eq!(
            config.kubernetes.pod_ip,
            Some("10.244.0.5".parse().unwrap())
        );
    }

    #[test]
    fn crds_only_conflicts_with_cluster_options() {
        let err = crate::cli::Cli::try_parse_from([
            "causeway",
            "install",
            "--crds-only",
            "--cluster",
            "west",
        ])
        .expect_err("conflicting flags");
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(
            args(&["--crds-only"])
                .render()
                .expect("renders")
                .contains("kind: CustomResourceDefinition")
        );
    }

    #[test]
    fn replicas_outside_the_bounds_are_refused_naming_the_flag() {
        for bad in ["0", "17"] {
            let err = args(&["--cluster", "west", "--replicas", bad])
                .render()
                .expect_err("out of bounds");
            assert!(
                format!("{err:#}").contains(&format!("--replicas {bad} is outside 1-16")),
                "{err:#}"
            );
        }
        let err = crate::cli::Cli::try_parse_from(["causeway", "install", "--replicas", "three"])
            .expect_err("not a count");
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let three = bundle(&args(&["--cluster", "west", "--replicas", "3"]));
        assert_eq!(three.deployment.spec.and_then(|s| s.replicas), Some(3));
        assert!(three.disruption_budget.is_some());
    }

    #[test]
    fn a_trust_folder_missing_a_file_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("issuer.pem"), "cert").expect("write");
        std::fs::write(dir.path().join("bundle.pem"), "bundle").expect("write");
        let path = dir.path().to_str().expect("utf-8 path");
        let err = args(&["--cluster", "west", "--trust-from", path])
            .render()
            .expect_err("issuer.key is missing");
        assert!(format!("{err:#}").contains("missing issuer.key"), "{err:#}");
    }

    #[test]
    fn link_by_name_conflicts_with_peer_and_needs_its_addresses() {
        use clap::error::ErrorKind;
        let parse = |extra: &[&str]| {
            crate::cli::Cli::try_parse_from(["causeway", "link"].iter().chain(extra).copied())
        };
        let full = [
            "--name",
            "west",
            "--registry",
            "10.0.0.1:15444",
            "--gateway",
            "10.0.0.1:15443",
        ];
        assert!(parse(&full).is_ok());
        let with_peer: Vec<&str> = full
            .iter()
            .copied()
            .chain(["--peer", "10.0.0.1:15444"])
            .collect();
        assert_eq!(
            parse(&with_peer).expect_err("both").kind(),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            parse(&["--name", "west", "--gateway", "10.0.0.1:15443"])
                .expect_err("no registry")
                .kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["--peer", "10.0.0.1:15444", "--registry", "10.0.0.1:15444"])
                .expect_err("registry without name")
                .kind(),
            ErrorKind::MissingRequiredArgument
        );
    }
}
