//! The Causeway gateway: the daemon and the `causeway` command line.
//!
//! Owns the QUIC tunnel that carries east-west traffic, the export sources (config
//! file, Kubernetes `ServiceExport`), the `ClusterLink` controller, admin HTTP and
//! metrics, and the CLI that drives them. Identity comes from `causeway-trust`, the
//! catalog from `causeway-registry`, imports and DNS from `causeway-mirror`.

pub mod admin;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod dns_probe;
pub mod federation;
mod kubernetes;
pub mod policy;
pub mod status;
pub mod telemetry;
pub mod tunnel;
