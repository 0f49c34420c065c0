//! Watch streams over the applied catalog: gap-free, in revision order, starting with a
//! snapshot when the requested revision is no longer in the history.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::{Shared, WatchSignal};
use crate::catalog::{CatalogEvent, Revision};

/// The events after a revision, as applied on one member.
///
/// Each call to [`CatalogWatch::next`] yields the next event: a
/// [`CatalogEvent::Change`] whose revision is exactly one more than the previous
/// event's, or a [`CatalogEvent::Snapshot`] when the member no longer holds the changes
/// needed to continue (the consumer then replaces its copy of the catalog).
pub struct CatalogWatch {
    shared: Arc<Shared>,
    rx: broadcast::Receiver<WatchSignal>,
    last: Revision,
    backlog: VecDeque<CatalogEvent>,
    alive: tokio::sync::watch::Receiver<()>,
}

impl std::fmt::Debug for CatalogWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogWatch")
            .field("last", &self.last)
            .finish()
    }
}

impl CatalogWatch {
    pub(super) fn new(
        shared: Arc<Shared>,
        from: Revision,
        alive: tokio::sync::watch::Receiver<()>,
    ) -> Self {
        let rx = shared.events.subscribe();
        let mut watch = Self {
            shared,
            rx,
            last: from,
            backlog: VecDeque::new(),
            alive,
        };
        watch.resync();
        watch
    }

    /// The revision of the last event yielded (or the starting revision).
    pub fn revision(&self) -> Revision {
        self.last
    }

    /// Re-reads the applied state: queues the retained changes after `last`, or a
    /// snapshot if they are gone. Subscribing under the lock means every change after
    /// the state read is also in the new receiver.
    fn resync(&mut self) {
        let applied = self.shared.applied.read().expect("catalog lock poisoned");
        self.rx = self.shared.events.subscribe();
        self.backlog.clear();
        let current = applied.catalog.revision();
        if self.last >= current {
            return;
        }
        let covered = applied
            .history
            .front()
            .is_some_and(|first| first.revision <= self.last.next());
        if covered {
            for change in applied.history.iter().filter(|c| c.revision > self.last) {
                self.backlog
                    .push_back(CatalogEvent::Change(change.as_ref().clone()));
            }
        } else {
            self.backlog
                .push_back(CatalogEvent::Snapshot(applied.catalog.snapshot()));
        }
    }

    /// The next event; `None` once the member stops.
    pub async fn next(&mut self) -> Option<CatalogEvent> {
        loop {
            if let Some(event) = self.backlog.pop_front() {
                self.last = event.revision();
                return Some(event);
            }
            tokio::select! {
                signal = self.rx.recv() => match signal {
                    Ok(WatchSignal::Change(change)) => {
                        if change.revision <= self.last {
                            continue;
                        }
                        if change.revision == self.last.next() {
                            self.last = change.revision;
                            return Some(CatalogEvent::Change(change.as_ref().clone()));
                        }
                        self.resync();
                    }
                    Ok(WatchSignal::Reset) | Err(RecvError::Lagged(_)) => self.resync(),
                    Err(RecvError::Closed) => return None,
                },
                changed = self.alive.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
            }
        }
    }
}
