//! Causeway's policy model: what operators declare about access and traffic.
//!
//! Owns the access policy ([`AccessPolicy`], and [`PolicySet::decide`]: may this
//! identity open this stream) and the traffic policy ([`TrafficPolicy`], and
//! [`choose`]: which cluster a new connection goes to), every bound on them as one
//! documented constant, their validation, and [`Problem`], the one type every
//! configuration and spec validation in the workspace reports.
//!
//! Plain data and sans-IO decisions: no sockets, no clock, no storage. The
//! registry stores these types, the gateway's TOML and the CRDs convert into them,
//! and the tunnel enforces them. It must not depend on any of those crates.

pub mod access;
mod problem;
pub mod traffic;

pub use access::{
    AccessPolicy, DecidedBy, Decision, MAX_POLICY_LABEL_LEN, MAX_POLICY_LABELS, MAX_POLICY_PORTS,
    MAX_POLICY_SOURCES, PolicyAction, PolicyName, PolicySet, Rule, RuleFields, RuleText, Target,
};
pub use problem::{Problem, Problems};
pub use traffic::{
    ConnectionLimits, FaultPolicy, MAX_APPLY_TO, MAX_ATTEMPTS, MAX_CONNECT_TIMEOUT,
    MAX_CONNECTION_LIMIT, MAX_CONSECUTIVE_FAILURES, MAX_EJECTION_TIME, MAX_FAULT_DELAY,
    MAX_IDLE_TIMEOUT, MAX_WEIGHT, MAX_WEIGHTED_CLUSTERS, MIN_CONNECT_TIMEOUT, MIN_IDLE_TIMEOUT,
    OutlierPolicy, RetryPolicy, RoutingMode, TrafficCandidate, TrafficPolicy, TrafficScope, choose,
    validate_apply_to,
};

/// A value that is not one of the words a field takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not one of {expected}")]
pub struct ParseError {
    /// The field, e.g. `routing`.
    pub field: &'static str,
    /// What was given, cut to 64 characters so that a hostile value stays small.
    pub value: String,
    /// The words it takes, e.g. `allow, deny`.
    pub expected: &'static str,
}

impl ParseError {
    fn not_one_of(field: &'static str, value: &str, expected: &'static str) -> Self {
        let mut shown: String = value.chars().take(64).collect();
        if shown.len() < value.len() {
            shown.push_str("...");
        }
        Self {
            field,
            value: shown,
            expected,
        }
    }
}
