//! Commands: the changes proposed to the catalog, and their validation.

use std::collections::BTreeMap;

use causeway_policy::{AccessPolicy, PolicyAction, PolicyName};
use causeway_trust::{ClusterName, ReplicaName, validate_label};
use serde::{Deserialize, Serialize};

use super::error::{CommandError, truncated};
use super::limits::Limits;
use super::traffic::{TrafficPolicyRecord, validate_record};
use super::types::{ClusterRecord, Export, RuntimeExport, ServiceKey};

/// A change to the catalog, as proposed to the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    /// Adds a cluster or replaces its record.
    RegisterCluster(ClusterRecord),
    /// Removes a cluster, every export it has and every traffic policy it declared.
    RemoveCluster {
        /// The cluster to remove.
        cluster: ClusterName,
    },
    /// Takes one replica off its cluster's list of gateway replicas (it drained, or
    /// it is gone); the cluster, its exports and its other replicas stay. The last
    /// replica stays listed: a cluster leaves only by `RemoveCluster`.
    RemoveReplica {
        /// The replica's cluster.
        cluster: ClusterName,
        /// The replica; `None` for the cluster's unnamed gateway.
        replica: Option<ReplicaName>,
    },
    /// Adds or replaces one export.
    PutExport(Export),
    /// Removes one export.
    DeleteExport {
        /// The exporting cluster.
        cluster: ClusterName,
        /// The service.
        service: ServiceKey,
    },
    /// Replaces a cluster's whole set of exports (resync after a restart).
    ReplaceClusterExports {
        /// The cluster whose exports are replaced.
        cluster: ClusterName,
        /// Its complete new set; each must name `cluster`.
        exports: Vec<Export>,
    },
    /// Adds or replaces an access policy.
    PutPolicy(AccessPolicy),
    /// Removes an access policy.
    DeletePolicy {
        /// The policy to remove.
        name: PolicyName,
    },
    /// Sets what happens to traffic no policy matches, federation-wide.
    SetDefaultAccess(#[serde(with = "action_field")] PolicyAction),
    /// Denies a cluster issuer for good and removes the cluster it served (with its
    /// exports) if it is still registered: `causeway unlink` in one atomic step, so
    /// there is no revision at which the cluster is gone but its issuer still trusted.
    DenyIssuer {
        /// The cluster the issuer served.
        cluster: ClusterName,
        /// SHA-256 of the issuer certificate's DER, 64 lowercase hex digits.
        fingerprint: String,
    },
    /// Adds or replaces the traffic policy `owner` declares for one service.
    PutTrafficPolicy(TrafficPolicyRecord),
    /// Removes the traffic policy `owner` declared for one service.
    DeleteTrafficPolicy {
        /// The cluster that declared it.
        owner: ClusterName,
        /// The service it governs.
        service: ServiceKey,
    },
    /// Adds or replaces one runtime export in its cluster's record.
    PutRuntimeExport(RuntimeExport),
    /// Removes one runtime export from its cluster's record.
    DeleteRuntimeExport {
        /// The cluster.
        cluster: ClusterName,
        /// The service.
        service: ServiceKey,
    },
}

impl Command {
    /// A short name of the command's kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::RegisterCluster(_) => "register_cluster",
            Command::RemoveCluster { .. } => "remove_cluster",
            Command::RemoveReplica { .. } => "remove_replica",
            Command::PutExport(_) => "put_export",
            Command::DeleteExport { .. } => "delete_export",
            Command::ReplaceClusterExports { .. } => "replace_cluster_exports",
            Command::PutPolicy(_) => "put_policy",
            Command::DeletePolicy { .. } => "delete_policy",
            Command::SetDefaultAccess(_) => "set_default_access",
            Command::DenyIssuer { .. } => "deny_issuer",
            Command::PutTrafficPolicy(_) => "put_traffic_policy",
            Command::DeleteTrafficPolicy { .. } => "delete_traffic_policy",
            Command::PutRuntimeExport(_) => "put_runtime_export",
            Command::DeleteRuntimeExport { .. } => "delete_runtime_export",
        }
    }

    /// Checks everything about the command that does not depend on the catalog's
    /// state: names, sizes, limits, uniqueness within the command.
    pub fn validate(&self, limits: &Limits) -> Result<(), CommandError> {
        match self {
            Command::RegisterCluster(record) => validate_cluster(record, limits),
            Command::RemoveCluster { .. }
            | Command::RemoveReplica { .. }
            | Command::DeleteExport { .. }
            | Command::DeletePolicy { .. }
            | Command::DeleteTrafficPolicy { .. }
            | Command::DeleteRuntimeExport { .. }
            | Command::SetDefaultAccess(_) => Ok(()),
            Command::PutRuntimeExport(runtime) => validate_runtime_export(runtime, limits),
            Command::DenyIssuer { fingerprint, .. } => {
                validate_fingerprint("deny_issuer.fingerprint", fingerprint)
            }
            Command::PutExport(export) => validate_export(export, limits, "export"),
            Command::ReplaceClusterExports { cluster, exports } => {
                if exports.len() > limits.max_exports_per_cluster {
                    return Err(CommandError::invalid(
                        "exports",
                        format!(
                            "{} exports; at most {} per cluster",
                            exports.len(),
                            limits.max_exports_per_cluster
                        ),
                    ));
                }
                let mut seen = std::collections::BTreeSet::new();
                for (i, export) in exports.iter().enumerate() {
                    let path = format!("exports[{i}]");
                    if export.cluster != *cluster {
                        return Err(CommandError::invalid(
                            format!("{path}.cluster"),
                            format!(
                                "{} differs from the command's cluster {cluster}",
                                export.cluster
                            ),
                        ));
                    }
                    validate_export(export, limits, &path)?;
                    if !seen.insert(&export.service) {
                        return Err(CommandError::invalid(
                            format!("{path}.service"),
                            format!("{} is listed twice", export.service),
                        ));
                    }
                }
                Ok(())
            }
            Command::PutPolicy(policy) => validate_policy(policy),
            Command::PutTrafficPolicy(record) => {
                validate_record(record, limits.max_traffic_policy_targets)
            }
        }
    }
}

/// Most roots a cluster may list: one normally, two or three during rotation.
const MAX_BUNDLE_ROOTS: usize = 16;

fn validate_cluster(record: &ClusterRecord, limits: &Limits) -> Result<(), CommandError> {
    if record.trust_bundle.len() > MAX_BUNDLE_ROOTS {
        return Err(CommandError::invalid(
            "cluster.trust_bundle",
            format!(
                "{} roots; at most {MAX_BUNDLE_ROOTS}",
                record.trust_bundle.len()
            ),
        ));
    }
    for (i, fp) in record.trust_bundle.iter().enumerate() {
        validate_fingerprint(&format!("cluster.trust_bundle[{i}]"), fp)?;
    }
    if let Some(fp) = &record.issuer_fingerprint {
        validate_fingerprint("cluster.issuer_fingerprint", fp)?;
    }
    if !record.replicas.is_empty() {
        return Err(CommandError::invalid(
            "cluster.replicas",
            "set by the registry from each replica's registration; a registration leaves it empty",
        ));
    }
    if record.identity.cluster != record.name {
        return Err(CommandError::invalid(
            "cluster.identity",
            format!(
                "{} belongs to cluster {}, not {}",
                record.identity, record.identity.cluster, record.name
            ),
        ));
    }
    if record.gateway_addrs.is_empty() {
        return Err(CommandError::invalid(
            "cluster.gateway_addrs",
            "at least one gateway address is required",
        ));
    }
    if record.gateway_addrs.len() > limits.max_gateway_addrs {
        return Err(CommandError::invalid(
            "cluster.gateway_addrs",
            format!(
                "{} addresses; at most {}",
                record.gateway_addrs.len(),
                limits.max_gateway_addrs
            ),
        ));
    }
    for (i, addr) in record.gateway_addrs.iter().enumerate() {
        validate_host_port(addr, limits).map_err(|reason| {
            CommandError::invalid(format!("cluster.gateway_addrs[{i}]"), reason)
        })?;
    }
    validate_host_port(&record.registry_addr, limits)
        .map_err(|reason| CommandError::invalid("cluster.registry_addr", reason))?;
    if record.runtime_exports.is_some() {
        return Err(CommandError::invalid(
            "cluster.runtime_exports",
            "a registration carries none; runtime exports are put one at a time",
        ));
    }
    validate_pools(&record.import_pools)
}

/// Checks a runtime export: its export as any, then its endpoints (1 to the limit,
/// each an IP address) and one non-zero target port per port.
fn validate_runtime_export(runtime: &RuntimeExport, limits: &Limits) -> Result<(), CommandError> {
    validate_export(&runtime.export, limits, "runtime_export.export")?;
    let count = runtime.endpoints.len();
    if count == 0 || count > limits.max_runtime_endpoints {
        return Err(CommandError::invalid(
            "runtime_export.endpoints",
            format!(
                "{count} endpoints; 1 to {} are allowed",
                limits.max_runtime_endpoints
            ),
        ));
    }
    for (i, endpoint) in runtime.endpoints.iter().enumerate() {
        if endpoint.parse::<std::net::IpAddr>().is_err() {
            return Err(CommandError::invalid(
                format!("runtime_export.endpoints[{i}]"),
                format!("{:?} is not an IP address", truncated(endpoint)),
            ));
        }
    }
    let ports = runtime.export.ports.len();
    if runtime.target_ports.len() != ports {
        return Err(CommandError::invalid(
            "runtime_export.target_ports",
            format!(
                "{} target ports for {ports} ports; one per port",
                runtime.target_ports.len()
            ),
        ));
    }
    if let Some(i) = runtime.target_ports.iter().position(|p| *p == 0) {
        return Err(CommandError::invalid(
            format!("runtime_export.target_ports[{i}]"),
            "0 is not a port; use 1-65535",
        ));
    }
    Ok(())
}

/// Checks import pools: at most one IPv4 and one IPv6 CIDR block.
fn validate_pools(pools: &[String]) -> Result<(), CommandError> {
    if pools.len() > 2 {
        return Err(CommandError::invalid(
            "cluster.import_pools",
            format!("{} pools; at most 2", pools.len()),
        ));
    }
    for (i, pool) in pools.iter().enumerate() {
        pool.parse::<ipnet::IpNet>().map_err(|_| {
            let shown: String = pool.chars().take(64).collect();
            CommandError::invalid(
                format!("cluster.import_pools[{i}]"),
                format!("{shown:?} is not a CIDR block"),
            )
        })?;
    }
    Ok(())
}

/// Checks a SHA-256 fingerprint: exactly 64 lowercase hex digits.
fn validate_fingerprint(field: &str, fp: &str) -> Result<(), CommandError> {
    if fp.len() != 64
        || !fp
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(CommandError::invalid(
            field,
            "not a SHA-256 fingerprint (64 lowercase hex digits)",
        ));
    }
    Ok(())
}

/// Checks a `host:port` address: an IPv4 address, a bracketed IPv6 address or a DNS
/// name, then a port 1-65535.
pub(crate) fn validate_host_port(addr: &str, limits: &Limits) -> Result<(), String> {
    if addr.len() > limits.max_addr_len {
        return Err(format!(
            "{} bytes long; at most {}",
            addr.len(),
            limits.max_addr_len
        ));
    }
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} is not host:port"));
    };
    match port.parse::<u16>() {
        Ok(p) if p != 0 => {}
        _ => return Err(format!("{addr:?} has no valid port (1-65535)")),
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return Err(format!("{addr:?} has no valid host"));
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{addr:?}: host is neither an IP address nor a DNS name"
            ));
        }
    }
    Ok(())
}

fn validate_export(export: &Export, limits: &Limits, path: &str) -> Result<(), CommandError> {
    if export.ports.is_empty() {
        return Err(CommandError::invalid(
            format!("{path}.ports"),
            "at least one port is required",
        ));
    }
    if export.ports.len() > limits.max_ports {
        return Err(CommandError::invalid(
            format!("{path}.ports"),
            format!("{} ports; at most {}", export.ports.len(), limits.max_ports),
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    let mut numbers = std::collections::BTreeSet::new();
    for (i, port) in export.ports.iter().enumerate() {
        let field = format!("{path}.ports[{i}]");
        validate_label("port name", &port.name)
            .map_err(|e| CommandError::invalid(format!("{field}.name"), e.to_string()))?;
        if port.port == 0 {
            return Err(CommandError::invalid(
                format!("{field}.port"),
                "0 is not a port; use 1-65535",
            ));
        }
        if !names.insert(port.name.as_str()) {
            return Err(CommandError::invalid(
                format!("{field}.name"),
                format!("{:?} is used twice", port.name),
            ));
        }
        if !numbers.insert(port.port) {
            return Err(CommandError::invalid(
                format!("{field}.port"),
                format!("{} is used twice", port.port),
            ));
        }
    }
    validate_labels(&export.labels, limits, &format!("{path}.labels"))?;
    Ok(())
}

/// Checks a label map: how many, and each key's and value's size and characters.
fn validate_labels(
    labels: &BTreeMap<String, String>,
    limits: &Limits,
    path: &str,
) -> Result<(), CommandError> {
    if labels.len() > limits.max_labels {
        return Err(CommandError::invalid(
            path,
            format!("{} labels; at most {}", labels.len(), limits.max_labels),
        ));
    }
    for (key, value) in labels {
        let key_ok = !key.is_empty()
            && key.len() <= limits.max_label_key_len
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
        if !key_ok {
            return Err(CommandError::invalid(
                path,
                format!(
                    "key {:?} must be 1-{} characters of letters, digits, '-', '_', '.', '/'",
                    truncated(key),
                    limits.max_label_key_len
                ),
            ));
        }
        let value_ok = value.len() <= limits.max_label_value_len
            && value.bytes().all(|b| (0x20..0x7f).contains(&b));
        if !value_ok {
            return Err(CommandError::invalid(
                format!("{path}[{key}]"),
                format!(
                    "value must be at most {} printable ASCII characters",
                    limits.max_label_value_len
                ),
            ));
        }
    }
    Ok(())
}

/// A policy record gets the bounds of `causeway_policy`, as every written rule
/// does; the first problem is the answer.
fn validate_policy(policy: &AccessPolicy) -> Result<(), CommandError> {
    match policy.validate().into_iter().next() {
        Some(problem) => Err(CommandError::invalid(
            format!("policy.{}", problem.path),
            problem.message,
        )),
        None => Ok(()),
    }
}

/// Serializes `Command::SetDefaultAccess`'s action as `{"action": "..."}`, since an
/// internally tagged enum can only carry map-like content.
mod action_field {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::PolicyAction;

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Field {
        action: PolicyAction,
    }

    pub(super) fn serialize<S: Serializer>(action: &PolicyAction, s: S) -> Result<S::Ok, S::Error> {
        Field { action: *action }.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PolicyAction, D::Error> {
        Field::deserialize(d).map(|f| f.action)
    }
}
