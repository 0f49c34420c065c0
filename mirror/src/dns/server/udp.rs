//! The UDP side: one blocking worker thread per `SO_REUSEPORT` socket, each with its
//! own single-threaded runtime, answering batches taken with `recvmmsg` and sent with
//! `sendmmsg` (or one `sendmsg` each where the source address must be set).

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};
use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
use prometheus_client::metrics::counter::Counter;
use tokio::io::Interest;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::dns::answer::Transport;
use crate::dns::metrics::{Metrics, rcode_index};
use crate::dns::table::DnsTable;

/// Receive buffer: larger than any query a client sends over UDP.
const UDP_RECV_BUFFER: usize = 4096;
/// Datagrams taken from the kernel per `recvmmsg` call.
const UDP_BATCH: usize = quinn_udp::BATCH_SIZE;

/// One UDP socket's worker: answers from the shared table until `stop`.
pub(super) struct UdpWorker {
    pub(super) socket: std::net::UdpSocket,
    pub(super) table: Arc<ArcSwap<DnsTable>>,
    pub(super) metrics: Metrics,
    pub(super) stop: CancellationToken,
}

impl UdpWorker {
    /// Runs on its own thread with its own single-threaded runtime: nothing it does
    /// waits on, or for, the rest of the process.
    pub(super) fn run(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                warn!(error = %e, "DNS UDP worker cannot start its runtime");
                return;
            }
        };
        runtime.block_on(self.serve());
    }

    async fn serve(self) {
        let Some((socket, state)) = register(self.socket) else {
            return;
        };
        let reply_from_destination = socket.local_addr().is_ok_and(|a| a.ip().is_unspecified());
        let counters = self.metrics.per_rcode(Transport::Udp);
        let mut cache = Cache::new(&*self.table);
        let mut batch = Batch::new();
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                ready = socket.readable() => if let Err(e) = ready {
                    warn!(error = %e, "DNS UDP socket failed");
                    return;
                },
            }
            loop {
                let count = match batch.receive(&socket, &state) {
                    Ok(count) => count,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        // ICMP errors from earlier sends surface here; they concern one peer.
                        debug!(error = %e, "DNS UDP receive failed");
                        continue;
                    }
                };
                batch.answer(
                    cache.load(),
                    count,
                    &self.metrics,
                    &counters,
                    reply_from_destination,
                );
                batch
                    .send_replies(&socket, &state, reply_from_destination)
                    .await;
            }
        }
    }
}

/// A worker's socket on its thread's runtime, with its quinn-udp state; `None`
/// (logged) if either cannot be set up.
fn register(
    socket: std::net::UdpSocket,
) -> Option<(tokio::net::UdpSocket, quinn_udp::UdpSocketState)> {
    let socket = match tokio::net::UdpSocket::from_std(socket) {
        Ok(socket) => socket,
        Err(e) => {
            warn!(error = %e, "DNS UDP worker cannot register its socket");
            return None;
        }
    };
    let state = match quinn_udp::UdpSocketState::new((&socket).into()) {
        Ok(state) => state,
        Err(e) => {
            warn!(error = %e, "DNS UDP worker cannot set up its socket");
            return None;
        }
    };
    Some((socket, state))
}

/// A worker's buffers, reused batch after batch: the datagrams taken from the kernel,
/// the answers to them, and where each answer goes.
struct Batch {
    storage: Vec<u8>,
    meta: [quinn_udp::RecvMeta; UDP_BATCH],
    out: Vec<u8>,
    replies: Vec<u8>,
    pending: Vec<Reply>,
    headers: MultiHeaders<SockaddrStorage>,
}

impl Batch {
    fn new() -> Self {
        Self {
            storage: vec![0u8; UDP_BATCH * UDP_RECV_BUFFER],
            meta: [quinn_udp::RecvMeta::default(); UDP_BATCH],
            out: Vec::with_capacity(4096),
            replies: Vec::with_capacity(UDP_BATCH * 512),
            pending: Vec::with_capacity(UDP_BATCH),
            headers: MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None),
        }
    }

    /// Takes up to `UDP_BATCH` buffers of datagrams from the socket; how many.
    fn receive(
        &mut self,
        socket: &tokio::net::UdpSocket,
        state: &quinn_udp::UdpSocketState,
    ) -> io::Result<usize> {
        let mut bufs: Vec<IoSliceMut<'_>> = self
            .storage
            .chunks_mut(UDP_RECV_BUFFER)
            .map(IoSliceMut::new)
            .collect();
        socket.try_io(Interest::READABLE, || {
            state.recv(socket.into(), &mut bufs, &mut self.meta)
        })
    }

    /// Answers the first `count` received buffers from `table`, counting each answer.
    fn answer(
        &mut self,
        table: &DnsTable,
        count: usize,
        metrics: &Metrics,
        counters: &[Counter; 7],
        reply_from_destination: bool,
    ) {
        self.replies.clear();
        self.pending.clear();
        for (index, m) in self.meta.iter().enumerate().take(count) {
            let buf = &self.storage[index * UDP_RECV_BUFFER..][..m.len];
            // With receive offload, one buffer may hold several datagrams.
            for datagram in buf.chunks(m.stride.max(1)) {
                let Some(answered) = table.respond(datagram, Transport::Udp, &mut self.out) else {
                    metrics.dropped.inc();
                    continue;
                };
                counters[rcode_index(answered.rcode)].inc();
                if answered.truncated {
                    metrics.truncated.inc();
                }
                self.pending.push(Reply {
                    start: self.replies.len(),
                    len: self.out.len(),
                    to: m.addr,
                    from: m.dst_ip.filter(|_| reply_from_destination),
                });
                self.replies.extend_from_slice(&self.out);
            }
        }
    }

    /// Sends the batch's answers.
    async fn send_replies(
        &mut self,
        socket: &tokio::net::UdpSocket,
        state: &quinn_udp::UdpSocketState,
        reply_from_destination: bool,
    ) {
        if reply_from_destination {
            // Answers must leave from the address the query came to: one
            // sendmsg each, with the source address attached.
            for reply in &self.pending {
                let transmit = quinn_udp::Transmit {
                    destination: reply.to,
                    ecn: None,
                    contents: &self.replies[reply.start..][..reply.len],
                    segment_size: None,
                    src_ip: reply.from,
                };
                send(socket, state, &transmit).await;
            }
        } else {
            send_batch(socket, &mut self.headers, &self.replies, &self.pending).await;
        }
    }
}

/// One answer waiting in a worker's batch.
struct Reply {
    start: usize,
    len: usize,
    to: SocketAddr,
    from: Option<std::net::IpAddr>,
}

/// Sends a batch of answers with as few `sendmmsg` calls as the socket allows.
async fn send_batch(
    socket: &tokio::net::UdpSocket,
    headers: &mut MultiHeaders<SockaddrStorage>,
    replies: &[u8],
    pending: &[Reply],
) {
    let fd = socket.as_raw_fd();
    let mut next = 0;
    while next < pending.len() {
        let chunk = &pending[next..pending.len().min(next + UDP_BATCH)];
        let slices: Vec<[IoSlice<'_>; 1]> = chunk
            .iter()
            .map(|r| [IoSlice::new(&replies[r.start..][..r.len])])
            .collect();
        let addresses: Vec<Option<SockaddrStorage>> = chunk
            .iter()
            .map(|r| Some(SockaddrStorage::from(r.to)))
            .collect();
        let sent = socket.try_io(Interest::WRITABLE, || {
            let no_cmsgs: [ControlMessage<'_>; 0] = [];
            sendmmsg(
                fd,
                headers,
                &slices,
                &addresses,
                no_cmsgs,
                MsgFlags::MSG_DONTWAIT,
            )
            .map(Iterator::count)
            .map_err(io::Error::from)
        });
        match sent {
            Ok(0) => next += 1,
            Ok(count) => next += count,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if socket.writable().await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // The first message of the chunk failed (e.g. its peer is
                // unreachable); skip it, send the rest.
                debug!(peer = %chunk[0].to, error = %e, "DNS UDP send failed");
                next += 1;
            }
        }
    }
}

/// Sends one answer, waiting for room in the socket buffer if it is full.
async fn send(
    socket: &tokio::net::UdpSocket,
    state: &quinn_udp::UdpSocketState,
    transmit: &quinn_udp::Transmit<'_>,
) {
    loop {
        match socket.try_io(Interest::WRITABLE, || {
            state.try_send(socket.into(), transmit)
        }) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if socket.writable().await.is_err() {
                    return;
                }
            }
            Err(e) => {
                debug!(peer = %transmit.destination, error = %e, "DNS UDP send failed");
                return;
            }
        }
    }
}
