//! Replicas that are gone: the leader takes a gateway replica off its cluster's list
//! (`Command::RemoveReplica`) once the replica's registry member has been unheard for
//! the grace period (`NodeConfig::replica_grace`), so that peers stop dialling and
//! probing it and `causeway check` stops naming it. A cluster always keeps one
//! replica listed: when every replica is unheard the cluster itself is unreachable,
//! which is not a replica's fault to tidy away.
//!
//! Only the list changes. The replica's Raft membership stays (a voter among them
//! already handed its seat over, see `seats.rs`): a replica that was only cut off
//! comes back as a member and lists itself again when it finds itself missing.
//!
//! The sans-IO rule is [`gone_replicas`]; the driver method below feeds it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use causeway_trust::{ClusterName, ReplicaName};
use raft::StateRole;
use tokio::sync::oneshot;

use super::Driver;
use crate::catalog::Command;
use crate::node::member_id;

/// How long before the sweep proposes again the removal of a replica still listed.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// The replicas to take off their clusters' lists: named replicas of clusters that
/// list several, whose member is unheard for longer than `grace`, keeping at least
/// one per cluster (the most recently heard; `me` counts as heard now).
pub(super) fn gone_replicas(
    listed: &[(ClusterName, Vec<Option<ReplicaName>>)],
    me: u64,
    unheard_for: impl Fn(u64) -> Duration,
    grace: Duration,
) -> Vec<(ClusterName, ReplicaName)> {
    let mut gone = Vec::new();
    for (cluster, replicas) in listed.iter().filter(|(_, r)| r.len() > 1) {
        // This member never hears itself, and is alive.
        let silence = |id: u64| {
            if id == me {
                Duration::ZERO
            } else {
                unheard_for(id)
            }
        };
        let mut by_silence: Vec<(Duration, &Option<ReplicaName>)> = replicas
            .iter()
            .map(|r| (silence(member_id(cluster, r.as_ref())), r))
            .collect();
        // The most recently heard first: it stays whatever the others are.
        by_silence.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        for (silence, replica) in by_silence.into_iter().skip(1) {
            let Some(name) = replica else { continue };
            if silence > grace {
                gone.push((cluster.clone(), name.clone()));
            }
        }
    }
    gone
}

/// The sweep's memory: since when this member leads, and what it proposed lately.
#[derive(Debug, Default)]
pub(super) struct Sweep {
    leading_since: Option<Instant>,
    proposed: HashMap<(ClusterName, ReplicaName), Instant>,
}

impl Driver {
    /// On the leader: proposes the removal of every replica gone for longer than the
    /// grace period (silence counts from when this member began to lead, since it
    /// has heard nobody before).
    pub(super) fn maybe_sweep(&mut self) {
        let now = Instant::now();
        if self.raw.raft.state != StateRole::Leader {
            self.sweep = Sweep::default();
            return;
        }
        let since = *self.sweep.leading_since.get_or_insert(now);
        let listed: Vec<(ClusterName, Vec<Option<ReplicaName>>)> = {
            let applied = self.shared.applied.read().expect("catalog lock poisoned");
            applied
                .catalog
                .clusters()
                .filter(|c| c.value.replicas.len() > 1)
                .map(|c| {
                    let names = c.value.replicas.iter().map(|r| r.name.clone()).collect();
                    (c.value.name.clone(), names)
                })
                .collect()
        };
        if listed.is_empty() {
            return;
        }
        let unheard = |id: u64| {
            let heard = self.heard.get(&id).map_or(since, |at| (*at).max(since));
            now.saturating_duration_since(heard)
        };
        let gone = gone_replicas(&listed, self.config.id, unheard, self.config.replica_grace);
        self.sweep
            .proposed
            .retain(|_, at| now.saturating_duration_since(*at) < RETRY_AFTER);
        for (cluster, replica) in gone {
            if self
                .sweep
                .proposed
                .contains_key(&(cluster.clone(), replica.clone()))
            {
                continue;
            }
            tracing::info!(%cluster, %replica, "replica unheard past the grace period: taking it off its cluster's list");
            let command = Command::RemoveReplica {
                cluster: cluster.clone(),
                replica: Some(replica.clone()),
            };
            let (reply, _) = oneshot::channel();
            self.propose(crate::wire::encode_command(&command), reply);
            self.sweep.proposed.insert((cluster, replica), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(cluster: &str, replicas: &[&str]) -> (ClusterName, Vec<Option<ReplicaName>>) {
        (
            cluster.parse().unwrap(),
            replicas.iter().map(|r| Some(r.parse().unwrap())).collect(),
        )
    }

    fn id(cluster: &str, replica: &str) -> u64 {
        member_id(&cluster.parse().unwrap(), Some(&replica.parse().unwrap()))
    }

    const GRACE: Duration = Duration::from_secs(300);

    #[test]
    fn a_replica_unheard_past_the_grace_goes_and_one_always_stays() {
        let east = [listed("east", &["a", "b", "c"])];
        let b = id("east", "b");
        let silent_b = |m: u64| {
            if m == b {
                GRACE * 2
            } else {
                Duration::from_secs(1)
            }
        };
        let gone = gone_replicas(&east, 0, silent_b, GRACE);
        assert_eq!(gone, vec![("east".parse().unwrap(), "b".parse().unwrap())]);
        // Within the grace period nothing goes.
        assert!(gone_replicas(&east, 0, |_| GRACE, GRACE).is_empty());
        // All silent: the most recently heard (c) stays.
        let c = id("east", "c");
        let all_silent = |m: u64| {
            if m == c {
                GRACE + Duration::from_secs(1)
            } else {
                GRACE * 3
            }
        };
        let mut gone: Vec<String> = gone_replicas(&east, 0, all_silent, GRACE)
            .into_iter()
            .map(|(_, r)| r.to_string())
            .collect();
        gone.sort();
        assert_eq!(gone, ["a", "b"]);
    }

    #[test]
    fn a_lone_replica_and_the_leader_itself_never_go() {
        let lone = [listed("west", &["a"])];
        assert!(gone_replicas(&lone, 0, |_| GRACE * 10, GRACE).is_empty());
        let east = [listed("east", &["a", "b"])];
        let a = id("east", "a");
        let b = id("east", "b");
        // a is this member: even unheard (it never hears itself) it stays.
        let gone = gone_replicas(
            &east,
            a,
            |m| if m == b { Duration::ZERO } else { GRACE * 2 },
            GRACE,
        );
        assert!(gone.is_empty(), "{gone:?}");
    }
}
