//! Causeway on Kubernetes: the resource types and the install manifests.
//!
//! This crate owns the `ClusterLink` CRD and Causeway's view of the Multi-Cluster
//! Services API (`ServiceExport`, `ServiceImport`), and renders everything
//! `causeway install` applies: namespace, CRDs, RBAC, configuration, trust Secret,
//! Deployment and Services, as typed `k8s-openapi` objects serialized to YAML.
//! It also runs the controllers ([`controller`]) and the election, over a Lease, of
//! the one gateway replica that writes shared objects ([`leader`]).
//!
//! It does not run the gateway and does not depend on it: the gateway binary depends
//! on this crate for its `install` and `link` commands. Data enters as install
//! options and trust files read from disk, and leaves as YAML on stdout.

pub mod controller;
pub mod leader;
pub mod manifests;
mod names;
pub mod resources;

pub use resources::{
    ClusterLink, ClusterLinkSpec, ClusterLinkStatus, ServiceExport, ServiceImport, crds,
};
