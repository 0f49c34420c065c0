//! What the DNS authority publishes for one imported service.
//!
//! These plain types keep the DNS code independent of the catalog: the import table
//! converts each import into one [`ServiceRecords`].

use std::fmt;
use std::net::IpAddr;

use causeway_trust::ClusterName;

/// The transport protocol of a named port, as it appears in SRV names (`_tcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortProtocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl PortProtocol {
    /// The SRV label without its underscore: `tcp`, `udp` or `sctp`.
    pub fn as_str(self) -> &'static str {
        match self {
            PortProtocol::Tcp => "tcp",
            PortProtocol::Udp => "udp",
            PortProtocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for PortProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named port of one exporting cluster: `_<name>._<protocol>` in SRV names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamedPort {
    /// The port's name, a DNS label.
    pub name: String,
    /// Its transport protocol.
    pub protocol: PortProtocol,
    /// Its number.
    pub port: u16,
}

/// One exporting cluster of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRecords {
    /// The exporting cluster; `<cluster>.<svc>.<ns>.svc.<zone>` names it.
    pub cluster: ClusterName,
    /// The addresses pinned to this cluster (traffic to them goes only there).
    pub addresses: Vec<IpAddr>,
    /// SRV weight of this cluster among the exporters (RFC 2782).
    pub weight: u16,
    /// The named ports this cluster exports; unnamed ports get no SRV record.
    pub ports: Vec<NamedPort>,
}

/// Everything the zone says about one imported service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecords {
    /// The service's namespace, a DNS label.
    pub namespace: String,
    /// The service's name, a DNS label.
    pub name: String,
    /// The service's own addresses (`<svc>.<ns>.svc.<zone>`), any exporter.
    pub addresses: Vec<IpAddr>,
    /// The exporting clusters.
    pub clusters: Vec<ClusterRecords>,
}
