//! How the gateway's replicas are replaced, spread and protected from voluntary
//! disruption: the Deployment's update strategy, the pods' anti-affinity and spread,
//! and the PodDisruptionBudget.
//!
//! Each pod is its own gateway (its own replica name, leaf and registry member, see
//! `workload.rs`), so two pods of one cluster may run side by side: an update surges
//! a new pod and retires an old one only once the new one is ready, whatever the
//! replica count. Objects every replica would write (mirrored Services,
//! `ServiceImport`s, statuses) are written by the replica holding the controllers'
//! Lease (`rbac.rs` grants it).

use std::ops::RangeInclusive;

use k8s_openapi::api::apps::v1::{DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, TopologySpreadConstraint, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{GATEWAY, NAMESPACE, gateway_labels, meta};

/// The replica counts `causeway install --replicas` accepts. Every replica is a
/// registry member and dials every peer cluster, so the count multiplies the
/// federation's membership and tunnel connections: 16 covers a gateway per node
/// of a large node pool's zone spread without letting a typo (160) do that.
pub const REPLICAS: RangeInclusive<u32> = 1..=16;

/// The node label pods are kept apart by: one node's failure takes one replica.
const HOSTNAME_KEY: &str = "kubernetes.io/hostname";
/// The node label pods are spread over: one zone's failure takes at most a share.
const ZONE_KEY: &str = "topology.kubernetes.io/zone";

fn gateway_selector() -> LabelSelector {
    LabelSelector {
        match_labels: Some(gateway_labels()),
        ..LabelSelector::default()
    }
}

/// A rolling update that adds one new pod before removing an old one and never
/// goes below `replicas` ready gateways: peers and clients keep a ready gateway
/// through an upgrade, even with a single replica.
pub(crate) fn strategy() -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(1)),
            max_unavailable: Some(IntOrString::Int(0)),
        }),
    }
}

/// Prefer a node without a gateway pod. Preferred, not required: a surge on a
/// cluster with fewer nodes than replicas + 1 must still schedule.
pub(crate) fn affinity() -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(gateway_selector()),
                        topology_key: HOSTNAME_KEY.into(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// Spread the pods over zones where the nodes have zones; `ScheduleAnyway` so a
/// single-zone cluster (or one whose nodes carry no zone label) still schedules.
pub(crate) fn spread() -> Vec<TopologySpreadConstraint> {
    vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: ZONE_KEY.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(gateway_selector()),
        ..TopologySpreadConstraint::default()
    }]
}

/// With several replicas, a drain may take one at a time: `minAvailable` is one
/// less than the replicas. A single replica gets none: a budget of `minAvailable:
/// 0` protects nothing, and one of 1 would block every node drain.
pub(crate) fn disruption_budget(replicas: u32) -> Option<PodDisruptionBudget> {
    if replicas < 2 {
        return None;
    }
    let min_available = i32::try_from(replicas - 1).expect("replicas are checked against REPLICAS");
    Some(PodDisruptionBudget {
        metadata: meta(GATEWAY, Some(NAMESPACE)),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(min_available)),
            selector: Some(gateway_selector()),
            // A pod that is running but not ready (its registry rejoining) may be
            // evicted: it serves nothing the budget protects, and keeping it would
            // block drains.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}
