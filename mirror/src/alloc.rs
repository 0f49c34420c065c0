//! Addresses for imports in standalone mode.
//!
//! Each import gets one address per configured pool (default `127.77.0.0/16`), and each
//! of its exporting clusters gets a pinned one. An owner's first choice is derived from a
//! hash of its name, and a taken slot moves it to the next free one (linear probing), so
//! the same service lands on the same address whenever it comes back, including after a
//! restart, unless its slot was taken first. To make even those cases stable, the
//! allocations can be saved to a state file and reloaded: a reloaded owner gets its old
//! address back if it is still free.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use causeway_registry::ServiceKey;
use causeway_trust::ClusterName;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

/// Why an address could not be given or the state not saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// Every address of a pool is taken.
    #[error("address pool {pool} is exhausted ({size} addresses); cannot place {owner}")]
    Exhausted {
        /// The full pool.
        pool: IpNet,
        /// Its number of usable addresses.
        size: u128,
        /// Who asked.
        owner: String,
    },
    /// The state file could not be read or written.
    #[error("address state file {path}: {source}")]
    StateFile {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The state file does not hold what this version writes.
    #[error("address state file {path} is malformed: {reason}")]
    BadState {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
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

    fn address(&self, offset: u128) -> IpAddr {
        let n = self.first + offset;
        match self.net {
            IpNet::V4(_) => IpAddr::V4((n as u32).into()),
            IpNet::V6(_) => IpAddr::V6(n.into()),
        }
    }

    fn offset_of(&self, address: IpAddr) -> Option<u128> {
        let n = match (self.net, address) {
            (IpNet::V4(_), IpAddr::V4(a)) => u128::from(u32::from(a)),
            (IpNet::V6(_), IpAddr::V6(a)) => u128::from(a),
            _ => return None,
        };
        (n >= self.first && n - self.first < self.size).then(|| n - self.first)
    }

    fn home(&self, owner: &AddressOwner) -> u128 {
        let digest = Sha256::digest(owner.to_string().as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        u128::from_be_bytes(bytes) % self.size
    }
}

/// The state file's contents: owner text to its addresses.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedState {
    addresses: BTreeMap<String, Vec<IpAddr>>,
}

/// Hands out and takes back addresses. Sans-IO except for the explicit state file calls.
#[derive(Debug, Clone)]
pub struct AddressAllocator {
    pools: Vec<Pool>,
    owners: HashMap<AddressOwner, Vec<IpAddr>>,
    taken: HashMap<IpAddr, AddressOwner>,
    /// Addresses owners had before a restart, honoured when they ask again.
    remembered: HashMap<AddressOwner, Vec<IpAddr>>,
}

impl AddressAllocator {
    /// An allocator with every address of `config`'s pools free.
    pub fn new(config: &AddressConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            pools: config.pools.iter().copied().map(Pool::new).collect(),
            owners: HashMap::new(),
            taken: HashMap::new(),
            remembered: HashMap::new(),
        })
    }

    /// The addresses of `owner`, one per pool: the ones it already holds, else new ones.
    pub fn allocate(&mut self, owner: &AddressOwner) -> Result<Vec<IpAddr>, AllocError> {
        if let Some(held) = self.owners.get(owner) {
            return Ok(held.clone());
        }
        let remembered = self.remembered.remove(owner).unwrap_or_default();
        let mut chosen = Vec::with_capacity(self.pools.len());
        for pool in &self.pools {
            let wanted = remembered
                .iter()
                .filter_map(|a| pool.offset_of(*a).map(|_| *a))
                .find(|a| !self.taken.contains_key(a));
            let address = match wanted {
                Some(address) => address,
                None => self.probe(pool, owner)?,
            };
            chosen.push(address);
        }
        for address in &chosen {
            self.taken.insert(*address, owner.clone());
        }
        self.owners.insert(owner.clone(), chosen.clone());
        Ok(chosen)
    }

    fn probe(&self, pool: &Pool, owner: &AddressOwner) -> Result<IpAddr, AllocError> {
        let home = pool.home(owner);
        // Bounded by the number of taken addresses: at most that many slots are busy.
        let limit = (self.taken.len() as u128 + 1).min(pool.size);
        for step in 0..limit {
            let address = pool.address((home + step) % pool.size);
            if !self.taken.contains_key(&address) {
                return Ok(address);
            }
        }
        Err(AllocError::Exhausted {
            pool: pool.net,
            size: pool.size,
            owner: owner.to_string(),
        })
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

    /// Forgets remembered addresses nobody asked for again (call after a resync).
    pub fn forget_remembered(&mut self) {
        self.remembered.clear();
    }

    /// Writes every current allocation to `path` (atomically: a temporary file, then
    /// a rename).
    pub fn save(&self, path: &Path) -> Result<(), AllocError> {
        let state = SavedState {
            addresses: self
                .owners
                .iter()
                .map(|(owner, addresses)| (owner.to_string(), addresses.clone()))
                .collect(),
        };
        let text = serde_json::to_vec_pretty(&state).expect("the state serializes");
        let io = |source| AllocError::StateFile {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Remembers the allocations saved in `path`, so that their owners get the same
    /// addresses when they ask. A missing file is an empty state.
    pub fn load(&mut self, path: &Path) -> Result<usize, AllocError> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(AllocError::StateFile {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let bad = |reason: String| AllocError::BadState {
            path: path.display().to_string(),
            reason,
        };
        let state: SavedState = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        for (owner, addresses) in state.addresses {
            let owner: AddressOwner = owner.parse().map_err(|e| bad(format!("{owner:?}: {e}")))?;
            self.remembered.insert(owner, addresses);
        }
        Ok(self.remembered.len())
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
    fn same_owner_same_address_in_any_order() {
        let names: Vec<String> = (0..60).map(|i| format!("ns{}/svc{i}", i % 7)).collect();
        let mut a = allocator(DEFAULT_POOL);
        let mut b = allocator(DEFAULT_POOL);
        for n in &names {
            a.allocate(&owner(n)).unwrap();
        }
        for n in names.iter().rev() {
            b.allocate(&owner(n)).unwrap();
        }
        // These 60 names have distinct, non-adjacent home slots (the hash is fixed), so
        // the order does not matter; owners that do collide need the state file, below.
        for n in &names {
            assert_eq!(a.get(&owner(n)), b.get(&owner(n)), "{n}");
        }
        let address = a.get(&owner("ns0/svc0")).unwrap()[0];
        assert!(DEFAULT_POOL.parse::<IpNet>().unwrap().contains(&address));
        assert_ne!(address, "127.77.0.0".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn collisions_probe_and_exhaustion_is_an_error() {
        // A /30 has two usable addresses.
        let mut a = allocator("10.0.0.0/30");
        let x = a.allocate(&owner("a/x")).unwrap();
        let y = a.allocate(&owner("a/y")).unwrap();
        assert_ne!(x, y);
        assert!(matches!(
            a.allocate(&owner("a/z")),
            Err(AllocError::Exhausted { .. })
        ));
        assert_eq!(
            a.allocate(&owner("a/x")).unwrap(),
            x,
            "allocation is idempotent"
        );
        assert!(a.release(&owner("a/x")));
        assert!(!a.release(&owner("a/x")));
        let z = a.allocate(&owner("a/z")).unwrap();
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
        let service = a.allocate(&owner("shop/web")).unwrap();
        let pinned = a.allocate(&owner("shop/web@west")).unwrap();
        assert_eq!(service.len(), 2);
        assert!(service[0].is_ipv4() && service[1].is_ipv6());
        assert_ne!(service, pinned);
        assert_eq!(owner("shop/web@west").to_string(), "shop/web@west");
    }

    #[test]
    fn saved_state_restores_collided_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("addresses.json");
        let mut a = allocator("10.0.0.0/29");
        let names: Vec<String> = (0..6).map(|i| format!("a/s{i}")).collect();
        for n in &names {
            a.allocate(&owner(n)).unwrap();
        }
        a.save(&path).unwrap();
        // After a restart the owners come back in another order; with six owners in six
        // slots the probing alone would shuffle them.
        let mut b = allocator("10.0.0.0/29");
        assert_eq!(b.load(&path).unwrap(), 6);
        for n in names.iter().rev() {
            b.allocate(&owner(n)).unwrap();
        }
        for n in &names {
            assert_eq!(a.get(&owner(n)), b.get(&owner(n)), "{n}");
        }
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
