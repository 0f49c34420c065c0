//! The catalog's data: names, records, commands and the events a watch delivers.
//!
//! These types are the registry's public vocabulary. They are plain values with
//! serde support so that consumers (the mirror's import table, the gateway's export
//! sources) can store, compare and log them. Names are validated on construction and
//! on deserialization; records are validated as a whole by [`Command::validate`] before
//! a command is proposed and again when it is applied.

mod change;
mod command;
mod error;
mod event;
mod limits;
mod state;
mod traffic;
mod types;

#[cfg(test)]
mod tests;

pub use change::{CatalogChange, Change};
pub use command::Command;
pub(crate) use command::validate_host_port;
pub use error::CommandError;
pub use event::CatalogEvent;
pub use limits::Limits;
pub use state::{Catalog, CatalogSnapshot, MAX_DENIED_ISSUERS, Versioned};
pub use traffic::TrafficPolicyRecord;
pub use types::{
    AddressSlots, ClusterRecord, DeniedIssuer, Export, Protocol, ReplicaRecord, Revision,
    RuntimeExport, ServiceKey, ServicePort,
};
