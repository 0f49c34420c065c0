//! The order in which a new stream tries the clusters exporting a service.

use causeway_trust::ClusterName;
use rand::Rng;

use super::{RoutingMode, TrafficPolicy};

/// What [`choose`] needs to know about one exporting cluster.
#[derive(Debug, Clone, Copy)]
pub struct TrafficCandidate<'a> {
    /// The cluster.
    pub cluster: &'a ClusterName,
    /// Whether outlier detection ejected it for this service.
    pub ejected: bool,
    /// Whether it is this gateway's own cluster.
    pub local: bool,
}

/// Orders `candidates` for a new stream under `policy` and returns their
/// indices, the one to try first first.
///
/// `ranked` is the data plane's health and RTT order of the candidates (indices
/// into `candidates`), with clusters out of rotation already left out. Ejected
/// clusters are left out too, unless every ranked cluster is ejected (trying one
/// beats refusing the client). `nearest` keeps the ranked order; `local-first` puts
/// this cluster first; `pinned` keeps only its cluster; `weighted` draws from `rng`
/// without replacement, so retries follow the weights too. Every mode but
/// `weighted` is deterministic.
pub fn choose<R: Rng + ?Sized>(
    policy: &TrafficPolicy,
    candidates: &[TrafficCandidate<'_>],
    ranked: Vec<usize>,
    rng: &mut R,
) -> Vec<usize> {
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
            let weight = |i: usize| policy.weights.get(candidates[i].cluster).copied();
            let pool = order
                .into_iter()
                .map(|i| (i, u64::from(weight(i).unwrap_or(0))))
                .filter(|(_, w)| *w > 0)
                .collect();
            draw_by_weight(pool, rng)
        }
    }
}

/// Draws every entry of `pool` (index, weight > 0) without replacement, each draw
/// in proportion to the weights left.
fn draw_by_weight<R: Rng + ?Sized>(mut pool: Vec<(usize, u64)>, rng: &mut R) -> Vec<usize> {
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
