//! The gateway's Kubernetes controllers: `ServiceExport`s become publications in the
//! federation, imports become local Services and `ServiceImport`s, `ClusterLink`s
//! become registry memberships with their health in `status`, and `AccessPolicy` and
//! `TrafficPolicy` objects become what the gateway enforces.
//!
//! The controllers reach the rest of Causeway only through the traits here:
//! [`ExportSink`] (publish and withdraw exports), [`LinkDriver`] (join, probe and
//! leave a peer) and [`PolicySink`] (take the complete set of one policy kind), and
//! through plain [`ImportView`]s handed to the import mirror. The gateway implements
//! the traits and spawns [`exports::run`], [`links::run`] and [`policies::run`] when
//! it finds a kubeconfig or an in-cluster config; this crate never depends on it.
//!
//! Data enters as watch events from the API server and as the gateway's answers to
//! the trait calls, and leaves as API requests: finalizer patches, status patches and
//! the mirrored objects.

mod backoff;
mod conditions;
pub mod exports;
mod gate;
pub mod imports;
pub mod links;
pub mod policies;
mod slices;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kube::Resource;
use kube::runtime::reflector::Store;

use crate::resources::Protocol;

pub use exports::ExportContext;
pub use imports::{GatewayBackend, ImportOutcome, ImportPort, ImportView, MirrorConfig, Mirrored};
pub use links::LinkContext;
pub use policies::{PolicyContext, PolicyObject, PolicyResource, PolicySink, Refusal};

// === Exports ===

/// One port of an exported Service, as its `spec.ports` entry names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPort {
    /// The port's name; `None` for a Service with a single unnamed port.
    pub name: Option<String>,
    /// The Service port number.
    pub port: u16,
    /// The transport protocol.
    pub protocol: Protocol,
}

/// What this cluster exports under one name: the input of [`ExportSink::publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSpec {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's (and the `ServiceExport`'s) name.
    pub name: String,
    /// The Service's ports.
    pub ports: Vec<ExportPort>,
    /// Endpoints of the Service that are ready to take traffic (`conditions.ready`
    /// not false), across all its EndpointSlices.
    pub ready_endpoints: u32,
    /// The Service's labels.
    pub labels: BTreeMap<String, String>,
    /// The Service's cluster IP, which the exporting gateway forwards streams to
    /// (kube-proxy then balances over the ready endpoints); `None` for a headless
    /// Service.
    pub cluster_ip: Option<std::net::IpAddr>,
}

/// A port another cluster exports differently under the same name; the federation
/// keeps that cluster's definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConflict {
    /// The port number in dispute.
    pub port: u16,
    /// The cluster whose definition of the port wins.
    pub winner: String,
    /// The protocol the winning definition uses.
    pub protocol: Protocol,
}

impl fmt::Display for PortConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "port {} is exported by cluster {} as {}, whose definition wins",
            self.port,
            self.winner,
            protocol_name(self.protocol)
        )
    }
}

/// What the federation made of a publication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOutcome {
    /// The publication is committed to the federation's registry.
    pub committed: bool,
    /// Ports on which another cluster's export of the same name wins.
    pub conflicts: Vec<PortConflict>,
}

/// Where the export controller publishes: the gateway's registry client.
///
/// Both calls must be idempotent: the controller repeats them on every
/// reconciliation, after restarts, and after failures.
pub trait ExportSink: Send + Sync + 'static {
    /// Why a call failed; the controller retries with backoff.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Publishes (or republishes) this cluster's export of `spec.namespace/spec.name`.
    fn publish(
        &self,
        spec: ExportSpec,
    ) -> impl Future<Output = Result<PublishOutcome, Self::Error>> + Send;

    /// Withdraws this cluster's export of `namespace/name`; succeeds when there is
    /// none.
    fn withdraw(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

// === Links ===

/// The result of one check of a link: passed, or failed with a reason for machines
/// (`CamelCase`, as in a condition) and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The check passed.
    Passed,
    /// The check failed.
    Failed {
        /// Why, as a condition reason: `CamelCase`, no spaces.
        reason: String,
        /// What happened, for a person.
        message: String,
    },
}

impl Verdict {
    /// A failed check.
    pub fn failed(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Failed {
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Whether the check passed.
    pub fn passed(&self) -> bool {
        matches!(self, Self::Passed)
    }
}

/// What a probe of a peer found.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkReport {
    /// This gateway is a member of the peer's federation registry.
    pub joined: Verdict,
    /// The peer's tunnel answers.
    pub reachable: Verdict,
    /// The peer's certificate chains to the trust bundle and names the expected
    /// identity.
    pub trust_verified: Verdict,
    /// The probe's round-trip time, when the tunnel answered.
    pub rtt_millis: Option<f64>,
    /// Services of the federation imported through this peer.
    pub imported_services: u32,
}

/// How the link controller acts on the federation: the gateway's membership and
/// tunnel layers.
///
/// [`LinkDriver::join`] and [`LinkDriver::unlink`] must be idempotent: the controller
/// calls `join` on every reconciliation.
pub trait LinkDriver: Send + Sync + 'static {
    /// Why a call failed; the controller retries with backoff.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Joins the federation through the peer's registry, trying `registry`
    /// (`host:port`) in order; succeeds at once when already a member.
    fn join(
        &self,
        peer: &str,
        registry: &[String],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Probes the peer's tunnel and reports the link's state.
    fn probe(&self, peer: &str) -> impl Future<Output = Result<LinkReport, Self::Error>> + Send;

    /// Stops dialling the peer and forgets the link.
    fn unlink(&self, peer: &str) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Drives a controller's `running` future until it ends, which it does after
/// `shutdown` completes and in-flight reconciliations finish.
///
/// One case is cut short: a shutdown before the controller's first list has
/// completed. Nothing is reconciling then, yet kube-runtime's graceful path waits for
/// the store to be ready, which it no longer will be (the watch stream is no longer
/// polled), so `running` would never end; it is dropped instead.
pub(crate) async fn until_shutdown<K>(
    running: impl Future<Output = ()>,
    store: Store<K>,
    shutdown: Shared<BoxFuture<'static, ()>>,
) where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let abandon = async move {
        shutdown.await;
        if store.wait_until_ready().now_or_never().is_none() {
            tracing::debug!("shut down before the first list completed");
            return;
        }
        futures::future::pending::<()>().await;
    };
    futures::future::select(std::pin::pin!(running), std::pin::pin!(abandon)).await;
}

/// The protocol's name as a Service spells it.
pub(crate) fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    }
}
