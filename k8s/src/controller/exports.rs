//! The `ServiceExport` controller: publishes the Service a `ServiceExport` names to the
//! federation through an [`ExportSink`], and reports in the export's `status` whether
//! the Service exists (`Valid`), whether the export is live (`Ready`), and whether
//! another cluster exports the name with different ports (`Conflict`).
//!
//! Each export carries the finalizer [`FINALIZER`], so that deleting it withdraws the
//! publication before the object goes away.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::finalizer::{self, Event};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tracing::{debug, warn};

use super::backoff::{self, Backoff};
use super::conditions::{self, Wanted};
use super::gate::{self, WriteGate};
use super::slices;
use super::{ExportPort, ExportSink, ExportSpec, PublishOutcome};
use crate::leader::Leadership;
use crate::resources::{Protocol, ServiceExport, export_conditions as ec};

/// The finalizer that holds a `ServiceExport` until its publication is withdrawn.
pub const FINALIZER: &str = "causeway.dev/service-export";

/// How often a healthy export is reconciled without any change being observed:
/// Service and EndpointSlice changes trigger reconciliation at once, so this only
/// bounds how long a lost publication (a registry that forgot it) stays unnoticed.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(300);

/// The label the EndpointSlice controller puts on each slice: its Service's name.
pub use super::slices::SERVICE_LABEL as ENDPOINT_SLICE_SERVICE_LABEL;

/// Why reconciling a `ServiceExport` failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object lacks a namespace or a name (never the case for one the API server
    /// sent).
    #[error("ServiceExport has no {0}")]
    Incomplete(&'static str),
    /// Reading the Service or its EndpointSlices failed.
    #[error("reading the {what} of {namespace}/{name}: {source}")]
    Read {
        /// `Service` or `EndpointSlices`.
        what: &'static str,
        /// The export's namespace.
        namespace: String,
        /// The export's name.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// Writing the export's status failed.
    #[error("writing the status of ServiceExport {namespace}/{name}: {source}")]
    Status {
        /// The export's namespace.
        namespace: String,
        /// The export's name.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// The sink refused or failed to publish or withdraw.
    #[error("{action} {namespace}/{name}: {source}")]
    Sink {
        /// `publishing` or `withdrawing`.
        action: &'static str,
        /// The export's namespace.
        namespace: String,
        /// The export's name.
        name: String,
        /// The sink's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Adding or removing the finalizer failed, or so did the apply or cleanup it
    /// wraps.
    #[error(transparent)]
    Finalizer(Box<finalizer::Error<Error>>),
}

/// What the export controller works with.
pub struct ExportContext<S> {
    client: Client,
    sink: S,
    backoff: Backoff,
    gate: WriteGate,
}

impl<S: ExportSink> ExportContext<S> {
    /// A context publishing through `sink`.
    pub fn new(client: Client, sink: S) -> Self {
        Self {
            client,
            sink,
            backoff: Backoff::default(),
            gate: WriteGate::default(),
        }
    }

    /// Leaves finalizers and statuses to the replica `leadership` says leads; this
    /// one still publishes every export (see the `gate` module).
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        self.gate = WriteGate::led_by(leadership);
        self
    }

    /// The sink exports are published to.
    pub fn sink(&self) -> &S {
        &self.sink
    }
}

/// Reconciles one `ServiceExport`: adds the finalizer, then publishes or withdraws
/// and writes the status; on deletion, withdraws and removes the finalizer.
pub async fn reconcile<S: ExportSink>(
    export: Arc<ServiceExport>,
    ctx: Arc<ExportContext<S>>,
) -> Result<Action, Error> {
    let namespace = export.namespace().ok_or(Error::Incomplete("namespace"))?;
    let key = backoff::key(Some(&namespace), &export.name_any());
    let api: Api<ServiceExport> = Api::namespaced(ctx.client.clone(), &namespace);
    let inner = Arc::clone(&ctx);
    let action = gate::finalized(
        &ctx.gate,
        &api,
        FINALIZER,
        export,
        move |event| async move {
            match event {
                Event::Apply(export) => apply(&export, &inner).await,
                Event::Cleanup(export) => cleanup(&export, &inner).await,
            }
        },
    )
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.backoff.reset(&key);
    Ok(action)
}

/// Retries a failed export with per-object exponential backoff (1 s doubling to
/// 5 min), logging why.
pub fn error_policy<S: ExportSink>(
    export: Arc<ServiceExport>,
    error: &Error,
    ctx: Arc<ExportContext<S>>,
) -> Action {
    let key = backoff::key(export.namespace().as_deref(), &export.name_any());
    let delay = ctx.backoff.next_delay(&key);
    warn!(export = %key, retry_in = ?delay, error = %error, "ServiceExport reconciliation failed");
    Action::requeue(delay)
}

/// Runs the export controller until `shutdown` completes: watches `ServiceExport`s,
/// and the Services and EndpointSlices of the same names, in all namespaces.
///
/// `shutdown` is any future that completes once, for example a
/// `tokio_util::sync::CancellationToken`'s `cancelled_owned()`.
pub async fn run<S: ExportSink>(
    ctx: Arc<ExportContext<S>>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = shutdown.boxed().shared();
    let client = ctx.client.clone();
    let slices = watcher::Config::default().labels(ENDPOINT_SLICE_SERVICE_LABEL);
    let controller = Controller::new(
        Api::<ServiceExport>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        |service| same_name(&service),
    )
    .watches(Api::<EndpointSlice>::all(client), slices, |slice| {
        let name = slice.labels().get(ENDPOINT_SLICE_SERVICE_LABEL)?;
        Some(ObjectRef::new(name).within(&slice.namespace()?))
    })
    .reconcile_all_on(ctx.gate.opened());
    let store = controller.store();
    let running = controller
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((export, action)) => {
                    debug!(export = %export, ?action, "ServiceExport reconciled")
                }
                // The watch itself failing (API server unreachable, access denied)
                // stalls the controller: say so. Reconciliation errors were logged by
                // the error policy, and objects gone from the cache are routine.
                Err(error @ controller::Error::QueueError(_)) => {
                    warn!(error = %error, "ServiceExport watch failed; retrying")
                }
                Err(error) => debug!(error = %error, "ServiceExport controller"),
            }
        });
    super::until_shutdown(running, store, shutdown).await;
}

/// The `ServiceExport` a Service would be exported by.
fn same_name(service: &Service) -> Option<ObjectRef<ServiceExport>> {
    Some(ObjectRef::new(&service.name_any()).within(&service.namespace()?))
}

// === Apply and cleanup ===

async fn apply<S: ExportSink>(
    export: &ServiceExport,
    ctx: &ExportContext<S>,
) -> Result<Action, Error> {
    let (namespace, name) = names(export)?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    let service = services
        .get_opt(&name)
        .await
        .map_err(|source| read_error("Service", &namespace, &name, source))?;
    let wanted = match service {
        None => {
            withdraw(ctx, &namespace, &name).await?;
            invalid(
                ec::REASON_NO_SERVICE,
                format!("there is no Service {name} in namespace {namespace}"),
            )
        }
        Some(service) if is_external_name(&service) => {
            withdraw(ctx, &namespace, &name).await?;
            invalid(
                ec::REASON_INVALID_SERVICE_TYPE,
                format!(
                    "Service {namespace}/{name} is of type ExternalName, which has no endpoints to export"
                ),
            )
        }
        Some(service) => {
            let ready = ready_endpoints(&ctx.client, &namespace, &name).await?;
            let spec = export_spec(&service, &namespace, &name, ready);
            let outcome = ctx.sink.publish(spec).await.map_err(|e| Error::Sink {
                action: "publishing",
                namespace: namespace.clone(),
                name: name.clone(),
                source: Box::new(e),
            })?;
            published(&outcome, &namespace, &name, ready)
        }
    };
    write_status(ctx, export, wanted).await?;
    Ok(Action::requeue(RESYNC_PERIOD))
}

async fn cleanup<S: ExportSink>(
    export: &ServiceExport,
    ctx: &ExportContext<S>,
) -> Result<Action, Error> {
    let (namespace, name) = names(export)?;
    withdraw(ctx, &namespace, &name).await?;
    debug!(export = %format!("{namespace}/{name}"), "ServiceExport withdrawn");
    Ok(Action::await_change())
}

async fn withdraw<S: ExportSink>(
    ctx: &ExportContext<S>,
    namespace: &str,
    name: &str,
) -> Result<(), Error> {
    ctx.sink
        .withdraw(namespace, name)
        .await
        .map_err(|e| Error::Sink {
            action: "withdrawing",
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source: Box::new(e),
        })
}

/// Writes the conditions with a merge patch of the status subresource, unless they
/// are what the object already says: a status write is a watch event, and writing
/// an unchanged status would reconcile the object again forever.
async fn write_status<S>(
    ctx: &ExportContext<S>,
    export: &ServiceExport,
    wanted: Vec<Wanted>,
) -> Result<(), Error> {
    if !ctx.gate.open() {
        return Ok(());
    }
    let (namespace, name) = names(export)?;
    let old = export
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let new = conditions::merge(old, wanted, export.metadata.generation);
    if new == old {
        return Ok(());
    }
    let api: Api<ServiceExport> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({ "status": { "conditions": new } });
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Status {
            namespace,
            name,
            source: Box::new(source),
        })?;
    Ok(())
}

// === What to publish and report ===

fn names(export: &ServiceExport) -> Result<(String, String), Error> {
    let namespace = export.namespace().ok_or(Error::Incomplete("namespace"))?;
    let name = export
        .metadata
        .name
        .clone()
        .ok_or(Error::Incomplete("name"))?;
    Ok((namespace, name))
}

fn read_error(what: &'static str, namespace: &str, name: &str, source: kube::Error) -> Error {
    Error::Read {
        what,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source: Box::new(source),
    }
}

fn is_external_name(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName")
}

/// Counts the Service's ready endpoints ([`slices::ready_count`]).
async fn ready_endpoints(client: &Client, namespace: &str, name: &str) -> Result<u32, Error> {
    let list = slices::of_service(client, namespace, name)
        .await
        .map_err(|source| read_error("EndpointSlices", namespace, name, source))?;
    Ok(slices::ready_count(&list))
}

fn export_spec(service: &Service, namespace: &str, name: &str, ready_endpoints: u32) -> ExportSpec {
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(ExportPort {
                name: p.name.clone().filter(|n| !n.is_empty()),
                // The API server only stores ports in 1-65535.
                port: u16::try_from(p.port).ok()?,
                protocol: parse_protocol(p.protocol.as_deref()),
            })
        })
        .collect();
    ExportSpec {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        ports,
        ready_endpoints,
        labels: service.labels().clone(),
        cluster_ip: service
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.as_deref())
            .and_then(|ip| ip.parse().ok()),
    }
}

fn parse_protocol(protocol: Option<&str>) -> Protocol {
    match protocol {
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        _ => Protocol::Tcp,
    }
}

/// The conditions of an export that cannot be published. `Conflict` is left out: it
/// describes a publication that does not exist.
fn invalid(reason: &str, message: String) -> Vec<Wanted> {
    vec![
        Wanted::new(ec::VALID, false, reason, message),
        Wanted::new(
            ec::READY,
            false,
            ec::REASON_INVALID,
            "the export is not valid; see the Valid condition",
        ),
    ]
}

fn published(outcome: &PublishOutcome, namespace: &str, name: &str, ready: u32) -> Vec<Wanted> {
    let valid = Wanted::new(
        ec::VALID,
        true,
        ec::REASON_VALID,
        format!("Service {namespace}/{name} can be exported"),
    );
    let ready = if !outcome.committed {
        Wanted::new(
            ec::READY,
            false,
            ec::REASON_PENDING,
            "waiting for the federation's registry to commit the export",
        )
    } else if !outcome.conflicts.is_empty() {
        Wanted::new(
            ec::READY,
            false,
            ec::REASON_CONFLICT,
            "exported, but other clusters' definitions win on some ports; see the Conflict condition",
        )
    } else {
        Wanted::new(
            ec::READY,
            true,
            ec::REASON_EXPORTED,
            format!("exported to the federation with {ready} ready endpoints"),
        )
    };
    let conflict = if outcome.conflicts.is_empty() {
        Wanted::new(
            ec::CONFLICT,
            false,
            ec::REASON_NO_CONFLICTS,
            "every cluster exporting this name agrees on its ports",
        )
    } else {
        let message = outcome
            .conflicts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Wanted::new(ec::CONFLICT, true, ec::REASON_PORT_CONFLICT, message)
    };
    vec![valid, ready, conflict]
}
