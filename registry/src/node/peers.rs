//! Outbound Raft messages: one sender task per peer, batching whatever queued up while
//! the previous batch was in flight.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::mpsc;

use super::Input;
use crate::transport::{NetworkSwitch, tls_channel_watching};
use crate::wire::pb;

/// Messages queued for one peer before new ones are dropped (Raft retransmits).
const PEER_QUEUE: usize = 4096;
/// Most messages in one RPC.
const MAX_BATCH: usize = 512;
/// Batches queued on the stream to one peer before the sender waits.
const STREAM_QUEUE: usize = 64;
/// Pause after a failed RPC before the next, so a down member costs little.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

pub(super) struct Peers {
    /// The runtime senders run on (not the driver's own thread, which blocks in fsync).
    runtime: tokio::runtime::Handle,
    me: u64,
    my_address: String,
    client_tls: Arc<rustls::ClientConfig>,
    /// Issuers whose members we stop replicating to.
    denylist: causeway_trust::IssuerDenylist,
    switch: Option<NetworkSwitch>,
    inbox: mpsc::WeakSender<Input>,
    senders: BTreeMap<u64, (String, mpsc::Sender<Message>)>,
}

impl Peers {
    pub(super) fn new(
        runtime: tokio::runtime::Handle,
        me: u64,
        my_address: String,
        client_tls: Arc<rustls::ClientConfig>,
        denylist: causeway_trust::IssuerDenylist,
        switch: Option<NetworkSwitch>,
        inbox: mpsc::WeakSender<Input>,
    ) -> Self {
        Self {
            runtime,
            me,
            my_address,
            client_tls,
            denylist,
            switch,
            inbox,
            senders: BTreeMap::new(),
        }
    }

    /// Starts senders for new members and stops those of removed ones.
    pub(super) fn update(&mut self, members: &BTreeMap<u64, String>) {
        self.senders
            .retain(|id, (addr, _)| members.get(id).is_some_and(|a| a == addr));
        for (id, addr) in members {
            if *id == self.me || self.senders.contains_key(id) {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            let _guard = self.runtime.enter();
            match tls_channel_watching(addr, self.client_tls.clone(), Some(self.denylist.clone())) {
                Ok(channel) => {
                    self.runtime.spawn(run_sender(
                        (self.me, self.my_address.clone()),
                        *id,
                        channel,
                        rx,
                        self.switch.clone(),
                        self.inbox.clone(),
                    ));
                    self.senders.insert(*id, (addr.clone(), tx));
                }
                Err(e) => tracing::warn!(peer = id, error = %e, "cannot reach registry member"),
            }
        }
    }

    /// Queues messages; returns the peers that could not take them.
    pub(super) fn send(&self, messages: Vec<Message>) -> Vec<u64> {
        let mut unreachable = Vec::new();
        for m in messages {
            let to = m.to;
            match self.senders.get(&to) {
                Some((_, tx)) if tx.try_send(m).is_ok() => {}
                _ => {
                    if !unreachable.contains(&to) {
                        unreachable.push(to);
                    }
                }
            }
        }
        unreachable
    }
}

/// The sender task to one peer: its client, its long-lived stream, and the driver's
/// inbox it reports failures to.
struct PeerSender {
    me: u64,
    my_address: String,
    to: u64,
    client: pb::raft_transport_client::RaftTransportClient<tonic::transport::Channel>,
    /// The stream ordinary traffic goes down; replaced once closed.
    stream: Option<mpsc::Sender<pb::RaftBatch>>,
    switch: Option<NetworkSwitch>,
    inbox: mpsc::WeakSender<Input>,
}

async fn run_sender(
    (me, my_address): (u64, String),
    to: u64,
    channel: tonic::transport::Channel,
    mut rx: mpsc::Receiver<Message>,
    switch: Option<NetworkSwitch>,
    inbox: mpsc::WeakSender<Input>,
) {
    let client = pb::raft_transport_client::RaftTransportClient::new(channel)
        .max_decoding_message_size(1024)
        .max_encoding_message_size(usize::MAX);
    let mut sender = PeerSender {
        me,
        my_address,
        to,
        client,
        stream: None,
        switch,
        inbox,
    };
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        if sender.switch.as_ref().is_some_and(|s| !s.allows(me, to)) {
            continue;
        }
        let carries_snapshot = batch
            .iter()
            .any(|m| m.get_msg_type() == MessageType::MsgSnapshot);
        let rpc = sender.encode(&batch);
        let flow = if carries_snapshot {
            sender.send_snapshot(rpc).await
        } else {
            sender.send_on_stream(rpc).await
        };
        if flow.is_break() {
            return;
        }
    }
}

impl PeerSender {
    /// One RPC's worth of messages; a message that does not encode is left out.
    fn encode(&self, batch: &[Message]) -> pb::RaftBatch {
        let mut encoded = Vec::with_capacity(batch.len());
        for m in batch {
            match m.write_to_bytes() {
                Ok(b) => encoded.push(b),
                Err(e) => tracing::error!(error = %e, "cannot encode a raft message"),
            }
        }
        pb::RaftBatch {
            from: self.me,
            messages: encoded,
            from_address: self.my_address.clone(),
        }
    }

    /// Ordinary traffic goes down a long-lived stream: no round trip per batch. Breaks
    /// once the driver is gone.
    async fn send_on_stream(&mut self, batch: pb::RaftBatch) -> ControlFlow<()> {
        let to = self.to;
        if self.stream.as_ref().is_none_or(|s| s.is_closed()) {
            let (tx, rx) = mpsc::channel(STREAM_QUEUE);
            let mut client = self.client.clone();
            tokio::spawn(async move {
                let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
                if let Err(status) = client.raft_stream(stream).await {
                    tracing::debug!(peer = to, error = %status.message(), "raft stream ended");
                }
            });
            self.stream = Some(tx);
        }
        let sent = match &self.stream {
            Some(tx) => tx.send(batch).await.is_ok(),
            None => false,
        };
        if !sent {
            self.stream = None;
            let Some(inbox) = self.inbox.upgrade() else {
                return ControlFlow::Break(());
            };
            let _ = inbox.send(Input::Unreachable(to)).await;
            drop(inbox);
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        ControlFlow::Continue(())
    }

    /// A batch with a snapshot goes in a unary RPC, so that its outcome can be reported
    /// to Raft. Breaks once the driver is gone.
    async fn send_snapshot(&mut self, batch: pb::RaftBatch) -> ControlFlow<()> {
        let to = self.to;
        let result = self.client.raft(batch).await;
        let ok = result.is_ok();
        if let Err(status) = &result {
            tracing::debug!(peer = to, error = %status.message(), "raft send failed");
        }
        let Some(inbox) = self.inbox.upgrade() else {
            return ControlFlow::Break(());
        };
        let _ = inbox.send(Input::SnapshotSent { to, ok }).await;
        if !ok {
            let _ = inbox.send(Input::Unreachable(to)).await;
            drop(inbox);
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        ControlFlow::Continue(())
    }
}
