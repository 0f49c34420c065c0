//! The Ready cycle of the driver: send, persist, apply committed entries to the
//! shared catalog, answer the callers, advance; and the snapshots that compact the log.

use std::sync::Arc;

use prost::Message as _;
use raft::Storage as _;
use raft::prelude::{Entry, EntryType, Snapshot};
use tokio::sync::{broadcast, oneshot};

use super::requests::decode_context;
use super::{Driver, blocking, decode_snapshot};
use crate::catalog::{Catalog, Revision};
use crate::node::{Applied, NodeError, SnapshotData, WatchSignal};
use crate::wire::pb;

/// A proposal's caller and the outcome it is sent once the catalog lock is released.
type Reply = (
    oneshot::Sender<Result<Revision, NodeError>>,
    Result<Revision, NodeError>,
);

impl Driver {
    /// Handles one Ready, if Raft has one.
    pub(super) fn on_ready(&mut self) -> Result<(), NodeError> {
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
                    self.apply_batch(&entry, &mut applied, &shared.events, &mut replies)
                }
                EntryType::EntryConfChange => self.apply_conf_change_entry(&entry)?,
                EntryType::EntryConfChangeV2 => self.apply_conf_change_v2_entry(&entry)?,
            }
        }
        drop(applied);
        for (reply, outcome) in replies {
            let _ = reply.send(outcome);
        }
        Ok(())
    }

    /// Applies the commands of one proposal batch to the catalog, signals the watch
    /// streams, and collects the replies to this member's own proposals.
    fn apply_batch(
        &mut self,
        entry: &Entry,
        applied: &mut Applied,
        events: &broadcast::Sender<WatchSignal>,
        replies: &mut Vec<Reply>,
    ) {
        let batch = match pb::ProposalBatch::decode(entry.data.as_ref()) {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(index = entry.index, error = %e, "undecodable entry skipped");
                return;
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
                    let _ = events.send(WatchSignal::Change(change));
                    Ok(revision)
                }
                Err(e) => {
                    tracing::debug!(index = entry.index, error = %e, "command rejected on apply");
                    Err(NodeError::Rejected(e))
                }
            };
            if mine && let Some(p) = self.proposals.remove(&proposal.req) {
                replies.push((p.pending.reply, outcome));
            }
        }
    }

    /// Takes a snapshot and compacts the log once enough entries were applied since
    /// the last one, or when the store asks for one.
    pub(super) fn maybe_compact(&mut self) -> Result<(), NodeError> {
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
}
