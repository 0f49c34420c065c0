//! Client connections of an import with a traffic policy: faults, the policy's
//! order of clusters (local endpoints included for local-first), connection
//! limits, retries within the budget, outlier accounting.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use causeway_trust::ClusterName;
use rand::Rng;
use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::{
    ImportState, OpenError, candidates, carry, note_open_failure, note_refusal, open_stream,
};
use crate::tunnel::codec::Status;
use crate::tunnel::metrics::{CircuitLabels, Direction, FaultLabels, Metrics};
use crate::tunnel::peers::{Candidate, PeerState};
use crate::tunnel::splice::reset_tcp;
use crate::tunnel::traffic::{
    Admission, PolicyKey, RoutingMode, TrafficCandidate, TrafficPolicy, TrafficTable, choose,
};
use crate::tunnel::{Endpoints, Shared};

/// An admitted stream's place in its (service, cluster) counts; released on drop.
struct Slot<'a> {
    table: &'a TrafficTable,
    key: &'a PolicyKey,
    cluster: &'a ClusterName,
    pending: bool,
}

impl Slot<'_> {
    fn answered(&mut self) {
        if std::mem::take(&mut self.pending) {
            self.table.answered(self.key, self.cluster);
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.answered();
        self.table.closed(self.key, self.cluster);
    }
}

/// With a traffic policy: faults, then the policy's order of clusters, each
/// within its connection limits, retried within the attempt count and budget.
pub(super) async fn serve_by_policy(
    shared: &Shared,
    state: &ImportState,
    policy: &TrafficPolicy,
    mut tcp: TcpStream,
) {
    if inject_faults(shared, state, policy).await {
        reset_tcp(&tcp);
        return;
    }
    let table = &shared.traffic;
    let (offered, local) = offer(shared, state, policy);
    let exporters = offered.len();
    let order = choose(policy, &offered, &mut rand::rng());
    if order.is_empty() {
        warn!(routing = %policy.routing, "no healthy cluster the traffic policy allows; resetting the client");
        shared.metrics.failed(
            "",
            &state.service_label,
            Direction::Outbound,
            "no_healthy_peer",
        );
        reset_tcp(&tcp);
        return;
    }
    let timeouts = match policy.retries.connect_timeout {
        Some(t) => (shared.config.handshake_timeout().min(t), t),
        None => (
            shared.config.handshake_timeout(),
            shared.config.answer_timeout(),
        ),
    };
    let mut attempts = 0u32;
    let mut over_limit: Option<(&ClusterName, Admission)> = None;
    let mut last_error = String::new();
    for i in order {
        if attempts >= policy.retries.attempts {
            break;
        }
        let cluster = offered[i].cluster;
        let mut slot = match table.admit(&state.key, cluster, &policy.limits) {
            Admission::Admitted => Slot {
                table,
                key: &state.key,
                cluster,
                pending: true,
            },
            refused => {
                over_limit.get_or_insert((cluster, refused));
                continue;
            }
        };
        let labels = || Metrics::traffic_labels(&state.key_label, cluster.as_str());
        if attempts == 0 {
            table.first_attempt(&state.key, policy.retries.budget_percent);
        } else if table.try_retry(&state.key) {
            shared
                .metrics
                .traffic_retries
                .get_or_create(&labels())
                .inc();
            debug!(peer.cluster = %cluster, attempt = attempts + 1, "retrying on another cluster");
        } else {
            shared
                .metrics
                .traffic_retry_budget_exhausted
                .get_or_create(&labels())
                .inc();
            warn!(peer.cluster = %cluster, "retry budget spent; not retrying");
            break;
        }
        attempts += 1;
        if let (Some(endpoints), None) = (&local, state.peers.get(i)) {
            match connect_local(endpoints, timeouts.1).await {
                Ok(endpoint) => {
                    slot.answered();
                    table.on_success(&state.key, cluster, Instant::now(), policy.outlier.as_ref());
                    tracing::Span::current().record("peer.cluster", cluster.as_str());
                    carry_local(tcp, endpoint).await;
                    return;
                }
                Err(error) => {
                    slot.answered();
                    last_error = format!("local endpoint: {error}");
                    warn!(%error, "local endpoint failed");
                    note_outlier_failure(shared, state, policy, cluster, exporters);
                    continue;
                }
            }
        }
        let peer = &state.peers[i].1;
        let opened = open_stream(shared, peer, &state.header, timeouts).await;
        slot.answered();
        match opened {
            Ok((mut send, mut recv)) => {
                table.on_success(&state.key, cluster, Instant::now(), policy.outlier.as_ref());
                tracing::Span::current().record("peer.cluster", cluster.as_str());
                let broken = carry(
                    shared,
                    state,
                    peer,
                    &mut tcp,
                    &mut send,
                    &mut recv,
                    policy.idle_timeout,
                )
                .await;
                if broken {
                    note_outlier_failure(shared, state, policy, cluster, exporters);
                }
                return;
            }
            Err(OpenError::Refused(answer)) => {
                last_error = note_refusal(shared, state, peer, &answer);
                // Only a cluster that cannot serve now is worth a retry elsewhere;
                // a denial or an unknown service is an answer.
                if matches!(answer.status, Status::NoEndpoints | Status::Overloaded) {
                    note_outlier_failure(shared, state, policy, cluster, exporters);
                } else {
                    break;
                }
            }
            Err(OpenError::Failed { label, error }) => {
                last_error = note_open_failure(shared, state, peer, label, &error);
                note_outlier_failure(shared, state, policy, cluster, exporters);
            }
        }
    }
    if attempts == 0
        && let Some((cluster, why)) = over_limit
    {
        shared
            .metrics
            .traffic_circuit_refusals
            .get_or_create(&CircuitLabels {
                service: state.key_label.clone(),
                cluster: cluster.to_string(),
                limit: why.label().to_owned(),
            })
            .inc();
        shared.metrics.failed(
            cluster.as_str(),
            &state.service_label,
            Direction::Outbound,
            "circuit_open",
        );
        debug!(peer.cluster = %cluster, limit = why.label(), "connection limit reached; refusing the client");
        reset_tcp(&tcp);
        return;
    }
    warn!(error = %last_error, attempts, "no cluster carried the connection; resetting the client");
    reset_tcp(&tcp);
}

/// The candidates of a new stream under `policy`: every exporting peer with its
/// health and ejection, and, for local-first, this cluster's own endpoints (last,
/// at index `state.peers.len()`) when it exports the service too.
fn offer<'a>(
    shared: &'a Shared,
    state: &'a ImportState,
    policy: &TrafficPolicy,
) -> (Vec<TrafficCandidate<'a>>, Option<Arc<Endpoints>>) {
    let table = &shared.traffic;
    let clusters: Vec<&ClusterName> = state.peers.iter().map(|(_, p)| &p.cluster).collect();
    let ejected = table.ejected(&state.key, &clusters, Instant::now());
    if policy.outlier.is_some() {
        for (cluster, ejected) in clusters.iter().zip(&ejected) {
            let labels = Metrics::traffic_labels(&state.key_label, cluster.as_str());
            shared
                .metrics
                .traffic_ejected
                .get_or_create(&labels)
                .set(i64::from(*ejected));
        }
    }
    let peers = candidates(state);
    let mut offered: Vec<TrafficCandidate<'_>> = clusters
        .iter()
        .zip(peers)
        .zip(&ejected)
        .map(|((cluster, peer), ejected)| TrafficCandidate {
            cluster,
            peer,
            ejected: *ejected,
            local: *cluster == table.local(),
        })
        .collect();
    // Local-first: when this cluster exports the service too, its own endpoints
    // are one more candidate (index `peers.len()`), reached without the tunnel.
    let local = (policy.routing == RoutingMode::LocalFirst)
        .then(|| shared.services.load().get(&state.target).cloned())
        .flatten()
        .filter(|e| !e.addrs.is_empty());
    if local.is_some() {
        offered.push(TrafficCandidate {
            cluster: table.local(),
            peer: Candidate {
                state: PeerState::Up,
                rtt: Some(Duration::ZERO),
                weight: 1,
                connected: true,
            },
            ejected: table.ejected(&state.key, &[table.local()], Instant::now())[0],
            local: true,
        });
    }
    (offered, local)
}

/// Draws the policy's faults for a new stream: waits out an injected delay, and
/// returns whether the stream is to be aborted.
async fn inject_faults(shared: &Shared, state: &ImportState, policy: &TrafficPolicy) -> bool {
    let faults = &policy.faults;
    if !faults.is_active() {
        return false;
    }
    // The RNG is not `Send`: draw before any await.
    let (abort, delay) = {
        let mut rng = rand::rng();
        let abort = faults.abort_percent > 0.0 && rng.random_bool(faults.abort_percent / 100.0);
        let delay = faults.delay.filter(|_| {
            faults.delay_percent > 0.0 && rng.random_bool(faults.delay_percent / 100.0)
        });
        (abort, delay)
    };
    let count = |fault: &str| {
        shared
            .metrics
            .traffic_faults
            .get_or_create(&FaultLabels {
                service: state.key_label.clone(),
                fault: fault.to_owned(),
            })
            .inc();
    };
    if abort {
        count("abort");
        shared
            .metrics
            .failed("", &state.service_label, Direction::Outbound, "fault_abort");
        debug!("fault injected: stream aborted");
        return true;
    }
    if let Some(delay) = delay {
        count("delay");
        debug!(
            delay_ms = delay.as_millis() as u64,
            "fault injected: stream delayed"
        );
        tokio::time::sleep(delay).await;
    }
    false
}

/// Counts a failure of `cluster` for outlier detection, ejecting it when due.
fn note_outlier_failure(
    shared: &Shared,
    state: &ImportState,
    policy: &TrafficPolicy,
    cluster: &ClusterName,
    exporters: usize,
) {
    let Some(outlier) = &policy.outlier else {
        return;
    };
    let ejected =
        shared
            .traffic
            .on_failure(&state.key, cluster, Instant::now(), outlier, exporters);
    if let Some(time) = ejected {
        let labels = Metrics::traffic_labels(&state.key_label, cluster.as_str());
        shared
            .metrics
            .traffic_ejections
            .get_or_create(&labels)
            .inc();
        shared.metrics.traffic_ejected.get_or_create(&labels).set(1);
        warn!(service = %state.key, peer.cluster = %cluster, ejection_ms = time.as_millis() as u64, "cluster ejected after consecutive failures");
    }
}

/// Connects to one of this cluster's own endpoints of the service, round-robin,
/// trying each once.
async fn connect_local(endpoints: &Endpoints, timeout: Duration) -> std::io::Result<TcpStream> {
    let n = endpoints.addrs.len();
    let start = endpoints.next.fetch_add(1, Ordering::Relaxed);
    let mut last = std::io::Error::other("no endpoints");
    for k in 0..n {
        let addr = endpoints.addrs[(start + k) % n];
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = e,
            Err(_) => {
                last = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{addr}: no answer within {timeout:?}"),
                )
            }
        }
    }
    Err(last)
}

/// Carries a client to a local endpoint: plain TCP both ways, no tunnel.
async fn carry_local(mut tcp: TcpStream, mut endpoint: TcpStream) {
    let _ = endpoint.set_nodelay(true);
    debug!("carried to a local endpoint");
    if let Err(e) = tokio::io::copy_bidirectional(&mut tcp, &mut endpoint).await {
        debug!(error = %e, "local stream torn down");
        reset_tcp(&tcp);
    }
}
