//! Per-object exponential backoff for the controllers' error policies.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// First retry delay after a failure: long enough not to hammer an API server that
/// just refused, short enough that a blip heals within a second.
pub(crate) const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest retry delay: a broken object is still retried every five minutes, so a
/// fix elsewhere (a Service created, a peer back up) is noticed without a restart.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(300);

/// Consecutive failures per object key (`namespace/name`), doubling the delay each
/// time up to [`MAX_RETRY`]. A success forgets the key.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure of `key` and returns how long to wait before retrying.
    pub(crate) fn next_delay(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_owned()).or_insert(0);
        let delay = FIRST_RETRY
            .checked_mul(1u32.checked_shl(*n).unwrap_or(u32::MAX))
            .map_or(MAX_RETRY, |d| d.min(MAX_RETRY));
        *n = n.saturating_add(1);
        delay
    }

    /// Forgets `key`'s failures after a successful reconciliation.
    pub(crate) fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The backoff key of an object: `namespace/name`, or `name` when cluster-scoped.
pub(crate) fn key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset_on_success() {
        let backoff = Backoff::default();
        let delays: Vec<u64> = (0..12)
            .map(|_| backoff.next_delay("demo/web").as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(
            backoff.next_delay("demo/api").as_secs(),
            1,
            "keys are independent"
        );
        backoff.reset("demo/web");
        assert_eq!(backoff.next_delay("demo/web").as_secs(), 1);
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let backoff = Backoff::default();
        for _ in 0..100 {
            assert!(backoff.next_delay("x") <= MAX_RETRY);
        }
    }
}
