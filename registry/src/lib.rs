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
    AccessPolicy, Catalog, CatalogChange, CatalogEvent, CatalogSnapshot, Change, ClusterRecord,
    Command, CommandError, ConnectionLimits, DeniedIssuer, Export, FaultPolicy, Limits,
    MAX_ATTEMPTS, MAX_CONNECTION_LIMIT, MAX_EJECTION_TIME, MAX_FAULT_DELAY, MAX_WEIGHT,
    MAX_WEIGHTED_CLUSTERS, OutlierPolicy, PolicyAction, PolicyName, Protocol, RetryPolicy,
    Revision, RoutingMode, ServiceKey, ServicePort, TrafficPolicy, TrafficPolicyProblem,
    TrafficPolicyRecord, TrafficScope, Versioned,
};
pub use client::{ClientError, GetKey, ReadConsistency, RegistryClient};
pub use node::{
    CatalogWatch, MemberIds, MemberStatus, Node, NodeConfig, NodeError, NodeStatus, member_id,
};
pub use server::{MAX_API_MESSAGE_BYTES, MAX_RAFT_MESSAGE_BYTES, RegistryServer, StartError};
pub use transport::{NetworkSwitch, TlsConfigs};
