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

use causeway_registry::{AccessPolicy, PolicyAction};
use causeway_trust::{ClusterName, validate_label};
use serde::{Deserialize, Serialize};

use crate::policy::Rule;

/// Most policies one gateway config may declare.
const MAX_POLICIES: usize = 1_000;
/// Most clusters one policy may name: a federation is designed for about 100.
const MAX_FROM: usize = 256;
/// Most labels one selector may require; exports carry few labels.
const MAX_SELECTOR_LABELS: usize = 16;
/// Most ports one policy may list; an export has at most a few dozen.
const MAX_PORTS: usize = 64;

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

    /// Every problem, as `(key path, message)`.
    pub fn validate(&self, cluster: &ClusterName) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.policies.len() > MAX_POLICIES {
            problems.push((
                "access.policy".into(),
                format!("{} policies; at most {MAX_POLICIES}", self.policies.len()),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.policies.iter().enumerate() {
            let at = format!("access.policy[{i}]");
            if let Err(e) = validate_label("policy name", &p.name) {
                problems.push((format!("{at}.name"), e.to_string()));
            } else if let Err(e) = validate_label("policy name", &p.catalog_name(cluster)) {
                problems.push((
                    format!("{at}.name"),
                    format!(
                        "published as {:?}, which is too long: {e}",
                        p.catalog_name(cluster)
                    ),
                ));
            }
            if !names.insert(&p.name) {
                problems.push((format!("{at}.name"), format!("{:?} is used twice", p.name)));
            }
            if p.from.is_empty() {
                problems.push((
                    format!("{at}.from"),
                    "name the calling clusters, or [\"*\"] for every cluster".into(),
                ));
            }
            if p.from.len() > MAX_FROM {
                problems.push((
                    format!("{at}.from"),
                    format!("{} clusters; at most {MAX_FROM}", p.from.len()),
                ));
            }
            for (j, from) in p.from.iter().enumerate() {
                if from != "*"
                    && let Err(e) = from.parse::<ClusterName>()
                {
                    problems.push((format!("{at}.from[{j}]"), e.to_string()));
                }
            }
            if let Some(ns) = &p.namespace
                && let Err(e) = validate_label("namespace", ns)
            {
                problems.push((format!("{at}.namespace"), e.to_string()));
            }
            if let Some(s) = &p.service
                && let Err(e) = validate_label("service name", s)
            {
                problems.push((format!("{at}.service"), e.to_string()));
            }
            if p.labels.len() > MAX_SELECTOR_LABELS {
                problems.push((
                    format!("{at}.labels"),
                    format!("{} labels; at most {MAX_SELECTOR_LABELS}", p.labels.len()),
                ));
            }
            for (k, v) in &p.labels {
                if k.is_empty() || k.len() > 63 || v.len() > 63 {
                    problems.push((
                        format!("{at}.labels.{k}"),
                        "label keys must be 1-63 and values 0-63 characters".into(),
                    ));
                }
            }
            if p.ports.len() > MAX_PORTS {
                problems.push((
                    format!("{at}.ports"),
                    format!("{} ports; at most {MAX_PORTS}", p.ports.len()),
                ));
            }
            if p.ports.contains(&0) {
                problems.push((format!("{at}.ports"), "0 is not a port".into()));
            }
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
            .map(|(p, _)| p)
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
