//! Asking a gateway's DNS server a question, as a client would: used by `causeway
//! check`, `causeway resolve` and the demo.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};

/// Why a name did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ProbeError {
    /// The name asked.
    pub name: String,
    /// What the server or the network said.
    pub reason: String,
}

/// A resolver that asks only `server`, never caches, and fails fast.
pub fn resolver(server: SocketAddr, timeout: Duration) -> Result<TokioResolver, String> {
    let mut ns = NameServerConfig::udp_and_tcp(server.ip());
    for connection in &mut ns.connections {
        connection.port = server.port();
    }
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.attempts = 2;
    opts.timeout = timeout;
    opts.ndots = 0;
    Resolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![ns]),
        TokioRuntimeProvider::default(),
    )
    .with_options(opts)
    .build()
    .map_err(|e| e.to_string())
}

/// The IPv4 and IPv6 addresses `server` answers for `name`.
pub async fn query_a(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Vec<IpAddr>, ProbeError> {
    let fail = |reason: String| ProbeError {
        name: name.to_owned(),
        reason,
    };
    let resolver = resolver(server, timeout).map_err(fail)?;
    let fqdn = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    let lookup = resolver
        .lookup_ip(fqdn.as_str())
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(lookup.iter().collect())
}
