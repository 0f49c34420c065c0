//! Helpers the gateway's tests share: waiting on a condition, speaking to a tunnel
//! as a peer gateway would, and a traffic policy for the federation's echo service.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use causeway_gateway::config::TrafficPolicyConfig;
use causeway_gateway::federation::{ECHO_NAMESPACE, ECHO_SERVICE};
use causeway_gateway::tunnel::traffic::RoutingMode;
use causeway_gateway::tunnel::{Answer, codec};
use causeway_trust::{ALPN_TUNNEL, GatewayIdentity};

/// Waits until `check` returns `Some`, polling every 20 ms, or fails after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw QUIC connection to a gateway, as a peer gateway would open it.
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

/// Reads one framed answer to a stream header.
pub async fn read_answer(recv: &mut quinn::RecvStream) -> Result<Answer> {
    let mut prefix = [0u8; codec::PREFIX_LEN];
    recv.read_exact(&mut prefix).await?;
    let len = codec::parse_prefix(prefix)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    Ok(Answer::decode_body(&body)?)
}

/// A `[[traffic_policy]]` that pins the echo service of a `LocalFederation` to
/// `cluster`, for the clusters in `apply_to` (this one when `None`).
pub fn pinned_echo(cluster: &str, apply_to: Option<&[&str]>) -> Result<TrafficPolicyConfig> {
    Ok(TrafficPolicyConfig {
        namespace: ECHO_NAMESPACE.into(),
        name: ECHO_SERVICE.into(),
        apply_to: apply_to.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
        routing: RoutingMode::Pinned,
        pinned: Some(cluster.parse()?),
        ..TrafficPolicyConfig::default()
    })
}

/// Logs to the test output at `level`, or as `RUST_LOG` says.
pub fn init_logs(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
