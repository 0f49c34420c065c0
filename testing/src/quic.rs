//! Raw QUIC peers.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use causeway_trust::{ALPN_TUNNEL, GatewayIdentity};

/// A raw QUIC connection to a gateway's tunnel at `to`, as a peer gateway with
/// `identity` would open it.
pub async fn raw_connection(
    identity: &Arc<GatewayIdentity>,
    to: SocketAddr,
) -> Result<quinn::Connection> {
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(identity.client_config(&[ALPN_TUNNEL]))?;
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    Ok(endpoint.connect(to, "causeway-gateway")?.await?)
}
