//! Membership in the driver: joins and removals proposed as conf changes, conf
//! change entries applied, and the status reports (who votes: `seats`).

use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, ConfChangeV2, Entry};
use raft::{StateRole, Storage as _};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::Driver;
use super::requests::Pending;
use crate::node::{MemberChange, MemberStatus, NodeError, NodeStatus};

/// Context of a conf change entry.
#[derive(Debug, Serialize, Deserialize)]
struct ConfContext {
    origin: u64,
    req: u64,
    address: Option<String>,
}

/// The context of a conf change: who proposed it (0: the leader on its own), its
/// request, and a joining member's address.
pub(super) fn conf_context(origin: u64, req: u64, address: Option<String>) -> Vec<u8> {
    let ctx = ConfContext {
        origin,
        req,
        address,
    };
    serde_json::to_vec(&ctx).expect("context serializes")
}

impl Driver {
    /// Proposes a join (as a learner) or a removal, answered once it is applied.
    pub(super) fn change_members(
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
        let ctx = conf_context(self.config.id, req, address);
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

    /// Applies a committed `EntryConfChange`.
    pub(super) fn apply_conf_change_entry(&mut self, entry: &Entry) -> Result<(), NodeError> {
        let cc = ConfChange::parse_from_bytes(&entry.data)
            .map_err(|e| NodeError::Storage(format!("conf change: {e}")))?;
        let ctx: Option<ConfContext> = serde_json::from_slice(&entry.context).ok();
        self.apply_conf_change(&cc, ctx);
        Ok(())
    }

    /// Applies a committed `EntryConfChangeV2`.
    pub(super) fn apply_conf_change_v2_entry(&mut self, entry: &Entry) -> Result<(), NodeError> {
        let cc = ConfChangeV2::parse_from_bytes(&entry.data)
            .map_err(|e| NodeError::Storage(format!("conf change: {e}")))?;
        match self.raw.apply_conf_change(&cc) {
            Ok(cs) => self.raw.mut_store().set_conf_state(cs),
            Err(e) => tracing::warn!(error = %e, "conf change refused"),
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

    /// The member's status report.
    pub(super) fn status(&self) -> NodeStatus {
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
