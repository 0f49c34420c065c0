//! Names, records, commands and change events.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use causeway_trust::{ClusterName, NameError, SpiffeId, validate_label};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::limits::Limits;
use super::state::CatalogSnapshot;
use super::traffic::{TrafficPolicyRecord, validate_record};

// === Revision ===

/// The catalog's version: bumped by one for every applied command.
///
/// Revision 0 is the empty catalog before any command. Every key records the revision
/// it was last changed at, and watch streams deliver changes in revision order.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Revision(pub u64);

impl Revision {
    /// The empty catalog's revision.
    pub const ZERO: Revision = Revision(0);

    /// The revision after this one.
    pub fn next(self) -> Revision {
        Revision(self.0 + 1)
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Revision {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Revision)
    }
}

// === ServiceKey ===

/// A service's name within its cluster: a Kubernetes-style namespace and name, each a
/// lowercase DNS label. Written `namespace/name` (e.g. `shop/web`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    namespace: String,
    name: String,
}

impl ServiceKey {
    /// A key from its two parts, each checked to be a DNS label.
    pub fn new(namespace: &str, name: &str) -> Result<Self, NameError> {
        validate_label("namespace", namespace)?;
        validate_label("service name", name)?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The namespace (`shop` in `shop/web`).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The service name (`web` in `shop/web`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for ServiceKey {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        match s.split_once('/') {
            Some((ns, name)) => Self::new(ns, name),
            None => Err(NameError::NotALabel {
                kind: "service key (namespace/name)",
                value: truncated(s),
            }),
        }
    }
}

impl Serialize for ServiceKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ServiceKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

// === PolicyName ===

/// The name of an access policy: a lowercase DNS label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyName(String);

impl PolicyName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PolicyName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        validate_label("policy name", s)?;
        Ok(Self(s.to_owned()))
    }
}

impl Serialize for PolicyName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PolicyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

// === Protocol ===

/// What a service port speaks. The tunnel carries bytes either way; the protocol
/// guides how the importing side presents the port (e.g. `appProtocol` on Kubernetes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Plain TCP bytes.
    Tcp,
    /// HTTP/1.1.
    Http,
    /// HTTP/2 (cleartext or over the application's own TLS).
    Http2,
    /// gRPC.
    Grpc,
    /// TLS that the application terminates itself.
    Tls,
}

impl Protocol {
    /// The lowercase name used in configuration and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
            Protocol::Tls => "tls",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = CommandError;
    fn from_str(s: &str) -> Result<Self, CommandError> {
        Ok(match s {
            "tcp" => Protocol::Tcp,
            "http" => Protocol::Http,
            "http2" => Protocol::Http2,
            "grpc" => Protocol::Grpc,
            "tls" => Protocol::Tls,
            _ => {
                return Err(CommandError::invalid(
                    "protocol",
                    format!(
                        "{:?} is not one of tcp, http, http2, grpc, tls",
                        truncated(s)
                    ),
                ));
            }
        })
    }
}

// === Records ===

/// One port of an exported service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServicePort {
    /// The port's name (a DNS label, unique within the export); SRV records use it.
    pub name: String,
    /// What the port speaks.
    pub protocol: Protocol,
    /// The port number, 1-65535.
    pub port: u16,
}

/// A service one cluster offers to the federation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    /// The exporting cluster.
    pub cluster: ClusterName,
    /// The service's namespace and name.
    pub service: ServiceKey,
    /// Its ports: at least one, names and numbers unique.
    pub ports: Vec<ServicePort>,
    /// How many ready endpoints the exporting cluster has (0 means none are ready).
    pub endpoints: u32,
    /// Free-form labels, e.g. for policy selection.
    pub labels: BTreeMap<String, String>,
    /// Relative share of traffic among equally near clusters (0 drains it).
    pub weight: u32,
}

/// A cluster that is part of the federation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// The cluster's name.
    pub name: ClusterName,
    /// Where its gateway's tunnel listens, as `host:port` (one or more).
    pub gateway_addrs: Vec<String>,
    /// Where its registry member listens, as `host:port`.
    pub registry_addr: String,
    /// The identity its gateway presents; its cluster must equal `name`.
    #[serde(with = "spiffe_text")]
    pub identity: SpiffeId,
    /// When it joined, in milliseconds since the Unix epoch (set by the proposer).
    pub joined_at_unix_ms: u64,
    /// SHA-256 fingerprints (lowercase hex) of the roots its gateway trusts, so
    /// every member can see whether the federation shares one bundle.
    #[serde(default)]
    pub trust_bundle: Vec<String>,
    /// SHA-256 fingerprint (64 lowercase hex) of the cluster issuer certificate that
    /// signed its gateway's leaf. The registry member that receives the registration
    /// fills it from the caller's verified chain; `causeway unlink` denies it.
    #[serde(default)]
    pub issuer_fingerprint: Option<String>,
}

/// Whether a policy lets traffic through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    /// Traffic matching the policy is allowed.
    Allow,
    /// Traffic matching the policy is denied (deny wins over allow).
    Deny,
}

impl fmt::Display for PolicyAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyAction::Allow => "allow",
            PolicyAction::Deny => "deny",
        })
    }
}

impl FromStr for PolicyAction {
    type Err = CommandError;
    fn from_str(s: &str) -> Result<Self, CommandError> {
        match s {
            "allow" => Ok(PolicyAction::Allow),
            "deny" => Ok(PolicyAction::Deny),
            _ => Err(CommandError::invalid(
                "action",
                format!("{:?} is neither allow nor deny", truncated(s)),
            )),
        }
    }
}

/// Who may reach which exported services. Stored and replicated; enforced by the
/// gateway on inbound streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessPolicy {
    /// The policy's name.
    pub name: PolicyName,
    /// Allow or deny.
    pub action: PolicyAction,
    /// Calling clusters it applies to; empty means every cluster.
    pub from_clusters: Vec<ClusterName>,
    /// Exporting cluster it applies to; `None` means any.
    pub to_cluster: Option<ClusterName>,
    /// Namespace it applies to; `None` means any.
    pub to_namespace: Option<String>,
    /// Service name it applies to; `None` means any.
    pub to_service: Option<String>,
    /// Labels the export must carry (every one must match); empty means any service.
    #[serde(default)]
    pub to_labels: BTreeMap<String, String>,
    /// Service ports it applies to; empty means every port.
    #[serde(default)]
    pub ports: Vec<u16>,
}

/// An issuer the federation no longer trusts: the cluster it served was unlinked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeniedIssuer {
    /// The cluster the issuer served.
    pub cluster: ClusterName,
    /// SHA-256 of the issuer certificate's DER, 64 lowercase hex digits.
    pub fingerprint: String,
    /// The revision it was denied at.
    pub revision: Revision,
}

// === Commands ===

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
}

impl Command {
    /// A short name of the command's kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::RegisterCluster(_) => "register_cluster",
            Command::RemoveCluster { .. } => "remove_cluster",
            Command::PutExport(_) => "put_export",
            Command::DeleteExport { .. } => "delete_export",
            Command::ReplaceClusterExports { .. } => "replace_cluster_exports",
            Command::PutPolicy(_) => "put_policy",
            Command::DeletePolicy { .. } => "delete_policy",
            Command::SetDefaultAccess(_) => "set_default_access",
            Command::DenyIssuer { .. } => "deny_issuer",
            Command::PutTrafficPolicy(_) => "put_traffic_policy",
            Command::DeleteTrafficPolicy { .. } => "delete_traffic_policy",
        }
    }

    /// Checks everything about the command that does not depend on the catalog's
    /// state: names, sizes, limits, uniqueness within the command.
    pub fn validate(&self, limits: &Limits) -> Result<(), CommandError> {
        match self {
            Command::RegisterCluster(record) => validate_cluster(record, limits),
            Command::RemoveCluster { .. }
            | Command::DeleteExport { .. }
            | Command::DeletePolicy { .. }
            | Command::DeleteTrafficPolicy { .. }
            | Command::SetDefaultAccess(_) => Ok(()),
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
            Command::PutPolicy(policy) => validate_policy(policy, limits),
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
        .map_err(|reason| CommandError::invalid("cluster.registry_addr", reason))
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

/// At most 64 characters of hostile text, so an error message stays small.
fn truncated(text: &str) -> String {
    let mut out: String = text.chars().take(64).collect();
    if out.len() < text.len() {
        out.push_str("...");
    }
    out
}

fn validate_policy(policy: &AccessPolicy, limits: &Limits) -> Result<(), CommandError> {
    validate_labels(&policy.to_labels, limits, "policy.to_labels")?;
    if policy.ports.len() > limits.max_ports {
        return Err(CommandError::invalid(
            "policy.ports",
            format!("{} ports; at most {}", policy.ports.len(), limits.max_ports),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, port) in policy.ports.iter().enumerate() {
        if *port == 0 {
            return Err(CommandError::invalid(
                format!("policy.ports[{i}]"),
                "0 is not a port; use 1-65535",
            ));
        }
        if !seen.insert(*port) {
            return Err(CommandError::invalid(
                format!("policy.ports[{i}]"),
                format!("{port} is listed twice"),
            ));
        }
    }
    if policy.from_clusters.len() > limits.max_policy_sources {
        return Err(CommandError::invalid(
            "policy.from_clusters",
            format!(
                "{} clusters; at most {}",
                policy.from_clusters.len(),
                limits.max_policy_sources
            ),
        ));
    }
    if let Some(ns) = &policy.to_namespace {
        validate_label("namespace", ns)
            .map_err(|e| CommandError::invalid("policy.to_namespace", e.to_string()))?;
    }
    if let Some(name) = &policy.to_service {
        validate_label("service name", name)
            .map_err(|e| CommandError::invalid("policy.to_service", e.to_string()))?;
    }
    Ok(())
}

/// Why a command was refused. Nothing in the catalog changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CommandError {
    /// A field is malformed or out of bounds.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, as a path such as `exports[3].ports[0].port`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The command refers to something the catalog does not hold.
    #[error("{what} does not exist")]
    NotFound {
        /// What was missing, e.g. `cluster west`.
        what: String,
    },
    /// Applying the command would exceed a catalog-wide limit.
    #[error("limit reached: {0}")]
    LimitReached(String),
}

impl CommandError {
    /// An [`CommandError::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CommandError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

// === Events ===

/// One key's change within an applied command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A cluster was added or its record replaced.
    ClusterPut(ClusterRecord),
    /// A cluster was removed (its exports and traffic policies are removed by
    /// separate `ExportDeleted`s and `TrafficPolicyDeleted`s).
    ClusterDeleted {
        /// The removed cluster.
        cluster: ClusterName,
    },
    /// An export was added or replaced.
    ExportPut(Export),
    /// An export was removed.
    ExportDeleted {
        /// The exporting cluster.
        cluster: ClusterName,
        /// The service.
        service: ServiceKey,
    },
    /// A policy was added or replaced.
    PolicyPut(AccessPolicy),
    /// A policy was removed.
    PolicyDeleted {
        /// The removed policy.
        name: PolicyName,
    },
    /// The federation's default access (for traffic no policy matches) was set.
    DefaultAccessSet {
        /// The new default.
        action: PolicyAction,
    },
    /// An issuer was denied (its cluster, if registered, is removed by the
    /// `ExportDeleted`s and `ClusterDeleted` of the same change set).
    IssuerDenied(DeniedIssuer),
    /// A traffic policy record was added or replaced.
    TrafficPolicyPut(TrafficPolicyRecord),
    /// A traffic policy record was removed (deleted, or its owner left).
    TrafficPolicyDeleted {
        /// The cluster that declared it.
        owner: ClusterName,
        /// The service it governed.
        service: ServiceKey,
    },
}

/// Everything one applied command changed, at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogChange {
    /// The revision the command produced (the previous revision plus one).
    pub revision: Revision,
    /// The key changes, in the order they were made; may be empty for a command that
    /// changed nothing visible (e.g. replacing a cluster's exports with the same set).
    pub changes: Vec<Change>,
}

/// What a watch stream delivers.
///
/// A stream yields either changes in strictly increasing, gap-free revision order, or,
/// when the requested revision is no longer retained, a [`CatalogEvent::Snapshot`] of
/// the whole catalog first (the consumer replaces its copy) and then changes after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CatalogEvent {
    /// The whole catalog at `snapshot.revision`.
    Snapshot(CatalogSnapshot),
    /// One applied command's changes.
    Change(CatalogChange),
}

impl CatalogEvent {
    /// The revision the consumer is at after applying this event.
    pub fn revision(&self) -> Revision {
        match self {
            CatalogEvent::Snapshot(s) => s.revision,
            CatalogEvent::Change(c) => c.revision,
        }
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

/// Serializes a [`SpiffeId`] as its `spiffe://` text.
mod spiffe_text {
    use causeway_trust::SpiffeId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(id: &SpiffeId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SpiffeId, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
