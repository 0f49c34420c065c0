//! Tunnel limits under hostile peers, each shown firing with a clear outcome while
//! another peer is served as usual: a slow sender's header read times out
//! (`Malformed`), concurrent streams per connection are capped by QUIC flow control
//! (the extra opener waits, nothing is refused), inbound streams beyond the
//! gateway's limit or one peer's share of it are answered `Overloaded`, and a
//! peer's connection beyond `max_connections_per_peer` replaces its oldest, which
//! is closed with a code and reason naming the limit.
//! Real QUIC and mutual TLS on loopback.

mod support;

use causeway_testing::raw_connection;
use support::read_answer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use causeway_testing::TestFederation;
use causeway_tunnel::metrics::PeerLabels;
use causeway_tunnel::{
    AllowAll, CLOSE_TOO_MANY_CONNECTIONS, LocalService, Metrics, Request, ServiceTarget, Status,
    Tunnel, TunnelConfig,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const HANG: Duration = Duration::from_secs(20);

fn config(tweak: impl FnOnce(&mut TunnelConfig)) -> TunnelConfig {
    let mut c = TunnelConfig {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        handshake_timeout_ms: 1_000,
        answer_timeout_ms: 1_000,
        ..TunnelConfig::default()
    };
    tweak(&mut c);
    c
}

fn target() -> ServiceTarget {
    ServiceTarget::new("shop", "web", 80)
}

async fn echo_server() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
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

/// A gateway exporting `shop/web:80` (an echo server) with `config`.
async fn exporter(fed: &TestFederation, config: TunnelConfig) -> Result<Tunnel> {
    exporter_with_metrics(fed, config, Arc::new(Metrics::new())).await
}

async fn exporter_with_metrics(
    fed: &TestFederation,
    config: TunnelConfig,
    metrics: Arc<Metrics>,
) -> Result<Tunnel> {
    let tunnel = Tunnel::start(config, fed.identity("east"), metrics, Arc::new(AllowAll))?;
    tunnel.set_local_services([LocalService {
        target: target(),
        endpoints: vec![echo_server().await?],
    }]);
    Ok(tunnel)
}

fn header() -> Vec<u8> {
    let mut out = Vec::new();
    Request::Data {
        target: target(),
        trace: None,
    }
    .encode(&mut out)
    .expect("a small header encodes");
    out
}

/// Opens a data stream, sends the header and checks the bytes echo back.
async fn served(conn: &quinn::Connection) -> Result<()> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&header()).await?;
    let answer = read_answer(&mut recv).await?;
    ensure!(answer.status == Status::Accepted, "answer {answer:?}");
    send.write_all(b"ping").await?;
    send.finish()?;
    let back = recv.read_to_end(64).await?;
    ensure!(back == b"ping", "echo {back:?}");
    Ok(())
}

/// Ends one held stream, then waits (up to 5 s) until `conn` is served again: the
/// slot is freed when the gateway sees the stream end.
async fn served_once_one_ends(
    conn: &quinn::Connection,
    (mut send, mut recv): (quinn::SendStream, quinn::RecvStream),
) -> Result<()> {
    send.finish()?;
    tokio::time::timeout(HANG, recv.read_to_end(64)).await??;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout(HANG, served(conn)).await? {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_header_times_out_as_malformed_while_other_streams_are_served() -> Result<()> {
    let fed = TestFederation::new();
    let tunnel = exporter(&fed, config(|_| {})).await?;
    let slow = raw_connection(&fed.identity("west"), tunnel.local_addr()).await?;
    let other = raw_connection(&fed.identity("north"), tunnel.local_addr()).await?;

    let (mut send, mut recv) = slow.open_bi().await?;
    // One byte of the header, then nothing.
    send.write_all(&header()[..1]).await?;
    let started = Instant::now();
    // Meanwhile the same connection and another peer are served.
    tokio::time::timeout(HANG, served(&slow)).await??;
    tokio::time::timeout(HANG, served(&other)).await??;
    let answer = tokio::time::timeout(HANG, read_answer(&mut recv))
        .await
        .context("no answer to the slow header")??;
    let waited = started.elapsed();
    eprintln!("slow header answered after {waited:?}: {answer:?}");
    ensure!(answer.status == Status::Malformed, "answer {answer:?}");
    ensure!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "answered after {waited:?}, not at the 1 s header timeout"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_per_connection_are_capped_by_flow_control_and_other_peers_unaffected() -> Result<()>
{
    let fed = TestFederation::new();
    let tunnel = exporter(
        &fed,
        config(|c| {
            c.max_concurrent_streams = 4;
            c.handshake_timeout_ms = 3_000;
        }),
    )
    .await?;
    let greedy = raw_connection(&fed.identity("west"), tunnel.local_addr()).await?;
    let other = raw_connection(&fed.identity("north"), tunnel.local_addr()).await?;
    // Four streams that never send a header hold every slot.
    let mut held = Vec::new();
    for _ in 0..4 {
        let (mut send, recv) = greedy.open_bi().await?;
        // A stream is announced to the peer with its first byte.
        send.write_all(&header()[..1]).await?;
        held.push((send, recv));
    }
    // The fifth opener waits for a slot: QUIC flow control, not a refusal.
    let fifth = tokio::time::timeout(Duration::from_millis(700), greedy.open_bi()).await;
    ensure!(fifth.is_err(), "a fifth concurrent stream opened at once");
    // Another peer's connection has its own slots.
    tokio::time::timeout(HANG, served(&other)).await??;
    // When the held streams are answered (header timeout) and closed, slots free up.
    for (_, recv) in &mut held {
        let answer = tokio::time::timeout(HANG, read_answer(recv)).await??;
        ensure!(answer.status == Status::Malformed, "answer {answer:?}");
    }
    drop(held);
    tokio::time::timeout(HANG, served(&greedy)).await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_streams_beyond_the_limit_are_answered_overloaded() -> Result<()> {
    let fed = TestFederation::new();
    let tunnel = exporter(&fed, config(|c| c.max_inbound_streams = 2)).await?;
    let conn = raw_connection(&fed.identity("west"), tunnel.local_addr()).await?;
    // Two accepted streams stay open.
    let mut open = Vec::new();
    for _ in 0..2 {
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&header()).await?;
        let answer = tokio::time::timeout(HANG, read_answer(&mut recv)).await??;
        ensure!(answer.status == Status::Accepted, "answer {answer:?}");
        open.push((send, recv));
    }
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&header()).await?;
    let answer = tokio::time::timeout(HANG, read_answer(&mut recv)).await??;
    eprintln!("third stream: {answer:?}");
    ensure!(answer.status == Status::Overloaded, "answer {answer:?}");
    ensure!(
        answer.message.contains("limit"),
        "message {:?}",
        answer.message
    );
    // Finishing one stream frees its slot.
    served_once_one_ends(&conn, open.remove(0)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_connection_beyond_the_limit_replaces_its_oldest_and_other_peers_are_unaffected()
-> Result<()> {
    let fed = TestFederation::new();
    let metrics = Arc::new(Metrics::new());
    let tunnel = exporter_with_metrics(
        &fed,
        config(|c| c.max_connections_per_peer = 2),
        metrics.clone(),
    )
    .await?;
    let west = fed.identity("west");
    let first = raw_connection(&west, tunnel.local_addr()).await?;
    let second = raw_connection(&west, tunnel.local_addr()).await?;
    tokio::time::timeout(HANG, served(&first)).await??;
    tokio::time::timeout(HANG, served(&second)).await??;

    // The third is served; the first, the oldest, is closed to make room.
    let third = raw_connection(&west, tunnel.local_addr()).await?;
    tokio::time::timeout(HANG, served(&third)).await??;
    let closed = tokio::time::timeout(HANG, first.closed())
        .await
        .context("the oldest connection stayed open")?;
    eprintln!("first connection: {closed}");
    match &closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            ensure!(
                close.error_code == CLOSE_TOO_MANY_CONNECTIONS,
                "code {}",
                close.error_code
            );
            let reason = String::from_utf8_lossy(&close.reason);
            ensure!(
                reason == "replaced: at most 2 connections from cluster west, this was the oldest",
                "reason {reason:?}"
            );
        }
        other => anyhow::bail!("closed otherwise: {other}"),
    }
    let replaced = metrics
        .connections_replaced
        .get_or_create(&PeerLabels {
            peer: "west".into(),
        })
        .get();
    ensure!(replaced == 1, "{replaced} replacements counted");

    // The newer two and another peer are served; the second stays open.
    tokio::time::timeout(HANG, served(&second)).await??;
    tokio::time::timeout(HANG, served(&third)).await??;
    let north = raw_connection(&fed.identity("north"), tunnel.local_addr()).await?;
    tokio::time::timeout(HANG, served(&north)).await??;
    ensure!(second.close_reason().is_none(), "the second was closed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peers_streams_beyond_its_share_are_overloaded_while_others_are_served() -> Result<()> {
    let fed = TestFederation::new();
    let tunnel = exporter(&fed, config(|c| c.max_inbound_streams_per_peer = 2)).await?;
    let west = raw_connection(&fed.identity("west"), tunnel.local_addr()).await?;
    // West holds two streams open (over two connections: the share is per cluster).
    let second = raw_connection(&fed.identity("west"), tunnel.local_addr()).await?;
    let mut open = Vec::new();
    for conn in [&west, &second] {
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&header()).await?;
        let answer = tokio::time::timeout(HANG, read_answer(&mut recv)).await??;
        ensure!(answer.status == Status::Accepted, "answer {answer:?}");
        open.push((send, recv));
    }
    let (mut send, mut recv) = west.open_bi().await?;
    send.write_all(&header()).await?;
    let answer = tokio::time::timeout(HANG, read_answer(&mut recv)).await??;
    eprintln!("west's third stream: {answer:?}");
    ensure!(answer.status == Status::Overloaded, "answer {answer:?}");
    ensure!(
        answer.message == "2 streams in flight from cluster west (the per-peer limit)",
        "message {:?}",
        answer.message
    );
    // North has its own share.
    let north = raw_connection(&fed.identity("north"), tunnel.local_addr()).await?;
    tokio::time::timeout(HANG, served(&north)).await??;
    tokio::time::timeout(HANG, served(&north)).await??;
    // One of west's streams ends: west is served again.
    served_once_one_ends(&west, open.remove(0)).await
}
