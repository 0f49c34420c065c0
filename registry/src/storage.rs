//! Durable Raft storage on redb.
//!
//! The log, the hard state and the latest snapshot live in one redb file; every
//! [`RaftStore::persist`] is one write transaction committed with fsync, so one Ready
//! costs one fsync however many entries it carries. An in-memory copy of the retained
//! log serves raft-rs' reads ([`raft::Storage`]) without touching the disk.
//!
//! The configuration and catalog are recovered from the snapshot; committed entries after
//! it are applied again on restart, which is why the conf state is only persisted inside
//! snapshots.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState};
use redb::{Database, ReadableDatabase, TableDefinition};

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_entries");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const HARD_STATE: &str = "hard_state";
const SNAPSHOT: &str = "snapshot";
/// Index and term of the entry just before the first retained one.
const OFFSET: &str = "offset";

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database could not be opened, read or written.
    #[error("registry storage: {0}")]
    Db(String),
    /// Stored bytes did not decode: the file is damaged or from another program.
    #[error("registry storage is corrupt: {0}")]
    Corrupt(String),
}

fn db_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::Db(e.to_string())
}

/// raft-rs storage backed by redb with an in-memory copy of the retained log.
pub struct RaftStore {
    db: Database,
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    offset_index: u64,
    offset_term: u64,
    entries: Vec<Entry>,
    commit_dirty: bool,
    /// Set when a peer needed a snapshot that the stored one cannot serve (it predates
    /// the peer's membership); the driver then takes a fresh one.
    snapshot_wanted: AtomicBool,
}

impl RaftStore {
    /// Opens (or creates) the store in `path`. Returns whether it was empty.
    pub fn open(path: &Path) -> Result<(Self, bool), StorageError> {
        let db = Database::create(path).map_err(db_err)?;
        {
            let txn = db.begin_write().map_err(db_err)?;
            txn.open_table(ENTRIES).map_err(db_err)?;
            txn.open_table(META).map_err(db_err)?;
            txn.commit().map_err(db_err)?;
        }
        let mut store = Self {
            db,
            hard_state: HardState::default(),
            conf_state: ConfState::default(),
            snapshot: Snapshot::default(),
            offset_index: 0,
            offset_term: 0,
            entries: Vec::new(),
            commit_dirty: false,
            snapshot_wanted: AtomicBool::new(false),
        };
        let txn = store.db.begin_read().map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        let fresh = meta.get(SNAPSHOT).map_err(db_err)?.is_none();
        if let Some(v) = meta.get(HARD_STATE).map_err(db_err)? {
            store.hard_state = HardState::parse_from_bytes(v.value())
                .map_err(|e| StorageError::Corrupt(format!("hard state: {e}")))?;
        }
        if let Some(v) = meta.get(SNAPSHOT).map_err(db_err)? {
            store.snapshot = Snapshot::parse_from_bytes(v.value())
                .map_err(|e| StorageError::Corrupt(format!("snapshot: {e}")))?;
            store.conf_state = store.snapshot.get_metadata().get_conf_state().clone();
        }
        if let Some(v) = meta.get(OFFSET).map_err(db_err)? {
            let b = v.value();
            if b.len() != 16 {
                return Err(StorageError::Corrupt("log offset".into()));
            }
            store.offset_index = u64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
            store.offset_term = u64::from_be_bytes(b[8..].try_into().expect("8 bytes"));
        }
        let table = txn.open_table(ENTRIES).map_err(db_err)?;
        let first = store.offset_index + 1;
        for (expected, row) in (first..).zip(table.range(first..).map_err(db_err)?) {
            let (k, v) = row.map_err(db_err)?;
            let entry = Entry::parse_from_bytes(v.value())
                .map_err(|e| StorageError::Corrupt(format!("entry {}: {e}", k.value())))?;
            if k.value() != expected || entry.index != expected {
                return Err(StorageError::Corrupt(format!(
                    "log has a gap at index {expected}"
                )));
            }
            store.entries.push(entry);
        }
        drop(table);
        drop(meta);
        drop(txn);
        Ok((store, fresh))
    }

    /// Writes the first snapshot of a member that starts a new registry.
    pub fn bootstrap(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        let hs = HardState {
            term: snapshot.get_metadata().term,
            commit: snapshot.get_metadata().index,
            ..HardState::default()
        };
        self.persist(&[], Some(&hs), Some(&snapshot))
    }

    /// Persists one Ready's worth of state in one fsynced transaction: a received
    /// snapshot (replacing the log), new entries (replacing any conflicting suffix) and
    /// the hard state.
    pub fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        snapshot: Option<&Snapshot>,
    ) -> Result<(), StorageError> {
        let mut hard_state = hard_state.cloned();
        if self.commit_dirty {
            let mut hs = hard_state.take().unwrap_or_else(|| self.hard_state.clone());
            hs.commit = hs.commit.max(self.hard_state.commit);
            hard_state = Some(hs);
        }
        if let Some(snap) = snapshot {
            let meta = snap.get_metadata();
            let mut hs = hard_state.take().unwrap_or_else(|| self.hard_state.clone());
            hs.term = hs.term.max(meta.term);
            hs.commit = hs.commit.max(meta.index);
            hard_state = Some(hs);
        }
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(ENTRIES).map_err(db_err)?;
            let mut meta = txn.open_table(META).map_err(db_err)?;
            if let Some(snap) = snapshot {
                let m = snap.get_metadata();
                table.retain(|_, _| false).map_err(db_err)?;
                let bytes = snap.write_to_bytes().map_err(db_err)?;
                meta.insert(SNAPSHOT, bytes.as_slice()).map_err(db_err)?;
                meta.insert(OFFSET, offset_bytes(m.index, m.term).as_slice())
                    .map_err(db_err)?;
            }
            if let Some(first) = entries.first() {
                table
                    .retain_in(first.index.., |_, _| false)
                    .map_err(db_err)?;
                for e in entries {
                    let bytes = e.write_to_bytes().map_err(db_err)?;
                    table.insert(e.index, bytes.as_slice()).map_err(db_err)?;
                }
            }
            if let Some(hs) = &hard_state {
                let bytes = hs.write_to_bytes().map_err(db_err)?;
                meta.insert(HARD_STATE, bytes.as_slice()).map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)?;

        if let Some(snap) = snapshot {
            let m = snap.get_metadata();
            self.snapshot = snap.clone();
            self.conf_state = m.get_conf_state().clone();
            self.offset_index = m.index;
            self.offset_term = m.term;
            self.entries.clear();
        }
        if let Some(first) = entries.first() {
            let keep = first.index.saturating_sub(self.offset_index + 1) as usize;
            self.entries.truncate(keep);
            self.entries.extend_from_slice(entries);
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs;
            self.commit_dirty = false;
        }
        Ok(())
    }

    /// Stores `snapshot` (taken at an applied index) and drops log entries before
    /// `keep_from`, which must not be past the snapshot's index + 1.
    pub fn compact(&mut self, snapshot: Snapshot, keep_from: u64) -> Result<(), StorageError> {
        let snap_index = snapshot.get_metadata().index;
        let keep_from = keep_from.clamp(self.offset_index + 1, snap_index + 1);
        let new_offset = keep_from - 1;
        let new_offset_term = if new_offset == snap_index {
            snapshot.get_metadata().term
        } else {
            self.term_of(new_offset)
                .ok_or_else(|| StorageError::Corrupt(format!("no term for index {new_offset}")))?
        };
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(ENTRIES).map_err(db_err)?;
            let mut meta = txn.open_table(META).map_err(db_err)?;
            table.retain_in(..keep_from, |_, _| false).map_err(db_err)?;
            let bytes = snapshot.write_to_bytes().map_err(db_err)?;
            meta.insert(SNAPSHOT, bytes.as_slice()).map_err(db_err)?;
            meta.insert(OFFSET, offset_bytes(new_offset, new_offset_term).as_slice())
                .map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        let drop_count = (new_offset - self.offset_index) as usize;
        self.entries.drain(..drop_count.min(self.entries.len()));
        self.offset_index = new_offset;
        self.offset_term = new_offset_term;
        self.snapshot = snapshot;
        Ok(())
    }

    /// Records a newer commit index (kept in memory; written with the next hard state).
    pub fn set_commit(&mut self, commit: u64) {
        if commit > self.hard_state.commit {
            self.hard_state.commit = commit;
            self.commit_dirty = true;
        }
    }

    /// Records the configuration after applying a conf change (kept in memory; it is
    /// persisted with the next snapshot and recomputed from the log on restart).
    pub fn set_conf_state(&mut self, conf_state: ConfState) {
        self.conf_state = conf_state;
    }

    /// The current configuration.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The latest snapshot.
    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Whether a peer asked for a snapshot newer than the stored one (clears the flag).
    pub fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.swap(false, Ordering::Relaxed)
    }

    /// How many entries the log retains.
    pub fn retained_entries(&self) -> usize {
        self.entries.len()
    }

    fn last(&self) -> u64 {
        self.offset_index + self.entries.len() as u64
    }

    fn term_of(&self, idx: u64) -> Option<u64> {
        if idx == self.offset_index {
            return Some(self.offset_term);
        }
        if idx == self.snapshot.get_metadata().index {
            return Some(self.snapshot.get_metadata().term);
        }
        if idx < self.offset_index || idx > self.last() {
            return None;
        }
        Some(self.entries[(idx - self.offset_index - 1) as usize].term)
    }
}

fn offset_bytes(index: u64, term: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&index.to_be_bytes());
    b[8..].copy_from_slice(&term.to_be_bytes());
    b
}

impl raft::Storage for RaftStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.offset_index {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        let from = (low - self.offset_index - 1) as usize;
        let to = (high - self.offset_index - 1) as usize;
        let mut out = self.entries[from..to].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.offset_index {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        self.term_of(idx)
            .ok_or(raft::Error::Store(raft::StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.offset_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let conf = self.snapshot.get_metadata().get_conf_state();
        let includes_peer = conf.voters.contains(&to) || conf.learners.contains(&to);
        if self.snapshot.get_metadata().index < request_index || !includes_peer {
            self.snapshot_wanted.store(true, Ordering::Relaxed);
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 4].into(),
            ..Entry::default()
        }
    }

    fn snap(index: u64, term: u64, voters: Vec<u64>) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s.mut_metadata()
            .set_conf_state(ConfState::from((voters, vec![])));
        s.data = b"catalog".to_vec().into();
        s
    }

    #[test]
    fn log_survives_reopen_and_truncates_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        {
            let (mut s, fresh) = RaftStore::open(&path).unwrap();
            assert!(fresh);
            s.bootstrap(snap(1, 1, vec![1, 2, 3])).unwrap();
            s.persist(&[entry(2, 1), entry(3, 1), entry(4, 1)], None, None)
                .unwrap();
            // A new leader overwrites index 3 onwards.
            let hs = HardState {
                term: 2,
                commit: 3,
                ..HardState::default()
            };
            s.persist(&[entry(3, 2)], Some(&hs), None).unwrap();
            assert_eq!(s.last_index().unwrap(), 3);
        }
        let (s, fresh) = RaftStore::open(&path).unwrap();
        assert!(!fresh);
        assert_eq!(s.first_index().unwrap(), 2);
        assert_eq!(s.last_index().unwrap(), 3);
        assert_eq!(s.term(3).unwrap(), 2);
        assert_eq!(s.term(1).unwrap(), 1);
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 3);
        assert_eq!(s.initial_state().unwrap().conf_state.voters, vec![1, 2, 3]);
        let got = s
            .entries(2, 4, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got.iter().map(|e| e.term).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn compaction_keeps_a_tail_and_snapshots_replace_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        let (mut s, _) = RaftStore::open(&path).unwrap();
        s.bootstrap(snap(1, 1, vec![1])).unwrap();
        let entries: Vec<_> = (2..=20).map(|i| entry(i, 1)).collect();
        s.persist(&entries, None, None).unwrap();
        s.compact(snap(15, 1, vec![1]), 11).unwrap();
        assert_eq!(s.first_index().unwrap(), 11);
        assert!(matches!(
            s.entries(5, 12, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(raft::StorageError::Compacted))
        ));
        assert_eq!(s.snapshot(0, 1).unwrap().get_metadata().index, 15);
        // A peer the snapshot's configuration does not know needs a newer snapshot.
        assert!(!s.take_snapshot_wanted());
        assert!(matches!(
            s.snapshot(0, 2),
            Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        assert!(s.take_snapshot_wanted());
        drop(s);
        let (mut s, _) = RaftStore::open(&path).unwrap();
        assert_eq!(s.first_index().unwrap(), 11);
        assert_eq!(s.last_index().unwrap(), 20);
        s.persist(&[], None, Some(&snap(40, 3, vec![1, 2])))
            .unwrap();
        assert_eq!(s.first_index().unwrap(), 41);
        assert_eq!(s.last_index().unwrap(), 40);
        assert_eq!(s.term(40).unwrap(), 3);
        assert_eq!(s.conf_state().voters, vec![1, 2]);
        drop(s);
        let (s, _) = RaftStore::open(&path).unwrap();
        assert_eq!(s.last_index().unwrap(), 40);
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 40);
    }
}
