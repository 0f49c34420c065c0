//! Access policy: which calling cluster may reach which exported service port.
//!
//! [`AccessPolicy`] is the stored form (the catalog replicates it; the gateway's
//! `[[access.policy]]` and the `AccessPolicy` CRD convert into it). A [`PolicySet`]
//! holds the rules in force and the federation's default action, and
//! [`PolicySet::decide`] is the sans-IO decision: it takes the caller's cluster
//! (from its verified SPIFFE identity, never a header) and the [`Target`] and
//! returns a [`Decision`] naming the rule that decided:
//!
//! 1. any matching `deny` rule denies (deny wins over allow);
//! 2. otherwise any matching `allow` rule allows;
//! 3. otherwise the federation's default applies.
//!
//! The same evaluation runs on both sides: the exporting gateway enforces it on every
//! new stream, the importing gateway uses it to hide imports it may not use.

mod decide;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use causeway_trust::{ClusterName, NameError, validate_label};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use decide::{DecidedBy, Decision, PolicySet, Rule, Target};
pub use validate::{
    MAX_POLICY_LABEL_LEN, MAX_POLICY_LABELS, MAX_POLICY_PORTS, MAX_POLICY_SOURCES, RuleFields,
    RuleText,
};

use crate::ParseError;

// === PolicyName ===

/// The name of an access policy: a lowercase DNS label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyName(String);

impl PolicyName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PolicyName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        validate_label("policy name", s)?;
        Ok(Self(s.to_owned()))
    }
}

impl Serialize for PolicyName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PolicyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether a policy lets traffic through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    /// Traffic matching the policy is allowed.
    Allow,
    /// Traffic matching the policy is denied (deny wins over allow).
    Deny,
}

impl fmt::Display for PolicyAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyAction::Allow => "allow",
            PolicyAction::Deny => "deny",
        })
    }
}

impl FromStr for PolicyAction {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "allow" => Ok(PolicyAction::Allow),
            "deny" => Ok(PolicyAction::Deny),
            _ => Err(ParseError::not_one_of("action", s, "allow, deny")),
        }
    }
}

/// Who may reach which exported services. Stored and replicated; enforced by the
/// gateway on inbound streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessPolicy {
    /// The policy's name.
    pub name: PolicyName,
    /// Allow or deny.
    pub action: PolicyAction,
    /// Calling clusters it applies to; empty means every cluster.
    pub from_clusters: Vec<ClusterName>,
    /// Exporting cluster it applies to; `None` means any.
    pub to_cluster: Option<ClusterName>,
    /// Namespace it applies to; `None` means any.
    pub to_namespace: Option<String>,
    /// Service name it applies to; `None` means any.
    pub to_service: Option<String>,
    /// Labels the export must carry (every one must match); empty means any service.
    #[serde(default)]
    pub to_labels: BTreeMap<String, String>,
    /// Service ports it applies to; empty means every port.
    #[serde(default)]
    pub ports: Vec<u16>,
}

#[cfg(test)]
mod tests;
