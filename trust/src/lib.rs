//! Identity for a Causeway federation.
//!
//! Owns trust anchors (root CAs and the bundle of roots that verify), per-cluster
//! issuers (intermediate CAs), SPIFFE identities, leaf issuance and background
//! renewal, and the rustls configurations that make every connection mutual TLS 1.3
//! with a verified peer identity. It opens no sockets: callers (the QUIC tunnel, the
//! registry's gRPC) hand its configs to their transports. Key material enters from PEM
//! files or is generated here; it leaves only as rustls configs and files the operator
//! asked for.

mod name;

pub use name::{AuthorityId, ClusterName, NameError, Role, SpiffeId, TrustDomain, validate_label};
