//! Outbound: local clients of imported services, carried to peers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

mod offer;
mod replicas;
mod route;
mod stream;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::codec::{Request, ServiceTarget};
use super::metrics::Direction;
use super::peer_connection::PeerConnection;
use super::peers::Candidate;
use super::splice::reset_tcp;
use super::traffic::{PolicyKey, RetryBudget};
use super::{Import, Shared, TunnelError};
use causeway_policy::TrafficPolicy;
use route::{Plan, Route};

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
    /// Bounds hedged opens to a share of client connections (see `ranked`).
    hedge_budget: Mutex<RetryBudget>,
}

/// Starts (or updates) the listener of `import`; returns the address it listens on.
pub(crate) async fn add_import(
    shared: &Arc<Shared>,
    import: Import,
) -> Result<SocketAddr, TunnelError> {
    if shared.draining.load(Ordering::SeqCst) || shared.shutdown.is_cancelled() {
        return Err(TunnelError::ShuttingDown);
    }
    let header = encode_header(&import.target)?;
    let peers = peer_connections(shared, &import);
    let state = Arc::new(ImportState {
        target: import.target.clone(),
        service_label: import.target.to_string(),
        key: PolicyKey::new(&import.target.namespace, &import.target.service),
        key_label: format!("{}/{}", import.target.namespace, import.target.service),
        header,
        peers,
        hedge_budget: Mutex::default(),
    });
    if let Some(addr) = swap_peers(shared, &import, &state) {
        return Ok(addr);
    }
    let handle = listen(shared, &import, state)?;
    let local_addr = handle.local_addr;
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

/// The stream header every client of `target` sends, encoded once.
fn encode_header(target: &ServiceTarget) -> Result<Vec<u8>, TunnelError> {
    let invalid = |reason: String| TunnelError::InvalidImport {
        target: target.clone(),
        reason,
    };
    target.validate().map_err(|e| invalid(e.to_string()))?;
    let mut header = Vec::new();
    Request::Data {
        target: target.clone(),
        trace: None,
    }
    .encode(&mut header)
    .map_err(|e| invalid(e.to_string()))?;
    Ok(header)
}

/// The pooled connection to each peer exporting `import`, with its weight; a peer
/// not connected yet gets its connection (dialled on first use).
fn peer_connections(shared: &Arc<Shared>, import: &Import) -> Vec<(u32, Arc<PeerConnection>)> {
    let mut map = shared.peers.lock().expect("peer map lock poisoned");
    import
        .peers
        .iter()
        .map(|p| {
            let key = (p.cluster.clone(), p.replica.clone());
            let conn = map
                .entry(key.clone())
                .or_insert_with(|| PeerConnection::spawn(shared, key, p.gateway))
                .clone();
            conn.set_address(p.gateway);
            (p.weight, conn)
        })
        .collect()
}

/// With a listener on the same bind address already: swaps in the new peers and
/// keeps the listener; returns its address.
fn swap_peers(shared: &Shared, import: &Import, state: &Arc<ImportState>) -> Option<SocketAddr> {
    let imports = shared.imports.lock().expect("import map lock poisoned");
    let h = imports.get(&(import.target.clone(), import.bind))?;
    h.state.store(state.clone());
    let addr = h.local_addr;
    drop(imports);
    prune_peers(shared);
    Some(addr)
}

/// Binds the listener of `import` and starts accepting its clients.
fn listen(
    shared: &Arc<Shared>,
    import: &Import,
    state: Arc<ImportState>,
) -> Result<ImportHandle, TunnelError> {
    let bind_error = |source| TunnelError::Bind {
        addr: import.bind,
        source,
    };
    let listener = bind_listener(import.bind).map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
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
    Ok(handle)
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
    peers.retain(|(cluster, replica), conn| {
        let used = imports.values().any(|h| {
            h.state
                .load()
                .peers
                .iter()
                .any(|(_, p)| &p.cluster == cluster && &p.replica == replica)
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

/// The policy of a service that declares none: nearest cluster, no limits, no
/// ejection, no faults.
static DEFAULT_POLICY: LazyLock<TrafficPolicy> = LazyLock::new(TrafficPolicy::default);

/// Every client connection takes this route: the service's traffic policy (the
/// default one when none is declared), its faults, the order of clusters it
/// allows, then the attempts in that order (see [`Route`]).
async fn serve_client(shared: Arc<Shared>, state: Arc<ImportState>, tcp: TcpStream) {
    // Latency over batching: requests are often small and the tunnel batches anyway.
    let _ = tcp.set_nodelay(true);
    let declared = shared.traffic.policy(&state.key);
    let policy = declared.as_deref().unwrap_or(&DEFAULT_POLICY);
    if offer::inject_faults(&shared, &state, policy).await {
        reset_tcp(&tcp);
        return;
    }
    let offer = offer::offer(&shared, &state, policy);
    let load: Vec<u64> = state
        .peers
        .iter()
        .map(|(_, p)| p.active_streams())
        .collect();
    let order = replicas::order(
        policy,
        &offer.traffic,
        &offer.peers,
        &load,
        &mut rand::rng(),
    );
    if order.is_empty() {
        warn!(routing = %policy.routing, "no healthy cluster may serve the service; resetting the client");
        return refuse_unserved(&shared, &state, &tcp);
    }
    let plan = Plan::of(declared.as_deref());
    Route::new(&shared, &state, policy, plan, &offer)
        .serve(order, tcp)
        .await;
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

/// No cluster may serve the client now: counted, and the client reset.
fn refuse_unserved(shared: &Shared, state: &ImportState, tcp: &TcpStream) {
    shared.metrics.failed(
        "",
        &state.service_label,
        Direction::Outbound,
        "no_healthy_peer",
    );
    reset_tcp(tcp);
}
