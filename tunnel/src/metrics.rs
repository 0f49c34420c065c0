//! Tunnel metrics, registered under `causeway_tunnel_*`.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Which side of a stream this gateway is on.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Direction {
    /// A local client's connection carried to a peer.
    Outbound,
    /// A peer's stream carried to a local endpoint.
    Inbound,
}

/// Which way bytes went, seen from this gateway.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Flow {
    /// Sent to the peer.
    Sent,
    /// Received from the peer.
    Received,
}

impl EncodeLabelValue for Direction {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        })
    }
}

impl EncodeLabelValue for Flow {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Flow::Sent => "sent",
            Flow::Received => "received",
        })
    }
}

/// Labels naming one peer cluster.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// The peer's cluster name.
    pub peer: String,
}

/// Labels of a stream count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// The peer's cluster name.
    pub peer: String,
    /// `namespace/service:port`.
    pub service: String,
    /// Outbound or inbound.
    pub direction: Direction,
}

/// Labels of a failed stream.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamFailureLabels {
    /// The peer's cluster name (empty when no peer could be tried).
    pub peer: String,
    /// `namespace/service:port`.
    pub service: String,
    /// Outbound or inbound.
    pub direction: Direction,
    /// The answer's status, or `unreachable`, `timeout`, `reset`, `no_healthy_peer`.
    pub status: String,
}

/// Labels of a byte count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    /// The peer's cluster name.
    pub peer: String,
    /// Sent or received.
    pub flow: Flow,
}

/// Labels of a failed handshake.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    /// Outbound (we dialled) or inbound (a peer dialled us).
    pub direction: Direction,
    /// Why it failed: a TLS alert name, `timeout`, `refused`, `no_identity`,
    /// `wrong_role` (a certificate of another role than gateway), ...
    pub reason: String,
}

/// Labels of a pooled connection to a peer that ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionEndLabels {
    /// The peer's cluster name.
    pub peer: String,
    /// How it ended: `reset` (a stateless reset: the peer's process restarted),
    /// `probes` (probes went unanswered), `closed` (either side closed it),
    /// `idle_timeout`, or `lost` (any other transport error).
    pub reason: &'static str,
}

/// Labels of a traffic-policy event for one (service, cluster).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrafficLabels {
    /// `namespace/name` of the imported service.
    pub service: String,
    /// The exporting cluster.
    pub cluster: String,
}

/// Labels of a circuit-breaker refusal.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CircuitLabels {
    /// `namespace/name` of the imported service.
    pub service: String,
    /// The exporting cluster whose limit was reached (empty when every cluster's was).
    pub cluster: String,
    /// Which limit: `max_streams` or `max_pending`.
    pub limit: String,
}

/// Labels of an injected fault.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabels {
    /// `namespace/name` of the imported service.
    pub service: String,
    /// `delay` or `abort`.
    pub fault: String,
}

type HistogramFamily = Family<PeerLabels, Histogram, fn() -> Histogram>;

fn rtt_histogram() -> Histogram {
    // 50 µs (loopback) to ~1.6 s (a bad intercontinental path), doubling.
    Histogram::new(exponential_buckets(50e-6, 2.0, 16))
}

/// Everything the tunnel counts.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Probe round-trip time per peer.
    pub probe_rtt: HistogramFamily,
    /// 1 while a peer is in rotation, else 0.
    pub peer_alive: Family<PeerLabels, Gauge>,
    /// Streams accepted by the far side.
    pub streams_opened: Family<StreamLabels, Counter>,
    /// Streams refused or failed before carrying bytes, and streams torn down by an error.
    pub streams_failed: Family<StreamFailureLabels, Counter>,
    /// Streams open now.
    pub streams_active: Family<StreamLabels, Gauge>,
    /// Payload bytes carried.
    pub bytes: Family<BytesLabels, Counter>,
    /// Failed QUIC handshakes.
    pub handshake_failures: Family<HandshakeLabels, Counter>,
    /// Outlier ejections per (service, cluster).
    pub traffic_ejections: Family<TrafficLabels, Counter>,
    /// 1 while a cluster is ejected for a service, else 0.
    pub traffic_ejected: Family<TrafficLabels, Gauge>,
    /// Client connections refused at once by connection limits.
    pub traffic_circuit_refusals: Family<CircuitLabels, Counter>,
    /// Retries on another cluster, by the cluster retried on.
    pub traffic_retries: Family<TrafficLabels, Counter>,
    /// Retries not made because the retry budget was spent.
    pub traffic_retry_budget_exhausted: Family<TrafficLabels, Counter>,
    /// Faults injected into new streams.
    pub traffic_faults: Family<FaultLabels, Counter>,
    /// Streams closed by the idle timeout.
    pub traffic_idle_timeouts: Family<TrafficLabels, Counter>,
    /// Opens raced against a slow one, by service and the cluster raced to.
    pub streams_hedged: Family<TrafficLabels, Counter>,
    /// A peer's oldest connections closed because it opened more than
    /// `max_connections_per_peer`.
    pub connections_replaced: Family<PeerLabels, Counter>,
    /// Pooled connections to peers that ended, by how.
    pub connections_ended: Family<ConnectionEndLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty metrics, not yet registered.
    pub fn new() -> Self {
        Self {
            probe_rtt: Family::new_with_constructor(rtt_histogram),
            peer_alive: Family::default(),
            streams_opened: Family::default(),
            streams_failed: Family::default(),
            streams_active: Family::default(),
            bytes: Family::default(),
            handshake_failures: Family::default(),
            traffic_ejections: Family::default(),
            traffic_ejected: Family::default(),
            traffic_circuit_refusals: Family::default(),
            traffic_retries: Family::default(),
            traffic_retry_budget_exhausted: Family::default(),
            traffic_faults: Family::default(),
            traffic_idle_timeouts: Family::default(),
            streams_hedged: Family::default(),
            connections_replaced: Family::default(),
            connections_ended: Family::default(),
        }
    }

    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("causeway_tunnel");
        self.register_peers(r);
        self.register_streams(r);
        self.register_traffic(r);
    }

    /// Peer health and connections.
    fn register_peers(&self, r: &mut Registry) {
        r.register_with_unit(
            "peer_rtt",
            "Round-trip time of control-stream probes per peer",
            Unit::Seconds,
            self.probe_rtt.clone(),
        );
        r.register(
            "peer_alive",
            "Whether the peer is in rotation (probes pass)",
            self.peer_alive.clone(),
        );
        r.register(
            "handshake_failures",
            "Failed QUIC handshakes, by direction and reason",
            self.handshake_failures.clone(),
        );
        r.register(
            "peer_connections_ended",
            "Pooled connections to a peer that ended, by how (reset: the peer restarted)",
            self.connections_ended.clone(),
        );
        r.register(
            "connections_replaced",
            "Oldest connections of a peer closed because it opened more than max_connections_per_peer",
            self.connections_replaced.clone(),
        );
    }

    /// Streams and the bytes they carry.
    fn register_streams(&self, r: &mut Registry) {
        r.register(
            "streams_opened",
            "Streams accepted, by peer, service and direction",
            self.streams_opened.clone(),
        );
        r.register(
            "streams_failed",
            "Streams refused or torn down, by peer, service, direction and status",
            self.streams_failed.clone(),
        );
        r.register(
            "streams_active",
            "Streams open now",
            self.streams_active.clone(),
        );
        r.register_with_unit(
            "payload",
            "Payload bytes carried, by peer and flow",
            Unit::Bytes,
            self.bytes.clone(),
        );
        r.register(
            "streams_hedged",
            "Stream opens raced against one with no answer yet, by service and the cluster raced to",
            self.streams_hedged.clone(),
        );
    }

    /// What traffic policies did.
    fn register_traffic(&self, r: &mut Registry) {
        r.register(
            "traffic_ejections",
            "Outlier ejections, by service and cluster",
            self.traffic_ejections.clone(),
        );
        r.register(
            "traffic_ejected",
            "Whether a cluster is ejected for a service now",
            self.traffic_ejected.clone(),
        );
        r.register(
            "traffic_circuit_refusals",
            "Client connections refused by connection limits, by service, cluster and limit",
            self.traffic_circuit_refusals.clone(),
        );
        r.register(
            "traffic_retries",
            "Retries on another cluster, by service and the cluster retried on",
            self.traffic_retries.clone(),
        );
        r.register(
            "traffic_retry_budget_exhausted",
            "Retries not made because the retry budget was spent, by service and failed cluster",
            self.traffic_retry_budget_exhausted.clone(),
        );
        r.register(
            "traffic_faults",
            "Faults injected into new streams, by service and fault",
            self.traffic_faults.clone(),
        );
        r.register(
            "traffic_idle_timeouts",
            "Streams closed by the idle timeout, by service and cluster",
            self.traffic_idle_timeouts.clone(),
        );
    }

    /// The (service, cluster) labels of a traffic event.
    pub(crate) fn traffic_labels(service: &str, cluster: &str) -> TrafficLabels {
        TrafficLabels {
            service: service.to_owned(),
            cluster: cluster.to_owned(),
        }
    }

    pub(crate) fn failed(&self, peer: &str, service: &str, direction: Direction, status: &str) {
        self.streams_failed
            .get_or_create(&StreamFailureLabels {
                peer: peer.to_owned(),
                service: service.to_owned(),
                direction,
                status: status.to_owned(),
            })
            .inc();
    }

    /// Counts the end of the pooled connection `conn` to `peer`.
    pub(crate) fn connection_ended(&self, peer: &str, conn: &quinn::Connection) {
        use quinn::ConnectionError as E;
        let reason = match conn.close_reason() {
            None => "probes",
            Some(E::Reset) => "reset",
            Some(E::TimedOut) => "idle_timeout",
            Some(E::ApplicationClosed(_) | E::ConnectionClosed(_) | E::LocallyClosed) => "closed",
            Some(_) => "lost",
        };
        self.connections_ended
            .get_or_create(&ConnectionEndLabels {
                peer: peer.to_owned(),
                reason,
            })
            .inc();
    }

    pub(crate) fn handshake_failed(&self, direction: Direction, reason: &str) {
        self.handshake_failures
            .get_or_create(&HandshakeLabels {
                direction,
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub(crate) fn set_alive(&self, peer: &str, alive: bool) {
        self.peer_alive
            .get_or_create(&PeerLabels {
                peer: peer.to_owned(),
            })
            .set(i64::from(alive));
    }

    pub(crate) fn bytes_counter(&self, peer: &str, flow: Flow) -> Counter {
        self.bytes
            .get_or_create(&BytesLabels {
                peer: peer.to_owned(),
                flow,
            })
            .clone()
    }
}

/// A short label for why a connection or handshake failed.
pub(crate) fn connection_error_reason(e: &quinn::ConnectionError) -> String {
    use quinn::ConnectionError as E;
    match e {
        E::TimedOut => "timeout".into(),
        E::Reset => "reset".into(),
        E::VersionMismatch => "version_mismatch".into(),
        E::LocallyClosed => "locally_closed".into(),
        E::CidsExhausted => "cids_exhausted".into(),
        E::ApplicationClosed(_) => "application_closed".into(),
        E::ConnectionClosed(c) => tls_reason(u64::from(c.error_code)),
        E::TransportError(t) => tls_reason(u64::from(t.code)),
    }
}

/// QUIC carries TLS alerts as transport error codes 0x100 + alert.
fn tls_reason(code: u64) -> String {
    let Some(alert) = code.checked_sub(0x100).filter(|a| *a < 0x100) else {
        return "transport_error".into();
    };
    match alert {
        40 => "tls_handshake_failure",
        42 => "tls_bad_certificate",
        45 => "tls_certificate_expired",
        46 => "tls_certificate_unknown",
        48 => "tls_unknown_ca",
        51 => "tls_decrypt_error",
        116 => "tls_certificate_required",
        120 => "tls_no_application_protocol",
        _ => "tls_alert",
    }
    .into()
}
