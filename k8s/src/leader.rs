//! Leader election among a cluster's gateway replicas, over a
//! `coordination.k8s.io/v1` Lease.
//!
//! Every replica reads the cluster's objects and serves traffic; objects that must
//! have one writer (mirrored Services and `ServiceImport`s, the statuses and
//! finalizers of the objects the controllers watch) are written only by the replica
//! holding the Lease. The [`Elector`] keeps this replica's claim on the Lease and
//! reports it through [`Leadership`], the port the single-writer controllers read.
//!
//! The rules, as in client-go's `leaderelection`:
//! - a replica takes the Lease when it is absent, has no holder, or its record has
//!   not changed for the holder's lease duration, by this replica's own clock (so
//!   no two nodes' clocks are compared);
//! - a write carries the `resourceVersion` it read: of two replicas taking the
//!   Lease at once, the API server accepts one and answers the other `409
//!   Conflict`, which means it lost;
//! - the holder renews every [`LeaseTimings::renew_period`], and stops leading once
//!   it has failed to renew for [`LeaseTimings::renew_deadline`], before any other
//!   replica may take the Lease;
//! - on shutdown the holder stops leading, then clears the holder so the next
//!   replica takes over at once (a rolling update hands over in one retry period).
//!
//! The decisions are sans-IO ([`candidate`]); [`Elector::run`] is the thin driver
//! that reads and writes the Lease.

mod candidate;
mod elector;

use std::time::Duration;

use causeway_policy::Problem;
use tokio::sync::watch;

pub use elector::Elector;

/// Shortest lease duration: a Lease counts whole seconds, and below 2 s a renewal
/// cannot fit with its deadline margin.
const MIN_LEASE: Duration = Duration::from_secs(2);
/// Longest lease duration: a dead leader's writes stop for this long before another
/// replica takes over, so longer than 5 minutes leaves imports unmirrored too long.
const MAX_LEASE: Duration = Duration::from_secs(300);
/// Shortest renew or retry period: faster polling only loads the API server.
const MIN_PERIOD: Duration = Duration::from_millis(200);

/// How long a claim lasts and how often it is renewed and retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimings {
    /// How long after the Lease last changed another replica may take it (written
    /// to the Lease as `leaseDurationSeconds`, in whole seconds).
    pub lease_duration: Duration,
    /// How often the holder renews.
    pub renew_period: Duration,
    /// How often a replica that does not lead tries to take the Lease, and how long
    /// one request to the API server may take.
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    /// client-go's 15 s lease and 2 s retry; a renewal every 5 s leaves two more
    /// attempts before the 10 s deadline.
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(5),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaseTimings {
    /// How long the holder keeps leading without a successful renewal: the lease
    /// duration less one renew period, so it has stopped writing a full renew
    /// period before any other replica may take the Lease.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration.saturating_sub(self.renew_period)
    }

    /// The lease duration in the Lease's whole seconds.
    pub(crate) fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// Every problem, with `prefix` (the configuration's key path) before each
    /// field's name.
    pub fn validate(&self, prefix: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        let path = |field: &str| format!("{prefix}.{field}");
        let lease = self.lease_duration;
        if !(MIN_LEASE..=MAX_LEASE).contains(&lease) || lease.subsec_nanos() != 0 {
            problems.push(Problem::new(
                path("lease_duration"),
                format!("{lease:?} must be whole seconds from {MIN_LEASE:?} to {MAX_LEASE:?}"),
            ));
        }
        // Two renewals fit before the deadline: one failed attempt does not depose.
        if self.renew_period < MIN_PERIOD || self.renew_period * 3 > lease {
            problems.push(Problem::new(
                path("renew_period"),
                format!(
                    "{:?} must be at least {MIN_PERIOD:?} and at most a third of lease_duration ({lease:?})",
                    self.renew_period
                ),
            ));
        }
        if self.retry_period < MIN_PERIOD || self.retry_period > self.renew_period {
            problems.push(Problem::new(
                path("retry_period"),
                format!(
                    "{:?} must be at least {MIN_PERIOD:?} and at most renew_period ({:?})",
                    self.retry_period, self.renew_period
                ),
            ));
        }
        problems
    }
}

/// Why `namespace` cannot hold the Lease (it is not a DNS label); `None` when it
/// can.
pub fn namespace_problem(namespace: &str) -> Option<String> {
    crate::resources::validate::dns_label(namespace)
}

/// Why `identity` cannot be a holder (it is not a DNS subdomain, as a pod's name
/// is); `None` when it can.
pub fn identity_problem(identity: &str) -> Option<String> {
    crate::resources::validate::dns_subdomain(identity)
}

/// Which Lease a replica competes for, and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The Lease's namespace: the gateway's own.
    pub namespace: String,
    /// The Lease's name ([`crate::manifests::CONTROLLER_LEASE`] for the gateway).
    pub name: String,
    /// This replica's `holderIdentity`: unique among the replicas (the pod's name).
    pub identity: String,
    /// Durations.
    pub timings: LeaseTimings,
}

/// Whether this replica may write the objects that have one writer: the port the
/// single-writer controllers read. Cheap to clone; every clone sees every change.
#[derive(Debug, Clone)]
pub struct Leadership {
    leading: watch::Receiver<bool>,
}

impl Leadership {
    /// A leadership driven through the returned sender (by an [`Elector`], or by a
    /// test), starting at `leading`.
    pub fn channel(leading: bool) -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(leading);
        (tx, Self { leading: rx })
    }

    /// A replica that always leads: the only gateway of its cluster, with no
    /// election.
    pub fn sole() -> Self {
        Self::channel(true).1
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Waits until leadership changes, and returns whether this replica now leads.
    /// Never completes once nothing can change it any more.
    pub async fn changed(&mut self) -> bool {
        if self.leading.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        *self.leading.borrow_and_update()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_timings_are_named() {
        assert_eq!(LeaseTimings::default().validate("k"), vec![]);
        assert_eq!(
            LeaseTimings::default().renew_deadline(),
            Duration::from_secs(10)
        );
        let bad = LeaseTimings {
            lease_duration: Duration::from_millis(1500),
            renew_period: Duration::from_secs(1),
            retry_period: Duration::from_millis(100),
        };
        let paths: Vec<String> = bad
            .validate("kubernetes.leader_election")
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(
            paths,
            [
                "kubernetes.leader_election.lease_duration",
                "kubernetes.leader_election.renew_period",
                "kubernetes.leader_election.retry_period",
            ]
        );
        let slow_retry = LeaseTimings {
            retry_period: Duration::from_secs(6),
            ..LeaseTimings::default()
        };
        assert_eq!(slow_retry.validate("k").len(), 1);
    }

    #[tokio::test]
    async fn leadership_changes_reach_every_clone() {
        let (tx, leadership) = Leadership::channel(false);
        let mut watcher = leadership.clone();
        assert!(!leadership.is_leader());
        tx.send_replace(true);
        assert!(watcher.changed().await);
        assert!(leadership.is_leader());
        assert!(Leadership::sole().is_leader());
    }
}
