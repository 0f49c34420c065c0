//! From the shared catalog to the local world.
//!
//! Owns the import table (which remote services this cluster sees), address
//! allocation for imports, and the DNS authority for `clusterset.local`. Catalog
//! changes enter from the registry's watch stream; imports leave as DNS answers and
//! as listener start/stop calls on an interface the gateway implements.

mod config;
pub mod dns;

pub use config::{ConfigError, ConfigProblem};
pub mod alloc;
