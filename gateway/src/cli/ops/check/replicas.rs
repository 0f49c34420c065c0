//! The checks across the replicas of the gateway's cluster: each one reachable, none
//! behind on the catalog, all with the same import pools (so that they answer DNS
//! with the same import addresses, which come from the catalog's slots).

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{CheckResult, check};
use crate::cli::admin_client::AdminClient;
use crate::status::ReplicaState;

/// How long `check` waits for a replica behind to catch up before reporting it: a
/// replica applies a commit within milliseconds, so one still behind after this is
/// stuck, not busy.
const SETTLE: Duration = Duration::from_secs(3);

/// The replicas as the gateway reports them, asked again while one is behind and
/// the settle time lasts.
pub(super) async fn settled(client: &AdminClient) -> Result<Vec<ReplicaState>> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let replicas = client.replicas().await?;
        let settled = replicas_agree(&replicas)
            .iter()
            .all(|r| r.ok || r.name != BEHIND);
        if settled || Instant::now() >= deadline {
            return Ok(replicas);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const BEHIND: &str = "replicas at one catalog revision";

/// Replicas of one cluster at one catalog revision, with the same import pools,
/// answer DNS with the same import addresses: the catalog hands out the slots.
pub(super) fn replicas_agree(replicas: &[ReplicaState]) -> Vec<CheckResult> {
    let Some(me) = replicas.iter().find(|r| r.this) else {
        return Vec::new();
    };
    let siblings: Vec<&ReplicaState> = replicas.iter().filter(|r| !r.this).collect();
    if siblings.is_empty() {
        return vec![check(
            "replicas agree",
            true,
            format!("{} runs alone: nothing to compare", me.replica),
            "",
        )];
    }
    let unreachable: Vec<String> = siblings
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| format!("{} ({e})", r.replica)))
        .collect();
    let behind: Vec<String> = siblings
        .iter()
        .filter(|r| r.revision.is_some_and(|rev| rev < me.revision.unwrap_or(0)))
        .map(|r| format!("{} at {}", r.replica, r.revision.unwrap_or(0)))
        .collect();
    let other_pools: Vec<String> = siblings
        .iter()
        .filter(|r| r.import_pools != me.import_pools)
        .map(|r| format!("{} [{}]", r.replica, r.import_pools.join(", ")))
        .collect();
    let all = siblings.len() + 1;
    vec![
        check(
            "replicas reachable",
            unreachable.is_empty(),
            if unreachable.is_empty() {
                format!("{all} replicas answer")
            } else {
                format!("unreachable: {}", unreachable.join(", "))
            },
            "start the replica, or take one gone for good off the list with `causeway unlink CLUSTER/REPLICA`",
        ),
        check(
            BEHIND,
            behind.is_empty(),
            if behind.is_empty() {
                format!(
                    "no replica behind {} (revision {})",
                    me.replica,
                    me.revision.unwrap_or(0)
                )
            } else {
                format!(
                    "behind {} (revision {}): {}",
                    me.replica,
                    me.revision.unwrap_or(0),
                    behind.join(", ")
                )
            },
            "a replica behind serves older imports; `causeway status` on it shows why its registry member does not catch up",
        ),
        check(
            "replicas share import pools",
            other_pools.is_empty(),
            if other_pools.is_empty() {
                format!(
                    "every replica imports from [{}]",
                    me.import_pools.join(", ")
                )
            } else {
                format!(
                    "{} imports from [{}], but {}",
                    me.replica,
                    me.import_pools.join(", "),
                    other_pools.join(", ")
                )
            },
            "give every replica of a cluster the same `[imports] pools`, so they answer DNS with the same addresses",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(name: &str, this: bool, revision: Option<u64>, pool: &str) -> ReplicaState {
        ReplicaState {
            replica: name.into(),
            this,
            registry_addr: "10.0.0.1:15444".into(),
            revision,
            import_pools: vec![pool.into()],
            error: revision.is_none().then(|| "connection refused".into()),
        }
    }

    fn failed(results: &[CheckResult]) -> Vec<(&str, &str)> {
        results
            .iter()
            .filter(|r| !r.ok)
            .map(|r| (r.name.as_str(), r.detail.as_str()))
            .collect()
    }

    #[test]
    fn a_lone_gateway_passes_and_agreeing_replicas_pass() {
        let alone = replicas_agree(&[replica("east", true, Some(7), "127.77.0.0/16")]);
        assert_eq!(alone.len(), 1);
        assert!(
            alone[0].ok && alone[0].detail.contains("alone"),
            "{alone:?}"
        );
        let three = replicas_agree(&[
            replica("east/a", true, Some(7), "127.77.0.0/16"),
            replica("east/b", false, Some(7), "127.77.0.0/16"),
            replica("east/c", false, Some(9), "127.77.0.0/16"),
        ]);
        assert_eq!(failed(&three), Vec::<(&str, &str)>::new());
        assert_eq!(three.len(), 3);
    }

    #[test]
    fn each_disagreement_names_the_replica() {
        let results = replicas_agree(&[
            replica("east/a", true, Some(7), "127.77.0.0/16"),
            replica("east/b", false, None, "127.77.0.0/16"),
            replica("east/c", false, Some(5), "127.77.0.0/16"),
            replica("east/d", false, Some(7), "127.78.0.0/16"),
        ]);
        let failed = failed(&results);
        assert_eq!(failed.len(), 3, "{failed:?}");
        assert_eq!(failed[0].1, "unreachable: east/b (connection refused)");
        assert_eq!(failed[1].1, "behind east/a (revision 7): east/c at 5");
        assert!(
            failed[2].1.ends_with("but east/d [127.78.0.0/16]"),
            "{}",
            failed[2].1
        );
        assert!(results.iter().all(|r| r.ok || r.hint.is_some()));
    }
}
