//! The driver task: ticks the `RawNode`, feeds it requests and peer messages, and
//! handles each Ready in the order raft-rs documents (send, persist, apply, advance).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, Message, Snapshot,
};
use raft::{RawNode, StateRole, Storage as _};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::peers::Peers;
use super::{
    Applied, Input, MemberChange, MemberStatus, Node, NodeConfig, NodeError, NodeStatus, Shared,
    SnapshotData, WatchSignal,
};
use crate::catalog::{Catalog, CatalogSnapshot, Revision};
use crate::storage::RaftStore;
use crate::transport::NetworkSwitch;
use crate::wire::pb;

/// Requests queued for the driver before callers wait.
const INBOX: usize = 8192;
/// Most requests handled between two Readies: bounds the latency one Ready adds.
const MAX_INPUTS_PER_READY: usize = 4096;
/// Largest append message: keeps one RPC's size moderate while batching well.
const MAX_SIZE_PER_MSG: u64 = 1024 * 1024;
/// Append messages in flight per follower before waiting for acknowledgements.
const MAX_INFLIGHT: usize = 256;
/// Watch signals buffered per stream before a slow stream re-syncs from the history.
const WATCH_BUFFER: usize = 4096;
/// Ticks between checks whether a caught-up learner can be promoted.
const PROMOTE_EVERY_TICKS: u64 = 2;
/// Ticks after which an unanswered ReadIndex is issued again (e.g. after an election).
const READ_RETRY_TICKS: u64 = 3;

/// Most proposals in one Raft entry.
const MAX_BATCH_PROPOSALS: usize = 1024;
/// Most command bytes in one Raft entry.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Context of a read request: who asked and which request it answers.
fn entry_context(origin: u64, req: u64) -> Vec<u8> {
    let mut ctx = Vec::with_capacity(16);
    ctx.extend_from_slice(&origin.to_be_bytes());
    ctx.extend_from_slice(&req.to_be_bytes());
    ctx
}

fn decode_context(ctx: &[u8]) -> Option<(u64, u64)> {
    if ctx.len() != 16 {
        return None;
    }
    Some((
        u64::from_be_bytes(ctx[..8].try_into().ok()?),
        u64::from_be_bytes(ctx[8..].try_into().ok()?),
    ))
}

/// Context of a conf change entry.
#[derive(Debug, Serialize, Deserialize)]
struct ConfContext {
    origin: u64,
    req: u64,
    address: Option<String>,
}

struct Pending<T> {
    reply: oneshot::Sender<Result<T, NodeError>>,
    deadline: Instant,
}

struct Waiting {
    req: u64,
    data: Vec<u8>,
    pending: Pending<Revision>,
}

struct PendingRead {
    pending: Pending<()>,
    issued_tick: u64,
}

/// Forwards raft-rs' slog records to `tracing`.
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{}", record.msg())
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{}", record.msg()),
            slog::Level::Info => tracing::debug!(target: "raft", "{}", record.msg()),
            _ => tracing::trace!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}

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

/// Opens the member's storage and starts its driver task.
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
}

pub(crate) fn spawn(
    config: NodeConfig,
    client_tls: Arc<rustls::ClientConfig>,
    denylist: causeway_trust::IssuerDenylist,
    switch: Option<NetworkSwitch>,
) -> Result<(Node, DriverHandle), NodeError> {
    if config.id == 0 {
        return Err(NodeError::Invalid("member id 0 is reserved".into()));
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        NodeError::Storage(format!("cannot create {}: {e}", config.data_dir.display()))
    })?;
    let (mut store, fresh) = RaftStore::open(&config.data_dir.join("registry.redb"))?;
    if fresh && !config.initial_members.is_empty() {
        if !config.initial_members.contains_key(&config.id) {
            return Err(NodeError::Invalid(format!(
                "initial members do not include this member's id {}",
                config.id
            )));
        }
        // The first snapshot sits at index 1, so that a member joining later always
        // starts from a snapshot and learns the initial members from it.
        let data = SnapshotData {
            catalog: CatalogSnapshot::default(),
            members: config.initial_members.clone(),
        };
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 1;
        snap.mut_metadata().term = 1;
        snap.mut_metadata()
            .set_conf_state(raft::prelude::ConfState::from((
                config.initial_members.keys().copied(),
                Vec::<u64>::new(),
            )));
        snap.data = serde_json::to_vec(&data)
            .map_err(|e| NodeError::Storage(e.to_string()))?
            .into();
        store.bootstrap(snap)?;
    }
    let snap = store.latest_snapshot().clone();
    let (catalog, members) = if snap.get_metadata().index == 0 {
        (Catalog::new(config.limits), BTreeMap::new())
    } else {
        let data = decode_snapshot(&snap)?;
        (
            Catalog::from_snapshot(data.catalog, config.limits),
            data.members,
        )
    };
    let raft_config = raft::Config {
        id: config.id,
        election_tick: config.election_ticks,
        heartbeat_tick: config.heartbeat_ticks,
        applied: snap.get_metadata().index,
        max_size_per_msg: MAX_SIZE_PER_MSG,
        max_inflight_msgs: MAX_INFLIGHT,
        check_quorum: true,
        pre_vote: true,
        ..raft::Config::default()
    };
    raft_config
        .validate()
        .map_err(|e| NodeError::Invalid(format!("raft configuration: {e}")))?;
    let logger = slog::Logger::root(TracingDrain, slog::o!());
    let raw =
        RawNode::new(&raft_config, store, &logger).map_err(|e| NodeError::Raft(e.to_string()))?;

    let (events, _) = broadcast::channel(WATCH_BUFFER);
    let shared = Arc::new(Shared {
        applied: RwLock::new(Applied {
            catalog,
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
    peers.update(&members);
    let node = Node {
        id: config.id,
        inbox: inbox_tx,
        shared: shared.clone(),
        limits: config.limits,
        alive: alive_rx,
    };
    let mut driver = Driver {
        applied_index: snap.get_metadata().index,
        config,
        raw,
        shared,
        members,
        learned: BTreeMap::new(),
        peers,
        next_req: 1,
        proposals: HashMap::new(),
        waiting: VecDeque::new(),
        batch: Vec::new(),
        batch_bytes: 0,
        reads: HashMap::new(),
        reads_ready: Vec::new(),
        member_changes: HashMap::new(),
        ticks: 0,
        inbox: inbox_rx,
        _alive: alive_tx,
    };
    // The driver gets a thread of its own: its fsyncs then block nobody else, and no
    // worker thread has to be handed over for every Ready.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NodeError::Storage(format!("cannot start the driver runtime: {e}")))?;
    let handle = runtime.spawn(async move { driver.run().await });
    let thread_handle = handle.abort_handle();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("registry-{}", node.id))
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
    Ok((
        node,
        DriverHandle {
            abort: thread_handle,
            stopped,
        },
    ))
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
    proposals: HashMap<u64, Pending<Revision>>,
    waiting: VecDeque<Waiting>,
    /// Proposals received since the last Raft cycle, proposed as one entry.
    batch: Vec<Waiting>,
    batch_bytes: usize,
    reads: HashMap<u64, PendingRead>,
    reads_ready: Vec<(u64, Pending<()>)>,
    member_changes: HashMap<u64, Pending<Vec<MemberStatus>>>,
    ticks: u64,
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

    /// Points the peer senders at the members plus learned senders.
    fn update_peers(&mut self) {
        self.learned.retain(|id, _| !self.members.contains_key(id));
        let mut all = self.learned.clone();
        all.extend(self.members.iter().map(|(id, a)| (*id, a.clone())));
        self.peers.update(&all);
    }

    fn take_req(&mut self) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        req
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.config.request_timeout
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Propose { data, reply } => {
                let req = self.take_req();
                let pending = Pending {
                    reply,
                    deadline: self.deadline(),
                };
                self.add_to_batch(Waiting { req, data, pending });
            }
            Input::Read { reply } => {
                if self.raw.raft.leader_id == 0 {
                    let _ = reply.send(Err(NodeError::NoLeader));
                    return;
                }
                let req = self.take_req();
                self.raw.read_index(entry_context(self.config.id, req));
                let pending = Pending {
                    reply,
                    deadline: self.deadline(),
                };
                self.reads.insert(
                    req,
                    PendingRead {
                        pending,
                        issued_tick: self.ticks,
                    },
                );
            }
            Input::ChangeMembers { change, reply } => self.change_members(change, reply),
            Input::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Input::Raft {
                from,
                address,
                messages,
            } => {
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

    fn add_to_batch(&mut self, w: Waiting) {
        if self.batch.len() >= MAX_BATCH_PROPOSALS
            || self.batch_bytes + w.data.len() > MAX_BATCH_BYTES
        {
            self.flush_batch();
        }
        self.batch_bytes += w.data.len();
        self.batch.push(w);
    }

    /// Proposes the batched proposals as one entry, or parks them until a leader is
    /// known.
    fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        if self.raw.raft.leader_id == 0 {
            self.waiting.extend(batch);
            return;
        }
        let entry = pb::ProposalBatch {
            origin: self.config.id,
            proposals: batch
                .iter()
                .map(|w| pb::Proposal {
                    req: w.req,
                    command: w.data.clone(),
                })
                .collect(),
        };
        match self.raw.propose(Vec::new(), entry.encode_to_vec()) {
            Ok(()) => {
                for w in batch {
                    self.proposals.insert(w.req, w.pending);
                }
            }
            Err(raft::Error::ProposalDropped) => self.waiting.extend(batch),
            Err(e) => {
                for w in batch {
                    let _ = w.pending.reply.send(Err(NodeError::Raft(e.to_string())));
                }
            }
        }
    }

    fn change_members(
        &mut self,
        change: MemberChange,
        reply: oneshot::Sender<Result<Vec<MemberStatus>, NodeError>>,
    ) {
        if self.raw.raft.leader_id == 0 {
            let _ = reply.send(Err(NodeError::NoLeader));
            return;
        }
        let conf = self.raw.store().conf_state().clone();
        let is_member = |id: u64| conf.voters.contains(&id) || conf.learners.contains(&id);
        let req = self.take_req();
        let mut cc = ConfChange::default();
        let address = match change {
            MemberChange::Join { id, address } => {
                if is_member(id) {
                    if self.members.get(&id) == Some(&address) {
                        let _ = reply.send(Ok(self.member_statuses()));
                    } else {
                        let _ = reply.send(Err(NodeError::Invalid(format!(
                            "member {id} already exists with another address"
                        ))));
                    }
                    return;
                }
                cc.set_change_type(ConfChangeType::AddLearnerNode);
                cc.node_id = id;
                Some(address)
            }
            MemberChange::Remove { id } => {
                if !is_member(id) {
                    let _ = reply.send(Err(NodeError::Invalid(format!("{id} is not a member"))));
                    return;
                }
                if conf.voters.len() == 1 && conf.voters.contains(&id) {
                    let _ = reply.send(Err(NodeError::Invalid(
                        "the last voter cannot be removed".into(),
                    )));
                    return;
                }
                cc.set_change_type(ConfChangeType::RemoveNode);
                cc.node_id = id;
                None
            }
        };
        let ctx = ConfContext {
            origin: self.config.id,
            req,
            address,
        };
        let ctx = serde_json::to_vec(&ctx).expect("context serializes");
        match self.raw.propose_conf_change(ctx, cc) {
            Ok(()) => {
                let deadline = self.deadline();
                self.member_changes.insert(req, Pending { reply, deadline });
            }
            Err(e) => {
                let _ = reply.send(Err(NodeError::Raft(e.to_string())));
            }
        }
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        let now = Instant::now();
        let timeout = self.config.request_timeout;
        let expired = |p: &Pending<_>| p.deadline <= now;
        for req in self
            .proposals
            .iter()
            .filter(|(_, p)| expired(p))
            .map(|(r, _)| *r)
            .collect::<Vec<_>>()
        {
            if let Some(p) = self.proposals.remove(&req) {
                let _ = p.reply.send(Err(NodeError::Timeout(timeout)));
            }
        }
        for req in self
            .reads
            .iter()
            .filter(|(_, p)| p.pending.deadline <= now)
            .map(|(r, _)| *r)
            .collect::<Vec<_>>()
        {
            if let Some(p) = self.reads.remove(&req) {
                let _ = p.pending.reply.send(Err(NodeError::Timeout(timeout)));
            }
        }
        for req in self
            .member_changes
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(r, _)| *r)
            .collect::<Vec<_>>()
        {
            if let Some(p) = self.member_changes.remove(&req) {
                let _ = p.reply.send(Err(NodeError::Timeout(timeout)));
            }
        }
        let waiting = std::mem::take(&mut self.waiting);
        for w in waiting {
            if w.pending.reply.is_closed() {
                // The caller gave up; do not commit on its behalf.
                continue;
            }
            if w.pending.deadline <= now {
                let _ = w.pending.reply.send(Err(NodeError::NoLeader));
            } else {
                self.add_to_batch(w);
            }
        }
        self.flush_batch();
        if self.raw.raft.leader_id != 0 {
            let retry: Vec<u64> = self
                .reads
                .iter()
                .filter(|(_, r)| r.issued_tick + READ_RETRY_TICKS <= self.ticks)
                .map(|(req, _)| *req)
                .collect();
            for req in retry {
                self.raw.read_index(entry_context(self.config.id, req));
                if let Some(r) = self.reads.get_mut(&req) {
                    r.issued_tick = self.ticks;
                }
            }
        }
        if self.ticks.is_multiple_of(PROMOTE_EVERY_TICKS) {
            self.maybe_promote();
        }
    }

    /// On the leader: promotes one caught-up learner while voters are fewer than
    /// `max_voters`.
    fn maybe_promote(&mut self) {
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader || raft.has_pending_conf() {
            return;
        }
        let conf = self.raw.store().conf_state();
        if conf.voters.len() >= self.config.max_voters {
            return;
        }
        let committed = raft.raft_log.committed;
        let candidate = conf.learners.iter().copied().find(|id| {
            raft.prs()
                .get(*id)
                .is_some_and(|p| p.matched >= committed.saturating_sub(1))
        });
        if let Some(id) = candidate {
            let mut cc = ConfChange::default();
            cc.set_change_type(ConfChangeType::AddNode);
            cc.node_id = id;
            let ctx = ConfContext {
                origin: 0,
                req: 0,
                address: None,
            };
            let ctx = serde_json::to_vec(&ctx).expect("context serializes");
            match self.raw.propose_conf_change(ctx, cc) {
                Ok(()) => tracing::info!(member = id, "promoting caught-up learner to voter"),
                Err(e) => tracing::debug!(member = id, error = %e, "promotion not proposed"),
            }
        }
    }

    fn send(&mut self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        for to in self.peers.send(messages) {
            self.raw.report_unreachable(to);
        }
    }

    fn on_ready(&mut self) -> Result<(), NodeError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        self.send(ready.take_messages());
        let snapshot = (!ready.snapshot().is_empty()).then(|| ready.snapshot().clone());
        let entries = ready.take_entries();
        let hard_state = ready.hs().cloned();
        let read_states = ready.take_read_states();
        let committed = ready.take_committed_entries();
        // Committed entries are already durable here (raft-rs hands out only persisted
        // ones), so they are applied and answered before this Ready's fsync, as the
        // raft-rs documentation orders it. A snapshot must be in place first.
        let committed = if snapshot.is_none() {
            self.apply(committed)?;
            Vec::new()
        } else {
            committed
        };
        // Only new entries, a snapshot, or a new term or vote need an fsync; a
        // hard state that differs only in its commit index is kept in memory and
        // written with the next sync (the commit index is recovered from peers).
        if snapshot.is_some() || !entries.is_empty() || ready.must_sync() {
            let store = self.raw.mut_store();
            blocking(|| store.persist(&entries, hard_state.as_ref(), snapshot.as_ref()))?;
        } else if let Some(hs) = &hard_state {
            self.raw.mut_store().set_commit(hs.commit);
        }
        if let Some(snap) = &snapshot {
            self.install_snapshot(snap)?;
        }
        self.apply(committed)?;
        for rs in read_states {
            if let Some((origin, req)) = decode_context(&rs.request_ctx)
                && origin == self.config.id
                && let Some(r) = self.reads.remove(&req)
            {
                self.reads_ready.push((rs.index, r.pending));
            }
        }
        self.send(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply();
        self.answer_reads();
        Ok(())
    }

    fn answer_reads(&mut self) {
        let applied = self.applied_index;
        let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_ready)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads_ready = rest;
        for (_, p) in done {
            let _ = p.reply.send(Ok(()));
        }
    }

    fn install_snapshot(&mut self, snap: &Snapshot) -> Result<(), NodeError> {
        let data = decode_snapshot(snap)?;
        let catalog = Catalog::from_snapshot(data.catalog, self.config.limits);
        {
            let mut applied = self.shared.applied.write().expect("catalog lock poisoned");
            applied.catalog = catalog;
            applied.history.clear();
            let _ = self.shared.events.send(WatchSignal::Reset);
        }
        self.members = data.members;
        self.update_peers();
        self.applied_index = snap.get_metadata().index;
        tracing::info!(
            member = self.config.id,
            index = self.applied_index,
            "installed registry snapshot"
        );
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), NodeError> {
        if entries.is_empty() {
            return Ok(());
        }
        let shared = self.shared.clone();
        let mut replies = Vec::new();
        let mut applied = shared.applied.write().expect("catalog lock poisoned");
        for entry in entries {
            self.applied_index = entry.index;
            if entry.data.is_empty() {
                continue;
            }
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    let batch = match pb::ProposalBatch::decode(entry.data.as_ref()) {
                        Ok(batch) => batch,
                        Err(e) => {
                            tracing::warn!(index = entry.index, error = %e, "undecodable entry skipped");
                            continue;
                        }
                    };
                    let mine = batch.origin == self.config.id;
                    for proposal in batch.proposals {
                        let result = crate::wire::decode_command(&proposal.command)
                            .and_then(|command| applied.catalog.apply(&command));
                        let outcome = match result {
                            Ok(change) => {
                                let revision = change.revision;
                                let change = Arc::new(change);
                                applied.record(change.clone());
                                let _ = shared.events.send(WatchSignal::Change(change));
                                Ok(revision)
                            }
                            Err(e) => {
                                tracing::debug!(index = entry.index, error = %e, "command rejected on apply");
                                Err(NodeError::Rejected(e))
                            }
                        };
                        if mine && let Some(p) = self.proposals.remove(&proposal.req) {
                            replies.push((p.reply, outcome));
                        }
                    }
                }
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&entry.data)
                        .map_err(|e| NodeError::Storage(format!("conf change: {e}")))?;
                    let ctx: Option<ConfContext> = serde_json::from_slice(&entry.context).ok();
                    self.apply_conf_change(&cc, ctx);
                }
                EntryType::EntryConfChangeV2 => {
                    let cc = ConfChangeV2::parse_from_bytes(&entry.data)
                        .map_err(|e| NodeError::Storage(format!("conf change: {e}")))?;
                    match self.raw.apply_conf_change(&cc) {
                        Ok(cs) => self.raw.mut_store().set_conf_state(cs),
                        Err(e) => tracing::warn!(error = %e, "conf change refused"),
                    }
                }
            }
        }
        drop(applied);
        for (reply, outcome) in replies {
            let _ = reply.send(outcome);
        }
        Ok(())
    }

    fn apply_conf_change(&mut self, cc: &ConfChange, ctx: Option<ConfContext>) {
        let result = self.raw.apply_conf_change(cc);
        let outcome = match result {
            Ok(cs) => {
                self.raw.mut_store().set_conf_state(cs);
                match cc.get_change_type() {
                    ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                        if let Some(address) = ctx.as_ref().and_then(|c| c.address.clone()) {
                            self.members.insert(cc.node_id, address);
                        }
                    }
                    ConfChangeType::RemoveNode => {
                        self.members.remove(&cc.node_id);
                    }
                }
                self.update_peers();
                tracing::info!(
                    member = self.config.id,
                    change = ?cc.get_change_type(),
                    node = cc.node_id,
                    "membership changed"
                );
                Ok(self.member_statuses())
            }
            Err(e) => Err(NodeError::Raft(e.to_string())),
        };
        if let Some(ctx) = ctx
            && ctx.origin == self.config.id
            && let Some(p) = self.member_changes.remove(&ctx.req)
        {
            let _ = p.reply.send(outcome);
        }
    }

    fn maybe_compact(&mut self) -> Result<(), NodeError> {
        let store = self.raw.store();
        let snap_index = store.latest_snapshot().get_metadata().index;
        let wanted = store.take_snapshot_wanted() && self.applied_index > snap_index;
        if !wanted && self.applied_index < snap_index + self.config.snapshot_threshold {
            return Ok(());
        }
        let index = self.applied_index;
        let term = store
            .term(index)
            .map_err(|e| NodeError::Storage(format!("term of applied index {index}: {e}")))?;
        let catalog = self
            .shared
            .applied
            .read()
            .expect("catalog lock poisoned")
            .catalog
            .snapshot();
        let data = SnapshotData {
            catalog,
            members: self.members.clone(),
        };
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = term;
        snap.mut_metadata()
            .set_conf_state(store.conf_state().clone());
        snap.data = serde_json::to_vec(&data)
            .map_err(|e| NodeError::Storage(e.to_string()))?
            .into();
        let keep_from = index.saturating_sub(self.config.snapshot_keep_entries) + 1;
        let store = self.raw.mut_store();
        blocking(|| store.compact(snap, keep_from))?;
        tracing::debug!(
            member = self.config.id,
            index,
            "registry snapshot taken, log compacted"
        );
        Ok(())
    }

    fn member_statuses(&self) -> Vec<MemberStatus> {
        let raft = &self.raw.raft;
        let conf = self.raw.store().conf_state();
        let leader = raft.state == StateRole::Leader;
        conf.voters
            .iter()
            .map(|id| (*id, true))
            .chain(conf.learners.iter().map(|id| (*id, false)))
            .map(|(id, voter)| {
                let progress = if leader { raft.prs().get(id) } else { None };
                MemberStatus {
                    id,
                    address: self.members.get(&id).cloned().unwrap_or_default(),
                    voter,
                    matched: progress.map_or(0, |p| p.matched),
                    next_index: progress.map_or(0, |p| p.next_idx),
                    progress: progress.map_or(String::new(), |p| {
                        match p.state {
                            raft::ProgressState::Probe => "probe",
                            raft::ProgressState::Replicate => "replicate",
                            raft::ProgressState::Snapshot => "snapshot",
                        }
                        .to_owned()
                    }),
                }
            })
            .collect()
    }

    fn status(&self) -> NodeStatus {
        let raft = &self.raw.raft;
        let conf = self.raw.store().conf_state();
        let role = match raft.state {
            StateRole::Leader => "leader",
            StateRole::Candidate => "candidate",
            StateRole::PreCandidate => "pre-candidate",
            StateRole::Follower if conf.learners.contains(&self.config.id) => "learner",
            StateRole::Follower => "follower",
        };
        let revision = self
            .shared
            .applied
            .read()
            .expect("catalog lock poisoned")
            .catalog
            .revision();
        NodeStatus {
            id: self.config.id,
            leader: raft.leader_id,
            term: raft.term,
            commit_index: raft.raft_log.committed,
            applied_index: self.applied_index,
            revision,
            role: role.to_owned(),
            members: self.member_statuses(),
            fault_tolerant: conf.voters.len() >= 3,
            snapshot_index: self.raw.store().latest_snapshot().get_metadata().index,
            first_index: self.raw.store().first_index().unwrap_or_default(),
        }
    }
}
