//! The attempts of a client connection: the clusters in the order `choose` gave,
//! each within the policy's connection limits, until one carries the client. What
//! the service's policy allows beyond the first attempt is its [`Plan`].

use std::future::Future;
use std::iter::Peekable;
use std::pin::Pin;
use std::time::Duration;

use causeway_trust::ClusterName;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use tokio::net::TcpStream;
use tracing::warn;

mod carry;
mod health;

use super::ImportState;
use super::offer::Offer;
use super::stream::{OpenError, note_open_failure, note_refusal, open_stream};
use crate::codec::Status;
use crate::splice::reset_tcp;
use crate::traffic::{Admission, PolicyKey, TrafficTable};
use crate::{Endpoints, Shared};
use causeway_policy::TrafficPolicy;

/// An open with no answer after this many hedge delays, when no hedge may be
/// made (the budget is spent), is given up for the next candidate: a peer that
/// froze costs a client a few RTTs, not the whole answer timeout.
const ABANDON_AFTER_HEDGE_DELAYS: u32 = 3;

/// What a service's policy allows a client connection beyond its first attempt.
///
/// A service without a declared policy (the default one) keeps no traffic state:
/// every exporter is tried in turn, and an open that waits too long is hedged to
/// the next exporter within the import's hedge budget. A declared policy bounds
/// the attempts by its count, each stream by its connection limits, and retries by
/// its budget; it does not hedge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    /// Most attempts, the first included.
    attempts: u32,
    /// Connection limits and the retry budget apply (a declared policy); without
    /// them, slow opens are hedged instead.
    declared: bool,
}

impl Plan {
    /// The plan of a service with `declared` policy, or none.
    pub(super) fn of(declared: Option<&TrafficPolicy>) -> Self {
        match declared {
            None => Self {
                attempts: u32::MAX,
                declared: false,
            },
            Some(policy) => Self {
                attempts: policy.retries.attempts,
                declared: true,
            },
        }
    }

    /// Whether slow opens are hedged: only without a declared policy.
    fn hedged(self) -> bool {
        !self.declared
    }
}

/// What every attempt of one client connection shares.
pub(super) struct Route<'a> {
    shared: &'a Shared,
    state: &'a ImportState,
    policy: &'a TrafficPolicy,
    offer: &'a Offer<'a>,
    plan: Plan,
    /// Handshake and answer timeouts of one attempt.
    timeouts: (Duration, Duration),
}

/// How far the attempts of one client connection have come.
struct Progress<'r> {
    /// Candidates not tried yet, in order.
    order: Peekable<std::vec::IntoIter<usize>>,
    /// Attempts started, hedges included.
    attempts: u32,
    /// The first cluster skipped for its connection limits, and which limit.
    over_limit: Option<(&'r ClusterName, Admission)>,
    last_error: String,
    /// Whether a slow open may still be hedged (false once the budget refused).
    may_hedge: bool,
    /// Candidates with an open in flight.
    pending: Vec<usize>,
}

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

/// A cluster that took the client: a stream its peer accepted, or a connection
/// to one of this cluster's own endpoints (local-first).
enum Connected {
    Peer(quinn::SendStream, quinn::RecvStream),
    Local(TcpStream),
}

enum AttemptError {
    Open(OpenError),
    Local(std::io::Error),
}

/// How one attempt on candidate `i` ended; its slot, when counted, still held.
struct Answered<'r> {
    i: usize,
    slot: Option<Slot<'r>>,
    result: Result<Connected, AttemptError>,
}

type Attempt<'r> = Pin<Box<dyn Future<Output = Answered<'r>> + Send + 'r>>;

/// What an answer means for the client connection.
enum Verdict<'r> {
    /// This cluster carries it.
    Carry(usize, Option<Slot<'r>>, Connected),
    /// The next cluster may.
    Next,
    /// The answer holds for every cluster (a denial).
    Stop,
}

impl<'a> Route<'a> {
    pub(super) fn new(
        shared: &'a Shared,
        state: &'a ImportState,
        policy: &'a TrafficPolicy,
        plan: Plan,
        offer: &'a Offer<'a>,
    ) -> Self {
        Self {
            shared,
            state,
            policy,
            offer,
            plan,
            timeouts: attempt_timeouts(shared, policy),
        }
    }

    /// Tries the candidates in `order` until one carries `tcp`; resets it when
    /// none does.
    pub(super) async fn serve(&self, order: Vec<usize>, mut tcp: TcpStream) {
        let mut progress = Progress {
            order: order.into_iter().peekable(),
            attempts: 0,
            over_limit: None,
            last_error: String::new(),
            may_hedge: self.plan.hedged(),
            pending: Vec::new(),
        };
        let mut in_flight = FuturesUnordered::new();
        while let Some(answered) = self.next_answer(&mut in_flight, &mut progress).await {
            match self.judge(answered, &mut progress) {
                Verdict::Carry(i, slot, connected) => {
                    // A slower open still in flight is dropped here: its stream is
                    // finished and stopped before any client byte.
                    drop(in_flight);
                    self.carry_to(i, connected, &mut tcp).await;
                    drop(slot);
                    return;
                }
                Verdict::Next => {}
                Verdict::Stop => break,
            }
        }
        self.give_up(&progress, &tcp);
    }

    /// The next answer: starts the next attempt when none is in flight, hedges one
    /// that waits too long (within the plan and the budget), and, when no hedge
    /// may be made, gives up on an open that still waits for longer and moves on.
    /// `None` when no attempt is left.
    async fn next_answer<'r>(
        &'r self,
        in_flight: &mut FuturesUnordered<Attempt<'r>>,
        progress: &mut Progress<'r>,
    ) -> Option<Answered<'r>> {
        loop {
            if in_flight.is_empty() {
                in_flight.push(self.next_attempt(progress, false)?);
            }
            let alone = in_flight.len() == 1 && progress.order.peek().is_some();
            let hedge = (alone && progress.may_hedge)
                .then(|| self.hedge_delay())
                .flatten();
            let abandon = (alone && self.plan.hedged() && !progress.may_hedge)
                .then(|| self.hedge_delay().map(|d| d * ABANDON_AFTER_HEDGE_DELAYS))
                .flatten();
            tokio::select! {
                Some(done) = in_flight.next() => {
                    progress.pending.retain(|i| *i != done.i);
                    return Some(done);
                }
                () = sleep_or_never(hedge) => match self.next_attempt(progress, true) {
                    Some(attempt) => in_flight.push(attempt),
                    None => progress.may_hedge = false,
                },
                () = sleep_or_never(abandon) => {
                    let given_up = progress.pending.clone();
                    let Some(next) = self.next_attempt(progress, false) else {
                        continue;
                    };
                    // The open left behind is dropped: its stream is reset before
                    // any client byte, as a hedge's loser's is.
                    in_flight.clear();
                    progress.pending.retain(|i| !given_up.contains(i));
                    self.note_abandoned(&given_up, progress);
                    in_flight.push(next);
                }
            }
        }
    }

    /// Starts the attempt on the next candidate the limits admit, when the plan
    /// and its budget allow one more (as a hedge of the one in flight, or after
    /// it failed).
    fn next_attempt<'r>(&'r self, progress: &mut Progress<'r>, hedge: bool) -> Option<Attempt<'r>> {
        if progress.attempts >= self.plan.attempts {
            return None;
        }
        let (i, slot) = self.admit_next(progress)?;
        let cluster = self.offer.traffic[i].cluster;
        let granted = if hedge {
            self.grant_hedge(cluster)
        } else {
            self.may_attempt(cluster, progress.attempts)
        };
        if !granted {
            return None;
        }
        progress.order.next();
        progress.attempts += 1;
        progress.pending.push(i);
        // With no candidate after this one, an open whose peer leaves rotation
        // has nowhere better to go: it waits for its answer (a starved or busy
        // peer still answers) instead of resetting the client.
        let last = progress.order.peek().is_none() || progress.attempts >= self.plan.attempts;
        Some(self.start(i, slot, !last))
    }

    /// The next candidate, with its slot where the policy counts streams; skips
    /// (and remembers) candidates at their connection limits.
    fn admit_next<'r>(&'r self, progress: &mut Progress<'r>) -> Option<(usize, Option<Slot<'r>>)> {
        loop {
            let i = *progress.order.peek()?;
            if !self.plan.declared {
                return Some((i, None));
            }
            let (table, key) = (&self.shared.traffic, &self.state.key);
            let cluster = self.offer.traffic[i].cluster;
            match table.admit(key, cluster, &self.policy.limits) {
                Admission::Admitted => {
                    let slot = Slot {
                        table,
                        key,
                        cluster,
                        pending: true,
                    };
                    return Some((i, Some(slot)));
                }
                refused => {
                    progress.over_limit.get_or_insert((cluster, refused));
                    progress.order.next();
                }
            }
        }
    }

    /// The attempt on candidate `i`: a stream to its peer, or, for this cluster's
    /// own endpoints under local-first, a plain connection.
    ///
    /// `may_leave` lets the open give up at once when its peer leaves rotation.
    fn start<'r>(&'r self, i: usize, mut slot: Option<Slot<'r>>, may_leave: bool) -> Attempt<'r> {
        let local = self.local_endpoints(i);
        Box::pin(async move {
            let result = match local {
                Some(endpoints) => connect_local(endpoints, self.timeouts.1)
                    .await
                    .map(Connected::Local)
                    .map_err(AttemptError::Local),
                None => {
                    let (peer, header) = (&self.state.peers[i].1, &self.state.header);
                    let _opening = peer.opening();
                    open_stream(peer, header, self.timeouts, may_leave)
                        .await
                        .map(|(send, recv)| Connected::Peer(send, recv))
                        .map_err(AttemptError::Open)
                }
            };
            if let Some(slot) = &mut slot {
                slot.answered();
            }
            Answered { i, slot, result }
        })
    }

    /// This cluster's own endpoints when candidate `i` stands for them.
    fn local_endpoints(&self, i: usize) -> Option<&'a Endpoints> {
        let local = self.offer.local.as_deref()?;
        (i >= self.state.peers.len()).then_some(local)
    }

    /// What `answered` means: the cluster carries the client, or the next one may,
    /// or none will. Failures are counted and logged here.
    fn judge<'r>(&self, answered: Answered<'r>, progress: &mut Progress<'r>) -> Verdict<'r> {
        let Answered { i, slot, result } = answered;
        let cluster = self.offer.traffic[i].cluster;
        let (shared, state) = (self.shared, self.state);
        progress.last_error = match result {
            Ok(connected) => {
                self.succeeded(cluster);
                return Verdict::Carry(i, slot, connected);
            }
            Err(AttemptError::Local(error)) => {
                warn!(%error, "local endpoint failed");
                self.note_outlier_failure(cluster);
                format!("local endpoint: {error}")
            }
            Err(AttemptError::Open(OpenError::Refused(answer))) => {
                let error = note_refusal(shared, state, &state.peers[i].1, &answer);
                if matches!(answer.status, Status::NoEndpoints | Status::Overloaded) {
                    self.note_outlier_failure(cluster);
                }
                // A denial is the federation's answer; any other refusal may not
                // hold at another cluster (no endpoints there, a stale catalog).
                if answer.status == Status::Denied {
                    progress.last_error = error;
                    return Verdict::Stop;
                }
                error
            }
            Err(AttemptError::Open(OpenError::Failed { label, error })) => {
                let peer = &state.peers[i].1;
                let error = note_open_failure(shared, state, peer, label, &error);
                self.note_outlier_failure(cluster);
                error
            }
        };
        Verdict::Next
    }

    /// The opens on `given_up` were given up: their peers are noted as having
    /// failed to answer in time.
    fn note_abandoned(&self, given_up: &[usize], progress: &mut Progress<'_>) {
        let error = "no answer after several RTTs; trying the next cluster";
        for (_, peer) in given_up.iter().filter_map(|i| self.state.peers.get(*i)) {
            progress.last_error =
                note_open_failure(self.shared, self.state, peer, "timeout", error);
        }
    }

    /// No cluster carried the client: counted, logged, and the client reset.
    fn give_up(&self, progress: &Progress<'_>, tcp: &TcpStream) {
        match progress.over_limit {
            Some((cluster, why)) if progress.attempts == 0 => self.refuse_over_limit(cluster, why),
            _ => warn!(
                error = %progress.last_error,
                attempts = progress.attempts,
                "no cluster carried the connection; resetting the client"
            ),
        }
        reset_tcp(tcp);
    }
}

/// Handshake and answer timeouts of one attempt: the policy's connect timeout
/// where it sets one, the tunnel's otherwise.
fn attempt_timeouts(shared: &Shared, policy: &TrafficPolicy) -> (Duration, Duration) {
    match policy.retries.connect_timeout {
        Some(t) => (shared.config.handshake_timeout().min(t), t),
        None => (
            shared.config.handshake_timeout(),
            shared.config.answer_timeout(),
        ),
    }
}

/// Connects to one of this cluster's own endpoints of the service, round-robin,
/// trying each once.
async fn connect_local(endpoints: &Endpoints, timeout: Duration) -> std::io::Result<TcpStream> {
    use std::sync::atomic::Ordering;
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

async fn sleep_or_never(delay: Option<Duration>) {
    match delay {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_policy_tries_every_exporter_hedged_and_a_declared_one_its_count() {
        let every = Plan::of(None);
        assert_eq!(every.attempts, u32::MAX);
        assert!(every.hedged() && !every.declared);
        let mut policy = TrafficPolicy::default();
        policy.retries.attempts = 2;
        let declared = Plan::of(Some(&policy));
        assert_eq!(declared.attempts, 2);
        assert!(declared.declared && !declared.hedged());
    }
}
