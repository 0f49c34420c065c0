//! The DNS authority for the clusterset zone.
//!
//! Names, with `<zone>` defaulting to `clusterset.local`:
//! - `<svc>.<ns>.svc.<zone>` A/AAAA: the import's own address (any exporting cluster);
//! - `<cluster>.<svc>.<ns>.svc.<zone>` A/AAAA: the address pinned to one cluster;
//! - `_<port>._<proto>.<svc>.<ns>.svc.<zone>` SRV: one record per exporting cluster,
//!   weighted as exported, targeting that cluster's pinned name (whose addresses come
//!   in the additional section); `_<port>._<proto>.<cluster>.<svc>...` the same for one
//!   cluster;
//! - SOA and NS at the apex. Unknown names in the zone get NXDOMAIN, known names asked
//!   for another type NODATA (both with the SOA), names outside the zone REFUSED.
//!
//! The hot path is sans-IO ([`DnsTable::respond`]) over a table built ahead of time
//! ([`ZoneBuilder`]) and swapped atomically ([`ZoneHandle::publish`]); the server
//! ([`DnsServer`]) only moves bytes.

mod answer;
mod config;
mod metrics;
mod records;
mod server;
mod table;

pub use answer::{Answered, Rcode, Transport};
pub use config::{
    DEFAULT_MAX_TCP_CONNECTIONS, DEFAULT_MAX_UDP_PAYLOAD, DEFAULT_TCP_IDLE_TIMEOUT_SECONDS,
    DEFAULT_TTL_SECONDS, DEFAULT_ZONE, DnsConfig, MIN_UDP_PAYLOAD,
};
pub use metrics::{Metrics, QueryLabels, RcodeLabel, TransportLabel};
pub use records::{ClusterRecords, NamedPort, PortProtocol, ServiceRecords};
pub use server::{DnsError, DnsServer, ZoneHandle};
pub use table::{DnsTable, ZoneBuilder, ZoneError};

#[cfg(test)]
mod tests;
