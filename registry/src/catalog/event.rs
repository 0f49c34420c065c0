//! What a watch stream delivers.

use serde::{Deserialize, Serialize};

use super::change::CatalogChange;
use super::state::CatalogSnapshot;
use super::types::Revision;

/// What a watch stream delivers.
///
/// A stream yields either changes in strictly increasing, gap-free revision order, or,
/// when the requested revision is no longer retained, a [`CatalogEvent::Snapshot`] of
/// the whole catalog first (the consumer replaces its copy) and then changes after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CatalogEvent {
    /// The whole catalog at `snapshot.revision`.
    Snapshot(CatalogSnapshot),
    /// One applied command's changes.
    Change(CatalogChange),
}

impl CatalogEvent {
    /// The revision the consumer is at after applying this event.
    pub fn revision(&self) -> Revision {
        match self {
            CatalogEvent::Snapshot(s) => s.revision,
            CatalogEvent::Change(c) => c.revision,
        }
    }
}
