//! Who votes: the leader promotes caught-up learners to voters, spreading the seats
//! over clusters, and hands the seat of a voter it has not heard from for long to a
//! live learner.
//!
//! A cluster may run several gateway replicas, each a member. Seats go first to
//! clusters that hold none, so the loss of one cluster costs at most one vote; a
//! cluster gets a second seat only while the registry has fewer than
//! [`FAULT_TOLERANT_VOTERS`] voters (two clusters, one with replicas, still survive
//! the loss of one member). At most `max_voters` vote in all. Which cluster a member
//! belongs to comes from the catalog (each replica's member id is derived from its
//! cluster and name); a member the catalog does not list counts as a cluster of its
//! own.
//!
//! The sans-IO rules are [`next_voter`] and [`seat_to_hand_over`]; the driver methods
//! below feed them the Raft state.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use raft::StateRole;
use raft::prelude::{ConfChange, ConfChangeType};

use super::Driver;
use super::membership::conf_context;
use crate::node::member_id;

/// Voters needed to survive the loss of one.
pub(super) const FAULT_TOLERANT_VOTERS: usize = 3;

/// Election timeouts a voter may stay unheard before its seat goes to a live learner.
const SEAT_LOST_AFTER_ELECTIONS: u32 = 10;

/// What the rules know about the members.
#[derive(Debug, Default)]
pub(super) struct Seats {
    /// Voters, by id.
    pub(super) voters: BTreeSet<u64>,
    /// Learners that are caught up and were heard from lately: ready to vote.
    pub(super) ready: Vec<u64>,
    /// Each member's cluster (a member not listed is a cluster of its own).
    pub(super) cluster: HashMap<u64, String>,
    /// Most voters.
    pub(super) max_voters: usize,
}

impl Seats {
    fn cluster_of(&self, id: u64) -> String {
        self.cluster
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("member {id}"))
    }

    fn seated_clusters(&self, voters: &BTreeSet<u64>) -> BTreeSet<String> {
        voters.iter().map(|v| self.cluster_of(*v)).collect()
    }
}

/// The learner to promote now, if any (see the module).
pub(super) fn next_voter(seats: &Seats) -> Option<u64> {
    next_voter_among(seats, &seats.voters)
}

fn next_voter_among(seats: &Seats, voters: &BTreeSet<u64>) -> Option<u64> {
    if voters.len() >= seats.max_voters {
        return None;
    }
    let seated = seats.seated_clusters(voters);
    let unseated = seats
        .ready
        .iter()
        .copied()
        .find(|l| !seated.contains(&seats.cluster_of(*l)));
    unseated.or_else(|| {
        (voters.len() < FAULT_TOLERANT_VOTERS)
            .then(|| seats.ready.first().copied())
            .flatten()
    })
}

/// The voter (other than `me`) to demote now: one unheard for longer than `lost_after`
/// whose seat a ready learner would take once it is free.
pub(super) fn seat_to_hand_over(
    seats: &Seats,
    me: u64,
    unheard_for: impl Fn(u64) -> Duration,
    lost_after: Duration,
) -> Option<u64> {
    seats
        .voters
        .iter()
        .copied()
        .filter(|v| *v != me && unheard_for(*v) > lost_after)
        .find(|lost| {
            let mut rest = seats.voters.clone();
            rest.remove(lost);
            next_voter_among(seats, &rest).is_some()
        })
}

impl Driver {
    /// Each registry member's cluster, as the applied catalog lists its replicas.
    fn member_clusters(&self) -> HashMap<u64, String> {
        let applied = self.shared.applied.read().expect("catalog lock poisoned");
        let mut out = HashMap::new();
        for c in applied.catalog.clusters() {
            let cluster = &c.value.name;
            out.insert(member_id(cluster, None), cluster.to_string());
            for r in &c.value.replicas {
                out.insert(member_id(cluster, r.name.as_ref()), cluster.to_string());
            }
        }
        out
    }

    /// How long since `id` last sent us a Raft message (forever if never).
    fn unheard_for(&self, id: u64, now: Instant) -> Duration {
        self.heard
            .get(&id)
            .map_or(Duration::MAX, |at| now.saturating_duration_since(*at))
    }

    fn seats(&self, now: Instant) -> Seats {
        let raft = &self.raw.raft;
        let conf = self.raw.store().conf_state();
        let committed = raft.raft_log.committed;
        let lively = self.config.tick_interval * self.config.election_ticks as u32;
        let ready = conf
            .learners
            .iter()
            .copied()
            .filter(|id| {
                raft.prs()
                    .get(*id)
                    .is_some_and(|p| p.matched >= committed.saturating_sub(1))
                    && self.unheard_for(*id, now) <= lively
            })
            .collect();
        Seats {
            voters: conf.voters.iter().copied().collect(),
            ready,
            cluster: self.member_clusters(),
            max_voters: self.config.max_voters,
        }
    }

    /// On the leader: promotes a ready learner, or demotes a voter lost for long so
    /// that one can be promoted next (one membership change at a time).
    pub(super) fn maybe_reseat(&mut self) {
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader || raft.has_pending_conf() {
            return;
        }
        // Without a learner nobody can be promoted or take a seat: skip reading
        // the catalog (every few ticks, on the leader).
        if self.raw.store().conf_state().learners.is_empty() {
            return;
        }
        let now = Instant::now();
        let seats = self.seats(now);
        if let Some(id) = next_voter(&seats) {
            self.propose_seat(
                id,
                ConfChangeType::AddNode,
                "promoting a caught-up learner to voter",
            );
            return;
        }
        let election = self.config.tick_interval * self.config.election_ticks as u32;
        let lost_after = election * SEAT_LOST_AFTER_ELECTIONS;
        let me = self.config.id;
        if let Some(id) = seat_to_hand_over(&seats, me, |v| self.unheard_for(v, now), lost_after) {
            self.propose_seat(
                id,
                ConfChangeType::AddLearnerNode,
                "voter unheard for long: its seat goes to a live learner",
            );
        }
    }

    fn propose_seat(&mut self, id: u64, change: ConfChangeType, why: &'static str) {
        let mut cc = ConfChange::default();
        cc.set_change_type(change);
        cc.node_id = id;
        match self.raw.propose_conf_change(conf_context(0, 0, None), cc) {
            Ok(()) => tracing::info!(member = id, "{why}"),
            Err(e) => tracing::debug!(member = id, error = %e, "seat change not proposed"),
        }
    }
}

#[cfg(test)]
mod tests;
