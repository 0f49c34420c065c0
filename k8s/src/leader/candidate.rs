//! One replica's view of the Lease and what to do next: sans-IO, driven by the
//! [`Elector`](super::Elector) with what it read, what its writes returned, and
//! the time.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::chrono::{DateTime, Utc};
use kube::core::ObjectMeta;
use tokio::time::Instant;

use super::{LeaseConfig, LeaseTimings};

/// What to send next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// The Lease does not exist: create it, held by this replica.
    Create(Lease),
    /// Write the Lease (with the `resourceVersion` read) held by this replica: a
    /// renewal, or a take-over of a free or expired Lease.
    Replace(Lease),
    /// Another replica holds an unexpired Lease.
    Wait,
}

/// The last Lease seen, and when its record last changed by this process's clock.
#[derive(Debug, Clone)]
struct Seen {
    lease: Option<Lease>,
    changed_at: Instant,
}

/// This replica's claim.
#[derive(Debug)]
pub(crate) struct Candidate {
    config: LeaseConfig,
    seen: Option<Seen>,
    /// When the last successful write of this replica's claim was sent, while it
    /// leads.
    renewed_at: Option<Instant>,
}

impl Candidate {
    pub(crate) fn new(config: LeaseConfig) -> Self {
        Self {
            config,
            seen: None,
            renewed_at: None,
        }
    }

    pub(crate) fn config(&self) -> &LeaseConfig {
        &self.config
    }

    pub(crate) fn leads(&self) -> bool {
        self.renewed_at.is_some()
    }

    /// How long to wait before the next round.
    pub(crate) fn next_wait(&self) -> Duration {
        let timings = &self.config.timings;
        if self.leads() {
            timings.renew_period
        } else {
            timings.retry_period
        }
    }

    /// Takes in the Lease as read at `now` (`None`: it does not exist).
    pub(crate) fn observe(&mut self, lease: Option<Lease>, now: Instant) {
        let unchanged = self
            .seen
            .as_ref()
            .is_some_and(|seen| record(seen.lease.as_ref()) == record(lease.as_ref()));
        if !unchanged {
            self.seen = Some(Seen {
                lease: lease.clone(),
                changed_at: now,
            });
        } else if let Some(seen) = &mut self.seen {
            // Same record, newer object: keep its resourceVersion for the write.
            seen.lease = lease.clone();
        }
        if holder(lease.as_ref()) != Some(self.config.identity.as_str()) {
            self.renewed_at = None;
        }
    }

    /// What to send at `now` (`wall` is the time written into the Lease).
    pub(crate) fn step(&self, now: Instant, wall: DateTime<Utc>) -> Step {
        let seen = self
            .seen
            .as_ref()
            .and_then(|s| Some((s.lease.as_ref()?, s.changed_at)));
        let Some((lease, changed_at)) = seen else {
            return Step::Create(self.claim(None, wall));
        };
        let free = match holder(Some(lease)) {
            None => true,
            Some(h) if h == self.config.identity => true,
            Some(_) => now.duration_since(changed_at) >= held_for(lease, &self.config.timings),
        };
        if free {
            Step::Replace(self.claim(Some(lease), wall))
        } else {
            Step::Wait
        }
    }

    /// The claim written at `sent_at` was accepted; the API server answered `lease`.
    pub(crate) fn won(&mut self, lease: Lease, sent_at: Instant) {
        self.seen = Some(Seen {
            lease: Some(lease),
            changed_at: sent_at,
        });
        self.renewed_at = Some(sent_at);
    }

    /// The claim was refused with a conflict: another replica wrote the Lease first.
    pub(crate) fn lost(&mut self) {
        self.renewed_at = None;
    }

    /// A request failed otherwise at `now`: the holder steps down once its last
    /// renewal is older than the renew deadline. Returns whether it stepped down.
    pub(crate) fn failed(&mut self, now: Instant) -> bool {
        let deadline = self.config.timings.renew_deadline();
        let expired = self
            .renewed_at
            .is_some_and(|at| now.duration_since(at) >= deadline);
        if expired {
            self.renewed_at = None;
        }
        expired
    }

    /// The Lease with no holder, written on shutdown so the next replica need not
    /// wait out the lease; `None` when this replica did not hold it.
    pub(crate) fn release(&mut self, wall: DateTime<Utc>) -> Option<Lease> {
        self.renewed_at.take()?;
        let mut lease = self.seen.as_ref()?.lease.clone()?;
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(wall));
        Some(lease)
    }

    /// The Lease held by this replica, from `current` (keeping its metadata and
    /// counting a change of holder) or new.
    fn claim(&self, current: Option<&Lease>, wall: DateTime<Utc>) -> Lease {
        let mut lease = current.cloned().unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: None,
        });
        let ours = holder(current) == Some(self.config.identity.as_str());
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if !ours {
            spec.acquire_time = Some(MicroTime(wall));
            spec.lease_transitions = Some(match current {
                Some(_) => spec.lease_transitions.unwrap_or(0).saturating_add(1),
                None => 0,
            });
        }
        spec.holder_identity = Some(self.config.identity.clone());
        spec.lease_duration_seconds = Some(self.config.timings.lease_seconds());
        spec.renew_time = Some(MicroTime(wall));
        lease
    }
}

/// The Lease's holder; an empty identity is no holder.
fn holder(lease: Option<&Lease>) -> Option<&str> {
    lease?
        .spec
        .as_ref()?
        .holder_identity
        .as_deref()
        .filter(|h| !h.is_empty())
}

/// What a renewal changes: the spec (not the `resourceVersion`, which other
/// writes of the object change too).
fn record(lease: Option<&Lease>) -> Option<&LeaseSpec> {
    lease?.spec.as_ref()
}

/// How long the holder's claim lasts: its own `leaseDurationSeconds`, else ours.
fn held_for(lease: &Lease, timings: &LeaseTimings) -> Duration {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_duration_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .map_or(timings.lease_duration, Duration::from_secs)
}

#[cfg(test)]
mod tests;
