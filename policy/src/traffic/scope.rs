//! Which importing clusters a traffic policy applies to (`apply_to`).

use std::fmt;

use causeway_trust::ClusterName;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Problem;

/// Most importing clusters one policy may name in `apply_to`: a federation is
/// designed for about 100 clusters, and `["*"]` names them all.
pub const MAX_APPLY_TO: usize = 256;

/// Which importing clusters a traffic policy applies to.
///
/// Written as a list of cluster names, or `["*"]` for every cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrafficScope {
    /// Every cluster of the federation (`["*"]`).
    All,
    /// Only the clusters named.
    Clusters(Vec<ClusterName>),
}

impl TrafficScope {
    /// Whether the policy applies to `cluster`'s importers.
    pub fn includes(&self, cluster: &ClusterName) -> bool {
        match self {
            TrafficScope::All => true,
            TrafficScope::Clusters(clusters) => clusters.contains(cluster),
        }
    }

    /// The scope as configuration and status write it: `*` or cluster names.
    pub fn to_strings(&self) -> Vec<String> {
        match self {
            TrafficScope::All => vec!["*".to_owned()],
            TrafficScope::Clusters(clusters) => clusters.iter().map(ToString::to_string).collect(),
        }
    }

    /// Parses the list form; `*` must stand alone. On error, says which entry
    /// (by index) is wrong and why.
    pub fn from_strings<S: AsRef<str>>(items: &[S]) -> Result<Self, (usize, String)> {
        if let Some(i) = items.iter().position(|s| s.as_ref() == "*") {
            if items.len() > 1 {
                return Err((i, STAR_ALONE.into()));
            }
            return Ok(TrafficScope::All);
        }
        items
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_ref()
                    .parse()
                    .map_err(|e: causeway_trust::NameError| (i, e.to_string()))
            })
            .collect::<Result<_, _>>()
            .map(TrafficScope::Clusters)
    }

    /// Problems of a parsed scope, the list at `path`: no cluster, more than
    /// [`MAX_APPLY_TO`], or one listed twice.
    pub fn validate(&self, path: &str) -> Vec<Problem> {
        match self {
            TrafficScope::All => Vec::new(),
            TrafficScope::Clusters(clusters) => {
                let names: Vec<&str> = clusters.iter().map(ClusterName::as_str).collect();
                validate_apply_to(&names, path)
            }
        }
    }
}

const STAR_ALONE: &str = "\"*\" (every cluster) must be the only entry";

/// Problems of an `apply_to` list as written, the list at `path`: `*` alone or
/// valid, distinct cluster names, at least one and at most [`MAX_APPLY_TO`].
pub fn validate_apply_to<S: AsRef<str>>(items: &[S], path: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    if items.is_empty() {
        problems.push(Problem::new(
            path,
            "names no cluster; list cluster names, or \"*\" for every cluster",
        ));
    }
    if items.len() > MAX_APPLY_TO {
        problems.push(Problem::new(
            path,
            format!("{} clusters; at most {MAX_APPLY_TO}", items.len()),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter().map(AsRef::as_ref).enumerate() {
        let at = || format!("{path}[{i}]");
        if item == "*" {
            if items.len() > 1 {
                problems.push(Problem::new(at(), STAR_ALONE));
            }
            continue;
        }
        if let Err(e) = item.parse::<ClusterName>() {
            problems.push(Problem::new(at(), e.to_string()));
        } else if !seen.insert(item) {
            problems.push(Problem::new(at(), format!("{item:?} is listed twice")));
        }
    }
    problems
}

impl fmt::Display for TrafficScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_strings().join(","))
    }
}

impl Serialize for TrafficScope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_strings().serialize(s)
    }
}

impl<'de> Deserialize<'de> for TrafficScope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        TrafficScope::from_strings(&items)
            .map_err(|(i, e)| serde::de::Error::custom(format!("entry {i}: {e}")))
    }
}
