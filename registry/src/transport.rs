//! Mutual-TLS plumbing for the registry's gRPC: the server's incoming stream of TLS
//! connections, the client's TLS connector, and fault injection for tests.
//!
//! The rustls configurations come from the caller (the trust crate's
//! `GatewayIdentity::server_config` / `client_config`), so this module never sees keys.

use std::collections::HashSet;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use causeway_trust::IssuerDenylist;
use futures::FutureExt as _;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::{CancellationToken, DropGuard, WaitForCancellationFutureOwned};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client waits for a TCP connection; loopback and LAN peers answer in
/// milliseconds, so a second means the member is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 keep-alive: notices a silently dead peer within a few seconds.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The TLS configurations a registry member uses: one for its server, one for the
/// connections it opens to other members.
#[derive(Clone)]
pub struct TlsConfigs {
    /// Server side; must request and verify client certificates (mutual TLS) and offer
    /// ALPN `h2`.
    pub server: Arc<rustls::ServerConfig>,
    /// Client side; must present a client certificate and offer ALPN `h2`.
    pub client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TlsConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfigs { .. }")
    }
}

/// A switch between members for fault-injection tests: Raft messages between blocked
/// pairs are dropped by the sender, as a network partition would.
#[derive(Debug, Clone, Default)]
pub struct NetworkSwitch {
    blocked: Arc<RwLock<HashSet<(u64, u64)>>>,
}

impl NetworkSwitch {
    /// A switch that lets everything through.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops messages in both directions between `a` and `b`.
    pub fn block(&self, a: u64, b: u64) {
        let mut set = self.blocked.write().expect("switch lock poisoned");
        set.insert((a, b));
        set.insert((b, a));
    }

    /// Cuts `group` off from every member in `others`, both ways.
    pub fn partition(&self, group: &[u64], others: &[u64]) {
        for a in group {
            for b in others {
                self.block(*a, *b);
            }
        }
    }

    /// Lets everything through again.
    pub fn heal(&self) {
        self.blocked.write().expect("switch lock poisoned").clear();
    }

    /// Whether a message from `from` to `to` gets through.
    pub fn allows(&self, from: u64, to: u64) -> bool {
        !self
            .blocked
            .read()
            .expect("switch lock poisoned")
            .contains(&(from, to))
    }
}

/// A connection that fails as soon as `cancel` fires, so a stopped member's
/// connections (and those of a peer whose issuer was just denied) close at once
/// instead of lingering in the HTTP/2 server.
pub(crate) struct Killable<T> {
    inner: T,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Ends the connection's denylist watcher when the connection goes away.
    _watcher: Option<DropGuard>,
}

impl<T> Killable<T> {
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.cancelled.poll_unpin(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "registry connection closed (member stopped or peer issuer denied)",
            ));
        }
        Ok(())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Killable<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Killable<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: Connected> Connected for Killable<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The server's incoming connections: TLS-wrapped TCP streams, each failing once
/// `cancel` fires.
pub(crate) type Incoming = tokio_stream::wrappers::ReceiverStream<
    io::Result<Killable<tokio_rustls::server::TlsStream<TcpStream>>>,
>;

/// Accepts TCP connections on `listener`, completes the TLS handshake of each on its
/// own task, and yields the established ones until `cancel` fires.
///
/// A connection whose peer chain goes through an issuer in `denylist` is dropped after
/// the handshake, and an established one is closed as soon as its issuer is denied.
pub(crate) fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    denylist: IssuerDenylist,
    cancel: CancellationToken,
) -> Incoming {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "registry accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let cancel = cancel.clone();
            let denylist = denylist.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let chain: Vec<_> = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .unwrap_or_default()
                            .to_vec();
                        if let Some(fp) = denylist.denied_in_chain(&chain) {
                            tracing::info!(peer = %peer, issuer = %fp, "registry peer refused: issuer denied");
                            return;
                        }
                        let conn_cancel = cancel.child_token();
                        let watcher = watch_denylist(denylist, chain, conn_cancel.clone(), peer);
                        let conn = Killable {
                            inner: tls,
                            cancelled: Box::pin(conn_cancel.cancelled_owned()),
                            _watcher: Some(watcher),
                        };
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::info!(peer = %peer, error = %e, "registry TLS handshake refused");
                    }
                    Err(_) => tracing::info!(peer = %peer, "registry TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Closes a connection (fires `conn_cancel`) once `chain`'s issuer is denied. Returns
/// the guard that ends the watcher when the connection is dropped.
fn watch_denylist(
    denylist: IssuerDenylist,
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    conn_cancel: CancellationToken,
    peer: std::net::SocketAddr,
) -> DropGuard {
    let closed = CancellationToken::new();
    let guard = closed.clone().drop_guard();
    let mut changes = denylist.changes();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = closed.cancelled() => return,
                _ = conn_cancel.cancelled() => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if let Some(fp) = denylist.denied_in_chain(&chain) {
                        tracing::info!(peer = %peer, issuer = %fp, "closing registry connection: issuer denied");
                        conn_cancel.cancel();
                        return;
                    }
                }
            }
        }
    });
    guard
}

/// A lazily connecting gRPC channel to `addr` (`host:port`) over mutual TLS.
///
/// The server name sent in SNI is the host; Causeway's verifier checks the peer's
/// SPIFFE identity, not DNS names.
pub fn tls_channel(addr: &str, config: Arc<rustls::ClientConfig>) -> Result<Channel, String> {
    tls_channel_watching(addr, config, None)
}

/// As [`tls_channel`]; with a `denylist`, a connection whose server chain goes
/// through a denied issuer is dropped after the handshake, and an open one is closed
/// as soon as its issuer is denied (a member stops replicating to an unlinked
/// cluster's member at once, not at its next reconnect).
pub(crate) fn tls_channel_watching(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    denylist: Option<IssuerDenylist>,
) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("{addr:?} is not a usable address: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let connector = TlsConnector::from(config);
    let service = tower::service_fn(move |uri: Uri| {
        let connector = connector.clone();
        let denylist = denylist.clone();
        async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(15444);
            let tcp =
                tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host).unwrap_or_else(|_| {
                ServerName::try_from("registry.causeway").expect("valid DNS name")
            });
            let peer = tcp.peer_addr()?;
            let tls = connector.connect(name, tcp).await?;
            let (cancelled, watcher) = match denylist {
                Some(denylist) => {
                    let chain = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .unwrap_or_default()
                        .to_vec();
                    if let Some(fp) = denylist.denied_in_chain(&chain) {
                        return Err(io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            format!("registry member {peer} presents denied issuer {fp}"),
                        ));
                    }
                    let conn_cancel = CancellationToken::new();
                    let watcher = watch_denylist(denylist, chain, conn_cancel.clone(), peer);
                    (conn_cancel, Some(watcher))
                }
                None => (CancellationToken::new(), None),
            };
            let conn = Killable {
                inner: tls,
                cancelled: Box::pin(cancelled.cancelled_owned()),
                _watcher: watcher,
            };
            Ok::<_, io::Error>(TokioIo::new(conn))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(service))
}
