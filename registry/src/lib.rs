//! The service catalog every gateway agrees on.
//!
//! Owns the catalog's state machine, the Raft node that replicates it (crate `raft`),
//! its durable storage (`redb`) and the gRPC service and client (`tonic`). Commands
//! enter through `Propose`; changes leave through `Watch` streams in revision order.
//! It knows nothing of DNS, listeners or Kubernetes.

pub mod catalog;

pub use catalog::{
    AccessPolicy, Catalog, CatalogChange, CatalogEvent, CatalogSnapshot, Change, ClusterRecord,
    Command, CommandError, Export, Limits, PolicyAction, PolicyName, Protocol, Revision,
    ServiceKey, ServicePort, Versioned,
};
