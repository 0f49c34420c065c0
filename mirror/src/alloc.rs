//! Addresses for imports in standalone mode.
//!
//! Each import gets one address per configured pool (default `127.77.0.0/16`), and each
//! of its exporting clusters gets a pinned one. Which address is the catalog's choice,
//! not this process's: the catalog gives every export a service slot (shared by all
//! exporters of the service) and a pinned slot ([`causeway_registry::AddressSlots`]),
//! and an owner's address is its slot's offset into the pool. Every replica of a
//! cluster thus answers with the same addresses, and a restart finds them unchanged
//! (the catalog is durable); no per-process state is kept.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use causeway_registry::ServiceKey;
use causeway_trust::ClusterName;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use causeway_policy::Problem;

use crate::config::ConfigError;

/// The pool standalone imports use unless configured otherwise: loopback, so that
/// every address is local without configuring an interface, and a /16 so that tens of
/// thousands of services and pinned names fit with few collisions.
pub const DEFAULT_POOL: &str = "127.77.0.0/16";

/// Where standalone imports get their addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AddressConfig {
    /// Address pools as CIDR blocks, at most one IPv4 and one IPv6. Every import gets
    /// one address from each.
    pub pools: Vec<IpNet>,
}

impl Default for AddressConfig {
    fn default() -> Self {
        Self {
            pools: vec![DEFAULT_POOL.parse().expect("the default pool parses")],
        }
    }
}

impl AddressConfig {
    /// Checks the pools and returns every problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.pools.is_empty() {
            problems.push(Problem::new(
                "addresses.pools",
                "at least one pool is required",
            ));
        }
        let v4 = self
            .pools
            .iter()
            .filter(|p| matches!(p, IpNet::V4(_)))
            .count();
        let v6 = self.pools.len() - v4;
        if v4 > 1 || v6 > 1 {
            problems.push(Problem::new(
                "addresses.pools",
                "at most one IPv4 and one IPv6 pool",
            ));
        }
        for (i, pool) in self.pools.iter().enumerate() {
            if pool.trunc() != *pool {
                problems.push(Problem::new(
                    format!("addresses.pools[{i}]"),
                    format!("{pool} has host bits set; did you mean {}?", pool.trunc()),
                ));
            }
            if Pool::new(*pool).size < 2 {
                problems.push(Problem::new(
                    format!("addresses.pools[{i}]"),
                    format!("{pool} has fewer than two usable addresses"),
                ));
            }
        }
        ConfigError::check(problems)
    }
}

/// Who an address belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressOwner {
    /// An import: `<svc>.<ns>.svc.<zone>`, any exporting cluster. Written `shop/web`.
    Service(ServiceKey),
    /// An import pinned to one exporting cluster. Written `shop/web@west`.
    Pinned(ServiceKey, ClusterName),
}

impl fmt::Display for AddressOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressOwner::Service(key) => write!(f, "{key}"),
            AddressOwner::Pinned(key, cluster) => write!(f, "{key}@{cluster}"),
        }
    }
}

impl FromStr for AddressOwner {
    type Err = causeway_trust::NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('@') {
            Some((key, cluster)) => Ok(AddressOwner::Pinned(key.parse()?, cluster.parse()?)),
            None => Ok(AddressOwner::Service(s.parse()?)),
        }
    }
}

/// Why an owner got no address.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// The owner's slot lies beyond the end of a pool.
    #[error("address pool {pool} is exhausted: {owner} has slot {slot}, the pool {size} addresses")]
    Exhausted {
        /// The full pool.
        pool: IpNet,
        /// Its number of usable addresses.
        size: u128,
        /// The slot asked for.
        slot: u32,
        /// Who asked.
        owner: String,
    },
    /// The catalog gave the owner no slot.
    #[error("{owner} has no address slot in the catalog")]
    Unplaced {
        /// Who asked.
        owner: String,
    },
    /// Another owner holds the address of this owner's slot (the catalog never hands
    /// out one slot twice, so this is a fault worth naming, not a case to resolve).
    #[error("{owner}'s address {address} is held by {holder}")]
    Held {
        /// Who asked.
        owner: String,
        /// The address of its slot.
        address: IpAddr,
        /// Who holds it.
        holder: String,
    },
}

/// The usable addresses of one CIDR block, as offsets from its first one.
#[derive(Debug, Clone)]
struct Pool {
    net: IpNet,
    /// The first usable address as a number.
    first: u128,
    /// How many addresses are usable.
    size: u128,
}

impl Pool {
    fn new(net: IpNet) -> Self {
        let net = net.trunc();
        let (base, bits, host_bits) = match net {
            IpNet::V4(n) => (u128::from(u32::from(n.network())), 32, 32 - n.prefix_len()),
            IpNet::V6(n) => (u128::from(n.network()), 128, 128 - n.prefix_len()),
        };
        let total: u128 = if host_bits >= 128 {
            u128::MAX
        } else {
            1u128 << host_bits
        };
        // Skip the network address, and for IPv4 the broadcast address, on blocks
        // large enough to have them.
        let (first, size) = match (bits, host_bits) {
            (32, 0..=1) | (128, 0..=1) => (base, total),
            (32, _) => (base + 1, total - 2),
            _ => (base + 1, total - 1),
        };
        Self { net, first, size }
    }

    /// The address of `slot`, if the pool reaches that far.
    fn slot(&self, owner: &AddressOwner, slot: u32) -> Result<IpAddr, AllocError> {
        if u128::from(slot) >= self.size {
            return Err(AllocError::Exhausted {
                pool: self.net,
                size: self.size,
                slot,
                owner: owner.to_string(),
            });
        }
        Ok(self.address(u128::from(slot)))
    }

    fn address(&self, offset: u128) -> IpAddr {
        let n = self.first + offset;
        match self.net {
            IpNet::V4(_) => IpAddr::V4((n as u32).into()),
            IpNet::V6(_) => IpAddr::V6(n.into()),
        }
    }
}

/// Turns the catalog's address slots into addresses, one per pool, and keeps who
/// holds which. Sans-IO.
#[derive(Debug, Clone)]
pub struct AddressAllocator {
    pools: Vec<Pool>,
    owners: HashMap<AddressOwner, Vec<IpAddr>>,
    taken: HashMap<IpAddr, AddressOwner>,
}

impl AddressAllocator {
    /// An allocator with every address of `config`'s pools free.
    pub fn new(config: &AddressConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            pools: config.pools.iter().copied().map(Pool::new).collect(),
            owners: HashMap::new(),
            taken: HashMap::new(),
        })
    }

    /// The addresses of `owner`, one per pool: those of its `slot` (the catalog's),
    /// the same in every replica of every cluster with the same pools. An owner that
    /// held other addresses moves to its slot's.
    pub fn allocate(
        &mut self,
        owner: &AddressOwner,
        slot: Option<u32>,
    ) -> Result<Vec<IpAddr>, AllocError> {
        let slot = slot.ok_or_else(|| AllocError::Unplaced {
            owner: owner.to_string(),
        })?;
        let chosen = self
            .pools
            .iter()
            .map(|pool| pool.slot(owner, slot))
            .collect::<Result<Vec<_>, _>>()?;
        if self.owners.get(owner) == Some(&chosen) {
            return Ok(chosen);
        }
        if let Some((address, holder)) = chosen
            .iter()
            .find_map(|a| self.taken.get(a).filter(|h| *h != owner).map(|h| (a, h)))
        {
            return Err(AllocError::Held {
                owner: owner.to_string(),
                address: *address,
                holder: holder.to_string(),
            });
        }
        self.release(owner);
        for address in &chosen {
            self.taken.insert(*address, owner.clone());
        }
        self.owners.insert(owner.clone(), chosen.clone());
        Ok(chosen)
    }

    /// Frees `owner`'s addresses; returns whether it held any.
    pub fn release(&mut self, owner: &AddressOwner) -> bool {
        match self.owners.remove(owner) {
            Some(addresses) => {
                for address in addresses {
                    self.taken.remove(&address);
                }
                true
            }
            None => false,
        }
    }

    /// The addresses `owner` holds.
    pub fn get(&self, owner: &AddressOwner) -> Option<&[IpAddr]> {
        self.owners.get(owner).map(Vec::as_slice)
    }

    /// Who holds `address`.
    pub fn owner_of(&self, address: IpAddr) -> Option<&AddressOwner> {
        self.taken.get(&address)
    }

    /// How many owners hold addresses.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// Whether no owner holds an address.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(s: &str) -> AddressOwner {
        s.parse().unwrap()
    }

    fn allocator(pool: &str) -> AddressAllocator {
        AddressAllocator::new(&AddressConfig {
            pools: vec![pool.parse().unwrap()],
        })
        .unwrap()
    }

    #[test]
    fn a_slot_is_an_offset_into_the_pool_and_agrees_in_any_order() {
        let mut a = allocator(DEFAULT_POOL);
        let mut b = allocator(DEFAULT_POOL);
        let names: Vec<(String, u32)> = (0..60)
            .map(|i| (format!("ns{}/svc{i}", i % 7), i))
            .collect();
        for (n, slot) in &names {
            a.allocate(&owner(n), Some(*slot)).unwrap();
        }
        for (n, slot) in names.iter().rev() {
            b.allocate(&owner(n), Some(*slot)).unwrap();
        }
        for (n, _) in &names {
            assert_eq!(a.get(&owner(n)), b.get(&owner(n)), "{n}");
        }
        // Slot 0 is the first usable address: the network address is skipped.
        let first = a.get(&owner("ns0/svc0")).unwrap()[0];
        assert_eq!(first, "127.77.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_slot_beyond_the_pool_a_missing_one_and_a_held_one_are_errors() {
        // A /30 has two usable addresses.
        let mut a = allocator("10.0.0.0/30");
        let x = a.allocate(&owner("a/x"), Some(0)).unwrap();
        a.allocate(&owner("a/y"), Some(1)).unwrap();
        let err = a.allocate(&owner("a/z"), Some(2)).unwrap_err();
        assert!(
            matches!(err, AllocError::Exhausted { slot: 2, .. }),
            "{err}"
        );
        let err = a.allocate(&owner("a/z"), None).unwrap_err();
        assert_eq!(err.to_string(), "a/z has no address slot in the catalog");
        let err = a.allocate(&owner("a/z"), Some(0)).unwrap_err();
        assert!(err.to_string().contains("held by a/x"), "{err}");
        assert_eq!(a.allocate(&owner("a/x"), Some(0)).unwrap(), x, "idempotent");
        assert!(a.release(&owner("a/x")));
        assert!(!a.release(&owner("a/x")));
        let z = a.allocate(&owner("a/z"), Some(0)).unwrap();
        assert_eq!(z, x, "the freed address is reused");
        assert_eq!(a.owner_of(z[0]), Some(&owner("a/z")));
    }

    #[test]
    fn pinned_and_dual_stack() {
        let mut a = AddressAllocator::new(&AddressConfig {
            pools: vec![
                "127.77.0.0/16".parse().unwrap(),
                "fd00:77::/64".parse().unwrap(),
            ],
        })
        .unwrap();
        let service = a.allocate(&owner("shop/web"), Some(0)).unwrap();
        let pinned = a.allocate(&owner("shop/web@west"), Some(1)).unwrap();
        assert_eq!(service.len(), 2);
        assert!(service[0].is_ipv4() && service[1].is_ipv6());
        assert_ne!(service, pinned);
        assert_eq!(owner("shop/web@west").to_string(), "shop/web@west");
    }

    #[test]
    fn bad_pools_are_reported() {
        let config = AddressConfig {
            pools: vec![
                "10.0.0.1/24".parse().unwrap(),
                "10.1.0.0/32".parse().unwrap(),
            ],
        };
        let problems = config.validate().unwrap_err().problems;
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
