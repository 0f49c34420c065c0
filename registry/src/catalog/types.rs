//! Names and records: what the catalog holds.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use causeway_trust::{ClusterName, NameError, ReplicaName, SpiffeId, validate_label};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{CommandError, truncated};

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
    /// Where this export's import addresses sit in every importing cluster's address
    /// pools. The catalog sets them when it applies the export (a proposer's are
    /// ignored), so every replica of every cluster derives the same addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<AddressSlots>,
}

impl Export {
    /// Whether `self` and `other` say the same, leaving aside the slots the catalog
    /// gave them.
    pub fn same_content(&self, other: &Export) -> bool {
        let bare = |e: &Export| Export {
            slots: None,
            ..e.clone()
        };
        bare(self) == bare(other)
    }
}

/// An export's places in the import address pools: offsets into each pool, the same
/// in every cluster. One slot belongs to the service (its `<svc>.<ns>.svc` name, shared
/// by every exporting cluster), one to this cluster's pinned name
/// (`<cluster>.<svc>.<ns>.svc`). The catalog hands out the lowest free slot and takes
/// it back when the last export using it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AddressSlots {
    /// The service's slot, shared by all its exports.
    pub service: u32,
    /// This export's own slot, for its pinned name.
    pub pinned: u32,
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
    /// The live replicas of its gateway, ordered by name. The registry keeps this
    /// list: each registration puts its sender's replica (named by its identity, at
    /// its addresses above) and `RemoveReplica` takes one off; a registration's own
    /// list must be empty. Empty in records of a registry from before replicas: the
    /// one gateway is at the addresses above.
    #[serde(default)]
    pub replicas: Vec<ReplicaRecord>,
    /// The registering replica's import address pools (CIDR blocks, at most one
    /// IPv4 and one IPv6; empty on Kubernetes, where Services give the addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub import_pools: Vec<String>,
    /// The cluster's runtime exports, ordered by service. `None` until the first is
    /// put or deleted: a replica that finds `None` puts those it kept from before
    /// (runtime exports were once a replica's). A registration carries `None`, and
    /// the registry keeps the stored list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_exports: Option<Vec<RuntimeExport>>,
}

/// An export an operator made at run time (`causeway export`) through any replica
/// of its cluster. It is the cluster's: kept in the cluster's record, served and
/// published by every replica, and removed by `causeway unexport` through any
/// replica, or with the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeExport {
    /// What is published; its slots are ignored.
    pub export: Export,
    /// The endpoints' IP addresses, where every replica sends its streams.
    pub endpoints: Vec<String>,
    /// The endpoints' port for each of `export.ports`, in the same order.
    pub target_ports: Vec<u16>,
}

impl ClusterRecord {
    /// The replica a registration speaks for: the one its identity names, at the
    /// record's addresses.
    pub fn registering_replica(&self) -> ReplicaRecord {
        ReplicaRecord {
            name: self.identity.replica.clone(),
            gateway_addrs: self.gateway_addrs.clone(),
            registry_addr: self.registry_addr.clone(),
            joined_at_unix_ms: self.joined_at_unix_ms,
            import_pools: self.import_pools.clone(),
        }
    }
}

/// One replica of a cluster's gateway, as its cluster's record lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    /// Its name; `None` for a cluster's single unnamed gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<ReplicaName>,
    /// Where its tunnel listens, as `host:port` (one or more).
    pub gateway_addrs: Vec<String>,
    /// Where its registry member listens, as `host:port`.
    pub registry_addr: String,
    /// When it registered, in milliseconds since the Unix epoch.
    pub joined_at_unix_ms: u64,
    /// Its import address pools: replicas with the same pools, at one catalog
    /// revision, give imports the same addresses (`causeway check` compares them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub import_pools: Vec<String>,
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
