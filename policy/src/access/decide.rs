//! [`PolicySet::decide`]: rules, targets and decisions.

use std::collections::BTreeMap;
use std::fmt;

use causeway_trust::ClusterName;
use serde::{Deserialize, Serialize};

use super::{AccessPolicy, PolicyAction};

/// One access rule: an action, who it applies to, and which service ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The rule's name, reported with every decision it makes.
    pub name: String,
    /// Allow or deny.
    pub action: PolicyAction,
    /// Calling clusters it applies to; empty means every cluster (`*`).
    pub from_clusters: Vec<ClusterName>,
    /// Exporting cluster it applies to; `None` means any.
    pub to_cluster: Option<ClusterName>,
    /// Namespace it applies to; `None` means any.
    pub to_namespace: Option<String>,
    /// Service name it applies to; `None` means any.
    pub to_service: Option<String>,
    /// Labels the export must carry (all of them); empty means any service.
    pub to_labels: BTreeMap<String, String>,
    /// Service ports it applies to; empty means every port.
    pub ports: Vec<u16>,
}

impl Rule {
    /// Whether this rule applies to `caller` reaching `target`.
    pub fn matches(&self, caller: &ClusterName, target: &Target<'_>) -> bool {
        (self.from_clusters.is_empty() || self.from_clusters.contains(caller))
            && self.to_cluster.as_ref().is_none_or(|c| c == target.cluster)
            && self
                .to_namespace
                .as_deref()
                .is_none_or(|ns| ns == target.namespace)
            && self
                .to_service
                .as_deref()
                .is_none_or(|s| s == target.service)
            && self
                .to_labels
                .iter()
                .all(|(k, v)| target.labels.get(k) == Some(v))
            && (self.ports.is_empty() || self.ports.contains(&target.port))
    }
}

impl From<&AccessPolicy> for Rule {
    fn from(p: &AccessPolicy) -> Self {
        Rule {
            name: p.name.to_string(),
            action: p.action,
            from_clusters: p.from_clusters.clone(),
            to_cluster: p.to_cluster.clone(),
            to_namespace: p.to_namespace.clone(),
            to_service: p.to_service.clone(),
            to_labels: p.to_labels.clone(),
            ports: p.ports.clone(),
        }
    }
}

/// The service port a stream wants to reach.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The exporting cluster.
    pub cluster: &'a ClusterName,
    /// The service's namespace.
    pub namespace: &'a str,
    /// The service's name.
    pub service: &'a str,
    /// The export's labels.
    pub labels: &'a BTreeMap<String, String>,
    /// The service port.
    pub port: u16,
}

/// What decided a [`Decision`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by", content = "name")]
pub enum DecidedBy {
    /// The named rule matched.
    Rule(String),
    /// No rule matched; the federation's default applied.
    Default,
}

/// The outcome of evaluating a [`PolicySet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow or deny.
    pub action: PolicyAction,
    /// The rule (or the default) that decided.
    pub by: DecidedBy,
}

impl Decision {
    /// Whether the stream may proceed.
    pub fn allowed(&self) -> bool {
        self.action == PolicyAction::Allow
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.action {
            PolicyAction::Allow => "allowed",
            PolicyAction::Deny => "denied",
        };
        match &self.by {
            DecidedBy::Rule(name) => write!(f, "{verb} by policy {name}"),
            DecidedBy::Default => write!(f, "{verb} by the federation default (no policy matches)"),
        }
    }
}

/// Rules and the federation's default, evaluated as one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySet {
    rules: Vec<Rule>,
    default: PolicyAction,
}

impl Default for PolicySet {
    /// No rules, default deny: what a new federation starts with.
    fn default() -> Self {
        Self::new(Vec::new(), PolicyAction::Deny)
    }
}

impl PolicySet {
    /// A set of `rules`, sorted by name so decisions do not depend on input order,
    /// with `default` for traffic no rule matches.
    pub fn new(mut rules: Vec<Rule>, default: PolicyAction) -> Self {
        rules.sort_by(|a, b| a.name.cmp(&b.name));
        Self { rules, default }
    }

    /// The federation's default action.
    pub fn default_action(&self) -> PolicyAction {
        self.default
    }

    /// The rules, sorted by name.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Decides whether `caller` may reach `target`: the first matching deny rule (by
    /// name), else the first matching allow rule, else the default.
    pub fn decide(&self, caller: &ClusterName, target: &Target<'_>) -> Decision {
        let mut allow = None;
        for rule in self.rules.iter().filter(|r| r.matches(caller, target)) {
            match rule.action {
                PolicyAction::Deny => {
                    return Decision {
                        action: PolicyAction::Deny,
                        by: DecidedBy::Rule(rule.name.clone()),
                    };
                }
                PolicyAction::Allow => {
                    allow.get_or_insert(rule);
                }
            }
        }
        match allow {
            Some(rule) => Decision {
                action: PolicyAction::Allow,
                by: DecidedBy::Rule(rule.name.clone()),
            },
            None => Decision {
                action: self.default,
                by: DecidedBy::Default,
            },
        }
    }
}
