//! The service catalog every gateway agrees on.
//!
//! Owns the catalog's state machine, the Raft node that replicates it (crate `raft`),
//! its durable storage (`redb`) and the gRPC service and client (`tonic`). Commands
//! enter through `Propose`; changes leave through `Watch` streams in revision order.
//! It knows nothing of DNS, listeners or Kubernetes.

pub mod catalog;
mod client;
pub mod node;
mod server;
pub mod storage;
pub mod transport;
pub mod wire;

pub use catalog::{
    AddressSlots, Catalog, CatalogChange, CatalogEvent, CatalogSnapshot, Change, ClusterRecord,
    Command, CommandError, DeniedIssuer, Export, Limits, Protocol, ReplicaRecord, Revision,
    RuntimeExport, ServiceKey, ServicePort, TrafficPolicyRecord, Versioned,
};
pub use client::{ClientError, GetKey, ReadConsistency, RegistryClient};
pub use node::{
    CatalogWatch, MemberIds, MemberStatus, Node, NodeConfig, NodeError, NodeStatus, member_id,
};
pub use server::{MAX_API_MESSAGE_BYTES, MAX_RAFT_MESSAGE_BYTES, RegistryServer, StartError};
pub use transport::{NetworkSwitch, TlsConfigs};
