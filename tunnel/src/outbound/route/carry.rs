//! Carrying a client once a cluster took it: spliced onto the accepted stream
//! with its accounting, or, for this cluster's own endpoints, plain TCP.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::{Connected, Route};
use crate::metrics::{Direction, Flow, Metrics, StreamLabels};
use crate::peer_connection::PeerConnection;
use crate::splice::{ByteCounters, CODE_TCP_RESET, SpliceOutcome, reset_tcp, splice};

impl Route<'_> {
    /// Carries `tcp` over what candidate `i` connected.
    pub(super) async fn carry_to(&self, i: usize, connected: Connected, tcp: &mut TcpStream) {
        match connected {
            Connected::Local(endpoint) => carry_local(tcp, endpoint).await,
            Connected::Peer(mut send, mut recv) => {
                let peer = &self.state.peers[i].1;
                if self.carry(peer, tcp, (&mut send, &mut recv)).await {
                    self.note_outlier_failure(&peer.cluster);
                }
            }
        }
    }

    /// Splices an accepted stream and accounts for it. Under a policy with an idle
    /// timeout, a stream that carries no byte either way for that long is reset on
    /// both sides. Returns whether an error tore the stream down.
    async fn carry(
        &self,
        peer: &PeerConnection,
        tcp: &mut TcpStream,
        (send, recv): (&mut quinn::SendStream, &mut quinn::RecvStream),
    ) -> bool {
        let (shared, idle) = (self.shared, self.policy.idle_timeout);
        let labels = StreamLabels {
            peer: peer.cluster.to_string(),
            service: self.state.service_label.clone(),
            direction: Direction::Outbound,
        };
        shared.metrics.streams_opened.get_or_create(&labels).inc();
        let active = shared.metrics.streams_active.get_or_create(&labels).clone();
        active.inc();
        peer.counters.streams_active.fetch_add(1, Ordering::Relaxed);
        peer.counters.streams_total.fetch_add(1, Ordering::Relaxed);
        let mut counters = self.byte_counters(peer);
        // Bytes either way, for the idle timer: a counter of this stream alone.
        let activity = Counter::<u64>::default();
        if idle.is_some() {
            counters.to_stream.push(activity.clone());
            counters.from_stream.push(activity.clone());
        }
        debug!("stream accepted");
        let buffer = shared.config.buffer_size;
        let outcome = match idle {
            None => Some(splice(tcp, send, recv, buffer, &counters).await),
            Some(idle) => tokio::select! {
                o = splice(tcp, send, recv, buffer, &counters) => Some(o),
                () = idle_for(&activity, idle) => None,
            },
        };
        peer.counters.streams_active.fetch_sub(1, Ordering::Relaxed);
        active.dec();
        match outcome {
            Some(outcome) => self.account(peer, &outcome),
            None => {
                self.close_idle(peer, idle);
                reset_tcp(tcp);
                let _ = send.reset(CODE_TCP_RESET);
                let _ = recv.stop(CODE_TCP_RESET);
                false
            }
        }
    }

    /// The byte counters a stream to `peer` adds to.
    fn byte_counters(&self, peer: &PeerConnection) -> ByteCounters {
        let (metrics, name) = (&self.shared.metrics, peer.cluster.as_str());
        ByteCounters {
            to_stream: vec![metrics.bytes_counter(name, Flow::Sent)],
            from_stream: vec![metrics.bytes_counter(name, Flow::Received)],
            peer_sent: Some(peer.counters.bytes_sent.clone()),
            peer_received: Some(peer.counters.bytes_received.clone()),
        }
    }

    /// Counts and logs a stream closed for idleness.
    fn close_idle(&self, peer: &PeerConnection, idle: Option<Duration>) {
        let labels = Metrics::traffic_labels(&self.state.key_label, peer.cluster.as_str());
        let timeouts = &self.shared.metrics.traffic_idle_timeouts;
        timeouts.get_or_create(&labels).inc();
        let idle_ms = idle.map(|d| d.as_millis() as u64);
        info!(idle_ms, "stream idle; closed");
    }

    /// Logs how a spliced stream ended, counting a teardown; returns whether it
    /// was torn down by an error.
    fn account(&self, peer: &PeerConnection, outcome: &SpliceOutcome) -> bool {
        let (sent, received) = (outcome.to_stream, outcome.from_stream);
        let Some(e) = &outcome.error else {
            debug!(sent, received, "stream done");
            return false;
        };
        let (peer, service) = (peer.cluster.as_str(), &self.state.service_label);
        let metrics = &self.shared.metrics;
        metrics.failed(peer, service, Direction::Outbound, "reset");
        info!(sent, received, error = %e, "stream torn down");
        true
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

/// Carries a client to a local endpoint: plain TCP both ways, no tunnel.
async fn carry_local(tcp: &mut TcpStream, mut endpoint: TcpStream) {
    let _ = endpoint.set_nodelay(true);
    debug!("carried to a local endpoint");
    if let Err(e) = tokio::io::copy_bidirectional(tcp, &mut endpoint).await {
        debug!(error = %e, "local stream torn down");
        reset_tcp(tcp);
    }
}
