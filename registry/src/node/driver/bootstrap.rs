//! Opening a member's storage: a brand-new registry is bootstrapped with its initial
//! members, and the catalog, member list and `RawNode` are restored from the latest
//! snapshot.

use std::collections::BTreeMap;

use raft::RawNode;
use raft::prelude::Snapshot;

use super::decode_snapshot;
use crate::catalog::{Catalog, CatalogSnapshot};
use crate::node::{NodeConfig, NodeError, SnapshotData};
use crate::storage::RaftStore;

/// Largest append message: keeps one RPC's size moderate while batching well.
const MAX_SIZE_PER_MSG: u64 = 1024 * 1024;
/// Append messages in flight per follower before waiting for acknowledgements.
const MAX_INFLIGHT: usize = 256;

/// A member's state as its storage holds it, ready for the driver.
pub(super) struct Restored {
    pub(super) raw: RawNode<RaftStore>,
    pub(super) catalog: Catalog,
    pub(super) members: BTreeMap<u64, String>,
    /// The index of the snapshot the catalog was restored from.
    pub(super) applied_index: u64,
}

/// Opens (or creates and bootstraps) the member's storage and restores its state.
pub(super) fn open(config: &NodeConfig) -> Result<Restored, NodeError> {
    if config.id == 0 {
        return Err(NodeError::Invalid("member id 0 is reserved".into()));
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        NodeError::Storage(format!("cannot create {}: {e}", config.data_dir.display()))
    })?;
    let (mut store, fresh) = RaftStore::open(&config.data_dir.join("registry.redb"))?;
    if fresh && !config.initial_members.is_empty() {
        bootstrap(&mut store, config)?;
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
    let applied_index = snap.get_metadata().index;
    Ok(Restored {
        raw: raw_node(config, store, applied_index)?,
        catalog,
        members,
        applied_index,
    })
}

/// Writes the first snapshot of a brand-new registry, holding its initial members.
fn bootstrap(store: &mut RaftStore, config: &NodeConfig) -> Result<(), NodeError> {
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
    Ok(())
}

/// Builds the `RawNode` over the opened storage, which has applied up to `applied`.
fn raw_node(
    config: &NodeConfig,
    store: RaftStore,
    applied: u64,
) -> Result<RawNode<RaftStore>, NodeError> {
    let raft_config = raft::Config {
        id: config.id,
        election_tick: config.election_ticks,
        heartbeat_tick: config.heartbeat_ticks,
        applied,
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
    RawNode::new(&raft_config, store, &logger).map_err(|e| NodeError::Raft(e.to_string()))
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
