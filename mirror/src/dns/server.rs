//! The sockets: one blocking UDP worker thread per `SO_REUSEPORT` socket, and a small
//! TCP loop on the runtime. Both answer from the table the [`ZoneHandle`] points at.
//! The UDP workers live in `udp`.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

mod udp;

use super::answer::Transport;
use super::config::DnsConfig;
use super::metrics::{Metrics, rcode_index};
use super::table::DnsTable;
use crate::config::ConfigError;
use udp::UdpWorker;

/// Kernel socket buffer per UDP worker, so bursts are queued rather than dropped.
const UDP_SOCKET_BUFFER: usize = 4 << 20;
/// Attempts at finding a port free for UDP and TCP alike when port 0 is configured.
const EPHEMERAL_BIND_ATTEMPTS: usize = 16;

/// Why the DNS server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A socket could not be set up.
    #[error("cannot listen for DNS on {addr} ({transport}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// `udp` or `tcp`.
        transport: &'static str,
        /// The error from the system.
        source: io::Error,
    },
}

/// The table being served. Cloning shares it; [`ZoneHandle::publish`] swaps in a new
/// table atomically, and queries in flight finish on the one they started with.
#[derive(Debug, Clone)]
pub struct ZoneHandle {
    table: Arc<ArcSwap<DnsTable>>,
    metrics: Metrics,
}

impl ZoneHandle {
    /// A handle serving `table`, reporting to `metrics`.
    pub fn new(table: DnsTable, metrics: Metrics) -> Self {
        metrics.serial.set(i64::from(table.serial()));
        metrics.services.set(table.service_count() as i64);
        Self {
            table: Arc::new(ArcSwap::from_pointee(table)),
            metrics,
        }
    }

    /// Serves `table` from now on.
    pub fn publish(&self, table: DnsTable) {
        self.metrics.serial.set(i64::from(table.serial()));
        self.metrics.services.set(table.service_count() as i64);
        self.table.store(Arc::new(table));
    }

    /// The table being served.
    pub fn current(&self) -> Arc<DnsTable> {
        self.table.load_full()
    }

    /// The metrics the server reports to.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// A running DNS server. Stop it with [`DnsServer::shutdown`].
#[derive(Debug)]
pub struct DnsServer {
    local_addr: SocketAddr,
    stop_udp: CancellationToken,
    udp_workers: Vec<JoinHandle<()>>,
    stop_tcp: CancellationToken,
    tcp: TaskTracker,
}

impl DnsServer {
    /// Binds UDP and TCP on `config.listen` and starts answering from `zone`.
    ///
    /// Must be called inside a Tokio runtime (the TCP side runs on it).
    pub async fn start(config: &DnsConfig, zone: ZoneHandle) -> Result<DnsServer, DnsError> {
        config.validate()?;
        let workers = config.effective_udp_workers();
        let (udp, tcp) = bind_all(config.listen, workers)?;
        let local_addr = tcp.local_addr().map_err(|source| DnsError::Bind {
            addr: config.listen,
            transport: "tcp",
            source,
        })?;

        let stop_udp = CancellationToken::new();
        let mut udp_workers = Vec::with_capacity(udp.len());
        for (index, socket) in udp.into_iter().enumerate() {
            let worker = UdpWorker {
                socket,
                table: zone.table.clone(),
                metrics: zone.metrics.clone(),
                stop: stop_udp.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("dns-udp-{index}"))
                .spawn(move || worker.run())
                .map_err(|source| DnsError::Bind {
                    addr: local_addr,
                    transport: "udp",
                    source,
                })?;
            udp_workers.push(handle);
        }

        let stop_tcp = CancellationToken::new();
        let tracker = TaskTracker::new();
        let tcp_loop = TcpLoop {
            listener: tcp,
            zone,
            idle: config.tcp_idle_timeout(),
            slots: Arc::new(Semaphore::new(config.max_tcp_connections)),
            stop: stop_tcp.clone(),
            tracker: tracker.clone(),
        };
        tracker.spawn(tcp_loop.run());
        info!(%local_addr, workers, zone = %config.zone, "DNS authority listening");
        Ok(DnsServer {
            local_addr,
            stop_udp,
            udp_workers,
            stop_tcp,
            tcp: tracker,
        })
    }

    /// The address both transports listen on (with the real port if 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops every worker and connection and waits for them.
    pub async fn shutdown(self) {
        self.stop_udp.cancel();
        self.stop_tcp.cancel();
        self.tcp.close();
        self.tcp.wait().await;
        let workers = self.udp_workers;
        let joined = tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
        })
        .await;
        if joined.is_err() {
            warn!("a DNS UDP worker panicked");
        }
    }
}

// === binding ===

fn bind_all(listen: SocketAddr, workers: usize) -> Result<(Vec<UdpSocket>, TcpListener), DnsError> {
    let attempts = if listen.port() == 0 {
        EPHEMERAL_BIND_ATTEMPTS
    } else {
        1
    };
    let mut last = None;
    for _ in 0..attempts {
        match bind_once(listen, workers) {
            Ok(bound) => return Ok(bound),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one attempt was made"))
}

fn bind_once(
    listen: SocketAddr,
    workers: usize,
) -> Result<(Vec<UdpSocket>, TcpListener), DnsError> {
    let udp_err = |source| DnsError::Bind {
        addr: listen,
        transport: "udp",
        source,
    };
    let first = udp_socket(listen).map_err(udp_err)?;
    let addr = first.local_addr().map_err(udp_err)?;
    let mut sockets = vec![first];
    for _ in 1..workers.max(1) {
        sockets.push(udp_socket(addr).map_err(udp_err)?);
    }
    let tcp = tcp_listener(addr).map_err(|source| DnsError::Bind {
        addr,
        transport: "tcp",
        source,
    })?;
    Ok((sockets, tcp))
}

fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(UDP_SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

// === TCP ===

struct TcpLoop {
    listener: TcpListener,
    zone: ZoneHandle,
    idle: Duration,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl TcpLoop {
    async fn run(self) {
        loop {
            let permit = tokio::select! {
                _ = self.stop.cancelled() => return,
                permit = self.slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let accepted = tokio::select! {
                _ = self.stop.cancelled() => return,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually out of descriptors; back off instead of spinning.
                    warn!(error = %e, "DNS TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let connection = TcpConnection {
                zone: self.zone.clone(),
                idle: self.idle,
                stop: self.stop.clone(),
            };
            self.tracker.spawn(async move {
                if let Err(e) = connection.serve(stream).await {
                    debug!(%peer, error = %e, "DNS TCP connection ended");
                }
                drop(permit);
            });
        }
    }
}

struct TcpConnection {
    zone: ZoneHandle,
    idle: Duration,
    stop: CancellationToken,
}

impl TcpConnection {
    async fn serve(self, mut stream: TcpStream) -> io::Result<()> {
        let counters = self.zone.metrics.per_rcode(Transport::Tcp);
        let mut query = Vec::with_capacity(512);
        let mut out = Vec::with_capacity(4096);
        let mut frame = Vec::with_capacity(4096);
        loop {
            let len = tokio::select! {
                _ = self.stop.cancelled() => return Ok(()),
                len = tokio::time::timeout(self.idle, stream.read_u16()) => match len {
                    Ok(Ok(len)) => len,
                    // Idle timeout or the client closed: both end the connection.
                    Ok(Err(_)) | Err(_) => return Ok(()),
                },
            };
            query.resize(usize::from(len), 0);
            match tokio::time::timeout(self.idle, stream.read_exact(&mut query)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(()),
            }
            let table = self.zone.table.load();
            let Some(answered) = table.respond(&query, Transport::Tcp, &mut out) else {
                self.zone.metrics.dropped.inc();
                return Ok(());
            };
            counters[rcode_index(answered.rcode)].inc();
            let out_len = u16::try_from(out.len()).expect("TCP answers are limited to 65535 bytes");
            frame.clear();
            frame.extend_from_slice(&out_len.to_be_bytes());
            frame.extend_from_slice(&out);
            stream.write_all(&frame).await?;
        }
    }
}
