//! The catalog's data: names, records, commands and the events a watch delivers.
//!
//! These types are the registry's public vocabulary. They are plain values with
//! serde support so that consumers (the mirror's import table, the gateway's export
//! sources) can store, compare and log them. Names are validated on construction and
//! on deserialization; records are validated as a whole by [`Command::validate`] before
//! a command is proposed and again when it is applied.

mod limits;
mod state;
mod traffic;
mod types;

#[cfg(test)]
mod tests;

pub use limits::Limits;
pub use state::{Catalog, CatalogSnapshot, MAX_DENIED_ISSUERS, Versioned};
pub use traffic::{
    ConnectionLimits, FaultPolicy, MAX_ATTEMPTS, MAX_CONNECTION_LIMIT, MAX_EJECTION_TIME,
    MAX_FAULT_DELAY, MAX_WEIGHT, MAX_WEIGHTED_CLUSTERS, OutlierPolicy, RetryPolicy, RoutingMode,
    TrafficPolicy, TrafficPolicyProblem, TrafficPolicyRecord, TrafficScope,
};
pub(crate) use types::validate_host_port;
pub use types::{
    AccessPolicy, CatalogChange, CatalogEvent, Change, ClusterRecord, Command, CommandError,
    DeniedIssuer, Export, PolicyAction, PolicyName, Protocol, Revision, ServiceKey, ServicePort,
};
