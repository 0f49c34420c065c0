//! Identity for a Causeway federation.
//!
//! Owns trust anchors (root CAs and the bundle of roots that verify), per-cluster
//! issuers (intermediate CAs), SPIFFE identities, leaf issuance and background
//! renewal, and the rustls configurations that make every connection mutual TLS 1.3
//! with a verified peer identity. It opens no sockets: callers (the QUIC tunnel, the
//! registry's gRPC) hand its configs to their transports. Key material enters from PEM
//! files or is generated here; it leaves only as rustls configs and files the operator
//! asked for.

mod authority;
mod cert;
mod denylist;
mod files;
mod identity;
mod inspect;
mod name;
mod verify;

pub use authority::{
    ClusterIssuer, ISSUER_VALIDITY, LEAF_LIFETIME, Leaf, ROOT_VALIDITY, RootCa, Rotation,
    TrustBundle, TrustError, ca_files, issuer_files,
};
pub use cert::{CertInfo, CertParseError};
pub use denylist::{BadFingerprint, IssuerDenylist, IssuerFingerprint};
pub use files::{FileError, certs_to_pem, read_certs};
pub use identity::{CurrentLeaf, GatewayIdentity};
pub use inspect::{CertificateReport, Verification, inspect_file};
pub use name::{
    AuthorityId, ClusterName, NameError, ReplicaName, Role, SpiffeId, TrustDomain, validate_label,
};
pub use verify::{PeerRejected, SpiffeVerifier, peer_identity, rejection_of, verify_chain};

/// The ALPN protocol of the gateway tunnel.
pub const ALPN_TUNNEL: &[u8] = b"causeway/1";
/// The ALPN protocol of the registry's gRPC (HTTP/2).
pub const ALPN_REGISTRY: &[u8] = b"h2";
