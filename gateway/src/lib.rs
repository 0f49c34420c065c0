//! The Causeway gateway: the daemon and the `causeway` command line.
//!
//! Composes the daemon from the other crates and owns what binds them to a place:
//! the export sources (config file, Kubernetes `ServiceExport`), the Kubernetes
//! adapters, admin HTTP and metrics, and the CLI that drives them. Identity comes
//! from `causeway-trust`, policies from `causeway-policy`, the data plane from
//! `causeway-tunnel`, the catalog from `causeway-registry`, imports and DNS from
//! `causeway-mirror`.

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod dns_probe;
pub mod federation;
mod kubernetes;
mod listener_ports;
pub mod status;
pub mod telemetry;
