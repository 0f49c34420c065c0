//! The order in which a new stream tries the clusters exporting a service.

use causeway_trust::ClusterName;
use rand::Rng;

use super::{RoutingMode, TrafficPolicy};
use crate::tunnel::peers::{Candidate, rank};

/// What [`choose`] needs to know about one exporting cluster.
#[derive(Debug, Clone, Copy)]
pub struct TrafficCandidate<'a> {
    /// The cluster.
    pub cluster: &'a ClusterName,
    /// Its peer gateway's health, RTT and catalog weight.
    pub peer: Candidate,
    /// Whether outlier detection ejected it for this service.
    pub ejected: bool,
    /// Whether it is this gateway's own cluster.
    pub local: bool,
}

/// Orders `candidates` for a new stream under `policy` and returns their
/// indices, the one to try first first. Clusters out of rotation (see
/// [`rank`]) are left out; ejected ones too, unless every cluster in rotation is
/// ejected (trying one beats refusing the client). `weighted` draws from `rng`
/// without replacement, so retries follow the weights too; every other mode is
/// deterministic.
pub fn choose<R: Rng + ?Sized>(
    policy: &TrafficPolicy,
    candidates: &[TrafficCandidate<'_>],
    rng: &mut R,
) -> Vec<usize> {
    let peers: Vec<Candidate> = candidates.iter().map(|c| c.peer).collect();
    let ranked = rank(&peers);
    if policy.routing == RoutingMode::Pinned {
        return ranked
            .into_iter()
            .filter(|&i| Some(candidates[i].cluster) == policy.pinned.as_ref())
            .collect();
    }
    let mut order: Vec<usize> = ranked
        .iter()
        .copied()
        .filter(|&i| !candidates[i].ejected)
        .collect();
    if order.is_empty() {
        order = ranked;
    }
    match policy.routing {
        RoutingMode::Nearest | RoutingMode::Pinned => order,
        RoutingMode::LocalFirst => {
            // A stable sort keeps the nearest-first order within each group.
            order.sort_by_key(|&i| !candidates[i].local);
            order
        }
        RoutingMode::Weighted => {
            let weight = |i: usize| {
                policy
                    .weights
                    .get(candidates[i].cluster)
                    .copied()
                    .unwrap_or(0)
            };
            let mut pool: Vec<(usize, u64)> = order
                .into_iter()
                .map(|i| (i, u64::from(weight(i))))
                .filter(|(_, w)| *w > 0)
                .collect();
            let mut drawn = Vec::with_capacity(pool.len());
            while !pool.is_empty() {
                let total: u64 = pool.iter().map(|(_, w)| w).sum();
                let mut r = rng.random_range(0..total);
                let pos = pool
                    .iter()
                    .position(|(_, w)| {
                        if r < *w {
                            true
                        } else {
                            r -= w;
                            false
                        }
                    })
                    .expect("r is below the sum of the weights");
                drawn.push(pool.remove(pos).0);
            }
            drawn
        }
    }
}
