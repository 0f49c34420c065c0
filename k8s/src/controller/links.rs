//! The `ClusterLink` controller: joins the federation through each link's peer with a
//! [`LinkDriver`], probes the peer, and keeps the link's `status` fresh: `Joined`,
//! `GatewayReachable` and `TrustVerified`, the round-trip time and the number of
//! services imported through the peer.
//!
//! Each link carries the finalizer [`FINALIZER`], so that deleting it unlinks the
//! peer before the object goes away.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::finalizer::{self, Event};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tracing::{debug, warn};

use super::backoff::{self, Backoff};
use super::conditions::{self, Status, Wanted};
use super::gate::{self, WriteGate};
use super::{LinkDriver, LinkReport, Verdict};
use crate::leader::Leadership;
use crate::resources::{
    CONDITION_GATEWAY_REACHABLE, CONDITION_JOINED, CONDITION_TRUST_VERIFIED, ClusterLink,
    ClusterLinkStatus,
};

/// The finalizer that holds a `ClusterLink` until its peer is unlinked.
pub const FINALIZER: &str = "causeway.dev/cluster-link";

/// How often a link is probed and its status refreshed: often enough that `kubectl
/// get clusterlinks` shows a peer's outage within seconds, rarely enough that status
/// writes stay a trickle for the API server (one per link every 10 s).
pub const DEFAULT_REFRESH_PERIOD: Duration = Duration::from_secs(10);

/// Condition reason: the spec has problems (listed in the message); nothing was done.
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
/// Condition reason: joining the federation through the peer failed.
pub const REASON_JOIN_FAILED: &str = "JoinFailed";
/// `Joined=True`.
pub const REASON_JOINED: &str = "Joined";
/// `GatewayReachable=True`.
pub const REASON_REACHABLE: &str = "Reachable";
/// `TrustVerified=True`.
pub const REASON_VERIFIED: &str = "Verified";

/// Why reconciling a `ClusterLink` failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object has no name (never the case for one the API server sent).
    #[error("ClusterLink has no name")]
    Unnamed,
    /// Writing the link's status failed.
    #[error("writing the status of ClusterLink {link}: {source}")]
    Status {
        /// The link's name.
        link: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// The driver failed to join, probe or unlink.
    #[error("{action} peer {peer}: {source}")]
    Driver {
        /// `joining`, `probing` or `unlinking`.
        action: &'static str,
        /// The link's peer.
        peer: String,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Adding or removing the finalizer failed, or so did the apply or cleanup it
    /// wraps.
    #[error(transparent)]
    Finalizer(Box<finalizer::Error<Error>>),
}

/// What the link controller works with.
pub struct LinkContext<D> {
    client: Client,
    driver: D,
    refresh: Duration,
    backoff: Backoff,
    /// When each link was last probed, and at which generation: the status write
    /// that follows a probe is itself a watch event, which must not trigger another
    /// probe before the refresh period is over.
    probed: Mutex<HashMap<String, (Option<i64>, Instant)>>,
    gate: WriteGate,
}

impl<D: LinkDriver> LinkContext<D> {
    /// A context acting through `driver`, refreshing every
    /// [`DEFAULT_REFRESH_PERIOD`].
    pub fn new(client: Client, driver: D) -> Self {
        Self {
            client,
            driver,
            refresh: DEFAULT_REFRESH_PERIOD,
            backoff: Backoff::default(),
            probed: Mutex::new(HashMap::new()),
            gate: WriteGate::default(),
        }
    }

    /// Leaves finalizers and statuses to the replica `leadership` says leads; this
    /// one still joins, probes and unlinks (see the `gate` module).
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        self.gate = WriteGate::led_by(leadership);
        self
    }

    /// Sets how often each link is probed.
    pub fn with_refresh_period(mut self, refresh: Duration) -> Self {
        self.refresh = refresh;
        self
    }

    /// The driver the links act through.
    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// How long until `link` is due for a probe; `None` when it is due now (never
    /// probed, probed at another generation, or probed a refresh period ago).
    fn not_due_for(&self, link: &ClusterLink) -> Option<Duration> {
        let probed = self.probed.lock().unwrap_or_else(|e| e.into_inner());
        let (generation, at) = probed.get(&link.name_any())?;
        if *generation != link.metadata.generation {
            return None;
        }
        self.refresh
            .checked_sub(at.elapsed())
            .filter(|d| !d.is_zero())
    }

    fn record_probe(&self, link: &ClusterLink, at: Instant) {
        self.probed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(link.name_any(), (link.metadata.generation, at));
    }

    fn forget(&self, link: &ClusterLink) {
        self.probed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&link.name_any());
    }
}

/// Reconciles one `ClusterLink`: adds the finalizer, then joins, probes and writes
/// the status; on deletion, unlinks and removes the finalizer.
pub async fn reconcile<D: LinkDriver>(
    link: Arc<ClusterLink>,
    ctx: Arc<LinkContext<D>>,
) -> Result<Action, Error> {
    let name = link.metadata.name.clone().ok_or(Error::Unnamed)?;
    let api: Api<ClusterLink> = Api::all(ctx.client.clone());
    let inner = Arc::clone(&ctx);
    let action = gate::finalized(&ctx.gate, &api, FINALIZER, link, move |event| async move {
        match event {
            Event::Apply(link) => apply(&link, &inner).await,
            Event::Cleanup(link) => cleanup(&link, &inner).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.backoff.reset(&name);
    Ok(action)
}

/// Retries a failed link with per-object exponential backoff (1 s doubling to
/// 5 min), logging why.
pub fn error_policy<D: LinkDriver>(
    link: Arc<ClusterLink>,
    error: &Error,
    ctx: Arc<LinkContext<D>>,
) -> Action {
    let key = backoff::key(None, &link.name_any());
    let delay = ctx.backoff.next_delay(&key);
    warn!(link = %key, retry_in = ?delay, error = %error, "ClusterLink reconciliation failed");
    Action::requeue(delay)
}

/// Runs the link controller until `shutdown` completes.
///
/// `shutdown` is any future that completes once, for example a
/// `tokio_util::sync::CancellationToken`'s `cancelled_owned()`.
pub async fn run<D: LinkDriver>(
    ctx: Arc<LinkContext<D>>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = shutdown.boxed().shared();
    let controller = Controller::new(
        Api::<ClusterLink>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .reconcile_all_on(ctx.gate.opened());
    let store = controller.store();
    let running = controller
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((link, action)) => debug!(link = %link, ?action, "ClusterLink reconciled"),
                // The watch itself failing (API server unreachable, access denied)
                // stalls the controller: say so. Reconciliation errors were logged by
                // the error policy, and objects gone from the cache are routine.
                Err(error @ controller::Error::QueueError(_)) => {
                    warn!(error = %error, "ClusterLink watch failed; retrying")
                }
                Err(error) => debug!(error = %error, "ClusterLink controller"),
            }
        });
    super::until_shutdown(running, store, shutdown).await;
}

// === Apply and cleanup ===

async fn apply<D: LinkDriver>(link: &ClusterLink, ctx: &LinkContext<D>) -> Result<Action, Error> {
    if let Some(wait) = ctx.not_due_for(link) {
        return Ok(Action::requeue(wait));
    }
    let spec = &link.spec;
    let problems = link.spec.validate();
    if !problems.is_empty() {
        let message = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let not_probed = "not probed: the spec is invalid; see the Joined condition";
        let wanted = vec![
            Wanted::new(CONDITION_JOINED, false, REASON_INVALID_SPEC, message),
            Wanted::new(
                CONDITION_GATEWAY_REACHABLE,
                Status::Unknown,
                REASON_INVALID_SPEC,
                not_probed,
            ),
            Wanted::new(
                CONDITION_TRUST_VERIFIED,
                Status::Unknown,
                REASON_INVALID_SPEC,
                not_probed,
            ),
        ];
        write_status(ctx, link, wanted, None, 0).await?;
        // A spec edit is a new generation, which reconciles the link again.
        return Ok(Action::await_change());
    }

    if let Err(e) = ctx.driver.join(&spec.peer, &spec.registry).await {
        let not_probed = "not probed: joining failed; see the Joined condition";
        let wanted = vec![
            Wanted::new(CONDITION_JOINED, false, REASON_JOIN_FAILED, e.to_string()),
            Wanted::new(
                CONDITION_GATEWAY_REACHABLE,
                Status::Unknown,
                REASON_JOIN_FAILED,
                not_probed,
            ),
            Wanted::new(
                CONDITION_TRUST_VERIFIED,
                Status::Unknown,
                REASON_JOIN_FAILED,
                not_probed,
            ),
        ];
        write_status(ctx, link, wanted, None, 0).await?;
        return Err(driver_error("joining", &spec.peer, e));
    }

    let probed_at = Instant::now();
    let report = ctx
        .driver
        .probe(&spec.peer)
        .await
        .map_err(|e| driver_error("probing", &spec.peer, e))?;
    debug!(
        peer.cluster = %spec.peer,
        reachable = report.reachable.passed(),
        rtt_ms = report.rtt_millis,
        "probe done"
    );
    let wanted = report_conditions(&report, &spec.peer, &spec.gateway);
    write_status(
        ctx,
        link,
        wanted,
        report.rtt_millis,
        report.imported_services,
    )
    .await?;
    ctx.record_probe(link, probed_at);
    Ok(Action::requeue(ctx.refresh))
}

async fn cleanup<D: LinkDriver>(link: &ClusterLink, ctx: &LinkContext<D>) -> Result<Action, Error> {
    ctx.driver
        .unlink(&link.spec.peer)
        .await
        .map_err(|e| driver_error("unlinking", &link.spec.peer, e))?;
    ctx.forget(link);
    debug!(peer.cluster = %link.spec.peer, "peer unlinked");
    Ok(Action::await_change())
}

fn driver_error(
    action: &'static str,
    peer: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::Driver {
        action,
        peer: peer.to_owned(),
        source: Box::new(e),
    }
}

fn report_conditions(report: &LinkReport, peer: &str, gateway: &str) -> Vec<Wanted> {
    let check = |type_, verdict: &Verdict, reason, message: String| match verdict {
        Verdict::Passed => Wanted::new(type_, true, reason, message),
        Verdict::Failed { reason, message } => {
            Wanted::new(type_, false, reason.as_str(), message.as_str())
        }
    };
    let rtt = report
        .rtt_millis
        .map_or_else(String::new, |ms| format!(" in {ms:.2} ms"));
    vec![
        check(
            CONDITION_JOINED,
            &report.joined,
            REASON_JOINED,
            format!("a member of the federation joined through {peer}'s registry"),
        ),
        check(
            CONDITION_GATEWAY_REACHABLE,
            &report.reachable,
            REASON_REACHABLE,
            format!("the tunnel at {gateway} answered{rtt}"),
        ),
        check(
            CONDITION_TRUST_VERIFIED,
            &report.trust_verified,
            REASON_VERIFIED,
            format!(
                "{peer}'s certificate chains to the trust bundle and names the expected identity"
            ),
        ),
    ]
}

/// Writes the status with a merge patch of the status subresource, unless it is
/// what the object already says. A missing RTT is written as `null` so that a
/// merge patch clears the last one rather than keeping it.
async fn write_status<D>(
    ctx: &LinkContext<D>,
    link: &ClusterLink,
    wanted: Vec<Wanted>,
    rtt_millis: Option<f64>,
    imported_services: u32,
) -> Result<(), Error> {
    if !ctx.gate.open() {
        return Ok(());
    }
    let name = link.metadata.name.clone().ok_or(Error::Unnamed)?;
    let old = link.status.clone().unwrap_or_default();
    let generation = link.metadata.generation;
    let new = ClusterLinkStatus {
        conditions: conditions::merge(&old.conditions, wanted, generation),
        rtt_millis: rtt_millis.map(|ms| (ms * 100.0).round() / 100.0),
        imported_services,
        observed_generation: generation,
    };
    if new == old {
        return Ok(());
    }
    let patch = serde_json::json!({
        "status": {
            "conditions": new.conditions,
            "rttMillis": new.rtt_millis,
            "importedServices": new.imported_services,
            "observedGeneration": new.observed_generation,
        }
    });
    let api: Api<ClusterLink> = Api::all(ctx.client.clone());
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Status {
            link: name,
            source: Box::new(source),
        })?;
    Ok(())
}
