//! `[[traffic_policy]]`: traffic policies of imported services. Reloaded with the
//! file; new streams follow them at once, without a restart.
//!
//! Each policy is published to the catalog under this cluster's name. `apply_to`
//! says whose clients it governs: by default only this cluster's; a list of cluster
//! names, or `["*"]` for every cluster of the federation (e.g. the exporting
//! cluster declaring a canary split for all importers). A cluster's own policy for
//! a service wins over any other cluster's; among other clusters' policies that
//! apply to it, the lowest cluster name wins and `causeway status` reports the rest
//! as conflicts.
//!
//! ```toml
//! [[traffic_policy]]
//! namespace = "shop"
//! name = "web"
//! apply_to = ["*"]                  # default: this cluster only
//! routing = "weighted"              # nearest | local-first | weighted | pinned
//! weights = { west = 90, east = 10 }
//! idle_timeout = "1h"
//! [traffic_policy.outlier]
//! consecutive_failures = 5
//! base_ejection_time = "30s"
//! [traffic_policy.limits]
//! max_streams = 1000
//! [traffic_policy.retries]
//! attempts = 2
//! budget_percent = 20
//! connect_timeout = "2s"
//! ```

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use causeway_policy::{
    ConnectionLimits, FaultPolicy, OutlierPolicy, Problem, RetryPolicy, RoutingMode, TrafficPolicy,
    TrafficScope, validate_apply_to,
};
use causeway_trust::{ClusterName, validate_label};
use serde::{Deserialize, Serialize};

use causeway_tunnel::traffic::PolicyKey;

/// Most traffic policies one gateway config may declare: one per imported
/// service at most, and the catalog holds at most 10,000 services.
const MAX_TRAFFIC_POLICIES: usize = 10_000;

/// One `[[traffic_policy]]`: the policy of one imported service (all its ports).
/// The fields after `name` are those of [`TrafficPolicy`].
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrafficPolicyConfig {
    /// Namespace of the imported service (DNS label).
    pub namespace: String,
    /// Name of the imported service (DNS label).
    pub name: String,
    /// Clusters whose clients the policy governs: cluster names, or `["*"]` for
    /// every cluster. Absent: this cluster only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_to: Option<Vec<String>>,
    /// How a cluster is picked: `nearest` (default), `local-first`, `weighted`,
    /// `pinned`.
    #[serde(default)]
    pub routing: RoutingMode,
    /// Relative weights per cluster for `weighted`.
    #[serde(default)]
    pub weights: BTreeMap<ClusterName, u32>,
    /// The cluster for `pinned`.
    #[serde(default)]
    pub pinned: Option<ClusterName>,
    /// Outlier ejection; off when absent.
    #[serde(default)]
    pub outlier: Option<OutlierPolicy>,
    /// Connection limits per exporting cluster.
    #[serde(default)]
    pub limits: ConnectionLimits,
    /// Retries and the per-attempt connect timeout.
    #[serde(default)]
    pub retries: RetryPolicy,
    /// Close streams idle for this long.
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// Fault injection (off unless set).
    #[serde(default)]
    pub faults: FaultPolicy,
}

impl TrafficPolicyConfig {
    /// The service it governs.
    pub fn key(&self) -> PolicyKey {
        PolicyKey::new(&self.namespace, &self.name)
    }

    /// The clusters it applies to; `own` (this cluster) when `apply_to` is absent.
    /// An invalid list (refused by [`validate`]) counts as this cluster only.
    pub fn scope(&self, own: &ClusterName) -> TrafficScope {
        self.apply_to
            .as_deref()
            .and_then(|items| TrafficScope::from_strings(items).ok())
            .unwrap_or_else(|| TrafficScope::Clusters(vec![own.clone()]))
    }

    /// The entry for `namespace/name` with `policy`.
    pub fn new(
        namespace: &str,
        name: &str,
        apply_to: Option<Vec<String>>,
        policy: TrafficPolicy,
    ) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            apply_to,
            routing: policy.routing,
            weights: policy.weights,
            pinned: policy.pinned,
            outlier: policy.outlier,
            limits: policy.limits,
            retries: policy.retries,
            idle_timeout: policy.idle_timeout,
            faults: policy.faults,
        }
    }

    /// The policy, as the tunnel takes it.
    pub fn policy(&self) -> TrafficPolicy {
        TrafficPolicy {
            routing: self.routing,
            weights: self.weights.clone(),
            pinned: self.pinned.clone(),
            outlier: self.outlier,
            limits: self.limits,
            retries: self.retries,
            idle_timeout: self.idle_timeout,
            faults: self.faults,
        }
    }
}

/// Every problem of the `[[traffic_policy]]` list, each at its key path.
pub(crate) fn validate(policies: &[TrafficPolicyConfig]) -> Vec<Problem> {
    let mut problems = Vec::new();
    if policies.len() > MAX_TRAFFIC_POLICIES {
        problems.push(Problem::new(
            "traffic_policy",
            format!(
                "{} policies; at most {MAX_TRAFFIC_POLICIES}",
                policies.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for (i, p) in policies.iter().enumerate() {
        let at = format!("traffic_policy[{i}]");
        if let Err(e) = validate_label("namespace", &p.namespace) {
            problems.push(Problem::new(format!("{at}.namespace"), e.to_string()));
        }
        if let Err(e) = validate_label("service name", &p.name) {
            problems.push(Problem::new(format!("{at}.name"), e.to_string()));
        }
        if !seen.insert((&p.namespace, &p.name)) {
            problems.push(Problem::new(
                format!("{at}.name"),
                format!("{}/{} has two traffic policies", p.namespace, p.name),
            ));
        }
        let apply_to = p
            .apply_to
            .iter()
            .flat_map(|list| validate_apply_to(list, &format!("{at}.apply_to")));
        let policy = p.policy().validate(&at);
        problems.extend(apply_to.chain(policy));
    }
    problems
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A policy that sets every key (`shop/web`), for tests of other inputs that
    /// must convert to the same policy.
    pub(crate) const EVERY_KEY: &str = r#"[[traffic_policy]]
namespace = "shop"
name = "web"
apply_to = ["*"]
routing = "weighted"
weights = { west = 90, east = 10 }
idle_timeout = "1h"
[traffic_policy.outlier]
consecutive_failures = 5
interval = "10s"
base_ejection_time = "30s"
max_ejection_time = "5m"
max_ejection_percent = 50
[traffic_policy.limits]
max_streams = 1000
max_pending = 100
[traffic_policy.retries]
attempts = 2
budget_percent = 20
connect_timeout = "2s"
[traffic_policy.faults]
delay = "100ms"
delay_percent = 10
abort_percent = 5
"#;

    #[derive(Deserialize)]
    struct File {
        traffic_policy: Vec<TrafficPolicyConfig>,
    }

    /// The `[[traffic_policy]]` entries of `text`.
    pub(crate) fn parse(text: &str) -> Result<Vec<TrafficPolicyConfig>, String> {
        toml::from_str::<File>(text)
            .map(|f| f.traffic_policy)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn every_key_parses_and_validates() {
        let policies = parse(&format!(
            "{EVERY_KEY}{}",
            r#"
[[traffic_policy]]
namespace = "shop"
name = "db"
routing = "pinned"
pinned = "east"
"#
        ))
        .expect("valid");
        assert!(validate(&policies).is_empty(), "{:?}", validate(&policies));
        let web = policies[0].policy();
        assert_eq!(web.routing, RoutingMode::Weighted);
        assert_eq!(web.weights.len(), 2);
        assert_eq!(web.limits.max_streams, Some(1000));
        assert_eq!(web.retries.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(web.faults.delay, Some(Duration::from_millis(100)));
        assert_eq!(web.outlier.map(|o| o.max_ejection_percent), Some(50));
        assert_eq!(policies[1].key().to_string(), "shop/db");
        assert_eq!(policies[1].policy().retries, RetryPolicy::default());
    }

    #[test]
    fn the_standalone_example_documents_a_valid_policy() {
        let text = include_str!("../../../examples/standalone/west.toml");
        let config = crate::config::GatewayConfig::parse(text, Vec::new())
            .unwrap_or_else(|p| panic!("west.toml: {p:?}"));
        let api = &config.traffic_policies[0];
        assert_eq!(api.key().to_string(), "shop/api");
        assert_eq!(api.policy().limits.max_streams, Some(1000));
        assert!(!api.policy().faults.is_active());
    }

    #[test]
    fn problems_carry_key_paths() {
        let policies = parse(
            r#"
[[traffic_policy]]
namespace = "Shop"
name = "web"
routing = "weighted"
[[traffic_policy]]
namespace = "shop"
name = "web"
[traffic_policy.retries]
attempts = 0
"#,
        )
        .expect("parses");
        let keys: Vec<String> = validate(&policies).into_iter().map(|p| p.path).collect();
        assert_eq!(
            keys,
            [
                "traffic_policy[0].namespace",
                "traffic_policy[0].weights",
                "traffic_policy[1].retries.attempts",
            ]
        );
        let err = parse("[[traffic_policy]]\nnamespace = \"a\"\nname = \"b\"\nroting = \"x\"\n")
            .expect_err("unknown key");
        assert!(err.contains("unknown field `roting`"), "{err}");
        let err =
            parse("[[traffic_policy]]\nnamespace = \"a\"\nname = \"b\"\nrouting = \"random\"\n")
                .expect_err("unknown mode");
        assert!(err.contains("unknown variant `random`"), "{err}");
    }

    #[test]
    fn apply_to_defaults_to_this_cluster_and_takes_names_or_a_star() {
        let west: ClusterName = "west".parse().expect("valid name");
        let policies = parse(
            r#"
[[traffic_policy]]
namespace = "shop"
name = "web"
[[traffic_policy]]
namespace = "shop"
name = "api"
apply_to = ["*"]
[[traffic_policy]]
namespace = "shop"
name = "db"
apply_to = ["east", "north"]
"#,
        )
        .expect("parses");
        assert!(validate(&policies).is_empty(), "{:?}", validate(&policies));
        assert_eq!(
            policies[0].scope(&west),
            TrafficScope::Clusters(vec![west.clone()])
        );
        assert_eq!(policies[1].scope(&west), TrafficScope::All);
        assert_eq!(policies[2].scope(&west).to_string(), "east,north");

        let policies = parse(
            r#"
[[traffic_policy]]
namespace = "shop"
name = "web"
apply_to = ["east", "*"]
[[traffic_policy]]
namespace = "shop"
name = "api"
apply_to = ["East"]
[[traffic_policy]]
namespace = "shop"
name = "db"
apply_to = []
[[traffic_policy]]
namespace = "shop"
name = "auth"
apply_to = ["east", "east"]
"#,
        )
        .expect("parses");
        let keys: Vec<String> = validate(&policies).into_iter().map(|p| p.path).collect();
        assert_eq!(
            keys,
            [
                "traffic_policy[0].apply_to[1]",
                "traffic_policy[1].apply_to[0]",
                "traffic_policy[2].apply_to",
                "traffic_policy[3].apply_to[1]",
            ]
        );
    }
}
