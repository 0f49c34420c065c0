//! The east-west data plane: TCP carried as QUIC streams over mutual TLS.
//!
//! One [`Tunnel`] owns this gateway's QUIC endpoint (UDP, ALPN `causeway/1`), which
//! both accepts peers' connections and dials our own.
//!
//! ```text
//!  client ─TCP─▶ import listener ─┐            ┌─▶ access check ─▶ endpoint ─TCP─▶ service
//!                (outbound)       └─ stream ──▶┘   (inbound, round-robin)
//!                                 one QUIC connection per peer, one stream per client
//! ```
//!
//! - **Outbound**: [`Tunnel::add_import`] listens on a local TCP address per imported
//!   service port. Each client connection becomes one bidirectional stream on the
//!   pooled connection to the best peer exporting the service (see [`peers::rank`]),
//!   opened on first use and reopened with backoff after loss.
//! - **Inbound**: a peer's stream starts with a header ([`codec::Request`]); the
//!   peer's cluster (from its verified SPIFFE certificate) passes an
//!   [`AccessCheck`], a local endpoint from [`Tunnel::set_local_services`] is
//!   connected, the answer ([`codec::Answer`]) says `Accepted`, and bytes flow.
//! - **Control**: the dialling side opens one control stream per connection and
//!   probes every `probe_interval_ms`; the RTT and liveness it measures drive peer
//!   choice, and a draining gateway announces itself on it.
//!
//! Identity comes from `causeway-trust` (rustls configs; leaf renewal needs no
//! restart), traffic policies and the choice of cluster from `causeway-policy`.
//! Which services exist and who exports them comes from the caller (the gateway,
//! from the catalog); this crate must not depend on the registry, the mirror or
//! Kubernetes.

pub mod codec;
pub mod config;
mod frames;
mod inbound;
pub mod metrics;
mod outbound;
mod peer_connection;
pub mod peers;
mod reset_key;
mod splice;
pub mod traffic;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use causeway_trust::{ALPN_TUNNEL, ClusterName, GatewayIdentity, ReplicaName};
use rustls_pki_types::CertificateDer;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use codec::{Answer, FrameError, Request, ServiceTarget, Status, TraceContext};
pub use config::{ConfigError, Congestion, TunnelConfig};
pub use metrics::Metrics;
pub use peers::PeerState;
pub use reset_key::{KeySource, ResetKey};
pub use splice::{CODE_REFUSED, CODE_TCP_RESET, SpliceError};

use peer_connection::PeerConnection;

/// Connection close code: the gateway is shutting down.
const CLOSE_SHUTDOWN: quinn::VarInt = quinn::VarInt::from_u32(0);
/// Connection close code: the control stream could not be opened; a new
/// connection is tried.
const CLOSE_PROBES_FAILED: quinn::VarInt = quinn::VarInt::from_u32(1);
/// Connection close code: the peer presented no usable identity (none, or one of
/// another role than gateway); the close reason says which.
const CLOSE_NO_IDENTITY: quinn::VarInt = quinn::VarInt::from_u32(2);
/// Connection close code: no import refers to the peer any more.
const CLOSE_UNUSED: quinn::VarInt = quinn::VarInt::from_u32(3);
/// Connection close code: the peer's identity is no longer trusted (its cluster was
/// unlinked and its issuer denied).
const CLOSE_DENIED: quinn::VarInt = quinn::VarInt::from_u32(4);
/// Connection close code: the peer opened more than `max_connections_per_peer`
/// connections to this gateway, and this, its oldest, was replaced.
pub const CLOSE_TOO_MANY_CONNECTIONS: quinn::VarInt = quinn::VarInt::from_u32(5);

/// Errors of [`Tunnel`] operations.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The identity's TLS configuration cannot carry QUIC.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Tls(String),
    /// A socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// An import names an invalid service.
    #[error("invalid import {target}: {reason}")]
    InvalidImport {
        /// The import's service port.
        target: ServiceTarget,
        /// What is wrong.
        reason: String,
    },
    /// The tunnel is draining or closed.
    #[error("the tunnel is shutting down")]
    ShuttingDown,
}

/// Decides whether a peer cluster may open streams to a local service.
pub trait AccessCheck: Send + Sync + 'static {
    /// `Ok` to allow, `Err(reason)` to answer `Denied` with the reason.
    fn check(&self, peer: &ClusterName, target: &ServiceTarget) -> Result<(), String>;
}

/// An access check that lets every verified peer reach every exported service
/// (tests of the data plane alone).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl AccessCheck for AllowAll {
    fn check(&self, _: &ClusterName, _: &ServiceTarget) -> Result<(), String> {
        Ok(())
    }
}

/// One peer gateway (one replica of a peer cluster's gateway) exporting an imported
/// service. A cluster with several replicas is several `ImportPeer`s of one cluster:
/// each new stream goes to the cluster `choose` picks, and within it to the replica
/// with the least load for its RTT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportPeer {
    /// The peer's cluster.
    pub cluster: ClusterName,
    /// Which replica of the cluster's gateway; `None` for an unnamed single gateway.
    pub replica: Option<ReplicaName>,
    /// The peer gateway's QUIC address.
    pub gateway: SocketAddr,
    /// Preference among peers with equal RTT; higher wins.
    pub weight: u32,
}

/// An imported service port: where local clients connect and which peers export it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The service port.
    pub target: ServiceTarget,
    /// Local TCP address to accept clients on (port 0 picks one).
    pub bind: SocketAddr,
    /// The peers exporting it.
    pub peers: Vec<ImportPeer>,
}

/// A local service port peers may reach, with its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalService {
    /// The service port.
    pub target: ServiceTarget,
    /// Its endpoints (pod or host addresses).
    pub endpoints: Vec<SocketAddr>,
}

/// What [`Tunnel::peer_stats`] reports for one peer gateway.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerStats {
    /// The peer's cluster.
    pub cluster: ClusterName,
    /// Which replica of its gateway; `None` for an unnamed single gateway.
    pub replica: Option<ReplicaName>,
    /// The peer gateway's QUIC address.
    pub address: SocketAddr,
    /// Where it stands in rotation.
    pub state: PeerState,
    /// Whether a QUIC connection is open now.
    pub connected: bool,
    /// Smoothed probe RTT.
    pub rtt: Option<Duration>,
    /// Median of recent probe RTTs.
    pub rtt_p50: Option<Duration>,
    /// 99th percentile of recent probe RTTs.
    pub rtt_p99: Option<Duration>,
    /// Streams open to it now.
    pub streams_active: u64,
    /// Streams it has accepted since start.
    pub streams_total: u64,
    /// Payload bytes sent to it.
    pub bytes_sent: u64,
    /// Payload bytes received from it.
    pub bytes_received: u64,
    /// The last error seen on its connection or streams.
    pub last_error: Option<String>,
}

/// Local endpoints of one service port, with the round-robin cursor.
#[derive(Debug)]
struct Endpoints {
    addrs: Vec<SocketAddr>,
    next: AtomicUsize,
}

type ServiceTable = HashMap<ServiceTarget, Arc<Endpoints>>;

/// An inbound data stream carrying bytes now, as an access re-check sees it.
struct OpenStream {
    peer: ClusterName,
    target: ServiceTarget,
    /// Cancelled when a policy change no longer allows the stream.
    revoked: CancellationToken,
}

/// A peer's connection to our endpoint, with what identifies its certificate.
struct InboundConnection {
    peer: ClusterName,
    /// The certificate chain the peer presented, leaf first.
    chain: Vec<CertificateDer<'static>>,
    conn: quinn::Connection,
    /// When the handshake completed: the oldest of a peer's connections is the one
    /// replaced when it opens one too many.
    since: std::time::Instant,
}

/// One peer gateway: its cluster and, for a replicated one, its replica.
type PeerKey = (ClusterName, Option<ReplicaName>);

/// State every task of the tunnel shares.
struct Shared {
    config: TunnelConfig,
    endpoint: quinn::Endpoint,
    metrics: Arc<Metrics>,
    /// Traffic policies of imported services and their live state.
    traffic: traffic::TrafficTable,
    access: Arc<dyn AccessCheck>,
    services: ArcSwap<ServiceTable>,
    peers: Mutex<HashMap<PeerKey, Arc<PeerConnection>>>,
    /// Import listeners by service port and requested bind address: one service
    /// port may listen on several addresses (all exporters, or one cluster only).
    imports: Mutex<HashMap<(ServiceTarget, SocketAddr), outbound::ImportHandle>>,
    /// Every data stream, both directions; a drain waits for it to empty.
    streams: TaskTracker,
    draining: AtomicBool,
    /// `Some(deadline_ms)` once draining; control streams tell peers.
    drain_tx: watch::Sender<Option<u64>>,
    shutdown: CancellationToken,
    inbound_active: AtomicUsize,
    /// The part of `inbound_active` each peer cluster holds.
    inbound_by_peer: Mutex<HashMap<ClusterName, usize>>,
    /// Inbound data streams past the access check, by a per-tunnel id.
    open_streams: Mutex<HashMap<u64, OpenStream>>,
    next_stream_id: AtomicU64,
    /// Peers' connections to our endpoint, by quinn's stable id.
    inbound: Mutex<HashMap<usize, InboundConnection>>,
}

/// The QUIC tunnel of one gateway. Dropping it closes the endpoint.
pub struct Tunnel {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("local_addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl Tunnel {
    /// Binds the QUIC endpoint and starts accepting peers. Needs a Tokio runtime.
    ///
    /// 0-RTT is off on both sides: the bytes after a stream header are the
    /// client's own (an HTTP POST, a database write), and 0-RTT data can be
    /// replayed by anyone who captured it. TLS session resumption stays on (rustls'
    /// in-memory ticket cache): it shortens reconnects, sends nothing before the
    /// handshake completes, and the resumed session keeps the peer's verified
    /// certificate chain, so the identity check still applies.
    pub fn start(
        config: TunnelConfig,
        identity: Arc<GatewayIdentity>,
        metrics: Arc<Metrics>,
        access: Arc<dyn AccessCheck>,
    ) -> Result<Tunnel, TunnelError> {
        Self::start_with_reset_key(config, identity, metrics, access, &ResetKey::random())
    }

    /// [`Tunnel::start`] with the stateless-reset key kept across this gateway's
    /// restarts (see [`ResetKey`]), so peers drop their connections to a process
    /// that died at the first packet the next one answers.
    pub fn start_with_reset_key(
        config: TunnelConfig,
        identity: Arc<GatewayIdentity>,
        metrics: Arc<Metrics>,
        access: Arc<dyn AccessCheck>,
        reset_key: &ResetKey,
    ) -> Result<Tunnel, TunnelError> {
        config.validate()?;
        let transport = config.transport();

        let mut server_tls = identity.server_config(&[ALPN_TUNNEL]);
        server_tls.max_early_data_size = 0;
        let server_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)
            .map_err(|e| TunnelError::Tls(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(transport.clone());

        let mut client_tls = identity.client_config(&[ALPN_TUNNEL]);
        client_tls.enable_early_data = false;
        let client_crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls)
            .map_err(|e| TunnelError::Tls(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
        client.transport_config(transport);

        let socket = udp_socket(config.listen, config.udp_buffer_size).map_err(|source| {
            TunnelError::Bind {
                addr: config.listen,
                source,
            }
        })?;
        let mut endpoint = quinn::Endpoint::new(
            reset_key.endpoint_config(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| TunnelError::Bind {
            addr: config.listen,
            source,
        })?;
        endpoint.set_default_client_config(client);

        let shared = Arc::new(Shared {
            config,
            endpoint,
            metrics,
            traffic: traffic::TrafficTable::new(identity.id().cluster.clone()),
            access,
            services: ArcSwap::default(),
            peers: Mutex::default(),
            imports: Mutex::default(),
            streams: TaskTracker::new(),
            draining: AtomicBool::new(false),
            drain_tx: watch::channel(None).0,
            shutdown: CancellationToken::new(),
            inbound_active: AtomicUsize::new(0),
            inbound_by_peer: Mutex::default(),
            open_streams: Mutex::default(),
            next_stream_id: AtomicU64::new(0),
            inbound: Mutex::default(),
        });
        tokio::spawn(inbound::accept_loop(shared.clone()));
        info!(addr = %shared.endpoint.local_addr().map_or(shared.config.listen, |a| a), cluster = %identity.id().cluster, "tunnel listening");
        Ok(Tunnel { shared })
    }

    /// The UDP address peers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared
            .endpoint
            .local_addr()
            .unwrap_or(self.shared.config.listen)
    }

    /// Starts (or updates) the listener of an imported service port and returns
    /// the address it accepts clients on. Updating an import with the same bind
    /// address swaps its peers without touching open connections.
    pub async fn add_import(&self, import: Import) -> Result<SocketAddr, TunnelError> {
        outbound::add_import(&self.shared, import).await
    }

    /// Stops the listener of an imported service port at the bind address it was
    /// added with; open streams continue. Returns whether the import existed.
    pub fn remove_import(&self, target: &ServiceTarget, bind: SocketAddr) -> bool {
        outbound::remove_import(&self.shared, target, bind)
    }

    /// Replaces the table of local services peers may reach.
    pub fn set_local_services(&self, services: impl IntoIterator<Item = LocalService>) {
        let table: ServiceTable = services
            .into_iter()
            .map(|s| {
                (
                    s.target,
                    Arc::new(Endpoints {
                        addrs: s.endpoints,
                        next: AtomicUsize::new(0),
                    }),
                )
            })
            .collect();
        self.shared.services.store(Arc::new(table));
    }

    /// Replaces the traffic policies of imported services (see [`traffic`]); new
    /// streams follow them at once, open streams keep what they had.
    pub fn set_traffic_policies(
        &self,
        policies: impl IntoIterator<Item = (traffic::PolicyKey, causeway_policy::TrafficPolicy)>,
    ) {
        outbound::set_traffic_policies(&self.shared, policies);
    }

    /// Clusters that outlier detection has ejected now, by service.
    pub fn traffic_ejections(&self) -> Vec<traffic::Ejection> {
        self.shared.traffic.ejections(std::time::Instant::now())
    }

    /// Statistics of every peer gateway some import refers to, sorted by cluster.
    pub fn peer_stats(&self) -> Vec<PeerStats> {
        let peers = self.shared.peers.lock().expect("peer map lock poisoned");
        let mut stats: Vec<PeerStats> = peers.values().map(|p| p.stats()).collect();
        stats.sort_by(|a, b| (&a.cluster, &a.replica).cmp(&(&b.cluster, &b.replica)));
        stats
    }

    /// Checks every open inbound stream against the access check again and closes
    /// those it no longer allows (a policy change with `enforce = "all"`). Returns
    /// how many were closed.
    pub fn revoke_denied_streams(&self) -> usize {
        let open = self
            .shared
            .open_streams
            .lock()
            .expect("stream map lock poisoned");
        let mut revoked = 0;
        for stream in open.values() {
            if let Err(reason) = self.shared.access.check(&stream.peer, &stream.target) {
                info!(peer.cluster = %stream.peer, service = %stream.target, %reason, "closing a stream the access policy no longer allows");
                stream.revoked.cancel();
                revoked += 1;
            }
        }
        revoked
    }

    /// Closes every peer connection to our endpoint for which `denied(cluster,
    /// presented chain)` holds, e.g. connections through an issuer the federation
    /// no longer trusts. Returns how many were closed.
    pub fn close_inbound_where(
        &self,
        denied: impl Fn(&ClusterName, &[CertificateDer<'static>]) -> bool,
    ) -> usize {
        let mut inbound = self
            .shared
            .inbound
            .lock()
            .expect("connection map lock poisoned");
        let before = inbound.len();
        inbound.retain(|_, c| {
            if denied(&c.peer, &c.chain) {
                warn!(peer.cluster = %c.peer, "closing the connection of a peer no longer trusted");
                c.conn.close(CLOSE_DENIED, b"identity no longer trusted");
                false
            } else {
                true
            }
        });
        before - inbound.len()
    }

    /// Drains: stops accepting clients and peer streams, tells peers on the control
    /// streams, waits up to `deadline` (`drain_timeout_ms` if `None`) for in-flight
    /// streams, then closes. Returns how many streams were still open.
    pub async fn drain(&self, deadline: Option<Duration>) -> usize {
        let deadline = deadline.unwrap_or(self.shared.config.drain_timeout());
        let s = &self.shared;
        s.draining.store(true, std::sync::atomic::Ordering::SeqCst);
        outbound::stop_all_listeners(s);
        s.drain_tx.send_replace(Some(
            u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
        ));
        info!(
            streams = s.streams.len(),
            deadline_ms = deadline.as_millis(),
            "draining"
        );
        s.streams.close();
        let left = match tokio::time::timeout(deadline, s.streams.wait()).await {
            Ok(()) => 0,
            Err(_) => s.streams.len(),
        };
        if left > 0 {
            warn!(
                streams = left,
                "drain deadline passed; closing open streams"
            );
        }
        self.close();
        left
    }

    /// Closes the endpoint and every connection now.
    pub fn close(&self) {
        self.shared.shutdown.cancel();
        outbound::stop_all_listeners(&self.shared);
        self.shared.endpoint.close(CLOSE_SHUTDOWN, b"shutdown");
    }

    /// Waits until every connection has been closed (after [`Tunnel::close`]).
    pub async fn wait_idle(&self) {
        self.shared.endpoint.wait_idle().await;
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.close();
    }
}

/// A UDP socket with large buffers: at several Gbit/s the default 208 KiB
/// receive buffer overflows between two reads of the endpoint driver.
fn udp_socket(addr: SocketAddr, buffer: usize) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Failing leaves the system default, which still serves IPv6.
        let _ = socket.set_only_v6(false);
    }
    // The kernel caps these at net.core.{r,w}mem_max; a smaller buffer only costs
    // throughput, so failure is not fatal.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}
