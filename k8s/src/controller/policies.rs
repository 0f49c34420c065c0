//! The `AccessPolicy` and `TrafficPolicy` controllers: hand every valid policy
//! object to the gateway through a [`PolicySink`], and report in each object's
//! `status` whether the gateway took it (`Accepted`, with `observedGeneration`).
//!
//! One generic controller serves both kinds ([`PolicyResource`]); the gateway
//! implements `PolicySink<AccessPolicySpec>` and `PolicySink<TrafficPolicySpec>`.
//!
//! # The sink receives the complete set
//!
//! Every reconciliation hands the sink **all** the policies of the kind that are
//! valid and not being deleted, read from the controller's cache, never one put or
//! one delete. Three failures of single puts are impossible this way:
//!
//! - A restarted gateway starts empty. The controller reconciles only once its first
//!   list is complete, so the first delivery is the whole set at once: no moment
//!   where an `allow` is applied and the `deny` that narrows it is not yet.
//! - A delete missed while the gateway was down (a finalizer removed by hand, a
//!   namespace force-deleted) cannot leave a stale policy behind: what is not in
//!   the cache is not in the set.
//! - A failed delivery is repaired by the next one, whichever object triggers it.
//!
//! An edit that makes a policy invalid changes nothing: the gateway keeps the last
//! valid spec it received for the object (while it runs; a restarted gateway has
//! only the invalid one, and leaves it out), and the status says both.
//!
//! Each object still carries a finalizer ([`ACCESS_FINALIZER`],
//! [`TRAFFIC_FINALIZER`]), as exports do: kube-runtime reconciles objects that
//! change, not objects that vanish, so the finalizer is what makes a delete run a
//! reconciliation (which delivers the set without the object) at once rather than
//! at the next unrelated change.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::finalizer::{self, Event};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use super::backoff::{self, Backoff};
use super::conditions::{self, Wanted};
use super::gate::{self, WriteGate};
use causeway_policy::Problem;

use crate::leader::Leadership;
use crate::resources::{
    AccessPolicy, AccessPolicySpec, CONDITION_ACCEPTED, TrafficPolicy, TrafficPolicySpec,
};

/// The finalizer that holds an `AccessPolicy` until the gateway has dropped it.
pub const ACCESS_FINALIZER: &str = "causeway.dev/access-policy";
/// The finalizer that holds a `TrafficPolicy` until the gateway has dropped it.
pub const TRAFFIC_FINALIZER: &str = "causeway.dev/traffic-policy";

/// How often a policy is reconciled without any change being observed: the
/// gateway's own inputs (its config file) can change what it makes of a policy, and
/// this bounds how long the policy's status can lag behind.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(300);

/// `Accepted=True`: the gateway enforces the policy.
pub const REASON_ACCEPTED: &str = "Accepted";
/// `Accepted=False`: the spec has problems, each named by its field in the message.
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";

/// A policy object as the sink receives it: its validated spec and where it lives.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyObject<S> {
    /// The object's namespace; `None` for a cluster-scoped kind (`AccessPolicy`).
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
    /// The spec, which passed its `validate()`.
    pub spec: S,
}

impl<S> PolicyObject<S> {
    /// `namespace/name`, or `name` for a cluster-scoped object.
    pub fn key(&self) -> String {
        backoff::key(self.namespace.as_deref(), &self.name)
    }
}

/// A policy the gateway received but does not enforce, and why: a name that does
/// not fit the catalog, a clash with its config file, a second policy for one
/// service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The object's namespace; `None` when cluster-scoped.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
    /// Why, as a condition reason: `CamelCase`, no spaces.
    pub reason: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = backoff::key(self.namespace.as_deref(), &self.name);
        write!(f, "{key}: {} ({})", self.message, self.reason)
    }
}

/// Where the policy controller delivers: the gateway's policy set of one kind.
///
/// [`PolicySink::replace`] receives the complete set every time (see the module
/// documentation for why); it must be idempotent and cheap when nothing changed,
/// since every reconciliation of every object calls it.
pub trait PolicySink<S>: Send + Sync + 'static {
    /// Why a delivery failed; the controller retries with backoff.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Replaces every policy the platform gave the gateway with `policies` (sorted
    /// by namespace and name), and returns the ones it does not enforce.
    fn replace(
        &self,
        policies: Vec<PolicyObject<S>>,
    ) -> impl Future<Output = Result<Vec<Refusal>, Self::Error>> + Send;
}

/// A policy kind the controller serves: `AccessPolicy` or `TrafficPolicy`.
pub trait PolicyResource:
    Resource<DynamicType = ()>
    + Clone
    + fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The spec handed to the sink.
    type Spec: Clone + Send + Sync + 'static;
    /// The finalizer the controller puts on each object.
    const FINALIZER: &'static str;

    /// The spec.
    fn spec(&self) -> &Self::Spec;
    /// Every problem with the spec, each with its field path.
    fn problems(&self) -> Vec<Problem>;
    /// The conditions of the status.
    fn conditions(&self) -> &[Condition];
    /// The `status.observedGeneration`.
    fn observed_generation(&self) -> Option<i64>;
    /// The API of objects in `namespace` (ignored when cluster-scoped).
    fn api(client: Client, namespace: Option<&str>) -> Api<Self>;
    /// The API of every object of the kind.
    fn api_all(client: Client) -> Api<Self> {
        Api::all(client)
    }
}

/// `conditions` and `observed_generation` of a [`PolicyResource`] whose status has
/// those two fields.
macro_rules! status_accessors {
    () => {
        fn conditions(&self) -> &[Condition] {
            self.status
                .as_ref()
                .map(|s| s.conditions.as_slice())
                .unwrap_or_default()
        }
        fn observed_generation(&self) -> Option<i64> {
            self.status.as_ref().and_then(|s| s.observed_generation)
        }
    };
}

impl PolicyResource for AccessPolicy {
    type Spec = AccessPolicySpec;
    const FINALIZER: &'static str = ACCESS_FINALIZER;

    fn spec(&self) -> &AccessPolicySpec {
        &self.spec
    }
    fn problems(&self) -> Vec<Problem> {
        self.spec.validate()
    }
    status_accessors!();
    fn api(client: Client, _namespace: Option<&str>) -> Api<Self> {
        Api::all(client)
    }
}

impl PolicyResource for TrafficPolicy {
    type Spec = TrafficPolicySpec;
    const FINALIZER: &'static str = TRAFFIC_FINALIZER;

    fn spec(&self) -> &TrafficPolicySpec {
        &self.spec
    }
    fn problems(&self) -> Vec<Problem> {
        self.spec.validate()
    }
    status_accessors!();
    fn api(client: Client, namespace: Option<&str>) -> Api<Self> {
        match namespace {
            Some(namespace) => Api::namespaced(client, namespace),
            None => Api::all(client),
        }
    }
}

/// Why reconciling a policy failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object has no name (never the case for one the API server sent).
    #[error("policy object has no name")]
    Unnamed,
    /// Writing the object's status failed.
    #[error("writing the status of {kind} {object}: {source}")]
    Status {
        /// `AccessPolicy` or `TrafficPolicy`.
        kind: String,
        /// `namespace/name`, or `name` when cluster-scoped.
        object: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// The sink failed to take the set.
    #[error("delivering the {kind}s to the gateway: {source}")]
    Sink {
        /// `AccessPolicy` or `TrafficPolicy`.
        kind: String,
        /// The sink's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Adding or removing the finalizer failed, or so did the apply or cleanup it
    /// wraps.
    #[error(transparent)]
    Finalizer(Box<finalizer::Error<Error>>),
}

/// The last valid spec of an object, and the generation it had.
#[derive(Debug, Clone)]
struct LastValid<S> {
    generation: Option<i64>,
    spec: S,
}

/// What a policy controller works with.
pub struct PolicyContext<K: PolicyResource, S> {
    client: Client,
    sink: S,
    backoff: Backoff,
    /// The controller's cache of every object of the kind, once running: the
    /// source of the complete set.
    store: Mutex<Option<Store<K>>>,
    /// The last valid spec and its generation of each object in the set, by
    /// `namespace/name`: delivered in place of an invalid edit.
    last_valid: Mutex<HashMap<String, LastValid<K::Spec>>>,
    gate: WriteGate,
}

impl<K: PolicyResource, S: PolicySink<K::Spec>> PolicyContext<K, S> {
    /// A context delivering to `sink`.
    pub fn new(client: Client, sink: S) -> Self {
        Self {
            client,
            sink,
            backoff: Backoff::default(),
            store: Mutex::new(None),
            last_valid: Mutex::new(HashMap::new()),
            gate: WriteGate::default(),
        }
    }

    /// Leaves finalizers and statuses to the replica `leadership` says leads; this
    /// one still enforces every policy (see the `gate` module).
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        self.gate = WriteGate::led_by(leadership);
        self
    }

    /// The sink policies are delivered to.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    fn cached(&self) -> Vec<Arc<K>> {
        self.store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Store::state)
            .unwrap_or_default()
    }
}

/// Reconciles one policy object: adds the finalizer, then delivers the complete set
/// and writes the object's status; on deletion, delivers the set without it and
/// removes the finalizer.
pub async fn reconcile<K, S>(policy: Arc<K>, ctx: Arc<PolicyContext<K, S>>) -> Result<Action, Error>
where
    K: PolicyResource,
    S: PolicySink<K::Spec>,
{
    let name = policy.meta().name.clone().ok_or(Error::Unnamed)?;
    let namespace = policy.namespace();
    let key = backoff::key(namespace.as_deref(), &name);
    let api = K::api(ctx.client.clone(), namespace.as_deref());
    let inner = Arc::clone(&ctx);
    let action = gate::finalized(
        &ctx.gate,
        &api,
        K::FINALIZER,
        policy,
        move |event| async move {
            match event {
                Event::Apply(policy) => apply::<K, S>(&policy, &inner).await,
                Event::Cleanup(policy) => cleanup::<K, S>(&policy, &inner).await,
            }
        },
    )
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.backoff.reset(&key);
    Ok(action)
}

/// Retries a failed policy with per-object exponential backoff (1 s doubling to
/// 5 min), logging why.
pub fn error_policy<K, S>(policy: Arc<K>, error: &Error, ctx: Arc<PolicyContext<K, S>>) -> Action
where
    K: PolicyResource,
    S: PolicySink<K::Spec>,
{
    let key = backoff::key(policy.namespace().as_deref(), &policy.name_any());
    let delay = ctx.backoff.next_delay(&key);
    warn!(kind = %K::kind(&()), policy = %key, retry_in = ?delay, error = %error, "policy reconciliation failed");
    Action::requeue(delay)
}

/// Runs the controller of policy kind `K` until `shutdown` completes, watching every
/// object of the kind (in all namespaces).
///
/// `shutdown` is any future that completes once, for example a
/// `tokio_util::sync::CancellationToken`'s `cancelled_owned()`.
pub async fn run<K, S>(
    ctx: Arc<PolicyContext<K, S>>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) where
    K: PolicyResource,
    S: PolicySink<K::Spec>,
{
    let shutdown = shutdown.boxed().shared();
    let controller = Controller::new(K::api_all(ctx.client.clone()), watcher::Config::default())
        .reconcile_all_on(ctx.gate.opened());
    let store = controller.store();
    *ctx.store.lock().unwrap_or_else(|e| e.into_inner()) = Some(store.clone());
    let kind = K::kind(&()).into_owned();
    let running = controller
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(move |result| {
            let kind = kind.clone();
            async move {
                match result {
                    Ok((policy, action)) => debug!(%kind, %policy, ?action, "policy reconciled"),
                    // The watch itself failing (API server unreachable, access
                    // denied) stalls the controller: say so. Reconciliation errors
                    // were logged by the error policy.
                    Err(error @ controller::Error::QueueError(_)) => {
                        warn!(%kind, error = %error, "policy watch failed; retrying")
                    }
                    Err(error) => debug!(%kind, error = %error, "policy controller"),
                }
            }
        });
    super::until_shutdown(running, store, shutdown).await;
}

// === Apply and cleanup ===

async fn apply<K, S>(policy: &K, ctx: &PolicyContext<K, S>) -> Result<Action, Error>
where
    K: PolicyResource,
    S: PolicySink<K::Spec>,
{
    let refusals = deliver(ctx, policy).await?;
    let problems = policy.problems();
    let name = policy.name_any();
    let namespace = policy.namespace();
    let wanted = if !problems.is_empty() {
        let mut message = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let key = backoff::key(namespace.as_deref(), &name);
        let kept = ctx
            .last_valid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .map(|last| last.generation);
        if let Some(generation) = kept {
            let generation = generation.map_or_else(String::new, |g| format!(" (generation {g})"));
            message.push_str(&format!(
                "; the gateway keeps enforcing the last valid spec{generation}"
            ));
        }
        Wanted::new(CONDITION_ACCEPTED, false, REASON_INVALID_SPEC, message)
    } else if let Some(refusal) = refusals
        .iter()
        .find(|r| r.name == name && r.namespace == namespace)
    {
        Wanted::new(
            CONDITION_ACCEPTED,
            false,
            refusal.reason.as_str(),
            refusal.message.as_str(),
        )
    } else {
        Wanted::new(
            CONDITION_ACCEPTED,
            true,
            REASON_ACCEPTED,
            "the gateway enforces this policy",
        )
    };
    write_status(ctx, policy, wanted).await?;
    Ok(Action::requeue(RESYNC_PERIOD))
}

async fn cleanup<K, S>(policy: &K, ctx: &PolicyContext<K, S>) -> Result<Action, Error>
where
    K: PolicyResource,
    S: PolicySink<K::Spec>,
{
    deliver(ctx, policy).await?;
    debug!(kind = %K::kind(&()), policy = %backoff::key(policy.namespace().as_deref(), &policy.name_any()), "policy dropped");
    Ok(Action::await_change())
}

/// Hands the sink every policy not being deleted, each with its spec when valid or
/// else its last valid one (left out when there is none): the cache's objects, with
/// `current` (which may be newer than its cached copy) in place of its copy.
async fn deliver<K, S>(ctx: &PolicyContext<K, S>, current: &K) -> Result<Vec<Refusal>, Error>
where
    K: PolicyResource,
    S: PolicySink<K::Spec>,
{
    let same = |k: &K| k.name_any() == current.name_any() && k.namespace() == current.namespace();
    let cached = ctx.cached();
    let objects = cached
        .iter()
        .map(AsRef::as_ref)
        .filter(|k| !same(k))
        .chain(std::iter::once(current))
        .filter(|k| k.meta().deletion_timestamp.is_none());
    let mut set = Vec::new();
    {
        let mut last_valid = ctx.last_valid.lock().unwrap_or_else(|e| e.into_inner());
        let mut present = HashSet::new();
        for k in objects {
            let Some(name) = k.meta().name.clone() else {
                continue;
            };
            let namespace = k.namespace();
            let key = backoff::key(namespace.as_deref(), &name);
            let spec = if k.problems().is_empty() {
                let last = LastValid {
                    generation: k.meta().generation,
                    spec: k.spec().clone(),
                };
                last_valid.insert(key.clone(), last);
                k.spec().clone()
            } else if let Some(last) = last_valid.get(&key) {
                last.spec.clone()
            } else {
                continue;
            };
            present.insert(key);
            set.push(PolicyObject {
                namespace,
                name,
                spec,
            });
        }
        last_valid.retain(|key, _| present.contains(key));
    }
    set.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    ctx.sink.replace(set).await.map_err(|e| Error::Sink {
        kind: K::kind(&()).into_owned(),
        source: Box::new(e),
    })
}

/// Writes the `Accepted` condition and `observedGeneration` with a merge patch of
/// the status subresource, unless they are what the object already says: a status
/// write is a watch event, and writing an unchanged status would reconcile the
/// object again forever. Other status fields (`ejectedClusters`) are left alone.
async fn write_status<K, S>(
    ctx: &PolicyContext<K, S>,
    policy: &K,
    wanted: Wanted,
) -> Result<(), Error>
where
    K: PolicyResource,
{
    if !ctx.gate.open() {
        return Ok(());
    }
    let name = policy.meta().name.clone().ok_or(Error::Unnamed)?;
    let namespace = policy.namespace();
    let generation = policy.meta().generation;
    let old = policy.conditions();
    let new = conditions::merge(old, vec![wanted], generation);
    if new == old && policy.observed_generation() == generation {
        return Ok(());
    }
    let patch = serde_json::json!({
        "status": { "conditions": new, "observedGeneration": generation }
    });
    let api = K::api(ctx.client.clone(), namespace.as_deref());
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Status {
            kind: K::kind(&()).into_owned(),
            object: backoff::key(namespace.as_deref(), &name),
            source: Box::new(source),
        })?;
    Ok(())
}
