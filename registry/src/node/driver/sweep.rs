//! Replicas that are gone: the leader takes a gateway replica off its cluster's list
//! (`Command::RemoveReplica`) once the replica's registry member has been unheard for
//! the grace period (`NodeConfig::replica_grace`), so that peers stop dialling and
//! probing it and `causeway check` stops naming it. A cluster always keeps one
//! replica listed: when every replica is unheard the cluster itself is unreachable,
//! which is not a replica's fault to tidy away.
//!
//! A member no cluster lists any more (a replica taken off its list by the sweep,
//! or one that drained and took itself off), unheard past the grace period too,
//! leaves the Raft membership: the leader stops replicating to it, and a Deployment
//! whose pods get new names on every rollout does not leave a learner behind per
//! pod. A voter among them already handed its seat over (`seats.rs`). A replica
//! that was only cut off comes back, finds no leader, and joins again through the
//! members it knows (the gateway's `rejoin_when_removed`); it then lists itself
//! again when it finds itself missing.
//!
//! A cluster whose every replica is unheard past the grace period is gone as a
//! whole: its exports are withdrawn (`ReplaceClusterExports` with none), so other
//! clusters' DNS stops naming services nobody serves. The cluster stays registered;
//! a gateway of it that comes back finds its exports withdrawn and publishes them
//! again.
//!
//! The sans-IO rules are [`gone_replicas`], [`gone_members`] and [`gone_clusters`];
//! the driver method below feeds them.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use causeway_trust::{ClusterName, ReplicaName};
use raft::StateRole;
use tokio::sync::oneshot;

use super::Driver;
use crate::catalog::Command;
use crate::node::{MemberIds, member_id};

/// A cluster and the names of the replicas its record lists.
type Listed = (ClusterName, Vec<Option<ReplicaName>>);

/// How long before the sweep proposes again the removal of a replica still listed.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// The replicas to take off their clusters' lists: named replicas of clusters that
/// list several, whose member is unheard for longer than `grace`, keeping at least
/// one per cluster (the most recently heard; `me` counts as heard now).
pub(super) fn gone_replicas(
    listed: &[Listed],
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

/// The members to remove: every one but `me` that no cluster lists (neither a
/// listed replica nor the unnamed gateway of a cluster that lists none) and that is
/// unheard for longer than `grace`.
pub(super) fn gone_members(
    members: &[u64],
    listed: &[Listed],
    me: u64,
    unheard_for: impl Fn(u64) -> Duration,
    grace: Duration,
) -> Vec<u64> {
    let owned: HashSet<u64> = listed
        .iter()
        .flat_map(|(cluster, replicas)| {
            let unnamed = replicas.is_empty().then(|| member_id(cluster, None));
            let named = replicas.iter().map(|r| member_id(cluster, r.as_ref()));
            unnamed.into_iter().chain(named)
        })
        .collect();
    members
        .iter()
        .copied()
        .filter(|id| *id != me && !owned.contains(id) && unheard_for(*id) > grace)
        .collect()
}

/// The clusters whose every listed replica (or whose one unnamed gateway) is unheard
/// for longer than `grace`; never `me`'s.
pub(super) fn gone_clusters(
    listed: &[Listed],
    me: u64,
    unheard_for: impl Fn(u64) -> Duration,
    grace: Duration,
) -> Vec<ClusterName> {
    listed
        .iter()
        .filter(|(cluster, replicas)| {
            let unnamed = [None];
            let members = if replicas.is_empty() {
                &unnamed[..]
            } else {
                &replicas[..]
            };
            members.iter().all(|r| {
                let id = member_id(cluster, r.as_ref());
                id != me && unheard_for(id) > grace
            })
        })
        .map(|(cluster, _)| cluster.clone())
        .collect()
}

/// What the sweep takes away: a replica off its cluster's list, or a cluster's
/// exports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Removal {
    Replica(ClusterName, ReplicaName),
    Member(u64),
    Exports(ClusterName),
}

/// The sweep's memory: since when this member leads, and what it proposed lately.
#[derive(Debug, Default)]
pub(super) struct Sweep {
    leading_since: Option<Instant>,
    proposed: HashMap<Removal, Instant>,
}

impl Driver {
    /// On the leader: proposes the removal of every replica, and the withdrawal of
    /// the exports of every cluster, gone for longer than the grace period (silence
    /// counts from when this member began to lead, since it has heard nobody before).
    pub(super) fn maybe_sweep(&mut self) {
        let now = Instant::now();
        // Whose member is whose is known only when member ids are bound to
        // clusters and replicas; with ids assigned by hand nobody is swept.
        if self.raw.raft.state != StateRole::Leader
            || self.config.member_ids != MemberIds::OfCluster
        {
            self.sweep = Sweep::default();
            return;
        }
        let since = *self.sweep.leading_since.get_or_insert(now);
        let (listed, exporting) = self.listed_clusters();
        let unheard = |id: u64| {
            let heard = self.heard.get(&id).map_or(since, |at| (*at).max(since));
            now.saturating_duration_since(heard)
        };
        let (me, grace) = (self.config.id, self.config.replica_grace);
        let mut removals: Vec<Removal> = gone_replicas(&listed, me, unheard, grace)
            .into_iter()
            .map(|(cluster, replica)| Removal::Replica(cluster, replica))
            .collect();
        let members = self.member_ids();
        removals.extend(
            gone_members(&members, &listed, me, unheard, grace)
                .into_iter()
                .map(Removal::Member),
        );
        removals.extend(
            gone_clusters(&exporting, me, unheard, grace)
                .into_iter()
                .map(Removal::Exports),
        );
        self.sweep
            .proposed
            .retain(|_, at| now.saturating_duration_since(*at) < RETRY_AFTER);
        for removal in removals {
            if !self.sweep.proposed.contains_key(&removal) {
                self.propose_removal(&removal);
                self.sweep.proposed.insert(removal, now);
            }
        }
    }

    /// Every cluster with the replicas its record lists, and the same for the
    /// clusters that export something (`gone_replicas` itself skips clusters that
    /// list one replica).
    fn listed_clusters(&self) -> (Vec<Listed>, Vec<Listed>) {
        let applied = self.shared.applied.read().expect("catalog lock poisoned");
        let catalog = &applied.catalog;
        let all: Vec<Listed> = catalog
            .clusters()
            .map(|c| {
                let names = c.value.replicas.iter().map(|r| r.name.clone()).collect();
                (c.value.name.clone(), names)
            })
            .collect();
        let exporting = all
            .iter()
            .filter(|(cluster, _)| catalog.cluster_exports(cluster).next().is_some())
            .cloned()
            .collect();
        (all, exporting)
    }

    /// Every member's id, voters and learners.
    fn member_ids(&self) -> Vec<u64> {
        let conf = self.raw.store().conf_state();
        conf.voters.iter().chain(&conf.learners).copied().collect()
    }

    fn propose_removal(&mut self, removal: &Removal) {
        let command = match removal {
            Removal::Member(id) => {
                tracing::info!(
                    member = id,
                    "member no cluster lists, unheard past the grace period: removing it from the registry"
                );
                let (reply, _) = oneshot::channel();
                self.change_members(crate::node::MemberChange::Remove { id: *id }, reply);
                return;
            }
            Removal::Replica(cluster, replica) => {
                tracing::info!(%cluster, %replica, "replica unheard past the grace period: taking it off its cluster's list");
                Command::RemoveReplica {
                    cluster: cluster.clone(),
                    replica: Some(replica.clone()),
                }
            }
            Removal::Exports(cluster) => {
                tracing::info!(%cluster, "every gateway of the cluster unheard past the grace period: withdrawing its exports");
                Command::ReplaceClusterExports {
                    cluster: cluster.clone(),
                    exports: Vec::new(),
                }
            }
        };
        let (reply, _) = oneshot::channel();
        self.propose(crate::wire::encode_command(&command), reply);
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
    fn a_cluster_is_gone_when_every_gateway_is_unheard() {
        let listed = [
            listed("east", &["a", "b"]),
            ("west".parse().unwrap(), Vec::new()),
        ];
        let b = id("east", "b");
        let west = member_id(&"west".parse().unwrap(), None);
        // east/b still heard: east stays; west's one unnamed gateway is silent.
        let silent = |m: u64| if m == b { Duration::ZERO } else { GRACE * 2 };
        assert_eq!(
            gone_clusters(&listed, 0, silent, GRACE),
            vec!["west".parse::<ClusterName>().unwrap()]
        );
        // Everyone silent, but this member is west's gateway: only east goes.
        let gone = gone_clusters(&listed, west, |_| GRACE * 2, GRACE);
        assert_eq!(gone, vec!["east".parse::<ClusterName>().unwrap()]);
        assert!(gone_clusters(&listed, 0, |_| GRACE, GRACE).is_empty());
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

    #[test]
    fn a_member_goes_once_no_cluster_lists_it_and_it_is_unheard() {
        let listed = [
            listed("east", &["a", "b"]),
            ("west".parse().unwrap(), Vec::new()),
        ];
        let (a, b, c) = (id("east", "a"), id("east", "b"), id("east", "c"));
        let west = member_id(&"west".parse().unwrap(), None);
        let members = [a, b, c, west, 7];
        // c drained (off the list), 7 belongs to nobody; both silent. a and b are
        // listed, and west's unnamed gateway too, however silent.
        let mut gone = gone_members(&members, &listed, a, |_| GRACE * 2, GRACE);
        gone.sort_unstable();
        let mut expected = vec![c, 7];
        expected.sort_unstable();
        assert_eq!(gone, expected);
        // Heard within the grace: it stays, listed or not.
        assert!(gone_members(&members, &listed, a, |_| GRACE, GRACE).is_empty());
        // This member never goes, even when nobody lists it.
        assert!(gone_members(&[c], &listed, c, |_| GRACE * 2, GRACE).is_empty());
    }
}
