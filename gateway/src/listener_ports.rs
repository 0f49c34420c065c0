//! Gateway pod ports for import listeners: on Kubernetes a mirrored Service's
//! endpoints are the gateway pods, so every imported service port needs a pod port
//! of its own.
//!
//! Its own module, not the Kubernetes adapters', because both sides use it: the
//! daemon binds import listeners on these ports, and the import mirror names them
//! as the mirrored Services' endpoints.
//!
//! Every replica of the cluster's gateway must listen on the same pod port for a
//! service port, because one mirrored EndpointSlice lists all their pods with one
//! set of ports. A port's first choice is a digest of the service and port, the
//! same in every replica and version; a collision takes the next free port, which
//! depends on the order services arrived in, so the mirror reads the ports of the
//! Service already mirrored and every replica adopts them ([`ListenerPorts::adopt`]).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::RangeInclusive;

use causeway_registry::ServiceKey;
use sha2::{Digest, Sha256};

/// Which pod port carries which imported service port.
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
        let start = (first_choice(&key.0, port) % len as u64) as usize;
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

    /// Makes `pod_port` carry `service`'s port `port`, as the mirrored Service says
    /// it does. A service port this gateway had given `pod_port` to gets another
    /// port at once (and adopts its own mirrored one when the mirror reads it).
    /// Returns whether anything changed; a port outside the range is refused.
    pub(crate) fn adopt(&mut self, service: &ServiceKey, port: u16, pod_port: u16) -> bool {
        let key = (service.clone(), port);
        if self.by_target.get(&key) == Some(&pod_port) || !self.range.contains(&pod_port) {
            return false;
        }
        let holder = self
            .by_target
            .iter()
            .find(|(_, p)| **p == pod_port)
            .map(|(k, _)| k.clone());
        if let Some(holder) = &holder {
            self.by_target.remove(holder);
        }
        if let Some(old) = self.by_target.insert(key, pod_port) {
            self.taken.remove(&old);
        }
        self.taken.insert(pod_port);
        if let Some((service, port)) = holder {
            self.port_for(&service, port);
        }
        true
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

/// A digest of `service` and `port`: the same in every process, unlike std's hasher,
/// whose output may change between Rust releases.
fn first_choice(service: &ServiceKey, port: u16) -> u64 {
    let mut digest = Sha256::new();
    digest.update(service.namespace().as_bytes());
    digest.update([b'/']);
    digest.update(service.name().as_bytes());
    digest.update(port.to_be_bytes());
    let bytes: [u8; 8] = digest.finalize()[..8].try_into().expect("8 bytes");
    u64::from_be_bytes(bytes)
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

    #[test]
    fn an_adopted_port_is_taken_from_whoever_held_it() {
        let mut ports = ListenerPorts::new([127, 0, 0, 1].into(), 20000..=20015);
        let a = ports.port_for(&key("shop/a"), 80).unwrap();
        let b = ports.port_for(&key("shop/b"), 80).unwrap();
        // The mirrored Services say the other way round.
        assert!(ports.adopt(&key("shop/a"), 80, b));
        assert_eq!(ports.get(&key("shop/a"), 80), Some(b));
        let moved = ports.get(&key("shop/b"), 80).expect("b got another port");
        assert!(moved != a && moved != b, "b moved to a free port");
        assert!(ports.adopt(&key("shop/b"), 80, a));
        assert_eq!(ports.get(&key("shop/b"), 80), Some(a));
        assert!(!ports.adopt(&key("shop/b"), 80, a), "nothing changed");
        assert!(!ports.adopt(&key("shop/c"), 80, 30000), "outside the range");
        // Every other port of the range is still free, and none is handed out twice.
        let mut all = HashSet::from([a, b]);
        for i in 0..14 {
            let p = ports.port_for(&key(&format!("shop/s{i}")), 80).unwrap();
            assert!(all.insert(p), "port {p} handed out twice");
        }
        assert_eq!(ports.port_for(&key("shop/full"), 80), None);
    }

    #[test]
    fn first_choices_do_not_depend_on_the_process() {
        // Pinned (SHA-256 of "shop/web" and 8080 as two big-endian bytes, first 8
        // bytes, modulo 10,000): a change here moves the mirrored ports of every
        // running cluster, and replicas of two versions would disagree.
        let mut ports = ListenerPorts::new([127, 0, 0, 1].into(), 20000..=29999);
        assert_eq!(ports.port_for(&key("shop/web"), 8080), Some(23606));
    }
}
