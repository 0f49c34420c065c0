//! One writer per object among a cluster's gateway replicas.
//!
//! Every replica runs the export, link and policy controllers: each publishes the
//! cluster's exports, joins its peers and enforces its policies. Only the replica
//! holding the controllers' Lease writes to the objects (finalizers and status);
//! the others act on each object as it stands. Two replicas writing a status that
//! differs (each its own probe's round-trip time) would each wake the other's
//! watch, for ever.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::Stream;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::leader::Leadership;

/// Whether this replica writes to the objects: always without a leadership (the
/// cluster's only gateway), otherwise while it leads.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteGate(Option<Leadership>);

impl WriteGate {
    /// Writes while `leadership` says so.
    pub(crate) fn led_by(leadership: Leadership) -> Self {
        Self(Some(leadership))
    }

    /// Whether this replica writes now.
    pub(crate) fn open(&self) -> bool {
        self.0.as_ref().is_none_or(Leadership::is_leader)
    }

    /// Yields each time this replica starts writing: the controller then reconciles
    /// every object, so that finalizers and statuses left to the previous leader
    /// are written. Ends at once for the only replica.
    pub(crate) fn opened(&self) -> impl Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.0.clone(), |leadership| async move {
            let mut leadership = leadership?;
            while !leadership.changed().await {}
            Some(((), Some(leadership)))
        })
    }
}

/// Reconciles `object` through kube's [`finalizer`] when this replica writes.
/// Otherwise it writes nothing and acts on the object as it stands: cleanup while it
/// is being deleted, apply once the writer has put `name` on it, and nothing before
/// (acting then could publish what a deletion would never clean up).
pub(crate) async fn finalized<K, F, Fut, E>(
    gate: &WriteGate,
    api: &Api<K>,
    name: &str,
    object: Arc<K>,
    act: F,
) -> Result<Action, finalizer::Error<E>>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    F: FnOnce(Event<K>) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
    E: std::error::Error + 'static,
{
    if gate.open() {
        return finalizer(api, name, object, act).await;
    }
    if object.meta().deletion_timestamp.is_some() {
        return act(Event::Cleanup(object))
            .await
            .map_err(finalizer::Error::CleanupFailed);
    }
    if object.finalizers().iter().any(|f| f == name) {
        return act(Event::Apply(object))
            .await
            .map_err(finalizer::Error::ApplyFailed);
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use futures::{FutureExt, StreamExt};

    use super::*;

    #[tokio::test]
    async fn the_gate_opens_with_the_lease_and_says_so_once_per_take() {
        assert!(WriteGate::default().open(), "the only replica writes");
        assert_eq!(WriteGate::default().opened().count().await, 0);

        let (leading, leadership) = Leadership::channel(false);
        let gate = WriteGate::led_by(leadership);
        assert!(!gate.open());
        let mut opened = Box::pin(gate.opened());
        leading.send_replace(true);
        opened.next().await.expect("opened");
        assert!(gate.open());
        // Losing the Lease is no reason to reconcile; taking it again is.
        leading.send_replace(false);
        assert!(!gate.open());
        assert!(opened.next().now_or_never().is_none());
        leading.send_replace(true);
        opened.next().await.expect("opened again");
        drop(leading);
        assert_eq!(
            opened.next().now_or_never(),
            None,
            "never ends while it may change"
        );
    }
}
