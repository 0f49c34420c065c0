//! Field checks shared by the resource types' `validate()` methods.

use std::net::IpAddr;

/// Longest DNS subdomain (RFC 1123): object names such as a Secret's.
pub(crate) const MAX_SUBDOMAIN_LEN: usize = 253;

/// Checks a lowercase RFC 1123 DNS label; `None` when it is one.
pub(crate) fn dns_label(value: &str) -> Option<String> {
    causeway_trust::validate_label("name", value)
        .err()
        .map(|e| e.to_string())
}

/// Checks a lowercase RFC 1123 DNS subdomain (dot-separated labels, ≤ 253 bytes).
pub(crate) fn dns_subdomain(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("is empty".into());
    }
    if value.len() > MAX_SUBDOMAIN_LEN {
        return Some(format!(
            "{value:?} is {} characters long; at most {MAX_SUBDOMAIN_LEN} are allowed",
            value.len()
        ));
    }
    value.split('.').find_map(dns_label)
}

/// Checks `host:port`: the host an IPv4 address, a bracketed IPv6 address or a DNS
/// name; the port 1-65535.
pub(crate) fn host_port(value: &str) -> Option<String> {
    let Some((host, port)) = value.rsplit_once(':') else {
        return Some(format!("{value:?} is not host:port"));
    };
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Some(format!("{value:?} has no port in 1-65535")),
        Ok(_) => {}
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match v6.parse::<std::net::Ipv6Addr>() {
            Ok(_) => None,
            Err(_) => Some(format!("{value:?}: {v6:?} is not an IPv6 address")),
        };
    }
    if host.contains(':') {
        return Some(format!(
            "{value:?}: write an IPv6 host in brackets, [{host}]"
        ));
    }
    if host.parse::<IpAddr>().is_ok() {
        return None;
    }
    // DNS names may carry upper case in the wild; the resolver does not care.
    dns_subdomain(&host.to_ascii_lowercase()).map(|why| format!("{value:?}: host {why}"))
}

/// Checks a Secret data key: `[-._a-zA-Z0-9]+`, at most 253 bytes.
pub(crate) fn secret_key(value: &str) -> Option<String> {
    if value.is_empty() || value.len() > MAX_SUBDOMAIN_LEN {
        return Some(format!(
            "{value:?} must be 1-{MAX_SUBDOMAIN_LEN} characters"
        ));
    }
    let ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    (!ok).then(|| format!("{value:?} may hold only letters, digits, '-', '.' and '_'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_accepts_names_and_addresses() {
        for ok in [
            "10.0.0.1:15444",
            "[fd00::1]:15444",
            "gw.west.example.com:15443",
            "causeway-gateway.causeway-system.svc:15444",
        ] {
            assert_eq!(host_port(ok), None, "{ok}");
        }
        for bad in [
            "10.0.0.1",
            "10.0.0.1:0",
            "10.0.0.1:70000",
            "fd00::1:15444",
            "under_score.example:1",
            ":15444",
            "[zz]:1",
        ] {
            assert!(host_port(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn labels_and_subdomains() {
        assert_eq!(dns_label("west"), None);
        assert!(dns_label(&"a".repeat(64)).is_some());
        assert!(dns_label("West").is_some());
        assert_eq!(dns_subdomain("causeway-peer.west"), None);
        assert!(dns_subdomain("a..b").is_some());
        assert_eq!(secret_key("token"), None);
        assert!(secret_key("a/b").is_some());
    }
}
