//! Helpers the gateway's tests share beyond `causeway-testing`: a traffic policy
//! for the federation's echo service.

#![allow(dead_code, unreachable_pub)]

use anyhow::Result;
use causeway_gateway::config::TrafficPolicyConfig;
use causeway_gateway::federation::{ECHO_NAMESPACE, ECHO_SERVICE};
use causeway_policy::RoutingMode;

/// A `[[traffic_policy]]` that pins the echo service of a `LocalFederation` to
/// `cluster`, for the clusters in `apply_to` (this one when `None`).
pub fn pinned_echo(cluster: &str, apply_to: Option<&[&str]>) -> Result<TrafficPolicyConfig> {
    Ok(TrafficPolicyConfig {
        namespace: ECHO_NAMESPACE.into(),
        name: ECHO_SERVICE.into(),
        apply_to: apply_to.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
        routing: RoutingMode::Pinned,
        pinned: Some(cluster.parse()?),
        ..TrafficPolicyConfig::default()
    })
}
