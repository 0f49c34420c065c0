//! The tunnel end to end: real TCP sockets, real QUIC, real mutual TLS from the
//! trust crate, all on 127.0.0.1.
//!
//! Topology in most tests: client ─TCP─▶ gateway A (import) ─QUIC─▶ gateway B
//! (local service) ─TCP─▶ a test server.

mod support;

use causeway_testing::{eventually, raw_connection};
use support::read_answer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use causeway_testing::TestFederation;
use causeway_trust::GatewayIdentity;
use causeway_tunnel::{
    AllowAll, Import, ImportPeer, LocalService, Metrics, PeerState, Request, ServiceTarget, Status,
    Tunnel, TunnelConfig, codec,
};
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// === helpers ===

/// Settings that make failure detection quick enough for tests.
fn test_config() -> TunnelConfig {
    TunnelConfig {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        probe_interval_ms: 100,
        handshake_timeout_ms: 1_000,
        answer_timeout_ms: 1_000,
        reconnect_backoff_min_ms: 50,
        reconnect_backoff_max_ms: 200,
        drain_timeout_ms: 5_000,
        ..TunnelConfig::default()
    }
}

/// Settings for tests that keep both cores busy: an unoptimised build then
/// delays tasks by hundreds of milliseconds, so probes and handshakes get the
/// production defaults.
fn loaded_config() -> TunnelConfig {
    TunnelConfig {
        handshake_timeout_ms: 20_000,
        answer_timeout_ms: 20_000,
        endpoint_connect_timeout_ms: 10_000,
        probe_interval_ms: 1_000,
        ..test_config()
    }
}

struct Gateway {
    tunnel: Tunnel,
    registry: Registry,
}

impl Gateway {
    fn start(identity: Arc<GatewayIdentity>, config: TunnelConfig) -> Result<Gateway> {
        causeway_testing::init_logs("warn");
        let metrics = Arc::new(Metrics::new());
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let tunnel = Tunnel::start(config, identity, metrics, Arc::new(AllowAll))?;
        Ok(Gateway { tunnel, registry })
    }

    fn metrics_text(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding to a string works");
        out
    }

    /// Imports `target` from `peers` on a fresh loopback port.
    async fn import(
        &self,
        target: &ServiceTarget,
        peers: &[(&str, SocketAddr, u32)],
    ) -> Result<SocketAddr> {
        let peers = peers
            .iter()
            .map(|(c, a, w)| {
                Ok(ImportPeer {
                    cluster: c.parse()?,
                    replica: None,
                    gateway: *a,
                    weight: *w,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self
            .tunnel
            .add_import(Import {
                target: target.clone(),
                bind: "127.0.0.1:0".parse()?,
                peers,
            })
            .await?)
    }

    fn export(&self, target: &ServiceTarget, endpoints: Vec<SocketAddr>) {
        self.tunnel.set_local_services([LocalService {
            target: target.clone(),
            endpoints,
        }]);
    }
}

fn target(name: &str) -> ServiceTarget {
    ServiceTarget::new("shop", name, 8080)
}

/// Guards against hangs: a test step that takes longer than this has failed.
const HANG: Duration = Duration::from_secs(120);

/// A bulk transfer has hung when no byte arrives for this long. Its total time is
/// not bounded: an unoptimised build on a machine whose cores are shared moves
/// 256 MiB in anything from 20 s to minutes.
const STALL: Duration = Duration::from_secs(60);

/// Runs `fut` to the end, failing only if `progress` stays still for [`STALL`].
async fn while_progressing<T>(
    what: &str,
    progress: &AtomicUsize,
    fut: impl Future<Output = T>,
) -> Result<T> {
    tokio::pin!(fut);
    let mut seen = progress.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            out = &mut fut => return Ok(out),
            _ = tokio::time::sleep(STALL) => {
                let now = progress.load(Ordering::Relaxed);
                ensure!(now != seen, "{what} hung: no byte for {STALL:?} after {now} bytes");
                seen = now;
            }
        }
    }
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(HANG, fut)
        .await
        .with_context(|| format!("{what} hung"))
}

/// An echo server: every connection gets its bytes back, and a FIN for a FIN.
async fn echo_server() -> Result<SocketAddr> {
    // A backlog for a thousand clients arriving at once.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse()?)?;
    let listener = socket.listen(4096)?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                    let _ = w.shutdown().await;
                }
            });
        }
    });
    Ok(addr)
}

/// Reads until EOF, then answers "<name> <bytes read> <sha256 hex>" and closes.
async fn digest_server(name: &'static str) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut hasher = Sha256::new();
                let mut n = 0usize;
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(k) => {
                            hasher.update(&buf[..k]);
                            n += k;
                        }
                        Err(_) => return,
                    }
                }
                let reply = format!("{name} {n} {}", hex(&hasher.finalize()));
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    Ok(addr)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic pseudo-random bytes (xorshift64*), fast enough for hundreds of MiB.
struct Pattern(u64);

impl Pattern {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Sends `total` pattern bytes through `addr` to an echo server while reading the
/// echo; returns the SHA-256 of what was sent and of what came back.
async fn echo_round_trip(
    addr: SocketAddr,
    total: usize,
    seed: u64,
) -> Result<([u8; 32], [u8; 32], usize)> {
    echo_round_trip_counted(addr, total, seed, Arc::default()).await
}

/// [`echo_round_trip`], counting the bytes received on `progress` as they arrive.
async fn echo_round_trip_counted(
    addr: SocketAddr,
    total: usize,
    seed: u64,
    progress: Arc<AtomicUsize>,
) -> Result<([u8; 32], [u8; 32], usize)> {
    let stream = TcpStream::connect(addr).await.context("connect")?;
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        let mut pattern = Pattern(seed | 1);
        let mut buf = vec![0u8; 64 << 10];
        let mut hasher = Sha256::new();
        let mut left = total;
        while left > 0 {
            let n = left.min(buf.len());
            pattern.fill(&mut buf[..n]);
            hasher.update(&buf[..n]);
            w.write_all(&buf[..n]).await.context("write")?;
            left -= n;
        }
        w.shutdown().await.context("shutdown")?;
        anyhow::Ok(<[u8; 32]>::from(hasher.finalize()))
    });
    let mut hasher = Sha256::new();
    let mut received = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = r
            .read(&mut buf)
            .await
            .with_context(|| format!("read after {received} bytes"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        received += n;
        progress.store(received, Ordering::Relaxed);
    }
    let sent = writer.await??;
    Ok((sent, hasher.finalize().into(), received))
}

/// Two gateways in one federation: A imports `target` from B, which exports it at `backend`.
async fn pair(
    target: &ServiceTarget,
    backend: SocketAddr,
) -> Result<(Gateway, Gateway, SocketAddr)> {
    pair_with(target, backend, test_config()).await
}

async fn pair_with(
    target: &ServiceTarget,
    backend: SocketAddr,
    config: TunnelConfig,
) -> Result<(Gateway, Gateway, SocketAddr)> {
    let fed = TestFederation::new();
    let b = Gateway::start(fed.identity("east"), config.clone())?;
    b.export(target, vec![backend]);
    let a = Gateway::start(fed.identity("west"), config)?;
    let listen = a
        .import(target, &[("east", b.tunnel.local_addr(), 1)])
        .await?;
    Ok((a, b, listen))
}

/// Reads everything until EOF; an error (such as a reset) is returned as such.
async fn read_to_end(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(out)
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fifty_six_mib_each_way_arrive_intact() -> Result<()> {
    let t = target("echo");
    let (_a, _b, listen) = pair_with(&t, echo_server().await?, loaded_config()).await?;
    let total = 256 << 20;
    let started = Instant::now();
    let progress = Arc::new(AtomicUsize::new(0));
    let echo = echo_round_trip_counted(listen, total, 7, progress.clone());
    let (sent, received, n) = while_progressing("256 MiB echo", &progress, echo).await??;
    eprintln!("256 MiB each way in {:?}", started.elapsed());
    assert_eq!(n, total);
    assert_eq!(hex(&sent), hex(&received));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_streams_arrive_intact() -> Result<()> {
    let t = target("echo");
    let (a, _b, listen) = pair_with(&t, echo_server().await?, loaded_config()).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000u64 {
        tasks.spawn(echo_round_trip(listen, 64 << 10, i + 1));
    }
    let mut ok = 0;
    while let Some(r) = within("1000 streams", tasks.join_next()).await? {
        let (sent, received, n) = r??;
        assert_eq!(n, 64 << 10);
        assert_eq!(sent, received);
        ok += 1;
    }
    assert_eq!(ok, 1000);
    // All of them went over the one pooled connection to east.
    let stats = a.tunnel.peer_stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].streams_total, 1000);
    assert_eq!(stats[0].bytes_sent, 1000 * (64 << 10));
    assert_eq!(stats[0].bytes_received, 1000 * (64 << 10));
    Ok(())
}

#[tokio::test]
async fn half_closed_client_still_gets_the_whole_response() -> Result<()> {
    let t = target("digest");
    let (_a, _b, listen) = pair(&t, digest_server("east").await?).await?;
    let mut s = TcpStream::connect(listen).await?;
    let request = vec![0x5a_u8; 300_000];
    s.write_all(&request).await?;
    s.shutdown().await?;
    let reply = within("reply", read_to_end(&mut s)).await??;
    let expected = format!("east {} {}", request.len(), hex(&Sha256::digest(&request)));
    assert_eq!(String::from_utf8(reply)?, expected);
    Ok(())
}

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

// Single-threaded so that every task logs into the captured subscriber.
#[tokio::test(flavor = "current_thread")]
async fn a_dead_endpoint_closes_the_client_promptly_and_is_logged_and_counted() -> Result<()> {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // A port nobody listens on any more.
    let dead = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let t = target("gone");
    let (a, b, listen) = pair(&t, dead).await?;
    let mut s = TcpStream::connect(listen).await?;
    s.write_all(b"hello").await?;
    let result = within("client close", read_to_end(&mut s)).await?;
    match result {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        Ok(bytes) => bail!(
            "expected a reset, got a clean end after {} bytes",
            bytes.len()
        ),
    }
    let text = a.metrics_text();
    assert!(
        text.lines()
            .any(|l| l.starts_with("causeway_tunnel_streams_failed_total")
                && l.contains("status=\"no_endpoints\"")
                && l.contains("direction=\"outbound\"")
                && l.ends_with(" 1")),
        "{text}"
    );
    assert!(b.metrics_text().contains("status=\"no_endpoints\""));
    let logged = logs.text();
    assert!(
        logged.contains("no endpoint accepted the connection")
            && logged.contains(&dead.to_string()),
        "{logged}"
    );
    assert!(logged.contains("no_endpoints"), "{logged}");
    let stats = a.tunnel.peer_stats();
    assert!(
        stats[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("no_endpoints")),
        "{stats:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_endpoint_reset_reaches_the_client_as_a_reset() -> Result<()> {
    // A server that reads a little and then resets the connection.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let backend = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 5];
            let _ = s.read_exact(&mut buf).await;
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            drop(s);
        }
    });
    let t = target("resetter");
    let (_a, _b, listen) = pair(&t, backend).await?;
    let mut s = TcpStream::connect(listen).await?;
    s.write_all(b"hello").await?;
    let result = within("client sees the reset", read_to_end(&mut s)).await?;
    match result {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        Ok(bytes) => bail!(
            "expected a reset, got a clean end after {} bytes",
            bytes.len()
        ),
    }
    Ok(())
}

#[tokio::test]
async fn a_client_reset_reaches_the_endpoint_as_a_reset() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let backend = listener.local_addr()?;
    let (got_tx, got_rx) = tokio::sync::oneshot::channel();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let mut first = [0u8; 15];
            if s.read_exact(&mut first).await.is_ok() {
                let _ = got_tx.send(());
            }
            let _ = tx.send(read_to_end(&mut s).await.map_err(|e| e.kind()));
        }
    });
    let t = target("victim");
    let (_a, _b, listen) = pair(&t, backend).await?;
    let mut s = TcpStream::connect(listen).await?;
    s.write_all(b"partial request").await?;
    // Once the bytes went through, reset.
    within("bytes through", got_rx).await??;
    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
    drop(s);
    let seen = within("endpoint sees the reset", rx).await??;
    assert_eq!(seen, Err(std::io::ErrorKind::ConnectionReset));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_serves_new_connections_within_two_seconds() -> Result<()> {
    let fed = TestFederation::new();
    let t = target("digest");
    let east_id = fed.identity("east");
    let east = start_killable(east_id.clone(), t.clone(), "east", None)?;
    let east_addr = east.addr;
    let a = Gateway::start(fed.identity("west"), test_config())?;
    let listen = a.import(&t, &[("east", east_addr, 1)]).await?;
    assert_eq!(within("first", who_serves(listen)).await??, "east");

    // East crashes: no goodbye reaches west, which notices by its probes.
    drop(east);
    eventually(Duration::from_secs(5), "west sees east down", || async {
        (a.tunnel.peer_stats()[0].state == PeerState::Down).then_some(())
    })
    .await?;

    // East comes back on the same address, with a new endpoint that knows
    // nothing of west's old connection.
    let _east = eventually(Duration::from_secs(5), "east restarts", || {
        let (id, t) = (east_id.clone(), t.clone());
        async move { start_killable(id, t, "east", Some(east_addr)).ok() }
    })
    .await?;
    let back = Instant::now();
    eventually(
        Duration::from_secs(2),
        "new connection through restarted east",
        || async {
            tokio::time::timeout(Duration::from_secs(2), who_serves(listen))
                .await
                .ok()
                .and_then(Result::ok)
                .filter(|name| name == "east")
        },
    )
    .await?;
    eprintln!("served again {:?} after east came back", back.elapsed());
    Ok(())
}

/// A gateway exporting `t` on its own runtime thread; dropping the handle stops
/// that runtime, killing the gateway without a goodbye, as a crash would.
struct Killable {
    addr: SocketAddr,
    _kill: std::sync::mpsc::Sender<()>,
}

fn start_killable(
    identity: Arc<GatewayIdentity>,
    t: ServiceTarget,
    backend_name: &'static str,
    listen: Option<SocketAddr>,
) -> Result<Killable> {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = addr_tx.send(Err(anyhow::Error::from(e)));
                return;
            }
        };
        let started = rt.block_on(async move {
            let backend = digest_server(backend_name).await?;
            let mut config = test_config();
            if let Some(listen) = listen {
                config.listen = listen;
            }
            let g = Gateway::start(identity, config)?;
            g.export(&t, vec![backend]);
            let addr = g.tunnel.local_addr();
            // The gateway lives as long as the runtime.
            tokio::spawn(async move {
                let _g = g;
                std::future::pending::<()>().await;
            });
            anyhow::Ok(addr)
        });
        let _ = addr_tx.send(started);
        // Blocks until the handle is dropped.
        let _ = kill_rx.recv();
        rt.shutdown_background();
    });
    let addr = addr_rx.recv()??;
    Ok(Killable {
        addr,
        _kill: kill_tx,
    })
}

async fn who_serves(listen: SocketAddr) -> Result<String> {
    let mut s = TcpStream::connect(listen).await?;
    s.write_all(b"ping").await?;
    s.shutdown().await?;
    let reply = String::from_utf8(read_to_end(&mut s).await?)?;
    let name = reply.split(' ').next().unwrap_or_default().to_owned();
    ensure!(
        reply == format!("{name} 4 {}", hex(&Sha256::digest(b"ping"))),
        "bad reply {reply:?}"
    );
    Ok(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_fail_over_to_the_other_exporter_within_the_probe_window() -> Result<()> {
    let fed = TestFederation::new();
    let t = target("digest");
    let east = start_killable(fed.identity("east"), t.clone(), "east", None)?;
    let north = start_killable(fed.identity("north"), t.clone(), "north", None)?;
    let a = Gateway::start(fed.identity("west"), test_config())?;
    // Equal RTT on loopback; the weight prefers east.
    let listen = a
        .import(&t, &[("east", east.addr, 10), ("north", north.addr, 1)])
        .await?;
    assert_eq!(within("first", who_serves(listen)).await??, "east");
    eventually(Duration::from_secs(5), "east measured", || async {
        a.tunnel
            .peer_stats()
            .iter()
            .any(|p| p.cluster.as_str() == "east" && p.state == PeerState::Up)
            .then_some(())
    })
    .await?;
    assert_eq!(within("second", who_serves(listen)).await??, "east");

    // East dies without a word.
    drop(east);
    let killed = Instant::now();
    let cfg = test_config();
    // The probe window: `probe_misses` unanswered probes, plus one interval of slack
    // for the probe in flight when east died.
    let window = Duration::from_millis(cfg.probe_interval_ms * u64::from(cfg.probe_misses + 1));
    eventually(
        window + Duration::from_millis(500),
        "west takes east out of rotation",
        || async {
            a.tunnel
                .peer_stats()
                .iter()
                .any(|p| p.cluster.as_str() == "east" && p.state == PeerState::Down)
                .then_some(())
        },
    )
    .await?;
    eprintln!("east out of rotation {:?} after it died", killed.elapsed());
    assert_eq!(
        within("after failover", who_serves(listen)).await??,
        "north"
    );
    eventually(Duration::from_secs(5), "liveness in metrics", || async {
        let text = a.metrics_text();
        (text.contains("causeway_tunnel_peer_alive{peer=\"east\"} 0")
            && text.contains("causeway_tunnel_peer_alive{peer=\"north\"} 1"))
        .then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn garbage_and_oversized_headers_are_refused_and_the_connection_keeps_working() -> Result<()>
{
    let fed = TestFederation::new();
    let t = target("echo");
    let b = Gateway::start(fed.identity("east"), test_config())?;
    b.export(&t, vec![echo_server().await?]);
    let conn = raw_connection(&fed.identity("west"), b.tunnel.local_addr()).await?;

    let cases: [(&str, Vec<u8>, Status); 5] = [
        (
            "garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Status::UnsupportedVersion,
        ),
        (
            "oversized",
            vec![codec::FRAME_VERSION, 0xff, 0xff, 0, 0, 0],
            Status::Malformed,
        ),
        (
            "garbage body",
            vec![codec::FRAME_VERSION, 0, 4, 0xff, 0xff, 0xff, 0xff],
            Status::Malformed,
        ),
        (
            "truncated",
            vec![codec::FRAME_VERSION, 0, 40, 1],
            Status::Malformed,
        ),
        (
            "unknown service",
            {
                let mut f = Vec::new();
                Request::Data {
                    target: target("nope"),
                    trace: None,
                }
                .encode(&mut f)?;
                f
            },
            Status::NoSuchService,
        ),
    ];
    for (name, bytes, expected) in cases {
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&bytes).await?;
        send.finish()?;
        let answer = within(name, read_answer(&mut recv)).await??;
        assert_eq!(answer.status, expected, "{name}: {answer:?}");
    }

    // The same connection still carries a good stream.
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut header = Vec::new();
    Request::Data {
        target: t.clone(),
        trace: None,
    }
    .encode(&mut header)?;
    send.write_all(&header).await?;
    let answer = within("good stream", read_answer(&mut recv)).await??;
    assert_eq!(answer.status, Status::Accepted);
    send.write_all(b"still here").await?;
    send.finish()?;
    let echoed = within("echo", recv.read_to_end(1 << 20)).await??;
    assert_eq!(echoed, b"still here");
    assert!(conn.close_reason().is_none());
    assert!(b.metrics_text().contains("status=\"malformed\""));
    Ok(())
}

#[tokio::test]
async fn a_gateway_from_a_foreign_root_cannot_connect() -> Result<()> {
    let fed = TestFederation::new();
    let b = Gateway::start(fed.identity("east"), test_config())?;
    b.export(&target("echo"), vec![echo_server().await?]);
    let foreign = TestFederation::new().identity("west");
    let result = within(
        "foreign handshake",
        raw_connection(&foreign, b.tunnel.local_addr()),
    )
    .await?;
    let err = match result {
        Ok(conn) => {
            // With TLS 1.3 the client may finish first; the server's refusal then
            // closes the connection before any stream works.
            let closed = within("refusal", conn.closed()).await?;
            closed.to_string()
        }
        Err(e) => e.to_string(),
    };
    eprintln!("foreign client refused: {err}");
    let text = eventually(Duration::from_secs(5), "refusal counted", || async {
        let t = b.metrics_text();
        t.lines()
            .any(|l| {
                l.starts_with("causeway_tunnel_handshake_failures_total") && l.contains("inbound")
            })
            .then_some(t)
    })
    .await?;
    assert!(text.contains("reason=\"tls_"), "{text}");

    // And a foreign gateway importing from east gets nowhere.
    let a = Gateway::start(foreign, test_config())?;
    let listen = a
        .import(&target("echo"), &[("east", b.tunnel.local_addr(), 1)])
        .await?;
    let mut s = TcpStream::connect(listen).await?;
    let _ = s.write_all(b"x").await;
    let r = within("client refused", read_to_end(&mut s)).await?;
    assert!(r.is_err() || r.is_ok_and(|b| b.is_empty()));
    assert!(
        a.metrics_text()
            .contains("causeway_tunnel_handshake_failures_total{direction=\"outbound\"")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_finishes_open_streams_and_turns_peers_away() -> Result<()> {
    let t = target("echo");
    let (a, b, listen) = pair(&t, echo_server().await?).await?;
    // An open stream that is mid-conversation when east drains.
    let mut open = TcpStream::connect(listen).await?;
    open.write_all(b"before").await?;
    let mut buf = [0u8; 6];
    within("echo before", open.read_exact(&mut buf)).await??;
    eventually(Duration::from_secs(5), "east up", || async {
        (a.tunnel.peer_stats()[0].state == PeerState::Up).then_some(())
    })
    .await?;

    let drain = tokio::spawn(async move {
        let left = b.tunnel.drain(Some(Duration::from_secs(10))).await;
        (left, b)
    });
    eventually(
        Duration::from_secs(5),
        "west hears of the drain",
        || async { (a.tunnel.peer_stats()[0].state == PeerState::Draining).then_some(()) },
    )
    .await?;
    // New clients are turned away (no other exporter), not hung. The reset can
    // arrive so fast that connect itself reports it.
    match TcpStream::connect(listen).await {
        Ok(mut s) => {
            let _ = s.write_all(b"x").await;
            let r = within("turned away", read_to_end(&mut s)).await?;
            assert!(r.is_err() || r.is_ok_and(|b| b.is_empty()));
        }
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    // The open stream still works and ends normally.
    open.write_all(b"after").await?;
    open.shutdown().await?;
    let rest = within("echo after", read_to_end(&mut open)).await??;
    assert_eq!(rest, b"after");
    let (left, _b) = within("drain", drain).await??;
    assert_eq!(left, 0);
    Ok(())
}
