//! Inbound: peers' connections and streams, carried to local endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use causeway_trust::ClusterName;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use super::codec::{Answer, ControlMessage, Request, ServiceTarget, Status};
use super::frames::{ReadFrameError, read_frame};
use super::metrics::{Direction, Flow, PeerLabels, StreamLabels, connection_error_reason};
use super::splice::{ByteCounters, CODE_REFUSED, splice};
use super::{
    CLOSE_NO_IDENTITY, CLOSE_TOO_MANY_CONNECTIONS, Endpoints, InboundConnection, OpenStream, Shared,
};

mod identity;

use identity::{close_reason, peer_cluster};

pub(crate) async fn accept_loop(shared: Arc<Shared>) {
    loop {
        let incoming = tokio::select! {
            i = shared.endpoint.accept() => i,
            _ = shared.shutdown.cancelled() => break,
        };
        let Some(incoming) = incoming else { break };
        tokio::spawn(serve_connection(shared.clone(), incoming));
    }
    debug!("QUIC accept loop stopped");
}

/// One peer's connection: the handshake, its identity, the per-peer connection
/// limit, then its streams until it closes.
async fn serve_connection(shared: Arc<Shared>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let Some(conn) = handshake(&shared, incoming).await else {
        return;
    };
    let (peer, chain) = match peer_cluster(&conn) {
        Ok(c) => c,
        Err(refusal) => {
            shared
                .metrics
                .handshake_failed(Direction::Inbound, refusal.label);
            warn!(%remote, reason = %refusal.message, "peer refused after its handshake");
            // The peer is told why, so its operator sees the cause, not a bare close.
            conn.close(CLOSE_NO_IDENTITY, close_reason(&refusal.message));
            return;
        }
    };
    let span = info_span!("peer_connection", peer.cluster = %peer, %remote);
    let id = conn.stable_id();
    let replaced = register(&shared, &peer, chain, &conn);
    close_replaced(&shared, &peer, remote, replaced);
    let _registered = Registered(shared.clone(), id);
    accept_streams(shared, peer, conn).instrument(span).await;
}

/// Completes the QUIC and TLS handshake within the handshake timeout; `None`
/// (counted and logged) when it fails.
async fn handshake(shared: &Shared, incoming: quinn::Incoming) -> Option<quinn::Connection> {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            shared
                .metrics
                .handshake_failed(Direction::Inbound, &connection_error_reason(&e));
            debug!(%remote, error = %e, "refused connection");
            return None;
        }
    };
    match tokio::time::timeout(shared.config.handshake_timeout(), connecting).await {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => {
            let reason = connection_error_reason(&e);
            shared.metrics.handshake_failed(Direction::Inbound, &reason);
            warn!(%remote, %reason, error = %e, "peer handshake failed");
            None
        }
        Err(_) => {
            shared
                .metrics
                .handshake_failed(Direction::Inbound, "timeout");
            warn!(%remote, "peer handshake timed out");
            None
        }
    }
}

/// Records `conn` as one of `peer`'s connections and returns those it replaces:
/// over `max_connections_per_peer`, the peer's oldest make room.
fn register(
    shared: &Shared,
    peer: &ClusterName,
    chain: Vec<CertificateDer<'static>>,
    conn: &quinn::Connection,
) -> Vec<InboundConnection> {
    let limit = shared.config.max_connections_per_peer as usize;
    // Counted and inserted under one lock, so racing handshakes of one peer
    // cannot all pass the check.
    let mut inbound = shared.inbound.lock().expect("connection map lock poisoned");
    let mut held: Vec<(std::time::Instant, usize)> = inbound
        .iter()
        .filter(|(_, c)| &c.peer == peer)
        .map(|(id, c)| (c.since, *id))
        .collect();
    // A gateway that redials after a crash must not be locked out by its dead
    // connections, which linger until their idle timeout. A peer that opens many
    // only closes its own.
    held.sort_unstable();
    let excess = (held.len() + 1).saturating_sub(limit);
    let replaced = held[..excess]
        .iter()
        .filter_map(|(_, id)| inbound.remove(id))
        .collect();
    inbound.insert(
        conn.stable_id(),
        InboundConnection {
            peer: peer.clone(),
            chain,
            conn: conn.clone(),
            since: std::time::Instant::now(),
        },
    );
    replaced
}

/// Closes the connections a newer one of the same peer replaced, counted and
/// logged with the limit.
fn close_replaced(
    shared: &Shared,
    peer: &ClusterName,
    remote: SocketAddr,
    replaced: Vec<InboundConnection>,
) {
    let limit = shared.config.max_connections_per_peer;
    for old in replaced {
        shared
            .metrics
            .connections_replaced
            .get_or_create(&PeerLabels {
                peer: peer.to_string(),
            })
            .inc();
        warn!(
            %remote, peer.cluster = %peer, limit,
            "peer opened too many connections; closing its oldest"
        );
        let reason = format!(
            "replaced: at most {limit} connections from cluster {peer}, this was the oldest"
        );
        old.conn
            .close(CLOSE_TOO_MANY_CONNECTIONS, reason.as_bytes());
    }
}

/// Serves each stream the peer opens on `conn` in a task of its own, until the
/// connection closes or the tunnel shuts down.
async fn accept_streams(shared: Arc<Shared>, peer: ClusterName, conn: quinn::Connection) {
    info!("peer connected");
    loop {
        let stream = tokio::select! {
            s = conn.accept_bi() => s,
            _ = shared.shutdown.cancelled() => break,
        };
        match stream {
            Ok((send, recv)) => {
                let task = serve_stream(shared.clone(), peer.clone(), send, recv);
                shared.streams.spawn(task.in_current_span());
            }
            Err(e) => {
                info!(reason = %e, "peer connection closed");
                break;
            }
        }
    }
}

/// Removes a connection from the tunnel's map when its task ends.
struct Registered(Arc<Shared>, usize);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0
            .inbound
            .lock()
            .expect("connection map lock poisoned")
            .remove(&self.1);
    }
}

/// The cluster named in the peer's verified certificate, which must be a gateway's
/// (an operator's or a workload's certificate of the federation opens no tunnel),
/// and the chain it presented.
/// Sends an error answer, finishes our side and stops theirs.
async fn refuse(
    shared: &Shared,
    peer: &ClusterName,
    service: &str,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    answer: Answer,
) {
    shared.metrics.failed(
        peer.as_str(),
        service,
        Direction::Inbound,
        answer.status.label(),
    );
    let mut frame = Vec::with_capacity(64 + answer.message.len());
    if answer.encode(&mut frame).is_ok() {
        // A peer that already went away cannot be told; nothing else to do.
        let _ = send.write_all(&frame).await;
    }
    let _ = send.finish();
    let _ = recv.stop(CODE_REFUSED);
    // Let the answer go out before the handles drop, but never wait forever.
    let _ = tokio::time::timeout(shared.config.answer_timeout(), send.stopped()).await;
}

async fn serve_stream(
    shared: Arc<Shared>,
    peer: ClusterName,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let mut body = Vec::with_capacity(256);
    let read = tokio::time::timeout(
        shared.config.handshake_timeout(),
        read_frame(&mut recv, &mut body),
    )
    .await;
    let request = match read {
        Ok(Ok(())) => Request::decode_body(&body),
        Ok(Err(ReadFrameError::Frame(e))) => Err(e),
        Ok(Err(ReadFrameError::Stream(e))) => {
            debug!(error = %e, "stream failed before its header");
            return;
        }
        Err(_) => {
            let waited = shared.config.handshake_timeout();
            warn!(waited_ms = waited.as_millis(), "no stream header in time");
            let answer = Answer::new(
                Status::Malformed,
                format!("no stream header within {} ms", waited.as_millis()),
            );
            return refuse(&shared, &peer, "", send, recv, answer).await;
        }
    };
    match request {
        Err(e) => {
            warn!(error = %e, "bad stream header");
            let answer = Answer::new(e.status(), e.to_string());
            refuse(&shared, &peer, "", send, recv, answer).await;
        }
        Ok(Request::Control) => {
            // Control streams live as long as the connection; a drain must not wait
            // for them.
            tokio::spawn(serve_control(shared, send, recv).in_current_span());
        }
        Ok(Request::Data { target, trace }) => {
            let span = info_span!("stream", service = %target, traceparent = trace.as_ref().map(|t| t.traceparent.as_str()));
            serve_data(&shared, &peer, target, send, recv)
                .instrument(span)
                .await;
        }
    }
}

async fn serve_data(
    shared: &Shared,
    peer: &ClusterName,
    target: ServiceTarget,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let service = target.to_string();
    let (_slot, tcp) = match admit(shared, peer, &target).await {
        Ok(admitted) => admitted,
        Err(answer) => return refuse(shared, peer, &service, send, recv, answer).await,
    };
    let _ = tcp.set_nodelay(true);
    let mut frame = Vec::with_capacity(8);
    Answer::accepted()
        .encode(&mut frame)
        .expect("an empty answer fits");
    if let Err(e) = send.write_all(&frame).await {
        debug!(error = %e, "peer went away before the answer");
        return;
    }
    carry(shared, peer, &target, tcp, send, recv).await;
}

/// Everything a stream must pass before its endpoint is connected: the gateway
/// is not draining, the pool and the peer's share have a slot, the access policy
/// allows the peer, the service is exported here, and an endpoint accepts. The
/// slot and the endpoint's connection, or the refusal to answer.
async fn admit<'a>(
    shared: &'a Shared,
    peer: &ClusterName,
    target: &ServiceTarget,
) -> Result<(InboundSlot<'a>, TcpStream), Answer> {
    if shared.draining.load(Ordering::SeqCst) {
        return Err(Answer::new(Status::Overloaded, "gateway is draining"));
    }
    let slot = InboundSlot::take(shared, peer).map_err(|r| Answer::new(Status::Overloaded, r))?;
    if let Err(reason) = shared.access.check(peer, target) {
        info!(%reason, "access denied");
        return Err(Answer::new(Status::Denied, reason));
    }
    let Some(endpoints) = shared.services.load().get(target).cloned() else {
        let message = format!("{target} is not exported here");
        return Err(Answer::new(Status::NoSuchService, message));
    };
    match connect_endpoint(shared, &endpoints).await {
        Ok(tcp) => Ok((slot, tcp)),
        Err(error) => {
            warn!(%error, "no endpoint accepted the connection");
            Err(Answer::new(Status::NoEndpoints, error))
        }
    }
}

/// Splices an accepted stream to its endpoint and accounts for it; a stream the
/// access policy stops allowing meanwhile is reset.
async fn carry(
    shared: &Shared,
    peer: &ClusterName,
    target: &ServiceTarget,
    mut tcp: TcpStream,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let service = target.to_string();
    let labels = StreamLabels {
        peer: peer.to_string(),
        service: service.clone(),
        direction: Direction::Inbound,
    };
    shared.metrics.streams_opened.get_or_create(&labels).inc();
    let active = shared.metrics.streams_active.get_or_create(&labels).clone();
    active.inc();
    let open = OpenGuard::register(shared, peer, target);
    // From the peer's point of view: what we send it left our endpoint.
    let counters = ByteCounters {
        to_stream: vec![shared.metrics.bytes_counter(peer.as_str(), Flow::Sent)],
        from_stream: vec![shared.metrics.bytes_counter(peer.as_str(), Flow::Received)],
        peer_sent: None,
        peer_received: None,
    };
    let size = shared.config.buffer_size;
    let spliced = tokio::select! {
        outcome = splice(&mut tcp, &mut send, &mut recv, size, &counters) => Some(outcome),
        _ = open.revoked.cancelled() => None,
    };
    drop(open);
    active.dec();
    let failed = |label: &str| {
        shared
            .metrics
            .failed(peer.as_str(), &service, Direction::Inbound, label);
    };
    let Some(outcome) = spliced else {
        failed(Status::Denied.label());
        let _ = send.reset(CODE_REFUSED);
        let _ = recv.stop(CODE_REFUSED);
        info!("stream closed: the access policy no longer allows it");
        return;
    };
    let (sent, received) = (outcome.to_stream, outcome.from_stream);
    match outcome.error {
        None => debug!(sent, received, "stream done"),
        Some(e) => {
            failed("reset");
            info!(sent, received, error = %e, "stream torn down");
        }
    }
}

/// Connects to the service's endpoints round-robin, moving on after a refusal or
/// a timeout.
async fn connect_endpoint(shared: &Shared, endpoints: &Endpoints) -> Result<TcpStream, String> {
    let n = endpoints.addrs.len();
    if n == 0 {
        return Err("the service has no endpoints".into());
    }
    let start = endpoints.next.fetch_add(1, Ordering::Relaxed);
    let mut errors = Vec::new();
    for k in 0..n {
        let addr: SocketAddr = endpoints.addrs[(start + k) % n];
        let timeout = shared.config.endpoint_connect_timeout();
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e)) => errors.push(format!("{addr}: {e}")),
            Err(_) => errors.push(format!("{addr}: no connection within {timeout:?}")),
        }
        debug!(endpoint = %addr, error = errors.last().map(String::as_str), "endpoint failed; trying the next");
    }
    Err(errors.join("; "))
}

/// An entry in the tunnel's map of open streams, removed on drop.
struct OpenGuard<'a> {
    shared: &'a Shared,
    id: u64,
    revoked: tokio_util::sync::CancellationToken,
}

impl<'a> OpenGuard<'a> {
    fn register(shared: &'a Shared, peer: &ClusterName, target: &ServiceTarget) -> Self {
        let id = shared.next_stream_id.fetch_add(1, Ordering::Relaxed);
        let revoked = tokio_util::sync::CancellationToken::new();
        shared
            .open_streams
            .lock()
            .expect("stream map lock poisoned")
            .insert(
                id,
                OpenStream {
                    peer: peer.clone(),
                    target: target.clone(),
                    revoked: revoked.clone(),
                },
            );
        Self {
            shared,
            id,
            revoked,
        }
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.shared
            .open_streams
            .lock()
            .expect("stream map lock poisoned")
            .remove(&self.id);
    }
}

/// A slot under `max_inbound_streams_per_peer` and `max_inbound_streams`,
/// released on drop.
struct InboundSlot<'a> {
    shared: &'a Shared,
    peer: ClusterName,
}

impl<'a> InboundSlot<'a> {
    /// A slot for `peer`, or why there is none.
    fn take(shared: &'a Shared, peer: &ClusterName) -> Result<Self, String> {
        let per_peer = shared.config.max_inbound_streams_per_peer;
        {
            let mut by_peer = shared.inbound_by_peer.lock().expect("slot lock poisoned");
            let held = by_peer.entry(peer.clone()).or_default();
            if *held >= per_peer {
                return Err(format!(
                    "{per_peer} streams in flight from cluster {peer} (the per-peer limit)"
                ));
            }
            *held += 1;
        }
        let slot = Self {
            shared,
            peer: peer.clone(),
        };
        let before = shared.inbound_active.fetch_add(1, Ordering::SeqCst);
        if before >= shared.config.max_inbound_streams {
            // Dropping the slot returns both counts.
            return Err(format!(
                "{} streams in flight (the limit)",
                shared.config.max_inbound_streams
            ));
        }
        Ok(slot)
    }
}

impl Drop for InboundSlot<'_> {
    fn drop(&mut self) {
        self.shared.inbound_active.fetch_sub(1, Ordering::SeqCst);
        let mut by_peer = self
            .shared
            .inbound_by_peer
            .lock()
            .expect("slot lock poisoned");
        if let Some(held) = by_peer.get_mut(&self.peer) {
            *held -= 1;
            if *held == 0 {
                by_peer.remove(&self.peer);
            }
        }
    }
}

/// Answers the peer's probes and tells it when we drain.
async fn serve_control(
    shared: Arc<Shared>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let mut frame = Vec::with_capacity(16);
    Answer::accepted()
        .encode(&mut frame)
        .expect("an empty answer fits");
    if send.write_all(&frame).await.is_err() {
        return;
    }
    debug!("control stream open");
    // The reader forwards probes; the writer owns the send half, so acks and the
    // drain notice never interleave mid-frame.
    let (tx, mut rx) = mpsc::channel::<ControlMessage>(16);
    let reader = tokio::spawn(async move {
        let mut body = Vec::with_capacity(32);
        while read_frame(&mut recv, &mut body).await.is_ok() {
            match ControlMessage::decode_body(&body) {
                Ok(ControlMessage::Probe(seq)) => {
                    if tx.send(ControlMessage::ProbeAck(seq)).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    debug!(error = %e, "bad control frame");
                    break;
                }
            }
        }
    });
    let mut drain_rx = shared.drain_tx.subscribe();
    // A drain that began before this stream opened is announced at once.
    drain_rx.mark_changed();
    loop {
        let msg = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
            r = drain_rx.changed() => {
                if r.is_err() {
                    break;
                }
                match *drain_rx.borrow_and_update() {
                    Some(deadline_ms) => ControlMessage::Drain { deadline_ms },
                    None => continue,
                }
            }
            _ = shared.shutdown.cancelled() => break,
        };
        frame.clear();
        msg.encode(&mut frame);
        if send.write_all(&frame).await.is_err() {
            break;
        }
    }
    reader.abort();
}
