//! `[kubernetes]`: whether the gateway runs its Kubernetes controllers, and how
//! imports reach it from the cluster's pods.
//!
//! ```toml
//! [kubernetes]
//! mode = "auto"                  # "auto": on in a pod, or with `kubeconfig` set
//! pod_ip = "10.244.1.7"          # usually CAUSEWAY__KUBERNETES__POD_IP from the downward API
//! listener_ports = "20000-29999" # gateway pod ports that carry imported service ports
//! create_namespaces = false      # import into namespaces that do not exist yet
//! # kubeconfig = "kubeconfig"    # default: the pod's service account, or $KUBECONFIG
//! pod_name = "causeway-gateway-7d9f-x2x4q"  # usually CAUSEWAY__KUBERNETES__POD_NAME
//! namespace = "causeway-system"  # where the controllers' Lease is
//! gateway_service = "causeway-gateway"  # its ready pods are the mirrored Services' endpoints
//!
//! [kubernetes.leader_election]   # among the cluster's gateway replicas
//! lease_duration = "15s"
//! renew_period = "5s"
//! retry_period = "2s"
//! ```
//!
//! On Kubernetes an import is reached through a mirrored ClusterIP Service whose
//! endpoints are the gateway pods, so each imported service port needs a port of its
//! own on the pods: the gateway takes them from `listener_ports`, and every replica
//! uses the same one. The mirrored EndpointSlices list the pods of
//! `gateway_service` (in `namespace`) that pass their readiness probe.
//!
//! A cluster may run several gateway replicas. Each reads the cluster's objects and
//! serves traffic; the one holding the controllers' Lease alone writes mirrored
//! Services, `ServiceImport`s and statuses (`causeway_k8s::leader`).

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use std::time::Duration;

use causeway_k8s::leader::{self, LeaseTimings};
use causeway_k8s::manifests::{GATEWAY, NAMESPACE};
use causeway_policy::Problem;
use serde::{Deserialize, Serialize};

/// Fewest listener ports the range must hold: below this a cluster could not import
/// even a small federation's services.
const MIN_LISTENER_PORTS: usize = 16;

/// When the Kubernetes controllers run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KubernetesMode {
    /// When the process runs in a pod (`KUBERNETES_SERVICE_HOST` is set) or the
    /// section names a `kubeconfig`. `$KUBECONFIG` alone does not count: an
    /// operator's shell often has one while running a standalone gateway.
    #[default]
    Auto,
    /// Always; the gateway fails to start without a usable Kubernetes config.
    On,
    /// Never (standalone).
    Off,
}

/// `[kubernetes]`: see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesSection {
    /// When the controllers run.
    pub mode: KubernetesMode,
    /// This gateway pod's address, the endpoint of every mirrored Service. Required
    /// when the controllers run.
    pub pod_ip: Option<IpAddr>,
    /// Pod ports for import listeners, `first-last`.
    pub listener_ports: String,
    /// Create an import's namespace when it does not exist (never deleted). Off:
    /// imports into missing namespaces are skipped and reported.
    pub create_namespaces: bool,
    /// A kubeconfig file (relative to the config file); default: the pod's service
    /// account inside a cluster, else `$KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// This gateway pod's name: its identity in the controllers' Lease. Unset (a
    /// gateway outside a pod): the cluster name and a random suffix.
    pub pod_name: Option<String>,
    /// The gateway's namespace, where the controllers' Lease is.
    pub namespace: String,
    /// The Service in `namespace` that selects the gateway's pods (`causeway install`
    /// makes it): its ready endpoints are the endpoints of every mirrored Service.
    pub gateway_service: String,
    /// How the replicas elect the one that writes shared objects.
    pub leader_election: LeaderElectionSection,
}

/// `[kubernetes.leader_election]`: the controllers' Lease durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderElectionSection {
    /// How long after the Lease last changed another replica may take it (whole
    /// seconds, 2 s to 5 min).
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
    /// How often the leader renews (at most a third of `lease_duration`).
    #[serde(with = "humantime_serde")]
    pub renew_period: Duration,
    /// How often a replica that does not lead tries to (at most `renew_period`).
    #[serde(with = "humantime_serde")]
    pub retry_period: Duration,
}

impl Default for LeaderElectionSection {
    fn default() -> Self {
        let LeaseTimings {
            lease_duration,
            renew_period,
            retry_period,
        } = LeaseTimings::default();
        Self {
            lease_duration,
            renew_period,
            retry_period,
        }
    }
}

impl LeaderElectionSection {
    /// The timings, as the elector takes them (bounds are checked there).
    pub fn timings(&self) -> LeaseTimings {
        LeaseTimings {
            lease_duration: self.lease_duration,
            renew_period: self.renew_period,
            retry_period: self.retry_period,
        }
    }
}

impl Default for KubernetesSection {
    fn default() -> Self {
        Self {
            mode: KubernetesMode::Auto,
            pod_ip: None,
            listener_ports: "20000-29999".into(),
            create_namespaces: false,
            kubeconfig: None,
            pod_name: None,
            namespace: NAMESPACE.into(),
            gateway_service: GATEWAY.into(),
            leader_election: LeaderElectionSection::default(),
        }
    }
}

impl KubernetesSection {
    /// Whether the controllers run, given the process environment.
    pub fn enabled(&self, env: impl Fn(&str) -> Option<String>) -> bool {
        match self.mode {
            KubernetesMode::On => true,
            KubernetesMode::Off => false,
            KubernetesMode::Auto => {
                self.kubeconfig.is_some()
                    || env("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty())
            }
        }
    }

    /// The listener port range; `validate` guarantees it parses.
    pub fn listener_range(&self) -> Option<RangeInclusive<u16>> {
        let (first, last) = self.listener_ports.split_once('-')?;
        let first: u16 = first.trim().parse().ok()?;
        let last: u16 = last.trim().parse().ok()?;
        (first > 0 && first <= last).then_some(first..=last)
    }

    /// Every problem, each at its key path.
    pub(crate) fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        match self.listener_range() {
            None => problems.push(Problem::new(
                "kubernetes.listener_ports",
                format!(
                    "{:?} is not a port range `first-last` with 1 <= first <= last <= 65535",
                    self.listener_ports
                ),
            )),
            Some(range) if range.len() < MIN_LISTENER_PORTS => problems.push(Problem::new(
                "kubernetes.listener_ports",
                format!(
                    "holds {} ports; at least {MIN_LISTENER_PORTS} are needed",
                    range.len()
                ),
            )),
            Some(_) => {}
        }
        problems.extend(self.identity_problems());
        problems.extend(
            self.leader_election
                .timings()
                .validate("kubernetes.leader_election"),
        );
        if self.mode == KubernetesMode::On && self.pod_ip.is_none() {
            problems.push(Problem::new(
                "kubernetes.pod_ip",
                "required with mode = \"on\": mirrored Services send traffic to this address (set CAUSEWAY__KUBERNETES__POD_IP from the pod's status.podIP)",
            ));
        }
        problems
    }
}

impl KubernetesSection {
    /// The pod name and namespace name the controllers' Lease and its holder; the
    /// gateway Service's name is a DNS label, as a namespace's is.
    fn identity_problems(&self) -> Vec<Problem> {
        let pod_name = self.pod_name.as_deref().and_then(leader::identity_problem);
        let namespace = leader::namespace_problem(&self.namespace);
        let service = leader::namespace_problem(&self.gateway_service);
        [
            ("kubernetes.pod_name", pod_name),
            ("kubernetes.namespace", namespace),
            ("kubernetes.gateway_service", service),
        ]
        .into_iter()
        .filter_map(|(path, why)| Some(Problem::new(path, why?)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_mode_follows_the_environment() {
        let section = KubernetesSection::default();
        assert!(!section.enabled(|_| None));
        assert!(section.enabled(|k| (k == "KUBERNETES_SERVICE_HOST").then(|| "10.96.0.1".into())));
        assert!(
            !section.enabled(|k| (k == "KUBECONFIG").then(|| "/tmp/kubeconfig".into())),
            "an operator's $KUBECONFIG does not turn a standalone gateway into a controller"
        );
        let configured = KubernetesSection {
            kubeconfig: Some("kubeconfig".into()),
            ..KubernetesSection::default()
        };
        assert!(configured.enabled(|_| None));
        let off = KubernetesSection {
            mode: KubernetesMode::Off,
            ..KubernetesSection::default()
        };
        assert!(!off.enabled(|_| Some("x".into())));
    }

    #[test]
    fn bad_ranges_and_a_missing_pod_ip_are_named() {
        let problems = |s: KubernetesSection| {
            s.validate()
                .into_iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        };
        for bad in ["", "20000", "9-1", "0-100", "1-70000", "a-b"] {
            let p = problems(KubernetesSection {
                listener_ports: bad.into(),
                ..KubernetesSection::default()
            });
            assert!(
                p.len() == 1 && p[0].starts_with("kubernetes.listener_ports: "),
                "{bad:?}: {p:?}"
            );
        }
        let p = problems(KubernetesSection {
            listener_ports: "100-104".into(),
            ..KubernetesSection::default()
        });
        assert!(p[0].contains("holds 5 ports"), "{p:?}");
        let p = problems(KubernetesSection {
            mode: KubernetesMode::On,
            ..KubernetesSection::default()
        });
        assert!(p[0].starts_with("kubernetes.pod_ip: required"), "{p:?}");
        assert!(problems(KubernetesSection::default()).is_empty());
    }

    #[test]
    fn bad_identities_and_lease_timings_are_named() {
        let section: KubernetesSection = toml::from_str(
            "pod_name = \"Gateway_1\"\nnamespace = \"\"\n[leader_election]\nlease_duration = \"1h\"\nrenew_period = \"5s\"\nretry_period = \"50ms\"\n",
        )
        .expect("parses");
        let paths: Vec<String> = section.validate().into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "kubernetes.pod_name",
                "kubernetes.namespace",
                "kubernetes.leader_election.lease_duration",
                "kubernetes.leader_election.retry_period",
            ]
        );
        let defaults = KubernetesSection::default();
        assert_eq!(defaults.namespace, "causeway-system");
        assert_eq!(defaults.leader_election.timings(), LeaseTimings::default());
    }
}
