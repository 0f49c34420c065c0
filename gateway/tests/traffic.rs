//! Traffic policy end to end: real gateways on 127.0.0.1 with real QUIC and
//! mutual TLS, real TCP endpoints (a refusing endpoint is a closed port).
//!
//! Topology: client ─TCP─▶ west (import, policy) ─QUIC─▶ east / north (exports)
//! ─TCP─▶ a server that names its cluster in every reply.

mod support;

use causeway_testing::{eventually, init_logs};
use support::pinned_echo;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use causeway_gateway::federation::LocalFederation;
use causeway_policy::{
    ConnectionLimits, FaultPolicy, OutlierPolicy, RetryPolicy, RoutingMode, TrafficPolicy,
};
use causeway_testing::TestFederation;
use causeway_trust::GatewayIdentity;
use causeway_tunnel::traffic::{PolicyKey, RETRY_REFILL_PER_SECOND, RETRY_RESERVE};
use causeway_tunnel::{
    AllowAll, Import, ImportPeer, LocalService, Metrics, ServiceTarget, Tunnel, TunnelConfig,
};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

// === helpers ===

fn test_config() -> TunnelConfig {
    TunnelConfig {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        probe_interval_ms: 100,
        handshake_timeout_ms: 5_000,
        answer_timeout_ms: 5_000,
        reconnect_backoff_min_ms: 50,
        reconnect_backoff_max_ms: 200,
        ..TunnelConfig::default()
    }
}

struct Gateway {
    tunnel: Tunnel,
    registry: Registry,
}

impl Gateway {
    fn start(identity: Arc<GatewayIdentity>) -> Result<Gateway> {
        Self::start_with(identity, |_| {})
    }

    fn start_with(
        identity: Arc<GatewayIdentity>,
        tweak: impl FnOnce(&mut TunnelConfig),
    ) -> Result<Gateway> {
        init_logs("error");
        let metrics = Arc::new(Metrics::new());
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut config = test_config();
        tweak(&mut config);
        let tunnel = Tunnel::start(config, identity, metrics, Arc::new(AllowAll))?;
        Ok(Gateway { tunnel, registry })
    }

    fn metrics_text(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding to a string works");
        out
    }

    /// The value of the metric line that starts with `prefix`, or 0.
    fn metric(&self, prefix: &str) -> f64 {
        self.metrics_text()
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// The sum of every metric line that starts with `prefix`.
    fn metric_sum(&self, prefix: &str) -> f64 {
        self.metrics_text()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn export(&self, endpoint: SocketAddr) {
        self.tunnel.set_local_services([LocalService {
            target: target(),
            endpoints: vec![endpoint],
        }]);
    }

    /// Imports the test service from `peers` (cluster, gateway, catalog weight).
    async fn import(&self, peers: &[(&str, &Gateway, u32)]) -> Result<SocketAddr> {
        let peers = peers
            .iter()
            .map(|(c, g, w)| {
                Ok(ImportPeer {
                    cluster: c.parse()?,
                    replica: None,
                    gateway: g.tunnel.local_addr(),
                    weight: *w,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self
            .tunnel
            .add_import(Import {
                target: target(),
                bind: "127.0.0.1:0".parse()?,
                peers,
            })
            .await?)
    }

    fn set_policy(&self, policy: TrafficPolicy) {
        self.tunnel
            .set_traffic_policies([(PolicyKey::new("shop", "web"), policy)]);
    }
}

fn target() -> ServiceTarget {
    ServiceTarget::new("shop", "web", 8080)
}

/// West importing from east and north, each exporting a server named after it.
async fn three_clusters() -> Result<(Gateway, Gateway, Gateway, SocketAddr)> {
    let fed = TestFederation::new();
    let east = Gateway::start(fed.identity("east"))?;
    east.export(name_server("east").await?);
    let north = Gateway::start(fed.identity("north"))?;
    north.export(name_server("north").await?);
    let west = Gateway::start(fed.identity("west"))?;
    let listen = west
        .import(&[("east", &east, 10), ("north", &north, 1)])
        .await?;
    Ok((west, east, north, listen))
}

/// Answers every connection with its name once the client half-closes.
async fn name_server(name: &'static str) -> Result<SocketAddr> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse()?)?;
    let listener = socket.listen(4096)?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut sink = Vec::new();
                if s.read_to_end(&mut sink).await.is_ok() {
                    let _ = s.write_all(name.as_bytes()).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    Ok(addr)
}

/// An echo server: bytes come back, a FIN for a FIN.
async fn echo_server() -> Result<SocketAddr> {
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

/// A listener whose accept queue is full and never drained: connections to it hang
/// (the kernel drops their SYNs) instead of being refused. Keep what it returns
/// alive.
async fn hanging_endpoint() -> Result<(SocketAddr, TcpListener, Vec<TcpStream>)> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse()?)?;
    let listener = socket.listen(1)?;
    let addr = listener.local_addr()?;
    let mut held = Vec::new();
    while let Ok(Ok(s)) =
        tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await
    {
        held.push(s);
        ensure!(held.len() < 64, "the accept queue of {addr} never filled");
    }
    Ok((addr, listener, held))
}

/// A UDP relay to `to` for one client, each datagram `delay` late both ways: a
/// slower path to a peer on loopback. Returns the address to dial.
async fn delayed_udp_proxy(to: SocketAddr, delay: Duration) -> Result<SocketAddr> {
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await?);
    let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await?);
    back.connect(to).await?;
    let addr = front.local_addr()?;
    let client = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
    let (f, b, c) = (front.clone(), back.clone(), client.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = f.recv_from(&mut buf).await {
            *c.lock().expect("client lock") = Some(from);
            let (b, data) = (b.clone(), buf[..n].to_vec());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = b.send(&data).await;
            });
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = back.recv(&mut buf).await {
            let Some(to) = *client.lock().expect("client lock") else {
                continue;
            };
            let (f, data) = (front.clone(), buf[..n].to_vec());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = f.send_to(&data, to).await;
            });
        }
    });
    Ok(addr)
}

/// A port nothing listens on: connections to it are refused.
async fn closed_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(addr)
}

/// Which cluster served one connection; an error when the gateway refused it.
async fn who_serves(listen: SocketAddr) -> Result<String> {
    let mut s = TcpStream::connect(listen).await?;
    s.shutdown().await?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await?;
    ensure!(!reply.is_empty(), "closed without a reply");
    Ok(String::from_utf8(reply)?)
}

/// Runs `n` calls of `who_serves` with at most `parallel` at once; returns the
/// replies (errors as `Err`).
async fn many(listen: SocketAddr, n: usize, parallel: usize) -> Vec<Result<String>> {
    let gate = Arc::new(Semaphore::new(parallel));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let permit = gate.clone().acquire_owned().await.expect("never closed");
        set.spawn(async move {
            let r = tokio::time::timeout(HANG, who_serves(listen))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("hung")));
            drop(permit);
            r
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap_or_else(|e| Err(e.into())));
    }
    out
}

fn count(replies: &[Result<String>], name: &str) -> usize {
    replies
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|s| s == name))
        .count()
}

/// Guards against hangs: a step that takes longer has failed.
const HANG: Duration = Duration::from_secs(60);

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_split_holds_within_two_percent_over_ten_thousand_connections() -> Result<()> {
    let (west, _east, _north, listen) = three_clusters().await?;
    west.set_policy(TrafficPolicy {
        routing: RoutingMode::Weighted,
        weights: [("east".parse()?, 10), ("north".parse()?, 90)].into(),
        ..TrafficPolicy::default()
    });
    let replies = many(listen, 10_000, 64).await;
    let failed: Vec<_> = replies.iter().filter_map(|r| r.as_ref().err()).collect();
    ensure!(
        failed.is_empty(),
        "{} failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    let north = count(&replies, "north");
    // Binomial(10000, 0.9): sd = 30, so ±2 % (±200) is 6.7 sd; a fair draw misses
    // it with probability below 1e-10.
    ensure!(
        (8_800..=9_200).contains(&north),
        "north carried {north} of 10000, expected 9000 ± 200"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_cluster_is_ejected_traffic_moves_and_it_returns_once_healthy() -> Result<()> {
    let (west, _east, _north, listen) = three_clusters().await?;
    // West exports the service too, but its endpoint refuses connections; with
    // local-first, west's own endpoints are always tried first.
    west.export(closed_port().await?);
    let base = Duration::from_secs(2);
    west.set_policy(TrafficPolicy {
        routing: RoutingMode::LocalFirst,
        outlier: Some(OutlierPolicy {
            consecutive_failures: 3,
            interval: Duration::from_secs(30),
            base_ejection_time: base,
            max_ejection_time: Duration::from_secs(60),
            max_ejection_percent: 50,
        }),
        retries: RetryPolicy {
            attempts: 2,
            budget_percent: 100,
            connect_timeout: None,
        },
        ..TrafficPolicy::default()
    });
    // Each client is retried on a remote cluster; the third failure ejects west.
    for i in 0..3 {
        let reply = who_serves(listen).await.context(i)?;
        ensure!(reply == "east" || reply == "north", "served by {reply}");
    }
    let ejections = west.tunnel.traffic_ejections();
    ensure!(
        ejections.len() == 1 && ejections[0].cluster.as_str() == "west",
        "ejections: {ejections:?}"
    );
    assert_eq!(
        west.metric_sum("causeway_tunnel_traffic_retries_total{"),
        3.0
    );
    // Ejected: clients go to a remote cluster directly, with no retry.
    for _ in 0..5 {
        let reply = who_serves(listen).await?;
        ensure!(reply == "east" || reply == "north", "served by {reply}");
    }
    assert_eq!(
        west.metric_sum("causeway_tunnel_traffic_retries_total{"),
        3.0
    );
    assert_eq!(
        west.metric(
            "causeway_tunnel_traffic_ejections_total{service=\"shop/web\",cluster=\"west\"}"
        ),
        1.0
    );
    // West heals; after the ejection time it gets its traffic back.
    west.export(name_server("west").await?);
    eventually(
        base + Duration::from_secs(3),
        "west back in rotation",
        || async { (who_serves(listen).await.ok()? == "west").then_some(()) },
    )
    .await?;
    ensure!(west.tunnel.traffic_ejections().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_streams_clients_are_refused_at_once_and_the_admitted_ones_complete() -> Result<()>
{
    let fed = TestFederation::new();
    let east = Gateway::start(fed.identity("east"))?;
    east.export(echo_server().await?);
    let west = Gateway::start(fed.identity("west"))?;
    let listen = west.import(&[("east", &east, 1)]).await?;
    west.set_policy(TrafficPolicy {
        limits: ConnectionLimits {
            max_streams: Some(10),
            max_pending: None,
        },
        ..TrafficPolicy::default()
    });
    // 50 clients at once; each sends a byte and waits for its echo or a reset.
    let mut set = JoinSet::new();
    for _ in 0..50 {
        set.spawn(async move {
            // A refused client may see the reset as early as its connect (the
            // reset can beat the handshake's completion to the socket) or write.
            let Ok(mut s) = TcpStream::connect(listen).await else {
                return None;
            };
            let mut b = [0u8; 1];
            let answered = s.write_all(b"x").await.is_ok() && matches!(s.read(&mut b).await, Ok(1));
            answered.then_some(s)
        });
    }
    let started = Instant::now();
    let mut admitted = Vec::new();
    let mut refused = 0;
    while let Some(r) = tokio::time::timeout(HANG, set.join_next()).await? {
        match r? {
            Some(s) => admitted.push(s),
            None => refused += 1,
        }
    }
    eprintln!("50 clients sorted in {:?}", started.elapsed());
    assert_eq!(admitted.len(), 10);
    assert_eq!(refused, 40);
    assert_eq!(
        west.metric(
            "causeway_tunnel_traffic_circuit_refusals_total{service=\"shop/web\",cluster=\"east\",limit=\"max_streams\"}"
        ),
        40.0
    );
    // The ten admitted streams complete normally.
    for mut s in admitted {
        s.write_all(b"yz").await?;
        s.shutdown().await?;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await?;
        assert_eq!(rest, b"yz");
    }
    // Their slots are free again.
    eventually(Duration::from_secs(5), "slots released", || async {
        let mut s = TcpStream::connect(listen).await.ok()?;
        s.write_all(b"q").await.ok()?;
        let mut b = [0u8; 1];
        matches!(s.read(&mut b).await, Ok(1)).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_first_attempt_is_retried_on_the_other_cluster_within_the_budget() -> Result<()> {
    let (west, _east, _north, listen) = three_clusters().await?;
    // Local-first tries west's own endpoint first, and it refuses.
    west.export(closed_port().await?);
    west.set_policy(TrafficPolicy {
        routing: RoutingMode::LocalFirst,
        retries: RetryPolicy {
            attempts: 2,
            budget_percent: 20,
            connect_timeout: Some(Duration::from_secs(5)),
        },
        ..TrafficPolicy::default()
    });
    let remote = |replies: &[Result<String>]| count(replies, "east") + count(replies, "north");
    // The budget's reserve covers the first ten retries.
    let started = Instant::now();
    let replies = many(listen, 10, 1).await;
    assert_eq!(remote(&replies), 10);
    let retried = |w: &Gateway| w.metric_sum("causeway_tunnel_traffic_retries_total{");
    assert_eq!(retried(&west), 10.0);
    // Beyond it, retries are bounded: the reserve, 20 % of first attempts, and what
    // time refilled. Two hundred clients need far more than time refills while
    // they run, so the budget runs out even on a slow machine.
    let replies = many(listen, 200, 20).await;
    let total_retries = retried(&west);
    assert_eq!(remote(&replies) as f64, total_retries - 10.0);
    let bound =
        RETRY_RESERVE + 0.2 * 210.0 + RETRY_REFILL_PER_SECOND * started.elapsed().as_secs_f64();
    ensure!(
        total_retries <= bound,
        "{total_retries} retries for 210 clients, more than the budget's {bound}"
    );
    ensure!(
        west.metric_sum("causeway_tunnel_traffic_retry_budget_exhausted_total{") > 0.0,
        "the budget never ran out"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_faults_refuse_about_half_and_delay_faults_add_latency() -> Result<()> {
    let fed = TestFederation::new();
    let east = Gateway::start(fed.identity("east"))?;
    east.export(name_server("east").await?);
    let west = Gateway::start(fed.identity("west"))?;
    let listen = west.import(&[("east", &east, 1)]).await?;
    west.set_policy(TrafficPolicy {
        faults: FaultPolicy {
            abort_percent: 50.0,
            ..FaultPolicy::default()
        },
        ..TrafficPolicy::default()
    });
    let replies = many(listen, 1_000, 32).await;
    let served = count(&replies, "east");
    let refused = 1_000 - served;
    // Binomial(1000, 0.5): sd ≈ 15.8; ±5 sd = [421, 579] fails a fair coin with
    // probability below 1e-6.
    ensure!(
        (421..=579).contains(&refused),
        "{refused} of 1000 refused, expected 500 ± 79"
    );
    assert_eq!(
        west.metric("causeway_tunnel_traffic_faults_total{service=\"shop/web\",fault=\"abort\"}"),
        refused as f64
    );

    let delay = Duration::from_millis(300);
    west.set_policy(TrafficPolicy {
        faults: FaultPolicy {
            delay: Some(delay),
            delay_percent: 100.0,
            ..FaultPolicy::default()
        },
        ..TrafficPolicy::default()
    });
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(who_serves(listen).await?, "east");
        let took = started.elapsed();
        ensure!(took >= delay, "a delayed stream took only {took:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_applies_to_new_streams_within_a_second() -> Result<()> {
    let (west, _east, _north, listen) = three_clusters().await?;
    let pinned = |c: &str| -> Result<TrafficPolicy> {
        Ok(TrafficPolicy {
            routing: RoutingMode::Pinned,
            pinned: Some(c.parse()?),
            ..TrafficPolicy::default()
        })
    };
    west.set_policy(pinned("north")?);
    assert_eq!(who_serves(listen).await?, "north");
    // That stream is counted until its splice ends; wait, so the count below is the
    // new stream's and not a finished one's.
    let north_streams = || {
        west.tunnel
            .peer_stats()
            .iter()
            .find(|p| p.cluster.as_str() == "north")
            .map_or(0, |p| p.streams_active)
    };
    eventually(
        Duration::from_secs(5),
        "the finished stream uncounted",
        || async { (north_streams() == 0).then_some(()) },
    )
    .await?;
    // A stream open across the change keeps its cluster.
    let mut open = TcpStream::connect(listen).await?;
    eventually(
        Duration::from_secs(5),
        "the open stream carried",
        || async { (north_streams() == 1).then_some(()) },
    )
    .await?;
    west.set_policy(pinned("east")?);
    eventually(
        Duration::from_secs(1),
        "new streams pinned to east",
        || async { (who_serves(listen).await.ok()? == "east").then_some(()) },
    )
    .await?;
    open.shutdown().await?;
    let mut reply = Vec::new();
    open.read_to_end(&mut reply).await?;
    assert_eq!(reply, b"north");
    // Without a policy, both clusters serve again.
    west.tunnel.set_traffic_policies([]);
    let reply = who_serves(listen).await?;
    ensure!(reply == "east" || reply == "north", "served by {reply}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_is_closed_after_the_idle_timeout() -> Result<()> {
    let fed = TestFederation::new();
    let east = Gateway::start(fed.identity("east"))?;
    east.export(echo_server().await?);
    let west = Gateway::start(fed.identity("west"))?;
    let listen = west.import(&[("east", &east, 1)]).await?;
    let idle = Duration::from_secs(1);
    west.set_policy(TrafficPolicy {
        idle_timeout: Some(idle),
        ..TrafficPolicy::default()
    });
    let mut s = TcpStream::connect(listen).await?;
    s.write_all(b"a").await?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await?;
    let quiet = Instant::now();
    // Nothing more is sent: the gateway closes the stream within the deadline.
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await;
    ensure!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "still open: {closed:?}"
    );
    ensure!(quiet.elapsed() >= idle, "closed before the idle timeout");
    assert_eq!(
        west.metric(
            "causeway_tunnel_traffic_idle_timeouts_total{service=\"shop/web\",cluster=\"east\"}"
        ),
        1.0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_gateway_applies_a_new_traffic_policy_within_a_second() -> Result<()> {
    init_logs("error");
    let fed = LocalFederation::start(&["west", "east", "north"]).await?;
    fed.wait_converged(Duration::from_secs(60)).await?;
    let west = fed.gateway(0)?;
    let name = LocalFederation::service_name();
    for cluster in ["north", "east", "north"] {
        west.set_traffic_policies(&[pinned_echo(cluster, None)?])?;
        eventually(
            Duration::from_secs(1),
            &format!("new requests pinned to {cluster}"),
            || async {
                let body = fed.request(0, &name).await.ok()?;
                body.contains(&format!("hello from {cluster}"))
                    .then_some(())
            },
        )
        .await?;
    }
    // An invalid list is refused and changes nothing.
    let mut bad = pinned_echo("east", None)?;
    bad.retries.attempts = 0;
    ensure!(west.set_traffic_policies(&[bad]).is_err());
    assert!(fed.request(0, &name).await?.contains("hello from north"));
    fed.shutdown().await;
    Ok(())
}

/// How long east's hanging endpoint takes to be answered (its connect timeout).
const EAST_ANSWERS_AFTER: Duration = Duration::from_secs(5);

/// West importing from east, whose endpoint hangs (it answers a stream only after
/// its 5 s endpoint connect timeout, while its probes pass), and from north, ranked
/// second: west reaches it through a proxy that delays every datagram by 25 ms.
/// Returns west, its import listener, and what keeps the others running.
async fn hanging_east_then_north(
    fed: &TestFederation,
) -> Result<(Gateway, SocketAddr, Box<dyn std::any::Any + Send>)> {
    let east = Gateway::start_with(fed.identity("east"), |c| {
        c.endpoint_connect_timeout_ms = EAST_ANSWERS_AFTER.as_millis() as u64;
    })?;
    let (hanging, listener, held) = hanging_endpoint().await?;
    east.export(hanging);
    let north = Gateway::start(fed.identity("north"))?;
    north.export(name_server("north").await?);
    let west = Gateway::start(fed.identity("west"))?;
    let north_delayed =
        delayed_udp_proxy(north.tunnel.local_addr(), Duration::from_millis(25)).await?;
    let listen = west
        .tunnel
        .add_import(Import {
            target: target(),
            bind: "127.0.0.1:0".parse()?,
            peers: vec![
                ImportPeer {
                    cluster: "east".parse()?,
                    replica: None,
                    gateway: east.tunnel.local_addr(),
                    weight: 1,
                },
                ImportPeer {
                    cluster: "north".parse()?,
                    replica: None,
                    gateway: north_delayed,
                    weight: 1,
                },
            ],
        })
        .await?;
    eventually(Duration::from_secs(5), "both peers in rotation", || async {
        let stats = west.tunnel.peer_stats();
        (stats.len() == 2 && stats.iter().all(|p| p.state.in_rotation())).then_some(())
    })
    .await?;
    Ok((west, listen, Box::new((east, north, listener, held))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exporter_that_does_not_answer_is_hedged_to_the_next_one() -> Result<()> {
    let fed = TestFederation::new();
    let (west, listen, _keep) = hanging_east_then_north(&fed).await?;
    for _ in 0..5 {
        let started = Instant::now();
        let reply = who_serves(listen).await?;
        let took = started.elapsed();
        eprintln!("served by {reply} after {took:?}");
        ensure!(reply == "north", "served by {reply}");
        // Without hedging each would wait out east's 5 s endpoint timeout; with
        // it, the hedge delay (4 of north's RTTs) and one north RTT. The hedge
        // count below shows each was hedged.
        ensure!(took < EAST_ANSWERS_AFTER, "served after {took:?}");
    }
    let hedged = west.metric_sum("causeway_tunnel_streams_hedged_total");
    ensure!(hedged == 5.0, "{hedged} hedged opens");
    Ok(())
}

/// A burst larger than the hedge budget: the first opens are hedged, and once the
/// budget is spent the rest give up on east after a few hedge delays instead of
/// waiting out its answer. Every client is served by north, and the hedges stay
/// within the budget's bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_hedge_budget_is_spent_a_silent_open_is_given_up_for_the_next() -> Result<()> {
    let fed = TestFederation::new();
    let (west, listen, _keep) = hanging_east_then_north(&fed).await?;
    const CLIENTS: usize = 40;
    let started = Instant::now();
    let replies = futures::future::join_all((0..CLIENTS).map(|_| who_serves(listen))).await;
    let elapsed = started.elapsed().as_secs_f64();
    for reply in replies {
        let reply = reply?;
        ensure!(reply == "north", "served by {reply}");
    }
    let hedged = west.metric_sum("causeway_tunnel_streams_hedged_total");
    let given_up: f64 = west
        .metrics_text()
        .lines()
        .filter(|l| l.starts_with("causeway_tunnel_streams_failed_total{"))
        .filter(|l| l.contains("peer=\"east\"") && l.contains("status=\"timeout\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let bound = causeway_tunnel::traffic::RETRY_RESERVE
        + causeway_tunnel::traffic::RETRY_REFILL_PER_SECOND * elapsed
        + 0.1 * CLIENTS as f64;
    ensure!(
        hedged <= bound,
        "{hedged} hedges; the budget allows {bound}"
    );
    ensure!(given_up >= 1.0, "no open was given up ({hedged} hedged)");
    ensure!(
        hedged + given_up >= CLIENTS as f64,
        "{hedged} hedged + {given_up} given up < {CLIENTS} clients"
    );
    Ok(())
}
