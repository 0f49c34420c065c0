//! Gateway pod ports for import listeners: on Kubernetes a mirrored Service's
//! endpoint is this pod, so every imported service port needs a pod port of its own.
//!
//! Its own module, not the Kubernetes adapters', because both sides use it: the
//! daemon binds import listeners on these ports, and the import mirror names them
//! as the mirrored Services' endpoints.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::ops::RangeInclusive;

use causeway_registry::ServiceKey;

/// Which pod port carries which imported service port.
///
/// A port's first choice is derived from the service and port, so a restarted
/// gateway mostly picks the same ports again (the mirrored Services are updated
/// either way); collisions take the next free port.
#[derive(Debug)]
pub(crate) struct ListenerPorts {
    bind: IpAddr,
    range: RangeInclusive<u16>,
    by_target: HashMap<(ServiceKey, u16), u16>,
    taken: HashSet<u16>,
}

impl ListenerPorts {
    /// Ports from `range`, listened on at `bind` (the pod's address).
    pub(crate) fn new(bind: IpAddr, range: RangeInclusive<u16>) -> Self {
        Self {
            bind,
            range,
            by_target: HashMap::new(),
            taken: HashSet::new(),
        }
    }

    /// The address import listeners bind.
    pub(crate) fn bind_ip(&self) -> IpAddr {
        self.bind
    }

    /// The pod port for `service`'s port `port`, allocating one; `None` when the
    /// range is full.
    pub(crate) fn port_for(&mut self, service: &ServiceKey, port: u16) -> Option<u16> {
        let key = (service.clone(), port);
        if let Some(p) = self.by_target.get(&key) {
            return Some(*p);
        }
        let (first, len) = (*self.range.start(), self.range.len());
        if self.taken.len() >= len {
            return None;
        }
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let start = (hasher.finish() % len as u64) as usize;
        let chosen = (0..len)
            .map(|i| first + ((start + i) % len) as u16)
            .find(|p| !self.taken.contains(p))?;
        self.taken.insert(chosen);
        self.by_target.insert(key, chosen);
        Some(chosen)
    }

    /// The pod port already allocated for `service`'s port `port`.
    pub(crate) fn get(&self, service: &ServiceKey, port: u16) -> Option<u16> {
        self.by_target.get(&(service.clone(), port)).copied()
    }

    /// Frees the ports of every service `keep` rejects.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&ServiceKey, u16) -> bool) {
        let taken = &mut self.taken;
        self.by_target.retain(|(service, port), pod_port| {
            let kept = keep(service, *port);
            if !kept {
                taken.remove(pod_port);
            }
            kept
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ServiceKey {
        s.parse().unwrap()
    }

    #[test]
    fn ports_are_stable_distinct_and_reused_after_release() {
        let mut ports = ListenerPorts::new([127, 0, 0, 1].into(), 20000..=20015);
        let web80 = ports.port_for(&key("shop/web"), 80).unwrap();
        assert_eq!(ports.port_for(&key("shop/web"), 80), Some(web80));
        assert_eq!(ports.get(&key("shop/web"), 80), Some(web80));
        let mut all: HashSet<u16> = HashSet::from([web80]);
        for i in 0..15 {
            let p = ports.port_for(&key(&format!("shop/s{i}")), 80).unwrap();
            assert!((20000..=20015).contains(&p));
            assert!(all.insert(p), "port {p} handed out twice");
        }
        assert_eq!(
            ports.port_for(&key("shop/full"), 80),
            None,
            "the range is full"
        );

        ports.retain(|service, _| service != &key("shop/web"));
        assert_eq!(ports.get(&key("shop/web"), 80), None);
        assert_eq!(
            ports.port_for(&key("shop/full"), 80),
            Some(web80),
            "freed port reused"
        );
    }

    #[test]
    fn a_fresh_allocator_picks_the_same_first_choices() {
        let mut a = ListenerPorts::new([127, 0, 0, 1].into(), 20000..=29999);
        let mut b = ListenerPorts::new([127, 0, 0, 1].into(), 20000..=29999);
        for i in 0..50 {
            let service = key(&format!("ns/svc{i}"));
            assert_eq!(a.port_for(&service, 8080), b.port_for(&service, 8080));
        }
    }
}
