//! Client requests in the driver: proposals batched into one entry per Raft cycle,
//! linearizable reads through ReadIndex, and the deadlines and retries of both.

use std::collections::HashMap;
use std::time::Instant;

use prost::Message as _;
use tokio::sync::oneshot;

use super::Driver;
use crate::catalog::Revision;
use crate::node::NodeError;
use crate::wire::pb;

/// Ticks between checks whether a learner can be promoted or a lost voter's seat
/// handed over.
const PROMOTE_EVERY_TICKS: u64 = 2;
/// How often (in ticks) the leader looks for gone replicas; each look reads the
/// catalog's cluster list.
const SWEEP_EVERY_TICKS: u64 = 10;
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

/// The origin and request of a read context written by `entry_context`.
pub(super) fn decode_context(ctx: &[u8]) -> Option<(u64, u64)> {
    if ctx.len() != 16 {
        return None;
    }
    Some((
        u64::from_be_bytes(ctx[..8].try_into().ok()?),
        u64::from_be_bytes(ctx[8..].try_into().ok()?),
    ))
}

/// A caller waiting for an answer until a deadline.
pub(super) struct Pending<T> {
    pub(super) reply: oneshot::Sender<Result<T, NodeError>>,
    pub(super) deadline: Instant,
}

/// A proposal not yet proposed: batched, or parked until a leader is known.
pub(super) struct Waiting {
    req: u64,
    data: Vec<u8>,
    pending: Pending<Revision>,
}

/// A proposal handed to Raft: kept with its command until applied, so that it can
/// be proposed again if the leader it went to is replaced first.
pub(super) struct Proposed {
    data: Vec<u8>,
    pub(super) pending: Pending<Revision>,
    /// The leader when it was proposed.
    leader: u64,
}

/// A read waiting for its ReadIndex.
pub(super) struct PendingRead {
    pub(super) pending: Pending<()>,
    issued_tick: u64,
}

/// Removes and returns the entries of `pending` that `expired` picks.
fn take_expired<T>(pending: &mut HashMap<u64, T>, expired: impl Fn(&T) -> bool) -> Vec<T> {
    let reqs: Vec<u64> = pending
        .iter()
        .filter(|(_, p)| expired(p))
        .map(|(r, _)| *r)
        .collect();
    reqs.iter().filter_map(|req| pending.remove(req)).collect()
}

impl Driver {
    pub(super) fn take_req(&mut self) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        req
    }

    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.config.request_timeout
    }

    /// Queues a proposal for the next batch.
    pub(super) fn propose(
        &mut self,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Revision, NodeError>>,
    ) {
        let req = self.take_req();
        let pending = Pending {
            reply,
            deadline: self.deadline(),
        };
        self.add_to_batch(Waiting { req, data, pending });
    }

    /// Issues a ReadIndex; the read is answered once the member has applied up to it.
    pub(super) fn read(&mut self, reply: oneshot::Sender<Result<(), NodeError>>) {
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
    pub(super) fn flush_batch(&mut self) {
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
        let leader = self.raw.raft.leader_id;
        match self.raw.propose(Vec::new(), entry.encode_to_vec()) {
            Ok(()) => {
                for w in batch {
                    let proposed = Proposed {
                        data: w.data,
                        pending: w.pending,
                        leader,
                    };
                    self.proposals.insert(w.req, proposed);
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

    /// When a new leader is known, proposes again every proposal made under
    /// another one: a leader that died (or lost its seat) may have taken it with
    /// it, and waiting for the request timeout would stall the caller and every
    /// write queued behind it. Commands are idempotent (they set state), and a
    /// request is answered once, at its first application; a copy applied later
    /// changes nothing.
    fn repropose_after_leader_change(&mut self) {
        let leader = self.raw.raft.leader_id;
        if leader == 0 || leader == self.leader_seen {
            return;
        }
        let first = self.leader_seen == 0;
        self.leader_seen = leader;
        if first {
            return;
        }
        let stranded: Vec<u64> = self
            .proposals
            .iter()
            .filter(|(_, p)| p.leader != leader)
            .map(|(req, _)| *req)
            .collect();
        for req in &stranded {
            let Some(p) = self.proposals.remove(req) else {
                continue;
            };
            if p.pending.reply.is_closed() {
                continue;
            }
            let (data, pending) = (p.data, p.pending);
            self.add_to_batch(Waiting {
                req: *req,
                data,
                pending,
            });
        }
        if !stranded.is_empty() {
            tracing::info!(
                proposals = stranded.len(),
                leader,
                "new leader: proposals made under the old one proposed again"
            );
            self.flush_batch();
        }
    }

    /// One tick: times out requests, retries parked proposals and unanswered reads,
    /// and now and then promotes a learner.
    pub(super) fn on_tick(&mut self) {
        self.ticks += 1;
        let now = Instant::now();
        self.repropose_after_leader_change();
        self.expire_requests(now);
        self.retry_parked(now);
        if self.raw.raft.leader_id != 0 {
            self.reissue_reads();
        }
        if self.ticks.is_multiple_of(PROMOTE_EVERY_TICKS) {
            self.maybe_reseat();
        }
        if self.ticks.is_multiple_of(SWEEP_EVERY_TICKS) {
            self.maybe_sweep();
        }
    }

    /// Answers the proposals, reads and membership changes past their deadline.
    fn expire_requests(&mut self, now: Instant) {
        let timeout = self.config.request_timeout;
        for p in take_expired(&mut self.proposals, |p| p.pending.deadline <= now) {
            let _ = p.pending.reply.send(Err(NodeError::Timeout(timeout)));
        }
        for p in take_expired(&mut self.reads, |p| p.pending.deadline <= now) {
            let _ = p.pending.reply.send(Err(NodeError::Timeout(timeout)));
        }
        for p in take_expired(&mut self.member_changes, |p| p.deadline <= now) {
            let _ = p.reply.send(Err(NodeError::Timeout(timeout)));
        }
    }

    /// Batches the parked proposals again, dropping those whose caller gave up and
    /// failing those past their deadline.
    fn retry_parked(&mut self, now: Instant) {
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
    }

    /// Issues again the ReadIndex of reads unanswered for `READ_RETRY_TICKS`.
    fn reissue_reads(&mut self) {
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
}
