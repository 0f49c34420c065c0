//! Address slots: the catalog's bookkeeping of which import-address slots exports
//! hold (see [`AddressSlots`]).
//!
//! A slot is handed out as the lowest one free, and given back when its last holder
//! goes. The book is a function of the exports alone (the slots in use), so a member
//! that loads a snapshot rebuilds exactly the book of a member that applied the log.

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::types::{AddressSlots, Export, ServiceKey};

/// Which slots are held, and by which service.
#[derive(Debug, Clone, Default)]
pub(super) struct SlotBook {
    /// Free slots below `next`.
    free: BTreeSet<u32>,
    /// One past the highest slot held.
    next: u32,
    /// Each exported service's slot and how many exports share it.
    services: BTreeMap<ServiceKey, (u32, usize)>,
}

impl SlotBook {
    /// The slots of `export`, a new export or one replacing `previous`: the previous
    /// export's slots when there was one, else the service's shared slot (or a new
    /// one) and a new pinned slot.
    pub(super) fn place(&mut self, export: &Export, previous: Option<&Export>) -> AddressSlots {
        if let Some(slots) = previous.and_then(|p| p.slots) {
            return slots;
        }
        let service = match self.services.get_mut(&export.service) {
            Some((slot, holders)) => {
                *holders += 1;
                *slot
            }
            None => {
                let slot = self.take();
                self.services.insert(export.service.clone(), (slot, 1));
                slot
            }
        };
        AddressSlots {
            service,
            pinned: self.take(),
        }
    }

    /// Gives back the slots of an export that went.
    pub(super) fn release(&mut self, export: &Export) {
        let Some(slots) = export.slots else {
            return;
        };
        self.give(slots.pinned);
        if let Some((slot, holders)) = self.services.get_mut(&export.service) {
            *holders -= 1;
            if *holders == 0 {
                let slot = *slot;
                self.services.remove(&export.service);
                self.give(slot);
            }
        }
    }

    /// The book for `exports` as loaded from a snapshot: the slots they hold are
    /// taken. Exports without slots (written before slots existed) get theirs in the
    /// given order, which is the snapshot's (by cluster, then service) on every member.
    pub(super) fn rebuild<'a>(exports: impl Iterator<Item = &'a mut Export>) -> Self {
        let mut book = Self::default();
        let mut unplaced = Vec::new();
        let mut held = BTreeSet::new();
        for export in exports {
            match export.slots {
                Some(slots) => {
                    held.insert(slots.pinned);
                    held.insert(slots.service);
                    let entry = book
                        .services
                        .entry(export.service.clone())
                        .or_insert((slots.service, 0));
                    entry.1 += 1;
                }
                None => unplaced.push(export),
            }
        }
        book.next = held.last().map_or(0, |h| h + 1);
        book.free = (0..book.next).filter(|s| !held.contains(s)).collect();
        for export in unplaced {
            export.slots = Some(book.place(export, None));
        }
        book
    }

    fn take(&mut self) -> u32 {
        match self.free.pop_first() {
            Some(slot) => slot,
            None => {
                self.next += 1;
                self.next - 1
            }
        }
    }

    fn give(&mut self, slot: u32) {
        self.free.insert(slot);
        // Keep `free` to the gaps below the highest slot held, as `rebuild` makes it.
        while self.next > 0 && self.free.remove(&(self.next - 1)) {
            self.next -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_trust::ClusterName;

    fn export(cluster: &str, service: &str) -> Export {
        Export {
            cluster: cluster.parse::<ClusterName>().unwrap(),
            service: ServiceKey::new("shop", service).unwrap(),
            ports: Vec::new(),
            endpoints: 1,
            labels: BTreeMap::new(),
            weight: 1,
            slots: None,
        }
    }

    fn placed(book: &mut SlotBook, cluster: &str, service: &str) -> Export {
        let mut e = export(cluster, service);
        e.slots = Some(book.place(&e, None));
        e
    }

    #[test]
    fn exporters_of_one_service_share_its_slot_and_slots_come_back() {
        let mut book = SlotBook::default();
        let west = placed(&mut book, "west", "web");
        let east = placed(&mut book, "east", "web");
        let db = placed(&mut book, "west", "db");
        let (w, e) = (west.slots.unwrap(), east.slots.unwrap());
        assert_eq!(w.service, e.service);
        let mut all = vec![w.service, w.pinned, e.pinned, db.slots.unwrap().service];
        all.push(db.slots.unwrap().pinned);
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3, 4], "lowest free slots, none twice");
        book.release(&west);
        // The service keeps its slot while east still exports it.
        let again = placed(&mut book, "north", "web");
        assert_eq!(again.slots.unwrap().service, w.service);
        assert_eq!(
            again.slots.unwrap().pinned,
            w.pinned,
            "the freed slot is reused"
        );
    }

    #[test]
    fn a_rebuilt_book_hands_out_what_the_live_one_would() {
        let mut live = SlotBook::default();
        let mut exports: Vec<Export> = ["a", "b", "c", "d"]
            .iter()
            .map(|s| placed(&mut live, "west", s))
            .collect();
        live.release(&exports.remove(1));
        live.release(&exports.pop().unwrap());
        let mut rebuilt = SlotBook::rebuild(exports.iter_mut());
        for service in ["e", "f", "g"] {
            let a = placed(&mut live, "east", service);
            let b = placed(&mut rebuilt, "east", service);
            assert_eq!(a.slots, b.slots, "{service}");
        }
    }

    #[test]
    fn exports_from_before_slots_get_them_on_load() {
        let mut exports = [export("east", "web"), export("west", "web")];
        let mut book = SlotBook::rebuild(exports.iter_mut());
        let (e, w) = (exports[0].slots.unwrap(), exports[1].slots.unwrap());
        assert_eq!(e.service, w.service);
        assert_ne!(e.pinned, w.pinned);
        let next = placed(&mut book, "north", "db").slots.unwrap();
        assert_eq!((next.service, next.pinned), (3, 4));
    }
}
