//! The pooled QUIC connection to one peer gateway and its control stream.
//!
//! A [`PeerConnection`] exists while some import refers to the peer. Its driver
//! task waits until a stream first needs the peer (the connection is opened
//! lazily), then keeps one connection up: it dials, opens the control stream,
//! probes every interval, and after a loss (or unanswered probes) dials again
//! with exponential backoff. Streams borrow the current connection; they never
//! dial themselves.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_trust::{ClusterName, ReplicaName};
use tokio::sync::{Notify, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::codec::{Answer, ControlMessage, Request, Status};
use super::frames::read_frame;
use super::metrics::{Direction, Metrics, PeerLabels, connection_error_reason};
use super::peers::{PeerHealth, PeerState, Transition};
use super::{CLOSE_PROBES_FAILED, CLOSE_UNUSED, PeerKey, PeerStats, Shared};

/// Server name sent in the TLS handshake. The trust crate's verifier checks the
/// peer's SPIFFE identity, not a DNS name, so any valid name works.
const SERVER_NAME: &str = "causeway-gateway";

/// Priority of control streams: probes and their answers go ahead of bulk data,
/// so a busy connection does not look dead.
pub(crate) const CONTROL_PRIORITY: i32 = 100;

/// Why a stream could not get a connection.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ConnectError {
    /// No connection came up within the handshake timeout.
    #[error("no connection to the peer within {0:?}")]
    Timeout(Duration),
    /// The peer was removed or the tunnel is closing.
    #[error("peer connection closed")]
    Closed,
}

/// Counters for status output.
#[derive(Debug, Default)]
pub(crate) struct PeerCounters {
    pub(crate) streams_active: AtomicU64,
    /// Opens in flight: counted as load from the moment they start, so that a
    /// burst of new streams does not all pick the replica none of them is on yet.
    opening: AtomicU64,
    pub(crate) streams_total: AtomicU64,
    pub(crate) bytes_sent: Arc<AtomicU64>,
    pub(crate) bytes_received: Arc<AtomicU64>,
}

/// An open in flight to a peer (see [`PeerConnection::opening`]).
#[derive(Debug)]
pub(crate) struct Opening<'a>(&'a AtomicU64);

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One peer gateway: its address, health, current connection and counters.
#[derive(Debug)]
pub(crate) struct PeerConnection {
    pub(crate) cluster: ClusterName,
    pub(crate) replica: Option<ReplicaName>,
    address: Mutex<SocketAddr>,
    pub(crate) health: Mutex<PeerHealth>,
    /// The connection new streams use; `None` while down or draining.
    conn: watch::Sender<Option<quinn::Connection>>,
    /// Set once a stream has needed the peer; the driver waits for it.
    wanted: AtomicBool,
    wake: Notify,
    pub(crate) counters: PeerCounters,
    last_error: Mutex<Option<String>>,
    cancel: CancellationToken,
}

impl PeerConnection {
    /// A peer and its driver task.
    pub(crate) fn spawn(
        shared: &Arc<Shared>,
        (cluster, replica): PeerKey,
        address: SocketAddr,
    ) -> Arc<PeerConnection> {
        let peer = Arc::new(PeerConnection {
            cluster,
            replica,
            address: Mutex::new(address),
            health: Mutex::new(PeerHealth::new(shared.config.probe_misses)),
            conn: watch::channel(None).0,
            wanted: AtomicBool::new(false),
            wake: Notify::new(),
            counters: PeerCounters::default(),
            last_error: Mutex::new(None),
            cancel: shared.shutdown.child_token(),
        });
        let span = info_span!("peer", peer.cluster = %peer.cluster, peer.replica = peer.replica.as_ref().map(tracing::field::display));
        tokio::spawn(drive(shared.clone(), peer.clone()).instrument(span));
        peer
    }

    pub(crate) fn set_address(&self, address: SocketAddr) {
        *self.address.lock().expect("address lock poisoned") = address;
    }

    fn address(&self) -> SocketAddr {
        *self.address.lock().expect("address lock poisoned")
    }

    /// Stops the driver and closes the connection; open streams on it end too.
    pub(crate) fn retire(&self) {
        self.cancel.cancel();
    }

    pub(crate) fn state(&self) -> PeerState {
        self.health.lock().expect("health lock poisoned").state()
    }

    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.health.lock().expect("health lock poisoned").rtt()
    }

    /// Streams open or being opened to this peer now: its load, when a cluster's
    /// replicas compete.
    pub(crate) fn active_streams(&self) -> u64 {
        self.counters.streams_active.load(Ordering::Relaxed)
            + self.counters.opening.load(Ordering::Relaxed)
    }

    /// Counts an open to this peer as load until the returned guard is dropped (the
    /// open answered, failed or was abandoned).
    pub(crate) fn opening(&self) -> Opening<'_> {
        self.counters.opening.fetch_add(1, Ordering::Relaxed);
        Opening(&self.counters.opening)
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.conn.borrow().is_some()
    }

    pub(crate) fn set_last_error(&self, error: impl Into<String>) {
        *self.last_error.lock().expect("error lock poisoned") = Some(error.into());
    }

    /// The current connection, dialling first if none was ever needed, other
    /// than `stale` (one that died under a stream: its peer restarted and reset
    /// it, or it was lost); waits up to `timeout` for the driver to bring one up.
    pub(crate) async fn connection_other_than(
        &self,
        stale: Option<&quinn::Connection>,
        timeout: Duration,
    ) -> Result<quinn::Connection, ConnectError> {
        let stale = stale.map(quinn::Connection::stable_id);
        let usable_one =
            |c: &quinn::Connection| Some(c.stable_id()) != stale && c.close_reason().is_none();
        // One borrow for the check and the clone: the driver may take the
        // connection away between two.
        if let Some(c) = self.conn.borrow().as_ref().filter(|c| usable_one(c)) {
            return Ok(c.clone());
        }
        if !self.wanted.swap(true, Ordering::SeqCst) {
            self.wake.notify_one();
        }
        let mut rx = self.conn.subscribe();
        let wait = async {
            rx.wait_for(|c| c.as_ref().is_some_and(usable_one))
                .await
                .map(|c| c.clone())
        };
        tokio::select! {
            r = tokio::time::timeout(timeout, wait) => match r {
                Ok(Ok(Some(c))) => Ok(c),
                Ok(Ok(None) | Err(_)) => Err(ConnectError::Closed),
                Err(_) => Err(ConnectError::Timeout(timeout)),
            },
            _ = self.cancel.cancelled() => Err(ConnectError::Closed),
        }
    }

    pub(crate) fn stats(&self) -> PeerStats {
        let health = self.health.lock().expect("health lock poisoned");
        PeerStats {
            cluster: self.cluster.clone(),
            replica: self.replica.clone(),
            address: self.address(),
            state: health.state(),
            connected: self.conn.borrow().is_some(),
            rtt: health.rtt(),
            rtt_p50: health.rtt_quantile(0.5),
            rtt_p99: health.rtt_quantile(0.99),
            streams_active: self.counters.streams_active.load(Ordering::Relaxed),
            streams_total: self.counters.streams_total.load(Ordering::Relaxed),
            bytes_sent: self.counters.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.counters.bytes_received.load(Ordering::Relaxed),
            last_error: self.last_error.lock().expect("error lock poisoned").clone(),
        }
    }

    /// Takes the peer out of rotation (if it was in) because its connection
    /// is gone, for `why`.
    fn connection_lost(&self, metrics: &Metrics, why: &str) {
        let t = self
            .health
            .lock()
            .expect("health lock poisoned")
            .on_connection_lost();
        self.transition(metrics, t, why);
    }

    fn transition(&self, metrics: &Metrics, t: Transition, why: &str) {
        match t {
            Transition::Up => {
                info!("peer in rotation");
                metrics.set_alive(self.cluster.as_str(), true);
            }
            Transition::Down => {
                warn!(reason = why, "peer out of rotation");
                metrics.set_alive(self.cluster.as_str(), false);
            }
            Transition::None => {}
        }
    }
}

/// The driver: lazily dial, run the connection, redial with backoff.
async fn drive(shared: Arc<Shared>, peer: Arc<PeerConnection>) {
    let cancel = peer.cancel.clone();
    if !peer.wanted.load(Ordering::SeqCst) {
        tokio::select! {
            _ = peer.wake.notified() => {}
            _ = cancel.cancelled() => return,
        }
    }
    let mut backoff = shared.config.backoff_min();
    // The last connection was ended by a stateless reset (see below).
    let mut restarted = false;
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let address = peer.address();
        match dial(&shared, address, redial_timeout(&shared, &peer)).await {
            Ok(conn) => {
                debug!(%address, "connected");
                backoff = shared.config.backoff_min();
                let reason = run_connection(&shared, &peer, conn.clone()).await;
                shared
                    .metrics
                    .connection_ended(peer.cluster.as_str(), &conn);
                peer.conn.send_replace(None);
                // A stateless reset comes from the peer's new process: it is up,
                // so it stays in rotation while the next connection is dialled (at
                // once), and streams wait for that instead of being refused. A
                // dial that fails takes it out.
                restarted = matches!(conn.close_reason(), Some(quinn::ConnectionError::Reset));
                if !restarted {
                    peer.connection_lost(&shared.metrics, &reason);
                }
                if cancel.is_cancelled() {
                    break;
                }
                info!(%reason, "connection ended; reconnecting");
                peer.set_last_error(reason);
                // Reconnect at once after a connection that worked.
                continue;
            }
            Err(reason) => {
                debug!(%address, %reason, backoff_ms = backoff.as_millis(), "dial failed");
                if std::mem::take(&mut restarted) {
                    peer.connection_lost(&shared.metrics, &reason);
                }
                peer.set_last_error(format!("dial {address}: {reason}"));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = cancel.cancelled() => break,
        }
        backoff = (backoff * 2).min(shared.config.backoff_max());
    }
    peer.conn.send_replace(None);
}

/// Fewest RTTs a redial waits for its handshake: QUIC needs one and a half, and a
/// lossy path may need a retransmission.
const REDIAL_RTTS: u32 = 4;
/// Shortest time a redial waits for its handshake, whatever the last RTT was.
const REDIAL_TIMEOUT_MIN: Duration = Duration::from_secs(1);

/// How long a dial waits for its handshake. A peer this gateway has measured gets
/// a few of its RTTs (at least a second), not the full handshake timeout: when a
/// peer is down, QUIC retransmits the first packet at growing intervals (1, 2, 4 s),
/// so a long wait would notice the peer's restart seconds late, while a fresh dial
/// sends a fresh first packet at once.
fn redial_timeout(shared: &Shared, peer: &PeerConnection) -> Duration {
    let full = shared.config.handshake_timeout();
    match peer.rtt() {
        Some(rtt) => (rtt * REDIAL_RTTS).max(REDIAL_TIMEOUT_MIN).min(full),
        None => full,
    }
}

async fn dial(
    shared: &Shared,
    address: SocketAddr,
    timeout: Duration,
) -> Result<quinn::Connection, String> {
    let connecting = shared
        .endpoint
        .connect(address, SERVER_NAME)
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => {
            let reason = connection_error_reason(&e);
            shared
                .metrics
                .handshake_failed(Direction::Outbound, &reason);
            Err(e.to_string())
        }
        Err(_) => {
            shared
                .metrics
                .handshake_failed(Direction::Outbound, "timeout");
            Err(format!("handshake timed out after {timeout:?}"))
        }
    }
}

/// Runs one connection until it is lost, its probes fail or the peer is retired;
/// returns why it ended.
async fn run_connection(
    shared: &Arc<Shared>,
    peer: &Arc<PeerConnection>,
    conn: quinn::Connection,
) -> String {
    let (mut send, recv) = match open_control(shared, &conn).await {
        Ok(s) => s,
        Err(e) => {
            // A peer that closed the connection said why (an identity it
            // refuses, a limit): its reason, not the stream error it caused.
            let reason = conn.close_reason().map_or(e, |r| r.to_string());
            conn.close(CLOSE_PROBES_FAILED, b"control stream refused");
            return reason;
        }
    };
    peer.health
        .lock()
        .expect("health lock poisoned")
        .on_connected();
    peer.conn.send_replace(Some(conn.clone()));

    let mut reader =
        tokio::spawn(read_control(shared.clone(), peer.clone(), recv).in_current_span());
    let interval = shared.config.probe_interval();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut frame = Vec::with_capacity(32);
    let reason = loop {
        tokio::select! {
            scheduled = ticker.tick() => {
                let now = Instant::now();
                // A timer that fires late means this process was starved; judging
                // the peer then would blame it for our own delay.
                let late = now.saturating_duration_since(scheduled.into_std()) > interval / 2;
                let (seq, t, missed) = {
                    let mut health = peer.health.lock().expect("health lock poisoned");
                    let (seq, t) = if late {
                        (health.on_probe_late(now), Transition::None)
                    } else {
                        health.on_probe_due(now)
                    };
                    (seq, t, health.missed())
                };
                if t == Transition::Down {
                    let why = format!("{missed} probes unanswered");
                    peer.transition(&shared.metrics, t, &why);
                }
                // Unanswered probes: dial a fresh connection. If the peer restarted
                // (its new endpoint silently drops our old connection's packets),
                // the fresh handshake succeeds at once; if it is gone, redialling
                // backs off. The old connection is not closed: streams still on it
                // (a slow peer's) keep their handles and finish or idle out.
                if missed >= shared.config.probe_misses {
                    break format!("{missed} probes unanswered; dialling a fresh connection");
                }
                frame.clear();
                ControlMessage::Probe(seq).encode(&mut frame);
                if let Err(e) = send.write_all(&frame).await {
                    break format!("control stream: {e}");
                }
            }
            r = &mut reader => {
                break match r {
                    Ok(why) => why,
                    Err(e) => format!("control reader failed: {e}"),
                };
            }
            e = conn.closed() => break e.to_string(),
            _ = peer.cancel.cancelled() => {
                conn.close(CLOSE_UNUSED, b"peer no longer imported");
                break "peer removed".to_owned();
            }
        }
    };
    reader.abort();
    reason
}

async fn open_control(
    shared: &Shared,
    conn: &quinn::Connection,
) -> Result<(quinn::SendStream, quinn::RecvStream), String> {
    let open = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        // Only fails on a closed stream, which the write below reports.
        let _ = send.set_priority(CONTROL_PRIORITY);
        let mut frame = Vec::with_capacity(16);
        Request::Control
            .encode(&mut frame)
            .map_err(|e| e.to_string())?;
        send.write_all(&frame).await.map_err(|e| e.to_string())?;
        read_frame(&mut recv, &mut frame)
            .await
            .map_err(|e| e.to_string())?;
        let answer = Answer::decode_body(&frame).map_err(|e| e.to_string())?;
        if answer.status != Status::Accepted {
            return Err(format!(
                "control stream refused: {} {}",
                answer.status.label(),
                answer.message
            ));
        }
        Ok((send, recv))
    };
    tokio::time::timeout(shared.config.answer_timeout(), open)
        .await
        .unwrap_or_else(|_| Err("control stream answer timed out".into()))
}

/// Reads probe answers and drain notices until the stream ends; returns why.
async fn read_control(
    shared: Arc<Shared>,
    peer: Arc<PeerConnection>,
    mut recv: quinn::RecvStream,
) -> String {
    let labels = PeerLabels {
        peer: peer.cluster.to_string(),
    };
    let rtt_histogram = shared.metrics.probe_rtt.get_or_create(&labels).clone();
    let mut body = Vec::with_capacity(32);
    loop {
        if let Err(e) = read_frame(&mut recv, &mut body).await {
            return format!("control stream: {e}");
        }
        match ControlMessage::decode_body(&body) {
            Ok(ControlMessage::ProbeAck(seq)) => {
                let (sample, t) = peer
                    .health
                    .lock()
                    .expect("health lock poisoned")
                    .on_ack(seq, Instant::now());
                if let Some(rtt) = sample {
                    rtt_histogram.observe(rtt.as_secs_f64());
                    debug!(rtt_us = rtt.as_micros(), seq, "probe ok");
                }
                peer.transition(&shared.metrics, t, "probe answered");
            }
            Ok(ControlMessage::Drain { deadline_ms }) => {
                let t = peer.health.lock().expect("health lock poisoned").on_drain();
                peer.conn.send_replace(None);
                info!(deadline_ms, "peer is draining");
                peer.transition(&shared.metrics, t, "peer draining");
            }
            Ok(ControlMessage::Probe(_)) => {
                // Only the dialling side probes; ignore a confused peer.
            }
            Err(e) => return format!("control stream: {e}"),
        }
    }
}
