//! Outbound: local clients of imported services, carried to peers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod policed;

use arc_swap::ArcSwap;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use prometheus_client::metrics::counter::Counter;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::codec::{Answer, Request, ServiceTarget, Status};
use super::frames::read_frame;
use super::metrics::{Direction, Flow, Metrics, StreamLabels};
use super::peer_connection::PeerConnection;
use super::peers::{Candidate, rank};
use super::splice::{ByteCounters, CODE_TCP_RESET, reset_tcp, splice};
use super::traffic::{PolicyKey, RetryBudget, TrafficPolicy};
use super::{Import, Shared, TunnelError};

/// A running import listener.
pub(crate) struct ImportHandle {
    local_addr: SocketAddr,
    state: Arc<ArcSwap<ImportState>>,
    cancel: CancellationToken,
}

/// What a client connection of an import needs: its target and its peers.
struct ImportState {
    target: ServiceTarget,
    service_label: String,
    /// The service (all ports), which traffic policies are keyed by.
    key: PolicyKey,
    /// `namespace/name`, the service label of traffic metrics.
    key_label: String,
    /// The encoded stream header, the same for every client.
    header: Vec<u8>,
    peers: Vec<(u32, Arc<PeerConnection>)>,
    /// Bounds hedged opens to [`HEDGE_BUDGET_PERCENT`] of client connections.
    hedge_budget: Mutex<RetryBudget>,
}

/// Hedged opens may add at most this many per cent to a service's stream opens
/// (plus the budget's small reserve): a slow exporter must not double the load on
/// the others.
const HEDGE_BUDGET_PERCENT: u32 = 10;
/// A hedge waits at least this many of the slow peer's RTTs: an answer needs one,
/// plus the exporter's connect to its endpoint.
const HEDGE_RTTS: u32 = 4;

pub(crate) async fn add_import(
    shared: &Arc<Shared>,
    import: Import,
) -> Result<SocketAddr, TunnelError> {
    if shared.draining.load(Ordering::SeqCst) || shared.shutdown.is_cancelled() {
        return Err(TunnelError::ShuttingDown);
    }
    let invalid = |reason: String| TunnelError::InvalidImport {
        target: import.target.clone(),
        reason,
    };
    import
        .target
        .validate()
        .map_err(|e| invalid(e.to_string()))?;
    let mut header = Vec::new();
    Request::Data {
        target: import.target.clone(),
        trace: None,
    }
    .encode(&mut header)
    .map_err(|e| invalid(e.to_string()))?;

    let peers = {
        let mut map = shared.peers.lock().expect("peer map lock poisoned");
        import
            .peers
            .iter()
            .map(|p| {
                let conn = map
                    .entry(p.cluster.clone())
                    .or_insert_with(|| PeerConnection::spawn(shared, p.cluster.clone(), p.gateway))
                    .clone();
                conn.set_address(p.gateway);
                (p.weight, conn)
            })
            .collect()
    };
    let state = Arc::new(ImportState {
        target: import.target.clone(),
        service_label: import.target.to_string(),
        key: PolicyKey::new(&import.target.namespace, &import.target.service),
        key_label: format!("{}/{}", import.target.namespace, import.target.service),
        header,
        peers,
        hedge_budget: Mutex::default(),
    });

    // Same bind address: swap the peers, keep the listener.
    {
        let imports = shared.imports.lock().expect("import map lock poisoned");
        if let Some(h) = imports.get(&(import.target.clone(), import.bind)) {
            h.state.store(state);
            let addr = h.local_addr;
            drop(imports);
            prune_peers(shared);
            return Ok(addr);
        }
    }

    let listener = bind_listener(import.bind).map_err(|source| TunnelError::Bind {
        addr: import.bind,
        source,
    })?;
    let local_addr = listener.local_addr().map_err(|source| TunnelError::Bind {
        addr: import.bind,
        source,
    })?;
    let handle = ImportHandle {
        local_addr,
        state: Arc::new(ArcSwap::new(state)),
        cancel: shared.shutdown.child_token(),
    };
    let span = info_span!("import", service = %import.target, listen = %local_addr);
    tokio::spawn(
        accept_loop(
            shared.clone(),
            listener,
            handle.state.clone(),
            handle.cancel.clone(),
        )
        .instrument(span),
    );
    info!(service = %import.target, listen = %local_addr, peers = import.peers.len(), "import listening");
    let old = shared
        .imports
        .lock()
        .expect("import map lock poisoned")
        .insert((import.target, import.bind), handle);
    // A new listener cannot leave a peer unused; only a replaced one can. Pruning
    // walks every import, so skipping it keeps adding n imports O(n), not O(n²).
    if let Some(old) = old {
        old.cancel.cancel();
        prune_peers(shared);
    }
    Ok(local_addr)
}

/// Backlog of import listeners: a proxy sees connection bursts (a client pool
/// opening at once), and the kernel caps it at `net.core.somaxconn` anyway.
const LISTEN_BACKLOG: u32 = 4096;

fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

pub(crate) fn remove_import(
    shared: &Arc<Shared>,
    target: &ServiceTarget,
    bind: SocketAddr,
) -> bool {
    let removed = shared
        .imports
        .lock()
        .expect("import map lock poisoned")
        .remove(&(target.clone(), bind));
    let existed = removed.is_some();
    if let Some(h) = removed {
        h.cancel.cancel();
        info!(service = %target, "import removed");
    }
    prune_peers(shared);
    existed
}

pub(crate) fn stop_all_listeners(shared: &Shared) {
    let imports = shared.imports.lock().expect("import map lock poisoned");
    for h in imports.values() {
        h.cancel.cancel();
    }
}

/// Retires peers no import refers to any more.
fn prune_peers(shared: &Shared) {
    let imports = shared.imports.lock().expect("import map lock poisoned");
    let mut peers = shared.peers.lock().expect("peer map lock poisoned");
    peers.retain(|cluster, conn| {
        let used = imports.values().any(|h| {
            h.state
                .load()
                .peers
                .iter()
                .any(|(_, p)| &p.cluster == cluster)
        });
        if !used {
            conn.retire();
        }
        used
    });
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    state: Arc<ArcSwap<ImportState>>,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = cancel.cancelled() => break,
        };
        match accepted {
            Ok((tcp, client)) => {
                let state = state.load_full();
                let span = info_span!("stream", service = %state.target, %client, peer.cluster = tracing::field::Empty);
                shared
                    .streams
                    .spawn(serve_client(shared.clone(), state, tcp).instrument(span));
            }
            Err(e) => {
                // Out of descriptors or similar: back off briefly instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    debug!("listener stopped");
}

/// Why a stream to one peer did not open.
#[derive(Debug)]
enum OpenError {
    /// The peer answered with a refusal.
    Refused(Answer),
    /// No connection, no answer in time, or a broken stream.
    Failed { label: &'static str, error: String },
}

/// Replaces the tunnel's traffic policies. A policy that fails validation is
/// left out (its service gets the default behaviour) and logged; faults are
/// logged loudly because they break traffic on purpose.
pub(crate) fn set_traffic_policies(
    shared: &Shared,
    policies: impl IntoIterator<Item = (PolicyKey, TrafficPolicy)>,
) {
    let mut table = HashMap::new();
    for (key, policy) in policies {
        let problems = policy.validate(&key.to_string());
        if !problems.is_empty() {
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            warn!(service = %key, problems = %problems.join("; "), "traffic policy refused; the service keeps the default");
            continue;
        }
        if policy.faults.is_active() {
            warn!(
                service = %key,
                abort_percent = policy.faults.abort_percent,
                delay_percent = policy.faults.delay_percent,
                delay_ms = policy.faults.delay.map(|d| d.as_millis() as u64),
                "FAULT INJECTION ON: new streams of this service are refused or delayed on purpose"
            );
        }
        table.insert(key, Arc::new(policy));
    }
    info!(services = table.len(), "traffic policies applied");
    shared.traffic.set_policies(table);
}

async fn serve_client(shared: Arc<Shared>, state: Arc<ImportState>, tcp: TcpStream) {
    // Latency over batching: requests are often small and the tunnel batches anyway.
    let _ = tcp.set_nodelay(true);
    match shared.traffic.policy(&state.key) {
        None => serve_by_rank(&shared, &state, tcp).await,
        Some(policy) => policed::serve_by_policy(&shared, &state, &policy, tcp).await,
    }
}

fn candidates(state: &ImportState) -> Vec<Candidate> {
    state
        .peers
        .iter()
        .map(|(weight, p)| Candidate {
            state: p.state(),
            rtt: p.rtt(),
            weight: *weight,
            connected: p.is_connected(),
        })
        .collect()
}

/// Without a traffic policy: every peer in rank order until one carries the client.
///
/// An open that has no answer after [`hedge_delay`] is raced by an open to the next
/// peer (a hedge), within the import's hedge budget; the first to be accepted
/// carries the client and the other is dropped. No client byte has been sent at
/// that point, so the loser costs the exporter a connection to its endpoint and
/// nothing else. A peer that freezes (before its probes notice) or whose endpoint
/// hangs then costs a client a few RTTs instead of the answer timeout.
async fn serve_by_rank(shared: &Shared, state: &ImportState, mut tcp: TcpStream) {
    let order = rank(&candidates(state));
    if order.is_empty() {
        warn!("no healthy peer exports the service; resetting the client");
        shared.metrics.failed(
            "",
            &state.service_label,
            Direction::Outbound,
            "no_healthy_peer",
        );
        reset_tcp(&tcp);
        return;
    }
    let timeouts = (
        shared.config.handshake_timeout(),
        shared.config.answer_timeout(),
    );
    state
        .hedge_budget
        .lock()
        .expect("hedge budget lock poisoned")
        .on_first_attempt(HEDGE_BUDGET_PERCENT);
    let mut order = order.into_iter().peekable();
    let open = |i: usize| {
        let peer = &state.peers[i].1;
        async move { (i, open_stream(shared, peer, &state.header, timeouts).await) }
    };
    let mut in_flight = FuturesUnordered::new();
    let mut last_error = String::new();
    let mut may_hedge = true;
    loop {
        if in_flight.is_empty() {
            match order.next() {
                Some(i) => in_flight.push(open(i)),
                None => break,
            }
        }
        let hedge = (may_hedge && in_flight.len() == 1 && order.peek().is_some())
            .then(|| hedge_delay(shared, state))
            .flatten();
        let (i, result) = tokio::select! {
            Some(done) = in_flight.next() => done,
            () = sleep_or_never(hedge) => {
                let granted = state
                    .hedge_budget
                    .lock()
                    .expect("hedge budget lock poisoned")
                    .try_retry();
                if !granted {
                    debug!("hedge budget spent; waiting for the open in flight");
                    may_hedge = false;
                    continue;
                }
                let next = order.next().expect("a hedge has a next peer");
                let to = state.peers[next].1.cluster.as_str();
                debug!(peer.cluster = to, "no answer yet; hedging to the next peer");
                shared
                    .metrics
                    .streams_hedged
                    .get_or_create(&Metrics::traffic_labels(&state.service_label, to))
                    .inc();
                in_flight.push(open(next));
                continue;
            }
        };
        let peer = &state.peers[i].1;
        match result {
            Ok((mut send, mut recv)) => {
                // A slower open still in flight is dropped here: its stream is
                // finished and stopped before any client byte.
                drop(in_flight);
                tracing::Span::current().record("peer.cluster", peer.cluster.as_str());
                carry(shared, state, peer, &mut tcp, &mut send, &mut recv, None).await;
                return;
            }
            Err(OpenError::Refused(answer)) => {
                last_error = note_refusal(shared, state, peer, &answer);
                if answer.status == Status::Denied {
                    break;
                }
            }
            Err(OpenError::Failed { label, error }) => {
                last_error = note_open_failure(shared, state, peer, label, &error);
            }
        }
    }
    warn!(error = %last_error, "no peer carried the connection; resetting the client");
    reset_tcp(&tcp);
}

/// How long an open may wait for its answer before it is hedged: [`HEDGE_RTTS`] of
/// the slowest exporter's RTT, at least `hedge_delay_ms`; `None` (never) with
/// hedging off.
fn hedge_delay(shared: &Shared, state: &ImportState) -> Option<Duration> {
    let floor = shared.config.hedge_delay();
    if floor.is_zero() {
        return None;
    }
    let rtt = state
        .peers
        .iter()
        .filter_map(|(_, p)| p.rtt())
        .max()
        .unwrap_or_default();
    Some(floor.max(rtt * HEDGE_RTTS))
}

async fn sleep_or_never(delay: Option<Duration>) {
    match delay {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Counts, logs and records a refusal; returns the error text.
fn note_refusal(
    shared: &Shared,
    state: &ImportState,
    peer: &PeerConnection,
    answer: &Answer,
) -> String {
    let peer_name = peer.cluster.as_str();
    let status = answer.status;
    shared.metrics.failed(
        peer_name,
        &state.service_label,
        Direction::Outbound,
        status.label(),
    );
    let error = format!(
        "{peer_name} answered {}: {}",
        status.label(),
        answer.message
    );
    peer.set_last_error(error.clone());
    warn!(peer.cluster = peer_name, status = status.label(), message = %answer.message, "stream refused");
    error
}

/// Counts, logs and records a failed open; returns the error text.
fn note_open_failure(
    shared: &Shared,
    state: &ImportState,
    peer: &PeerConnection,
    label: &str,
    error: &str,
) -> String {
    let peer_name = peer.cluster.as_str();
    shared
        .metrics
        .failed(peer_name, &state.service_label, Direction::Outbound, label);
    let error = format!("{peer_name}: {error}");
    peer.set_last_error(error.clone());
    warn!(peer.cluster = peer_name, %error, "stream to peer failed");
    error
}

async fn open_stream(
    shared: &Shared,
    peer: &PeerConnection,
    header: &[u8],
    (handshake_timeout, answer_timeout): (Duration, Duration),
) -> Result<(quinn::SendStream, quinn::RecvStream), OpenError> {
    let conn = peer
        .connection(handshake_timeout)
        .await
        .map_err(|e| OpenError::Failed {
            label: "unreachable",
            error: e.to_string(),
        })?;
    let failed = |error: String| OpenError::Failed {
        label: "stream_error",
        error,
    };
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| failed(e.to_string()))?;
        send.write_all(header)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut body = Vec::with_capacity(64);
        read_frame(&mut recv, &mut body)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let answer = Answer::decode_body(&body).map_err(|e| failed(e.to_string()))?;
        if answer.status == Status::Accepted {
            Ok((send, recv))
        } else {
            Err(OpenError::Refused(answer))
        }
    };
    // A peer that leaves rotation while we wait (probes stopped answering) will not
    // answer either: give up on it at once so the next peer gets the client,
    // instead of waiting out the whole answer timeout.
    let was_in_rotation = peer.state().in_rotation();
    let left_rotation = async {
        if !was_in_rotation {
            return std::future::pending::<()>().await;
        }
        loop {
            tokio::time::sleep(ROTATION_POLL).await;
            if !peer.state().in_rotation() {
                return;
            }
        }
    };
    let _ = shared;
    tokio::select! {
        r = tokio::time::timeout(answer_timeout, exchange) => match r {
            Ok(r) => r,
            Err(_) => Err(OpenError::Failed {
                label: "timeout",
                error: format!("no answer within {answer_timeout:?}"),
            }),
        },
        () = left_rotation => Err(OpenError::Failed {
            label: "peer_down",
            error: "the peer left rotation while the stream was opening".into(),
        }),
    }
}

/// How often a stream waiting for its answer checks that its peer is still in
/// rotation.
const ROTATION_POLL: Duration = Duration::from_millis(50);

/// Splices an accepted stream and accounts for it. With `idle`, a stream that
/// carries no byte either way for that long is reset on both sides. Returns
/// whether an error tore the stream down.
async fn carry(
    shared: &Shared,
    state: &ImportState,
    peer: &PeerConnection,
    tcp: &mut TcpStream,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    idle: Option<Duration>,
) -> bool {
    let peer_name = peer.cluster.as_str();
    let labels = StreamLabels {
        peer: peer_name.to_owned(),
        service: state.service_label.clone(),
        direction: Direction::Outbound,
    };
    shared.metrics.streams_opened.get_or_create(&labels).inc();
    let active = shared.metrics.streams_active.get_or_create(&labels).clone();
    active.inc();
    peer.counters.streams_active.fetch_add(1, Ordering::Relaxed);
    peer.counters.streams_total.fetch_add(1, Ordering::Relaxed);
    let mut counters = ByteCounters {
        to_stream: vec![shared.metrics.bytes_counter(peer_name, Flow::Sent)],
        from_stream: vec![shared.metrics.bytes_counter(peer_name, Flow::Received)],
        peer_sent: Some(peer.counters.bytes_sent.clone()),
        peer_received: Some(peer.counters.bytes_received.clone()),
    };
    // Bytes either way, for the idle timer: a counter of this stream alone.
    let activity = Counter::<u64>::default();
    if idle.is_some() {
        counters.to_stream.push(activity.clone());
        counters.from_stream.push(activity.clone());
    }
    debug!("stream accepted");
    let outcome = match idle {
        None => Some(splice(tcp, send, recv, shared.config.buffer_size, &counters).await),
        Some(idle) => tokio::select! {
            o = splice(tcp, send, recv, shared.config.buffer_size, &counters) => Some(o),
            () = idle_for(&activity, idle) => None,
        },
    };
    peer.counters.streams_active.fetch_sub(1, Ordering::Relaxed);
    active.dec();
    let Some(outcome) = outcome else {
        shared
            .metrics
            .traffic_idle_timeouts
            .get_or_create(&Metrics::traffic_labels(&state.key_label, peer_name))
            .inc();
        info!(
            idle_ms = idle.map(|d| d.as_millis() as u64),
            "stream idle; closed"
        );
        reset_tcp(tcp);
        let _ = send.reset(CODE_TCP_RESET);
        let _ = recv.stop(CODE_TCP_RESET);
        return false;
    };
    match &outcome.error {
        None => {
            debug!(
                sent = outcome.to_stream,
                received = outcome.from_stream,
                "stream done"
            );
            false
        }
        Some(e) => {
            shared.metrics.failed(
                peer_name,
                &state.service_label,
                Direction::Outbound,
                "reset",
            );
            info!(sent = outcome.to_stream, received = outcome.from_stream, error = %e, "stream torn down");
            true
        }
    }
}

/// Returns once `activity` has not moved for `idle`.
async fn idle_for(activity: &Counter<u64>, idle: Duration) {
    // A quarter of the timeout: closes within 125 % of it at worst.
    let tick = idle / 4;
    let mut seen = activity.get();
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let now = activity.get();
        if now != seen {
            seen = now;
            since = Instant::now();
        } else if since.elapsed() >= idle {
            return;
        }
    }
}
