//! Which replica of this cluster's gateways writes shared Kubernetes objects: the
//! elector of `causeway-k8s` on the controllers' Lease, its leadership counted on
//! `causeway_kubernetes_controller_leader`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use causeway_k8s::leader::{Elector, Leadership, LeaseConfig};
use causeway_k8s::manifests::CONTROLLER_LEASE;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::daemon::Local;
use crate::daemon::metrics::Telemetry;

/// Starts competing for the controllers' Lease, until `local.cancel` fires (then
/// releases it), and returns whether this replica leads, as it changes.
pub(super) fn start(
    local: &Local,
    client: kube::Client,
    telemetry: Arc<Telemetry>,
    tasks: &TaskTracker,
) -> Leadership {
    let section = &local.config.kubernetes;
    let config = LeaseConfig {
        namespace: section.namespace.clone(),
        name: CONTROLLER_LEASE.into(),
        identity: identity(local),
        timings: section.leader_election.timings(),
    };
    let elector = Elector::new(client, config);
    let leadership = elector.leadership();
    tasks.spawn(elector.run(local.cancel.clone().cancelled_owned()));
    tasks.spawn(count(leadership.clone(), telemetry, local.cancel.clone()));
    leadership
}

/// The pod's name; outside a pod, one this process alone uses: its cluster, its
/// process id and its start time.
fn identity(local: &Local) -> String {
    if let Some(pod) = &local.config.kubernetes.pod_name {
        return pod.clone();
    }
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{}-{}-{started}", local.cluster, std::process::id())
}

/// Keeps the leadership gauge in step until `cancel` fires.
async fn count(mut leadership: Leadership, telemetry: Arc<Telemetry>, cancel: CancellationToken) {
    let gauge = &telemetry.metrics.kubernetes_controller_leader;
    let mut leading = leadership.is_leader();
    loop {
        gauge.set(i64::from(leading));
        tokio::select! {
            () = cancel.cancelled() => return,
            now = leadership.changed() => leading = now,
        }
    }
}
