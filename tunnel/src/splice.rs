//! Copying bytes between a TCP connection and a QUIC stream, both ways.
//!
//! Back-pressure comes from awaiting each write before the next read: at most one
//! buffer per direction is in our hands, the rest waits in the kernel (TCP) or in
//! QUIC flow-control windows. A TCP end-of-stream becomes a QUIC stream finish and a
//! finish becomes a TCP `shutdown(Write)`, so half-closed connections keep working.
//! A TCP reset becomes a QUIC stream reset and the other way round, and any error
//! tears down both directions: the client sees a reset, never a hang.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};

/// Stream error code: the TCP connection on the sender's side was reset or failed.
pub const CODE_TCP_RESET: quinn::VarInt = quinn::VarInt::from_u32(1);
/// Stream error code: the stream was refused (sent with `stop` after an error answer).
pub const CODE_REFUSED: quinn::VarInt = quinn::VarInt::from_u32(2);

/// Initial splice buffer. Most connections carry small messages; a buffer grows
/// (doubling, up to the configured size) only while reads fill it, so a bulk
/// transfer soon moves large chunks (fewer syscalls and QUIC wake-ups per byte)
/// while a thousand quiet streams stay cheap.
const FIRST_BUFFER: usize = 16 << 10;

/// A reusable copy buffer that grows while reads fill it.
struct Buffer {
    data: Vec<u8>,
    max: usize,
}

impl Buffer {
    fn new(first: usize, max: usize) -> Self {
        Self {
            data: vec![0u8; first],
            max,
        }
    }

    /// Call after a read of `n` bytes into [`Buffer::data`].
    fn filled(&mut self, n: usize) {
        if n == self.data.len() && n < self.max {
            let next = (n * 2).min(self.max);
            self.data.resize(next, 0);
        }
    }
}

/// Longest a finished stream waits for the peer to acknowledge its last bytes.
const DELIVERY_LINGER: Duration = Duration::from_secs(5);

/// Byte counters a splice adds to as it goes.
#[derive(Debug, Clone, Default)]
pub(crate) struct ByteCounters {
    /// Bytes read from TCP and sent on the stream.
    pub(crate) to_stream: Vec<Counter>,
    /// Bytes received on the stream and written to TCP.
    pub(crate) from_stream: Vec<Counter>,
    /// Per-peer totals for status output, same directions.
    pub(crate) peer_sent: Option<Arc<AtomicU64>>,
    /// See `peer_sent`.
    pub(crate) peer_received: Option<Arc<AtomicU64>>,
}

impl ByteCounters {
    fn add_to_stream(&self, n: usize) {
        let n = n as u64;
        for c in &self.to_stream {
            c.inc_by(n);
        }
        if let Some(a) = &self.peer_sent {
            a.fetch_add(n, Ordering::Relaxed);
        }
    }
    fn add_from_stream(&self, n: usize) {
        let n = n as u64;
        for c in &self.from_stream {
            c.inc_by(n);
        }
        if let Some(a) = &self.peer_received {
            a.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// How a splice ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpliceOutcome {
    /// Bytes carried from TCP to the stream.
    pub(crate) to_stream: u64,
    /// Bytes carried from the stream to TCP.
    pub(crate) from_stream: u64,
    /// Why the splice was torn down, if it did not end with both sides finishing.
    pub(crate) error: Option<SpliceError>,
}

/// Why a splice was torn down.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpliceError {
    /// Reading from or writing to the TCP connection failed (typically a reset).
    #[error("TCP connection failed: {0}")]
    Tcp(String),
    /// The peer reset the QUIC stream.
    #[error("peer reset the stream (code {0})")]
    StreamReset(u64),
    /// The peer stopped reading the QUIC stream.
    #[error("peer stopped the stream (code {0})")]
    StreamStopped(u64),
    /// The QUIC connection was lost.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
}

enum Direction {
    Done(u64),
    Failed(u64, SpliceError),
}

/// Copies both ways until both sides have finished or one fails, then tears the
/// rest down (TCP reset, stream reset and stop) on failure.
pub(crate) async fn splice(
    tcp: &mut TcpStream,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    buffer_size: usize,
    counters: &ByteCounters,
) -> SpliceOutcome {
    let first = FIRST_BUFFER.min(buffer_size);
    let mut up_buf = Buffer::new(first, buffer_size);
    let mut down_buf = Buffer::new(first, buffer_size);
    // The copy futures borrow everything; they are dropped before any teardown.
    let (error, to_stream, from_stream) = {
        let (mut rd, mut wr) = tcp.split();
        let up = tcp_to_stream(&mut rd, send, &mut up_buf, counters);
        let down = stream_to_tcp(recv, &mut wr, &mut down_buf, counters);
        tokio::pin!(up, down);
        let (mut up_res, mut down_res) = (None, None);
        let error = loop {
            tokio::select! {
                r = &mut up, if up_res.is_none() => {
                    if let Direction::Failed(_, e) = &r {
                        let e = e.clone();
                        up_res = Some(r);
                        break Some(e);
                    }
                    up_res = Some(r);
                }
                r = &mut down, if down_res.is_none() => {
                    if let Direction::Failed(_, e) = &r {
                        let e = e.clone();
                        down_res = Some(r);
                        break Some(e);
                    }
                    down_res = Some(r);
                }
            }
            if up_res.is_some() && down_res.is_some() {
                break None;
            }
        };
        let bytes = |d: &Option<Direction>| match d {
            Some(Direction::Done(n) | Direction::Failed(n, _)) => *n,
            None => 0,
        };
        (error, bytes(&up_res), bytes(&down_res))
    };
    if error.is_some() {
        abort(tcp, send, recv);
    } else {
        // Done only once the peer has everything: a drain that closes the
        // connection right after must not cut off the tail.
        let _ = tokio::time::timeout(DELIVERY_LINGER, send.stopped()).await;
    }
    SpliceOutcome {
        to_stream,
        from_stream,
        error,
    }
}

/// Resets everything: the TCP peer sees RST, the stream peer a reset and a stop.
pub(crate) fn abort(tcp: &TcpStream, send: &mut quinn::SendStream, recv: &mut quinn::RecvStream) {
    reset_tcp(tcp);
    // Either may already be closed; nothing more to do then.
    let _ = send.reset(CODE_TCP_RESET);
    let _ = recv.stop(CODE_TCP_RESET);
}

/// Makes the coming close of `tcp` send RST instead of FIN.
pub(crate) fn reset_tcp(tcp: &TcpStream) {
    // Failing only means the close sends FIN instead.
    let _ = socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO));
}

async fn tcp_to_stream(
    rd: &mut ReadHalf<'_>,
    send: &mut quinn::SendStream,
    buf: &mut Buffer,
    counters: &ByteCounters,
) -> Direction {
    let mut total = 0u64;
    loop {
        let n = match rd.read(&mut buf.data).await {
            Ok(0) => {
                // Already-closed streams were reset by the peer; that surfaces below.
                let _ = send.finish();
                return Direction::Done(total);
            }
            Ok(n) => n,
            Err(e) => return Direction::Failed(total, SpliceError::Tcp(e.to_string())),
        };
        if let Err(e) = send.write_all(&buf.data[..n]).await {
            return Direction::Failed(total, write_error(e));
        }
        total += n as u64;
        counters.add_to_stream(n);
        buf.filled(n);
    }
}

async fn stream_to_tcp(
    recv: &mut quinn::RecvStream,
    wr: &mut WriteHalf<'_>,
    buf: &mut Buffer,
    counters: &ByteCounters,
) -> Direction {
    let mut total = 0u64;
    loop {
        let n = match recv.read(&mut buf.data).await {
            Ok(Some(n)) => n,
            Ok(None) => {
                return match wr.shutdown().await {
                    Ok(()) => Direction::Done(total),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Direction::Done(total),
                    Err(e) => Direction::Failed(total, SpliceError::Tcp(e.to_string())),
                };
            }
            Err(e) => return Direction::Failed(total, read_error(e)),
        };
        if let Err(e) = wr.write_all(&buf.data[..n]).await {
            return Direction::Failed(total, SpliceError::Tcp(e.to_string()));
        }
        total += n as u64;
        counters.add_from_stream(n);
        buf.filled(n);
    }
}

pub(crate) fn write_error(e: quinn::WriteError) -> SpliceError {
    match e {
        quinn::WriteError::Stopped(code) => SpliceError::StreamStopped(code.into_inner()),
        quinn::WriteError::ConnectionLost(e) => SpliceError::ConnectionLost(e.to_string()),
        other => SpliceError::ConnectionLost(other.to_string()),
    }
}

pub(crate) fn read_error(e: quinn::ReadError) -> SpliceError {
    match e {
        quinn::ReadError::Reset(code) => SpliceError::StreamReset(code.into_inner()),
        quinn::ReadError::ConnectionLost(e) => SpliceError::ConnectionLost(e.to_string()),
        other => SpliceError::ConnectionLost(other.to_string()),
    }
}
