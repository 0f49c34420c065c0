//! The gateway's TOML configuration: parsed strictly, overridable from the
//! environment, and validated as a whole before anything starts.
//!
//! Every problem is reported with its key path and, where the key is in the file,
//! its line: `export[2].ports[0].port (line 31): 70000 is not a port`.

mod access;
mod kubernetes;
mod locate;
mod traffic;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_mirror::AddressConfig;
use causeway_mirror::dns::DnsConfig;
use causeway_policy::Problem;
use causeway_trust::{ClusterName, ReplicaName};
use serde::{Deserialize, Serialize};

use causeway_tunnel::TunnelConfig;

pub use traffic::TrafficPolicyConfig;
#[cfg(test)]
pub(crate) use traffic::tests as traffic_tests;
pub(crate) use traffic::validate as validate_traffic_policies;

pub use access::{AccessSection, Enforce, PolicyConfig};
pub use kubernetes::{KubernetesMode, KubernetesSection};

/// Prefix of environment variables that override config keys: `CAUSEWAY__DNS__LISTEN`
/// sets `dns.listen`. Double underscores separate levels because keys use single ones.
pub const ENV_PREFIX: &str = "CAUSEWAY__";

/// Longest config file read: configs are hand-written, a larger file is a mistake.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;
/// Most exports one gateway config may declare; the catalog's own limits are lower
/// per cluster than what a mistaken generator could produce.
const MAX_EXPORTS: usize = 10_000;
/// Most endpoints one export may list.
const MAX_ENDPOINTS: usize = 1_000;

/// One whole gateway configuration (`causeway gateway run --config FILE`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// This cluster's name, a lowercase DNS label; must match the issuer's cluster.
    pub cluster: ClusterName,
    /// This gateway's name among its cluster's replicas, a lowercase DNS label
    /// (`gateway run --replica`, `CAUSEWAY_REPLICA`; on Kubernetes the pod's name).
    /// Unset: the cluster runs one unnamed gateway. Replicas of one cluster share its
    /// issuer and exports; each has its own leaf, registry member and addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaName>,
    /// Where this gateway's identity comes from.
    #[serde(default)]
    pub trust: TrustSection,
    /// The Raft-replicated catalog member this gateway hosts.
    #[serde(default)]
    pub registry: RegistrySection,
    /// The QUIC tunnel that carries traffic between clusters.
    #[serde(default)]
    pub tunnel: TunnelConfig,
    /// Addresses other clusters dial, when not the listen addresses.
    #[serde(default)]
    pub advertise: AdvertiseSection,
    /// The clusterset DNS server.
    #[serde(default)]
    pub dns: DnsConfig,
    /// Where imported services get their local addresses (standalone mode).
    #[serde(default)]
    pub imports: AddressConfig,
    /// Admin HTTP: metrics, health, status.
    #[serde(default)]
    pub admin: AdminSection,
    /// Services this cluster exports (standalone export source).
    #[serde(default, rename = "export")]
    pub exports: Vec<ExportConfig>,
    /// Traffic policies of imported services (`[[traffic_policy]]`).
    #[serde(default, rename = "traffic_policy")]
    pub traffic_policies: Vec<TrafficPolicyConfig>,
    /// Access policy: the federation default, enforcement, this gateway's policies.
    #[serde(default)]
    pub access: AccessSection,
    /// Kubernetes controllers and how imports reach this gateway's pod.
    #[serde(default)]
    pub kubernetes: KubernetesSection,
}

/// `[trust]`: the cluster issuer the gateway mints its leaves from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustSection {
    /// Folder with issuer.pem, issuer.key and bundle.pem (from `causeway trust
    /// issue-cluster`), relative to the config file.
    pub issuer_dir: PathBuf,
    /// How long each minted leaf lives; renewed at 2/3 of it.
    #[serde(with = "humantime_serde")]
    pub leaf_lifetime: Duration,
}

impl Default for TrustSection {
    fn default() -> Self {
        Self {
            issuer_dir: PathBuf::from("issuer"),
            leaf_lifetime: causeway_trust::LEAF_LIFETIME,
        }
    }
}

/// `[registry]`: this gateway's seat in the catalog.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySection {
    /// gRPC listen address (mutual TLS). Port 0 picks a free port at each start,
    /// for tests and demos: members record each other's addresses, so a lasting
    /// member needs a fixed port.
    pub listen: SocketAddr,
    /// Folder for the durable Raft log and snapshots, relative to the config file.
    pub data_dir: PathBuf,
    /// Members to join through (`host:port`); empty means this gateway bootstraps a
    /// new one-member registry unless it already has state on disk.
    pub join: Vec<SocketAddr>,
    /// Raft election timeout: how long followers wait for a leader before standing.
    #[serde(with = "humantime_serde")]
    pub election_timeout: Duration,
    /// How long a replica of a cluster's gateway may stay unheard by the registry
    /// leader before it is taken off its cluster's list (the last one stays).
    #[serde(with = "humantime_serde")]
    pub replica_grace: Duration,
}

impl Default for RegistrySection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 15444)),
            data_dir: PathBuf::from("data"),
            join: Vec::new(),
            election_timeout: Duration::from_millis(1000),
            replica_grace: Duration::from_secs(300),
        }
    }
}

/// `[advertise]`: the addresses other clusters use to reach this gateway, when they
/// differ from the listen addresses (wildcards, NAT, load balancers).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdvertiseSection {
    /// Tunnel (UDP) address peers dial; defaults to `tunnel.listen`.
    pub tunnel: Option<SocketAddr>,
    /// Registry (gRPC) address other members dial; defaults to `registry.listen`.
    pub registry: Option<SocketAddr>,
}

/// `[admin]`: the local HTTP endpoint.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Listen address; keep it on loopback, it can change the gateway's exports.
    /// Port 0 picks a free port.
    pub listen: SocketAddr,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 15090)),
        }
    }
}

/// `[[export]]`: one service this cluster offers to the federation.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Namespace (DNS label).
    pub namespace: String,
    /// Service name (DNS label).
    pub name: String,
    /// Ports offered.
    pub ports: Vec<PortConfig>,
    /// Local addresses of the service's endpoints (IP addresses).
    pub endpoints: Vec<IpAddr>,
    /// Share of traffic relative to other exporting clusters at equal RTT.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Labels published with the export (for policies).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_weight() -> u32 {
    100
}

/// One port of an export.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Port name, used for SRV records (`_http._tcp.…`).
    #[serde(default)]
    pub name: Option<String>,
    /// The service port importers connect to. Parsed wide so a bad number gets a
    /// clear message from validation rather than a type error.
    pub port: u64,
    /// The endpoints' port; defaults to `port`.
    #[serde(default)]
    pub target_port: Option<u64>,
    /// Transport protocol; the tunnel carries TCP.
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

fn default_protocol() -> String {
    "tcp".into()
}

/// Why a configuration could not be used: every problem, not just the first.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// What is wrong with it.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} problem(s)",
            self.file.display(),
            self.problems.len()
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl GatewayConfig {
    /// Reads, overrides from `env`, parses and validates `file`.
    pub fn load(
        file: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let fail = |path: &str, message: String| ConfigError {
            file: file.to_owned(),
            problems: vec![Problem {
                path: path.into(),
                line: None,
                message,
            }],
        };
        match std::fs::metadata(file) {
            Ok(m) if m.len() > MAX_CONFIG_BYTES => {
                return Err(fail(
                    "(file)",
                    format!(
                        "{} bytes exceeds the {MAX_CONFIG_BYTES}-byte limit",
                        m.len()
                    ),
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(fail("(file)", e.to_string())),
        }
        let text = std::fs::read_to_string(file).map_err(|e| fail("(file)", e.to_string()))?;
        let mut config = Self::parse(&text, env).map_err(|problems| ConfigError {
            file: file.to_owned(),
            problems,
        })?;
        let base = file.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses and validates config text; `env` supplies overrides.
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Vec<Problem>> {
        let overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        let config: Self = if overrides.is_empty() {
            toml::from_str(text).map_err(|e| vec![locate::parse_problem(text, &e)])?
        } else {
            let mut table: toml::Table =
                toml::from_str(text).map_err(|e| vec![locate::parse_problem(text, &e)])?;
            for (key, value) in &overrides {
                locate::apply_override(&mut table, key, value).map_err(|message| {
                    vec![Problem {
                        path: key.clone(),
                        line: None,
                        message,
                    }]
                })?;
            }
            Self::deserialize(table).map_err(|e| {
                vec![Problem {
                    path: "(after environment overrides)".into(),
                    line: None,
                    message: e.message().to_owned(),
                }]
            })?
        };
        let mut problems = config.validate();
        if problems.is_empty() {
            return Ok(config);
        }
        locate::add_lines(text, &mut problems);
        Err(problems)
    }

    fn resolve_paths(&mut self, base: &Path) {
        for path in [&mut self.trust.issuer_dir, &mut self.registry.data_dir]
            .into_iter()
            .chain(self.kubernetes.kubeconfig.as_mut())
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// The address peers dial for the tunnel.
    pub fn tunnel_advertise(&self) -> SocketAddr {
        self.advertise.tunnel.unwrap_or(self.tunnel.listen)
    }

    /// The address other members dial for the registry.
    pub fn registry_advertise(&self) -> SocketAddr {
        self.advertise.registry.unwrap_or(self.registry.listen)
    }
}

#[cfg(test)]
mod tests;
