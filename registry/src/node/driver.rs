//! The driver task: ticks the `RawNode`, feeds it requests and peer messages, and
//! handles each Ready in the order raft-rs documents (send, persist, apply, advance).
//!
//! `Driver` holds the member's state and has one method per input; `Driver::run` is the
//! thin loop that waits for a tick or an input and then handles the Ready. Opening the
//! storage lives in `bootstrap`, client requests in `requests`, membership in
//! `membership`, and the Ready cycle (persist, apply, compact) in `ready`.

mod bootstrap;
mod membership;
mod ready;
mod requests;
mod seats;
mod sweep;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use raft::RawNode;
use raft::prelude::{Message, Snapshot};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::peers::Peers;
use super::{Applied, Input, MemberStatus, Node, NodeConfig, NodeError, Shared, SnapshotData};
use crate::storage::RaftStore;
use crate::transport::NetworkSwitch;
use requests::{Pending, PendingRead, Proposed, Waiting};

/// Requests queued for the driver before callers wait.
const INBOX: usize = 8192;
/// Most requests handled between two Readies: bounds the latency one Ready adds.
const MAX_INPUTS_PER_READY: usize = 4096;
/// Watch signals buffered per stream before a slow stream re-syncs from the history.
const WATCH_BUFFER: usize = 4096;

/// Runs persistence on the current thread without stalling other tasks of a
/// multi-threaded runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn decode_snapshot(snap: &Snapshot) -> Result<SnapshotData, NodeError> {
    serde_json::from_slice(&snap.data)
        .map_err(|e| NodeError::Storage(format!("snapshot data does not decode: {e}")))
}

/// Stops a driver and waits until its storage is closed.
pub(crate) struct DriverHandle {
    abort: tokio::task::AbortHandle,
    stopped: tokio::task::JoinHandle<()>,
}

impl DriverHandle {
    /// Drops the driver wherever it is, as a crash would.
    pub(crate) fn abort(&self) {
        self.abort.abort();
    }

    /// Waits until the driver is gone and its storage file released.
    pub(crate) async fn stopped(self) {
        let _ = self.stopped.await;
    }

    /// Runs the driver on a thread of its own: its fsyncs then block nobody else, and
    /// no worker thread has to be handed over for every Ready.
    fn start(mut driver: Driver) -> Result<Self, NodeError> {
        let name = format!("registry-{}", driver.config.id);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| NodeError::Storage(format!("cannot start the driver runtime: {e}")))?;
        let handle = runtime.spawn(async move { driver.run().await });
        let abort = handle.abort_handle();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                runtime.block_on(async {
                    let _ = handle.await;
                });
                // Dropping the runtime drops the driver (and its storage) before this
                // member is reported stopped.
                drop(runtime);
                let _ = done_tx.send(());
            })
            .map_err(|e| NodeError::Storage(format!("cannot start the driver thread: {e}")))?;
        let stopped = tokio::spawn(async move {
            let _ = done_rx.await;
        });
        Ok(Self { abort, stopped })
    }
}

/// Opens the member's storage and starts its driver task.
pub(crate) fn spawn(
    config: NodeConfig,
    client_tls: Arc<rustls::ClientConfig>,
    denylist: causeway_trust::IssuerDenylist,
    switch: Option<NetworkSwitch>,
) -> Result<(Node, DriverHandle), NodeError> {
    let restored = bootstrap::open(&config)?;
    let (events, _) = broadcast::channel(WATCH_BUFFER);
    let shared = Arc::new(Shared {
        applied: RwLock::new(Applied {
            catalog: restored.catalog,
            history: VecDeque::new(),
            history_limit: config.watch_history.max(1),
        }),
        events,
    });
    let (inbox_tx, inbox_rx) = mpsc::channel(INBOX);
    let (alive_tx, alive_rx) = tokio::sync::watch::channel(());
    let mut peers = Peers::new(
        tokio::runtime::Handle::current(),
        config.id,
        config.advertise_addr.clone(),
        client_tls,
        denylist,
        switch,
        inbox_tx.downgrade(),
    );
    peers.update(&restored.members);
    let node = Node {
        id: config.id,
        inbox: inbox_tx,
        shared: shared.clone(),
        limits: config.limits,
        alive: alive_rx,
    };
    let driver = Driver {
        applied_index: restored.applied_index,
        config,
        raw: restored.raw,
        shared,
        members: restored.members,
        learned: BTreeMap::new(),
        peers,
        next_req: 1,
        proposals: HashMap::new(),
        waiting: VecDeque::new(),
        leader_seen: 0,
        batch: Vec::new(),
        batch_bytes: 0,
        reads: HashMap::new(),
        reads_ready: Vec::new(),
        member_changes: HashMap::new(),
        ticks: 0,
        heard: HashMap::new(),
        sweep: sweep::Sweep::default(),
        inbox: inbox_rx,
        _alive: alive_tx,
    };
    Ok((node, DriverHandle::start(driver)?))
}

struct Driver {
    config: NodeConfig,
    raw: RawNode<RaftStore>,
    shared: Arc<Shared>,
    members: BTreeMap<u64, String>,
    /// Addresses of senders that are not (yet) known members: lets a member that has
    /// just joined answer the leader before it has the member list.
    learned: BTreeMap<u64, String>,
    peers: Peers,
    next_req: u64,
    /// Proposals handed to Raft, by request, until applied or expired.
    proposals: HashMap<u64, Proposed>,
    waiting: VecDeque<Waiting>,
    /// The last leader this member knew; a new one gets the proposals the old
    /// one may have taken with it.
    leader_seen: u64,
    /// Proposals received since the last Raft cycle, proposed as one entry.
    batch: Vec<Waiting>,
    batch_bytes: usize,
    reads: HashMap<u64, PendingRead>,
    reads_ready: Vec<(u64, Pending<()>)>,
    member_changes: HashMap<u64, Pending<Vec<MemberStatus>>>,
    ticks: u64,
    /// When each member last sent us a Raft message.
    heard: HashMap<u64, std::time::Instant>,
    /// What the sweep of gone replicas remembers.
    sweep: sweep::Sweep,
    applied_index: u64,
    inbox: mpsc::Receiver<Input>,
    /// Dropped when the driver ends, which ends every watch stream.
    _alive: tokio::sync::watch::Sender<()>,
}

impl Driver {
    async fn run(&mut self) {
        let mut ticker = tokio::time::interval(self.config.tick_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    self.raw.tick();
                    self.on_tick();
                }
                input = self.inbox.recv() => {
                    let Some(input) = input else { break };
                    self.handle(input);
                    for _ in 0..MAX_INPUTS_PER_READY {
                        match self.inbox.try_recv() {
                            Ok(input) => self.handle(input),
                            Err(_) => break,
                        }
                    }
                    self.flush_batch();
                }
            }
            if let Err(e) = self.on_ready().and_then(|()| self.maybe_compact()) {
                tracing::error!(member = self.config.id, error = %e, "registry member stops");
                break;
            }
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Propose { data, reply } => self.propose(data, reply),
            Input::Read { reply } => self.read(reply),
            Input::ChangeMembers { change, reply } => self.change_members(change, reply),
            Input::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Input::Raft {
                from,
                address,
                messages,
            } => self.step_peer_messages(from, address, messages),
            Input::SnapshotSent { to, ok } => {
                let status = if ok {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                };
                self.raw.report_snapshot(to, status);
            }
            Input::Unreachable(to) => self.raw.report_unreachable(to),
        }
    }

    /// Steps messages from a peer into Raft, first learning the sender's address if it
    /// is not a known member.
    fn step_peer_messages(&mut self, from: u64, address: String, messages: Vec<Message>) {
        self.heard.insert(from, std::time::Instant::now());
        if !self.members.contains_key(&from)
            && !address.is_empty()
            && self.learned.get(&from) != Some(&address)
        {
            self.learned.insert(from, address);
            self.update_peers();
        }
        for m in messages {
            if let Err(e) = self.raw.step(m) {
                tracing::debug!(error = %e, "raft message ignored");
            }
        }
    }

    /// Points the peer senders at the members plus learned senders.
    fn update_peers(&mut self) {
        self.learned.retain(|id, _| !self.members.contains_key(id));
        let mut all = self.learned.clone();
        all.extend(self.members.iter().map(|(id, a)| (*id, a.clone())));
        self.peers.update(&all);
    }

    fn send(&mut self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        for to in self.peers.send(messages) {
            self.raw.report_unreachable(to);
        }
    }
}
