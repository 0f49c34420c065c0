//! Settings of the clusterset DNS authority.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};

use causeway_policy::Problem;

use crate::config::ConfigError;

/// The clusterset zone of the Multi-Cluster Services API.
pub const DEFAULT_ZONE: &str = "clusterset.local";
/// Short enough that a failover or a withdrawn export reaches clients within seconds,
/// long enough that a busy client does not ask for every connection.
pub const DEFAULT_TTL_SECONDS: u32 = 5;
/// The EDNS payload that avoids IP fragmentation on common paths (DNS flag day 2020).
pub const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1232;
/// The smallest UDP payload every DNS client accepts (RFC 1035 §4.2.1).
pub const MIN_UDP_PAYLOAD: u16 = 512;
/// Clients keep a TCP connection open for a few queries after a truncated answer; ten
/// seconds covers that without holding idle sockets for long (RFC 7766 suggests seconds).
pub const DEFAULT_TCP_IDLE_TIMEOUT_SECONDS: u64 = 10;
/// Bounds the memory and descriptors TCP clients can hold.
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 1024;

/// How the DNS authority for imported services listens and answers.
///
/// Parsed from the `[dns]` table of the mirror's TOML; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Address for both UDP and TCP, such as `127.0.0.1:53`. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// The zone this server is authoritative for; queries outside it are refused.
    pub zone: String,
    /// TTL of every record, and of negative answers, in seconds.
    pub ttl_seconds: u32,
    /// UDP worker threads, each with its own `SO_REUSEPORT` socket; 0 means one per CPU.
    pub udp_workers: usize,
    /// Largest UDP answer sent to an EDNS client, in bytes (512 to 4096).
    pub max_udp_payload: u16,
    /// A TCP connection with no query for this long is closed, in seconds.
    pub tcp_idle_timeout_seconds: u64,
    /// At most this many TCP clients at once; further connections wait to be accepted.
    pub max_tcp_connections: usize,
    /// Addresses published for the zone's name server (`ns.<zone>`); empty means the
    /// listen address when it is a specific one.
    pub nameserver_addresses: Vec<IpAddr>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53),
            zone: DEFAULT_ZONE.to_owned(),
            ttl_seconds: DEFAULT_TTL_SECONDS,
            udp_workers: 0,
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
            tcp_idle_timeout_seconds: DEFAULT_TCP_IDLE_TIMEOUT_SECONDS,
            max_tcp_connections: DEFAULT_MAX_TCP_CONNECTIONS,
            nameserver_addresses: Vec::new(),
        }
    }
}

impl DnsConfig {
    /// Checks every field and returns all problems found, with their key paths.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if let Err(message) = zone_name(&self.zone) {
            problems.push(Problem::new("dns.zone", message));
        }
        if self.ttl_seconds > i32::MAX as u32 {
            problems.push(Problem::new(
                "dns.ttl_seconds",
                "must fit in 31 bits (RFC 2181 §8)",
            ));
        }
        if !(MIN_UDP_PAYLOAD..=4096).contains(&self.max_udp_payload) {
            problems.push(Problem::new(
                "dns.max_udp_payload",
                format!("{} is outside 512..=4096", self.max_udp_payload),
            ));
        }
        if self.udp_workers > 256 {
            problems.push(Problem::new(
                "dns.udp_workers",
                "more than 256 workers is certainly a mistake",
            ));
        }
        if self.tcp_idle_timeout_seconds == 0 {
            problems.push(Problem::new(
                "dns.tcp_idle_timeout_seconds",
                "must be at least 1",
            ));
        }
        if self.max_tcp_connections == 0 {
            problems.push(Problem::new(
                "dns.max_tcp_connections",
                "must be at least 1",
            ));
        }
        ConfigError::check(problems)
    }

    /// The zone as a DNS name (lowercase, fully qualified).
    pub fn zone_name(&self) -> Result<Name, ConfigError> {
        zone_name(&self.zone).map_err(|message| ConfigError {
            problems: vec![Problem::new("dns.zone", message)],
        })
    }

    /// How long an idle TCP connection is kept.
    pub fn tcp_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.tcp_idle_timeout_seconds)
    }

    /// The number of UDP workers to start.
    pub fn effective_udp_workers(&self) -> usize {
        if self.udp_workers > 0 {
            self.udp_workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// The addresses published for `ns.<zone>`.
    pub fn effective_nameserver_addresses(&self) -> Vec<IpAddr> {
        if !self.nameserver_addresses.is_empty() {
            self.nameserver_addresses.clone()
        } else if self.listen.ip().is_unspecified() {
            Vec::new()
        } else {
            vec![self.listen.ip()]
        }
    }
}

/// Parses a zone: lowercase DNS labels separated by dots, an optional final dot.
fn zone_name(zone: &str) -> Result<Name, String> {
    let trimmed = zone.strip_suffix('.').unwrap_or(zone);
    if trimmed.is_empty() {
        return Err("the zone is empty; the root zone cannot be served".to_owned());
    }
    for label in trimmed.split('.') {
        causeway_trust::validate_label("zone label", label).map_err(|e| e.to_string())?;
    }
    let mut name = Name::from_ascii(trimmed).map_err(|e| e.to_string())?;
    name.set_fqdn(true);
    if name.len() > 200 {
        return Err("the zone is too long to leave room for service names".to_owned());
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_fields_are_all_reported() {
        DnsConfig::default().validate().unwrap();
        let bad = DnsConfig {
            zone: "Cluster_Set".into(),
            max_udp_payload: 100,
            tcp_idle_timeout_seconds: 0,
            ..DnsConfig::default()
        };
        let keys: Vec<String> = bad
            .validate()
            .unwrap_err()
            .problems
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(
            keys,
            [
                "dns.zone",
                "dns.max_udp_payload",
                "dns.tcp_idle_timeout_seconds"
            ]
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let parsed: Result<DnsConfig, _> = toml::from_str("zone = \"example.org\"\nttl = 3\n");
        assert!(parsed.is_err());
        let parsed: DnsConfig =
            toml::from_str("zone = \"example.org.\"\nttl_seconds = 3\n").unwrap();
        assert_eq!(parsed.zone_name().unwrap().to_string(), "example.org.");
        assert_eq!(parsed.ttl_seconds, 3);
    }
}
