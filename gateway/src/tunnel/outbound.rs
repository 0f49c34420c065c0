//! Outbound: local clients of imported services, carried to peers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::codec::{Answer, Request, ServiceTarget, Status};
use super::frames::read_frame;
use super::metrics::{Direction, Flow, StreamLabels};
use super::peer_connection::PeerConnection;
use super::peers::{Candidate, rank};
use super::splice::{ByteCounters, reset_tcp, splice};
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
    /// The encoded stream header, the same for every client.
    header: Vec<u8>,
    peers: Vec<(u32, Arc<PeerConnection>)>,
}

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
        header,
        peers,
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

async fn serve_client(shared: Arc<Shared>, state: Arc<ImportState>, mut tcp: TcpStream) {
    // Latency over batching: requests are often small and the tunnel batches anyway.
    let _ = tcp.set_nodelay(true);
    let candidates: Vec<Candidate> = state
        .peers
        .iter()
        .map(|(weight, p)| Candidate {
            state: p.state(),
            rtt: p.rtt(),
            weight: *weight,
            connected: p.is_connected(),
        })
        .collect();
    let order = rank(&candidates);
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
    let mut last_error = String::new();
    for i in order {
        let peer = &state.peers[i].1;
        let peer_name = peer.cluster.as_str();
        match open_stream(&shared, peer, &state.header).await {
            Ok((mut send, mut recv)) => {
                tracing::Span::current().record("peer.cluster", peer_name);
                carry(&shared, &state, peer, &mut tcp, &mut send, &mut recv).await;
                return;
            }
            Err(OpenError::Refused(answer)) => {
                let status = answer.status;
                shared.metrics.failed(
                    peer_name,
                    &state.service_label,
                    Direction::Outbound,
                    status.label(),
                );
                last_error = format!(
                    "{peer_name} answered {}: {}",
                    status.label(),
                    answer.message
                );
                peer.set_last_error(last_error.clone());
                warn!(peer.cluster = peer_name, status = status.label(), message = %answer.message, "stream refused");
                if status == Status::Denied {
                    break;
                }
            }
            Err(OpenError::Failed { label, error }) => {
                shared
                    .metrics
                    .failed(peer_name, &state.service_label, Direction::Outbound, label);
                last_error = format!("{peer_name}: {error}");
                peer.set_last_error(last_error.clone());
                warn!(peer.cluster = peer_name, %error, "stream to peer failed");
            }
        }
    }
    warn!(error = %last_error, "no peer carried the connection; resetting the client");
    reset_tcp(&tcp);
}

async fn open_stream(
    shared: &Shared,
    peer: &PeerConnection,
    header: &[u8],
) -> Result<(quinn::SendStream, quinn::RecvStream), OpenError> {
    let conn = peer
        .connection(shared.config.handshake_timeout())
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
    tokio::select! {
        r = tokio::time::timeout(shared.config.answer_timeout(), exchange) => match r {
            Ok(r) => r,
            Err(_) => Err(OpenError::Failed {
                label: "timeout",
                error: format!("no answer within {:?}", shared.config.answer_timeout()),
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

/// Splices an accepted stream and accounts for it.
async fn carry(
    shared: &Shared,
    state: &ImportState,
    peer: &PeerConnection,
    tcp: &mut TcpStream,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
) {
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
    let counters = ByteCounters {
        to_stream: vec![shared.metrics.bytes_counter(peer_name, Flow::Sent)],
        from_stream: vec![shared.metrics.bytes_counter(peer_name, Flow::Received)],
        peer_sent: Some(peer.counters.bytes_sent.clone()),
        peer_received: Some(peer.counters.bytes_received.clone()),
    };
    debug!("stream accepted");
    let outcome = splice(tcp, send, recv, shared.config.buffer_size, &counters).await;
    peer.counters.streams_active.fetch_sub(1, Ordering::Relaxed);
    active.dec();
    match &outcome.error {
        None => debug!(
            sent = outcome.to_stream,
            received = outcome.from_stream,
            "stream done"
        ),
        Some(e) => {
            shared.metrics.failed(
                peer_name,
                &state.service_label,
                Direction::Outbound,
                "reset",
            );
            info!(sent = outcome.to_stream, received = outcome.from_stream, error = %e, "stream torn down");
        }
    }
}
