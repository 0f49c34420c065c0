//! `[[traffic_policy]]`: traffic policies of imported services, applied by this
//! gateway to its own clients. Reloaded with the file; new streams follow them at
//! once, without a restart.
//!
//! ```toml
//! [[traffic_policy]]
//! namespace = "shop"
//! name = "web"
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

use causeway_trust::{ClusterName, validate_label};
use serde::{Deserialize, Serialize};

use crate::tunnel::traffic::{
    ConnectionLimits, FaultPolicy, OutlierPolicy, PolicyKey, RetryPolicy, RoutingMode,
    TrafficPolicy,
};

/// Most traffic policies one gateway config may declare: one per imported
/// service at most, and the catalog holds at most 10,000 services.
const MAX_TRAFFIC_POLICIES: usize = 10_000;

/// One `[[traffic_policy]]`: the policy of one imported service (all its ports).
/// The fields after `name` are those of [`TrafficPolicy`].
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrafficPolicyConfig {
    /// Namespace of the imported service (DNS label).
    pub namespace: String,
    /// Name of the imported service (DNS label).
    pub name: String,
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

/// The tunnel's form of every configured policy.
pub(crate) fn for_tunnel(
    policies: &[TrafficPolicyConfig],
) -> impl Iterator<Item = (PolicyKey, TrafficPolicy)> + '_ {
    policies.iter().map(|p| (p.key(), p.policy()))
}

/// Every problem of the `[[traffic_policy]]` list, as (key path, message).
pub(crate) fn validate(policies: &[TrafficPolicyConfig]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if policies.len() > MAX_TRAFFIC_POLICIES {
        problems.push((
            "traffic_policy".into(),
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
            problems.push((format!("{at}.namespace"), e.to_string()));
        }
        if let Err(e) = validate_label("service name", &p.name) {
            problems.push((format!("{at}.name"), e.to_string()));
        }
        if !seen.insert((&p.namespace, &p.name)) {
            problems.push((
                format!("{at}.name"),
                format!("{}/{} has two traffic policies", p.namespace, p.name),
            ));
        }
        for problem in p.policy().validate(&at) {
            problems.push((problem.key, problem.message));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        traffic_policy: Vec<TrafficPolicyConfig>,
    }

    fn parse(text: &str) -> Result<Vec<TrafficPolicyConfig>, String> {
        toml::from_str::<File>(text)
            .map(|f| f.traffic_policy)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn every_key_parses_and_validates() {
        let policies = parse(
            r#"
[[traffic_policy]]
namespace = "shop"
name = "web"
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

[[traffic_policy]]
namespace = "shop"
name = "db"
routing = "pinned"
pinned = "east"
"#,
        )
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
        let keys: Vec<String> = validate(&policies).into_iter().map(|(k, _)| k).collect();
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
}
