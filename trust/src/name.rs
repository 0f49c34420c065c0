//! Validated names: trust domains, cluster names and SPIFFE identities.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest DNS label (RFC 1035 §2.3.4); a cluster name is one label.
const MAX_LABEL_LEN: usize = 63;
/// Longest DNS name (RFC 1035 §2.3.4); a trust domain is a DNS name.
const MAX_DOMAIN_LEN: usize = 253;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("{kind} is empty")]
    Empty {
        /// What kind of name it was.
        kind: &'static str,
    },
    /// The name is longer than its limit.
    #[error("{kind} {value:?} is {len} characters long; at most {max} are allowed")]
    TooLong {
        /// What kind of name it was.
        kind: &'static str,
        /// The offending value.
        value: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name is not a lowercase DNS label (RFC 1123).
    #[error(
        "{kind} {value:?} is not a DNS label: use lowercase letters, digits and '-', starting and ending with a letter or digit"
    )]
    NotALabel {
        /// What kind of name it was.
        kind: &'static str,
        /// The offending value.
        value: String,
    },
    /// The text is not a SPIFFE ID of the form Causeway uses.
    #[error("{value:?} is not a Causeway SPIFFE ID: {reason}")]
    BadSpiffeId {
        /// The offending value.
        value: String,
        /// What was wrong with it.
        reason: &'static str,
    },
}

/// Most characters of a refused name an error repeats: enough to recognise it, and
/// hostile input of any length still gives a short message.
const MAX_SHOWN_CHARS: usize = 80;

/// `value`, cut to [`MAX_SHOWN_CHARS`] characters (marked with `...`).
fn shown(value: &str) -> String {
    let mut out: String = value.chars().take(MAX_SHOWN_CHARS).collect();
    if out.len() < value.len() {
        out.push_str("...");
    }
    out
}

/// Checks that `value` is one lowercase RFC 1123 DNS label.
pub fn validate_label(kind: &'static str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if value.len() > MAX_LABEL_LEN {
        return Err(NameError::TooLong {
            kind,
            value: shown(value),
            len: value.len(),
            max: MAX_LABEL_LEN,
        });
    }
    let bytes = value.as_bytes();
    let inner_ok = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    let ends_ok =
        bytes[0].is_ascii_alphanumeric() && bytes[bytes.len() - 1].is_ascii_alphanumeric();
    if !(inner_ok && ends_ok) {
        return Err(NameError::NotALabel {
            kind,
            value: shown(value),
        });
    }
    Ok(())
}

macro_rules! string_newtype_impls {
    ($ty:ident) => {
        impl $ty {
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, NameError> {
                value.parse()
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = NameError;
            fn try_from(value: &str) -> Result<Self, NameError> {
                value.parse()
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// The name of one cluster in a federation: a lowercase DNS label such as `west`.
///
/// It appears in SPIFFE IDs, DNS names (`west.web.shop.svc.clusterset.local`), metric
/// labels and logs, so it is validated once, here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterName(String);

impl FromStr for ClusterName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        validate_label("cluster name", s)?;
        Ok(Self(s.to_owned()))
    }
}

string_newtype_impls!(ClusterName);

/// The name of one gateway replica within its cluster: a lowercase DNS label such as
/// `a` or a Kubernetes pod name (`causeway-gateway-7d9f8-x2kqz`).
///
/// It appears in the replica's SPIFFE ID, its registry member id, status rows, metric
/// labels and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplicaName(String);

impl FromStr for ReplicaName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        validate_label("replica name", s)?;
        Ok(Self(s.to_owned()))
    }
}

string_newtype_impls!(ReplicaName);

/// A SPIFFE trust domain: a lowercase DNS name such as `causeway.local`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// The trust domain a new federation gets unless told otherwise.
    pub const DEFAULT: &'static str = "causeway.local";
}

impl Default for TrustDomain {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl FromStr for TrustDomain {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        const KIND: &str = "trust domain";
        if s.is_empty() {
            return Err(NameError::Empty { kind: KIND });
        }
        if s.len() > MAX_DOMAIN_LEN {
            return Err(NameError::TooLong {
                kind: KIND,
                value: shown(s),
                len: s.len(),
                max: MAX_DOMAIN_LEN,
            });
        }
        for label in s.split('.') {
            validate_label(KIND, label).map_err(|_| NameError::NotALabel {
                kind: KIND,
                value: shown(s),
            })?;
        }
        Ok(Self(s.to_owned()))
    }
}

string_newtype_impls!(TrustDomain);

/// What a workload is within its cluster; part of its SPIFFE ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A Causeway gateway: `spiffe://<domain>/cluster/<cluster>/gateway`.
    Gateway,
    /// An operator's client (the CLI): `spiffe://<domain>/cluster/<cluster>/admin`.
    Admin,
}

impl Role {
    /// The path segment that names this role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity of one workload, as carried in a certificate's URI SAN:
/// `spiffe://<trust-domain>/cluster/<cluster>/<role>`, and for one replica of a
/// cluster's replicated gateway `spiffe://<trust-domain>/cluster/<cluster>/gateway/<replica>`.
///
/// An issuer (intermediate CA) carries the cluster form without a role,
/// `spiffe://<trust-domain>/cluster/<cluster>`, and a root carries the bare
/// `spiffe://<trust-domain>`; those are [`AuthorityId`]s.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    /// The federation's trust domain.
    pub trust_domain: TrustDomain,
    /// The cluster the workload belongs to.
    pub cluster: ClusterName,
    /// What the workload is.
    pub role: Role,
    /// Which replica of the cluster's gateway it is; `None` for a cluster that runs
    /// one unnamed gateway, and always `None` for an admin.
    pub replica: Option<ReplicaName>,
}

impl SpiffeId {
    /// The identity of `cluster`'s (single, unnamed) gateway.
    pub fn gateway(trust_domain: TrustDomain, cluster: ClusterName) -> Self {
        Self::of(trust_domain, cluster, Role::Gateway)
    }

    /// The identity of `role` in `cluster`, with no replica name.
    pub fn of(trust_domain: TrustDomain, cluster: ClusterName, role: Role) -> Self {
        Self {
            trust_domain,
            cluster,
            role,
            replica: None,
        }
    }

    /// This identity naming `replica` (a gateway's only).
    pub fn with_replica(mut self, replica: Option<ReplicaName>) -> Self {
        self.replica = replica;
        self
    }

    /// The replica's name as shown to people: its name, or `-` for an unnamed one.
    pub fn replica_label(&self) -> &str {
        self.replica.as_ref().map_or("-", |r| r.as_str())
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/cluster/{}/{}",
            self.trust_domain, self.cluster, self.role
        )?;
        match &self.replica {
            Some(replica) => write!(f, "/{replica}"),
            None => Ok(()),
        }
    }
}

impl FromStr for SpiffeId {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        match AuthorityId::from_str(s)? {
            AuthorityId::Workload(id) => Ok(id),
            _ => Err(NameError::BadSpiffeId {
                value: shown(s),
                reason: "expected spiffe://<domain>/cluster/<cluster>/<role>[/<replica>]",
            }),
        }
    }
}

/// Any SPIFFE ID Causeway puts in a certificate: a root's, an issuer's or a workload's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuthorityId {
    /// `spiffe://<domain>`: a federation root.
    Root(TrustDomain),
    /// `spiffe://<domain>/cluster/<cluster>`: one cluster's issuer.
    Issuer(TrustDomain, ClusterName),
    /// `spiffe://<domain>/cluster/<cluster>/<role>`: a workload.
    Workload(SpiffeId),
}

impl AuthorityId {
    /// The trust domain in the ID.
    pub fn trust_domain(&self) -> &TrustDomain {
        match self {
            AuthorityId::Root(d) | AuthorityId::Issuer(d, _) => d,
            AuthorityId::Workload(id) => &id.trust_domain,
        }
    }
}

impl fmt::Display for AuthorityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthorityId::Root(d) => write!(f, "spiffe://{d}"),
            AuthorityId::Issuer(d, c) => write!(f, "spiffe://{d}/cluster/{c}"),
            AuthorityId::Workload(id) => id.fmt(f),
        }
    }
}

impl FromStr for AuthorityId {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let bad = |reason| NameError::BadSpiffeId {
            value: shown(s),
            reason,
        };
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| bad("it does not start with spiffe://"))?;
        let mut parts = rest.split('/');
        let domain: TrustDomain = parts
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|_| bad("the trust domain is not a lowercase DNS name"))?;
        let segments: Vec<&str> = parts.collect();
        match segments.as_slice() {
            [] => Ok(AuthorityId::Root(domain)),
            ["cluster", cluster] => Ok(AuthorityId::Issuer(
                domain,
                cluster
                    .parse()
                    .map_err(|_| bad("the cluster is not a DNS label"))?,
            )),
            ["cluster", cluster, role, rest @ ..] if rest.len() <= 1 => {
                let cluster = cluster
                    .parse()
                    .map_err(|_| bad("the cluster is not a DNS label"))?;
                let role = match *role {
                    "gateway" => Role::Gateway,
                    "admin" => Role::Admin,
                    _ => return Err(bad("the role is neither 'gateway' nor 'admin'")),
                };
                let replica = match rest {
                    [] => None,
                    [_] if role != Role::Gateway => {
                        return Err(bad("only a gateway's ID names a replica"));
                    }
                    [name] => Some(
                        name.parse()
                            .map_err(|_| bad("the replica is not a DNS label"))?,
                    ),
                    _ => unreachable!("at most one segment after the role"),
                };
                Ok(AuthorityId::Workload(SpiffeId {
                    trust_domain: domain,
                    cluster,
                    role,
                    replica,
                }))
            }
            _ => Err(bad(
                "the path is not /cluster/<cluster>[/<role>[/<replica>]]",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cluster_names_are_dns_labels() {
        assert!("west".parse::<ClusterName>().is_ok());
        assert!("us-east-1".parse::<ClusterName>().is_ok());
        for bad in ["", "West", "-a", "a-", "a.b", "a_b", &"x".repeat(64)] {
            assert!(bad.parse::<ClusterName>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn spiffe_ids_round_trip() {
        let id: SpiffeId = "spiffe://causeway.local/cluster/west/gateway"
            .parse()
            .unwrap();
        assert_eq!(id.cluster.as_str(), "west");
        assert_eq!(id.role, Role::Gateway);
        assert_eq!(
            id.to_string(),
            "spiffe://causeway.local/cluster/west/gateway"
        );
        assert_eq!(
            "spiffe://causeway.local/cluster/west"
                .parse::<AuthorityId>()
                .unwrap(),
            AuthorityId::Issuer("causeway.local".parse().unwrap(), "west".parse().unwrap())
        );
        for bad in [
            "https://causeway.local/cluster/west/gateway",
            "spiffe://causeway.local/cluster/West/gateway",
            "spiffe://causeway.local/cluster/west/root",
            "spiffe://causeway.local/cluster/west/admin/a",
            "spiffe://causeway.local/cluster/west/gateway/A",
            "spiffe://causeway.local/cluster/west/gateway/a/b",
            "spiffe://causeway.local/cluster/west/gateway/",
            "spiffe://causeway.local/ns/west/gateway",
            "spiffe:///cluster/west/gateway",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_replica_is_named_after_the_gateway_role() {
        let id: SpiffeId = "spiffe://causeway.local/cluster/west/gateway/b"
            .parse()
            .unwrap();
        assert_eq!(id.replica.as_ref().map(|r| r.as_str()), Some("b"));
        assert_eq!(id.role, Role::Gateway);
        assert_eq!(
            id.to_string(),
            "spiffe://causeway.local/cluster/west/gateway/b"
        );
        assert_eq!(id.replica_label(), "b");
        let plain = SpiffeId::gateway(TrustDomain::default(), "west".parse().unwrap());
        assert_eq!(plain.replica_label(), "-");
        assert_eq!(plain.with_replica(Some("b".parse().unwrap())), id);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in ".{0,300}") {
            let _ = s.parse::<AuthorityId>();
            let _ = s.parse::<ClusterName>();
            let _ = s.parse::<ReplicaName>();
            let _ = s.parse::<TrustDomain>();
        }
    }
}
