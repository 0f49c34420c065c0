//! `[access]`: the federation's default action, how policy changes reach open
//! streams, and this gateway's own access policies (`[[access.policy]]`).
//!
//! ```toml
//! [access]
//! default = "deny"     # for traffic no policy matches; a new federation takes it
//! enforce = "all"      # "new": changes apply to new streams; "all": open ones too
//!
//! [[access.policy]]
//! name = "east-reads-web"
//! action = "allow"
//! from = ["east"]      # cluster names, or ["*"] for every cluster
//! namespace = "shop"   # optional; any namespace when left out
//! service = "web"      # optional
//! labels = { tier = "public" }  # optional label selector over the export's labels
//! ports = [8080]       # optional; every port when left out
//! ```
//!
//! A gateway's policies govern its own exports: they are enforced here and published
//! to the catalog as `<cluster>-<name>` with this cluster as the exporting cluster,
//! so importing gateways can hide what they may not use.

use std::collections::BTreeMap;

use causeway_policy::{AccessPolicy, PolicyAction, Problem, Rule, RuleFields, RuleText};
use causeway_trust::{ClusterName, validate_label};
use serde::{Deserialize, Serialize};

/// Most policies one gateway config may declare.
const MAX_POLICIES: usize = 1_000;

/// The keys of an `[[access.policy]]` entry's rule.
const RULE_FIELDS: RuleFields = RuleFields {
    from: "from",
    namespace: "namespace",
    service: "service",
    labels: "labels",
    ports: "ports",
};

/// How a policy change treats streams that are already open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforce {
    /// Changes apply to new streams; open streams run to their end.
    #[default]
    New,
    /// Open streams that a change no longer allows are closed too.
    All,
}

/// `[access]`: the default action, enforcement, and this gateway's policies.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSection {
    /// The federation's default for traffic no policy matches. A gateway that starts
    /// a federation records it in the catalog; joining gateways follow the catalog.
    pub default: PolicyAction,
    /// Whether a change also closes open streams it no longer allows.
    pub enforce: Enforce,
    /// This gateway's policies over its own exports.
    #[serde(rename = "policy")]
    pub policies: Vec<PolicyConfig>,
}

impl Default for AccessSection {
    fn default() -> Self {
        Self {
            default: PolicyAction::Deny,
            enforce: Enforce::New,
            policies: Vec::new(),
        }
    }
}

/// `[[access.policy]]`: who may reach which of this cluster's exports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The policy's name (a DNS label, unique in this file).
    pub name: String,
    /// `allow` or `deny`; deny wins over allow.
    pub action: PolicyAction,
    /// Calling clusters, or `["*"]` for every cluster.
    pub from: Vec<String>,
    /// Namespace it applies to; any when left out.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Service name it applies to; any when left out.
    #[serde(default)]
    pub service: Option<String>,
    /// Labels the export must carry, all of them; any service when empty.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Service ports it applies to; every port when empty.
    #[serde(default)]
    pub ports: Vec<u16>,
}

impl PolicyConfig {
    /// The name it is published under in the catalog: `<cluster>-<name>`, so
    /// gateways' policies never overwrite each other.
    pub fn catalog_name(&self, cluster: &ClusterName) -> String {
        format!("{cluster}-{}", self.name)
    }

    fn calling_clusters(&self) -> Vec<ClusterName> {
        if self.from.iter().any(|f| f == "*") {
            return Vec::new();
        }
        self.from.iter().filter_map(|f| f.parse().ok()).collect()
    }

    /// The rule this policy enforces on `cluster`'s exports.
    pub fn rule(&self, cluster: &ClusterName) -> Rule {
        Rule {
            name: self.catalog_name(cluster),
            action: self.action,
            from_clusters: self.calling_clusters(),
            to_cluster: Some(cluster.clone()),
            to_namespace: self.namespace.clone(),
            to_service: self.service.clone(),
            to_labels: self.labels.clone(),
            ports: self.ports.clone(),
        }
    }

    /// The catalog record of this policy, or `None` when its name does not make a
    /// catalog name (validation reports that).
    pub fn catalog_policy(&self, cluster: &ClusterName) -> Option<AccessPolicy> {
        Some(AccessPolicy {
            name: self.catalog_name(cluster).parse().ok()?,
            action: self.action,
            from_clusters: self.calling_clusters(),
            to_cluster: Some(cluster.clone()),
            to_namespace: self.namespace.clone(),
            to_service: self.service.clone(),
            to_labels: self.labels.clone(),
            ports: self.ports.clone(),
        })
    }
}

impl AccessSection {
    /// The rules this gateway's own policies enforce.
    pub fn rules(&self, cluster: &ClusterName) -> Vec<Rule> {
        self.policies.iter().map(|p| p.rule(cluster)).collect()
    }

    /// Every problem, each at its key path.
    pub fn validate(&self, cluster: &ClusterName) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.policies.len() > MAX_POLICIES {
            problems.push(Problem::new(
                "access.policy",
                format!("{} policies; at most {MAX_POLICIES}", self.policies.len()),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.policies.iter().enumerate() {
            let at = format!("access.policy[{i}]");
            if let Err(e) = validate_label("policy name", &p.name) {
                problems.push(Problem::new(format!("{at}.name"), e.to_string()));
            } else if let Err(e) = validate_label("policy name", &p.catalog_name(cluster)) {
                problems.push(Problem::new(
                    format!("{at}.name"),
                    format!(
                        "published as {:?}, which is too long: {e}",
                        p.catalog_name(cluster)
                    ),
                ));
            }
            if !names.insert(&p.name) {
                problems.push(Problem::new(
                    format!("{at}.name"),
                    format!("{:?} is used twice", p.name),
                ));
            }
            let rule = RuleText {
                from: &p.from,
                namespace: p.namespace.as_deref(),
                service: p.service.as_deref(),
                labels: &p.labels,
                ports: &p.ports,
            };
            let problems_of_rule = rule.validate(&at, &RULE_FIELDS);
            problems.extend(problems_of_rule);
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_defaults_to_deny() {
        let section: AccessSection = toml::from_str("").unwrap();
        assert_eq!(section.default, PolicyAction::Deny);
        assert_eq!(section.enforce, Enforce::New);
        let text = r#"
default = "allow"
enforce = "all"
[[policy]]
name = "east-web"
action = "deny"
from = ["east"]
namespace = "shop"
labels = { tier = "internal" }
ports = [8080]
"#;
        let section: AccessSection = toml::from_str(text).unwrap();
        assert_eq!(section.enforce, Enforce::All);
        let west: ClusterName = "west".parse().unwrap();
        assert!(section.validate(&west).is_empty());
        let rule = section.rules(&west).remove(0);
        assert_eq!(rule.name, "west-east-web");
        assert_eq!(rule.to_cluster, Some(west));
        assert_eq!(rule.ports, vec![8080]);
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let text = r#"
[[policy]]
name = "Bad_Name"
action = "allow"
from = []
[[policy]]
name = "ok"
action = "allow"
from = ["*", "No"]
namespace = "x y"
ports = [0]
"#;
        let section: AccessSection = toml::from_str(text).unwrap();
        let paths: Vec<String> = section
            .validate(&"west".parse().unwrap())
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(
            paths,
            [
                "access.policy[0].name",
                "access.policy[0].from",
                "access.policy[1].from[1]",
                "access.policy[1].namespace",
                "access.policy[1].ports",
            ]
        );
    }

    #[test]
    fn the_standalone_examples_document_valid_policies() {
        for (cluster, text) in [
            (
                "west",
                include_str!("../../../examples/standalone/west.toml"),
            ),
            (
                "east",
                include_str!("../../../examples/standalone/east.toml"),
            ),
            (
                "north",
                include_str!("../../../examples/standalone/north.toml"),
            ),
        ] {
            let table: toml::Table = toml::from_str(text).unwrap();
            let section: AccessSection = table["access"].clone().try_into().unwrap();
            assert_eq!(section.default, PolicyAction::Deny, "{cluster}");
            assert_eq!(section.policies.len(), 1, "{cluster}");
            assert_eq!(section.validate(&cluster.parse().unwrap()), [], "{cluster}");
        }
    }
}
