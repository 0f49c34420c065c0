//! From the shared catalog to the local world.
//!
//! Owns the import table (which remote services this cluster sees), address
//! allocation for imports, and the DNS authority for `clusterset.local`. Catalog
//! changes enter from the registry's watch stream; imports leave as DNS answers and
//! as listener start/stop calls on an interface the gateway implements
//! ([`import::ImportSink`]). It opens no connection to other clusters and does not
//! touch the catalog.
//!
//! - [`import`]: the import table, fed by catalog changes or snapshots (sans-IO);
//! - [`alloc`]: standalone addresses from a pool, stable across restarts;
//! - [`dns`]: the zone table, its builder and the UDP/TCP server;
//! - [`mirror`]: ties them together and follows a watch stream.

pub mod alloc;
mod config;
pub mod dns;
pub mod import;
pub mod mirror;

pub use alloc::{AddressAllocator, AddressConfig, AddressOwner};
pub use config::ConfigError;
pub use import::{Import, ImportSink, ImportTable, ImportedCluster, PortConflict};
pub use mirror::{Mirror, MirrorConfig, MirrorError};
