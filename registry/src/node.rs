//! One registry member: a raft-rs `RawNode` driven by one task, its durable store, the
//! applied catalog and the watch streams fed from it.
//!
//! Requests (proposals, reads, membership changes, status) reach the driver task
//! through one channel and get their answers on oneshot channels; the applied catalog is
//! shared behind a lock so that local reads and watches do not wait on the driver.

mod driver;
mod peers;
mod watch;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use causeway_trust::{ClusterName, ReplicaName};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::catalog::{
    Catalog, CatalogChange, CatalogSnapshot, Command, CommandError, Limits, Revision,
};
use crate::storage::StorageError;
pub use watch::CatalogWatch;

/// How a member behaves. Every field has a default suited to a LAN federation.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This member's Raft id: unique in the registry, never reused, not 0.
    pub id: u64,
    /// The address other members and clients use to reach this member (`host:port`).
    pub advertise_addr: String,
    /// Where the redb file lives (created if missing).
    pub data_dir: PathBuf,
    /// The voters of a brand-new registry, by id, including this member. Used only
    /// when the data directory is empty; empty means "join an existing registry": the
    /// member waits to be added by `Join` on a current member.
    pub initial_members: BTreeMap<u64, String>,
    /// One Raft tick.
    pub tick_interval: Duration,
    /// Ticks without a leader before a follower campaigns (randomised up to twice
    /// this). Election timeout = `tick_interval * election_ticks`.
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Applied entries since the last snapshot that trigger a new snapshot and log
    /// compaction.
    pub snapshot_threshold: u64,
    /// Entries kept in the log behind a snapshot, so briefly lagging members catch up
    /// from the log instead of a snapshot.
    pub snapshot_keep_entries: u64,
    /// Most voters; members that join beyond this stay learners.
    pub max_voters: usize,
    /// How long a gateway replica's member may stay unheard by the leader before
    /// the replica is taken off its cluster's list (one replica always stays).
    pub replica_grace: Duration,
    /// How long a proposal or linearizable read may wait for commit.
    pub request_timeout: Duration,
    /// How many applied changes are kept for watches that resume from a revision.
    pub watch_history: usize,
    /// Catalog limits.
    pub limits: Limits,
    /// Which member ids a caller may use in `Join` and Raft traffic.
    pub member_ids: MemberIds,
}

/// How member ids relate to the callers' verified identities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemberIds {
    /// A gateway may only join, and send Raft messages, as [`member_id`] of the
    /// cluster and replica its certificate names: a member of one cluster cannot
    /// impersonate another cluster's member (vote for it, or join in its place), nor
    /// one replica another.
    #[default]
    OfCluster,
    /// Any id, for registries whose operator assigns ids by hand (one process
    /// hosting several members, benchmarks). Callers must still be gateways.
    Unchecked,
}

/// The registry member id of a gateway replica (`replica` `None`: the cluster's
/// single unnamed gateway): stable across restarts and the same on every member,
/// derived from the cluster and replica names (never 0).
pub fn member_id(cluster: &ClusterName, replica: Option<&ReplicaName>) -> u64 {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(cluster.as_str().as_bytes());
    if let Some(replica) = replica {
        // '/' is in no DNS label, so no two (cluster, replica) pairs hash the same text.
        hasher.update(b"/");
        hasher.update(replica.as_str().as_bytes());
    }
    let digest = hasher.finalize();
    let id = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    id.max(1)
}

impl NodeConfig {
    /// A configuration with defaults: 100 ms ticks, a 1 s election timeout, snapshots
    /// every 10,000 entries.
    pub fn new(id: u64, advertise_addr: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            id,
            advertise_addr: advertise_addr.into(),
            data_dir: data_dir.into(),
            initial_members: BTreeMap::new(),
            tick_interval: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_threshold: 10_000,
            snapshot_keep_entries: 1_000,
            max_voters: 5,
            replica_grace: Duration::from_secs(300),
            request_timeout: Duration::from_secs(5),
            watch_history: 10_000,
            limits: Limits::default(),
            member_ids: MemberIds::OfCluster,
        }
    }
}

/// Why a request to the node failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    /// The command was refused by validation or by the state machine.
    #[error(transparent)]
    Rejected(#[from] CommandError),
    /// No leader is known (an election is running or there is no quorum).
    #[error("no registry leader is known; retry shortly")]
    NoLeader,
    /// The request was not committed in time; a proposal may still be applied later.
    #[error("not committed within {0:?}; the registry may lack a quorum")]
    Timeout(Duration),
    /// The member is shutting down or stopped.
    #[error("this registry member is stopped")]
    Stopped,
    /// Raft refused the request.
    #[error("raft: {0}")]
    Raft(String),
    /// The request is malformed (e.g. a membership change naming member 0).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Durable storage failed; the member stops.
    #[error("{0}")]
    Storage(String),
}

impl From<StorageError> for NodeError {
    fn from(e: StorageError) -> Self {
        NodeError::Storage(e.to_string())
    }
}

/// One member as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Raft id.
    pub id: u64,
    /// Registry address.
    pub address: String,
    /// Voter (true) or learner.
    pub voter: bool,
    /// Highest log index known replicated to it (leader only; 0 elsewhere).
    pub matched: u64,
    /// Next index the leader sends it (leader only).
    pub next_index: u64,
    /// Replication state (`probe`, `replicate`, `snapshot`), empty on followers.
    pub progress: String,
}

/// A member's view of the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// This member's id.
    pub id: u64,
    /// The leader's id, 0 if none is known.
    pub leader: u64,
    /// Current term.
    pub term: u64,
    /// Highest committed log index known here.
    pub commit_index: u64,
    /// Highest log index applied here.
    pub applied_index: u64,
    /// Catalog revision applied here.
    pub revision: Revision,
    /// `leader`, `follower`, `candidate`, `pre-candidate` or `learner`.
    pub role: String,
    /// Every member, voters and learners.
    pub members: Vec<MemberStatus>,
    /// Whether the loss of one voter still leaves a quorum (three or more voters).
    pub fault_tolerant: bool,
    /// Index of the latest snapshot this member holds.
    pub snapshot_index: u64,
    /// First log index this member still holds; older entries were compacted.
    pub first_index: u64,
}

/// What a snapshot's data holds: the catalog and the member addresses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotData {
    pub(crate) catalog: CatalogSnapshot,
    pub(crate) members: BTreeMap<u64, String>,
}

/// Signals from the driver to watch streams.
#[derive(Debug, Clone)]
pub(crate) enum WatchSignal {
    Change(Arc<CatalogChange>),
    /// The catalog was replaced by a snapshot: streams re-read the state.
    Reset,
}

/// What the driver has applied, shared with readers.
pub(crate) struct Applied {
    pub(crate) catalog: Catalog,
    pub(crate) history: VecDeque<Arc<CatalogChange>>,
    pub(crate) history_limit: usize,
}

impl Applied {
    pub(crate) fn record(&mut self, change: Arc<CatalogChange>) {
        if self.history.len() >= self.history_limit {
            self.history.pop_front();
        }
        self.history.push_back(change);
    }
}

pub(crate) struct Shared {
    pub(crate) applied: RwLock<Applied>,
    pub(crate) events: broadcast::Sender<WatchSignal>,
}

pub(crate) enum Input {
    Propose {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Revision, NodeError>>,
    },
    Read {
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    ChangeMembers {
        change: MemberChange,
        reply: oneshot::Sender<Result<Vec<MemberStatus>, NodeError>>,
    },
    Status {
        reply: oneshot::Sender<NodeStatus>,
    },
    Raft {
        from: u64,
        address: String,
        messages: Vec<raft::prelude::Message>,
    },
    SnapshotSent {
        to: u64,
        ok: bool,
    },
    Unreachable(u64),
}

/// A membership change.
#[derive(Debug, Clone)]
pub(crate) enum MemberChange {
    Join { id: u64, address: String },
    Remove { id: u64 },
}

/// A handle on a running member's driver: the in-process API the gRPC service uses.
#[derive(Clone)]
pub struct Node {
    id: u64,
    inbox: mpsc::Sender<Input>,
    shared: Arc<Shared>,
    limits: Limits,
    alive: tokio::sync::watch::Receiver<()>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).finish()
    }
}

impl Node {
    /// This member's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Validates `command`, proposes it, and waits until it is committed and applied
    /// on this member. Returns the revision it produced.
    pub async fn propose(&self, command: &Command) -> Result<Revision, NodeError> {
        command.validate(&self.limits)?;
        let data = crate::wire::encode_command(command);
        let (reply, rx) = oneshot::channel();
        self.request(Input::Propose { data, reply }, rx).await?
    }

    /// Waits until this member has applied everything the leader had committed when
    /// the call was made (ReadIndex), so that a following local read is linearizable.
    pub async fn read_barrier(&self) -> Result<(), NodeError> {
        let (reply, rx) = oneshot::channel();
        self.request(Input::Read { reply }, rx).await?
    }

    /// Runs `f` on the catalog as applied on this member (possibly stale).
    pub fn read_local<T>(&self, f: impl FnOnce(&Catalog) -> T) -> T {
        let applied = self.shared.applied.read().expect("catalog lock poisoned");
        f(&applied.catalog)
    }

    /// Adds a member as a learner; it is promoted to voter once caught up (while there
    /// are fewer than `max_voters`). Returns the members after the change.
    pub async fn join(&self, id: u64, address: String) -> Result<Vec<MemberStatus>, NodeError> {
        if id == 0 {
            return Err(NodeError::Invalid("member id 0 is reserved".into()));
        }
        let (reply, rx) = oneshot::channel();
        let change = MemberChange::Join { id, address };
        self.request(Input::ChangeMembers { change, reply }, rx)
            .await?
    }

    /// Removes a member (itself leaving, or a dead one removed by an operator).
    pub async fn remove(&self, id: u64) -> Result<Vec<MemberStatus>, NodeError> {
        let (reply, rx) = oneshot::channel();
        let change = MemberChange::Remove { id };
        self.request(Input::ChangeMembers { change, reply }, rx)
            .await?
    }

    /// This member's view of the registry.
    pub async fn status(&self) -> Result<NodeStatus, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.request(Input::Status { reply }, rx).await
    }

    /// A stream of catalog events after `from_revision` (see [`CatalogWatch`]).
    pub fn watch(&self, from_revision: Revision) -> CatalogWatch {
        CatalogWatch::new(self.shared.clone(), from_revision, self.alive.clone())
    }

    pub(crate) async fn deliver_raft(
        &self,
        from: u64,
        address: String,
        messages: Vec<raft::prelude::Message>,
    ) -> Result<(), NodeError> {
        self.inbox
            .send(Input::Raft {
                from,
                address,
                messages,
            })
            .await
            .map_err(|_| NodeError::Stopped)
    }

    async fn request<T>(&self, input: Input, rx: oneshot::Receiver<T>) -> Result<T, NodeError> {
        self.inbox
            .send(input)
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }
}

pub(crate) use driver::{DriverHandle, spawn};
