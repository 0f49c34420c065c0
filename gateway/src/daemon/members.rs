//! This gateway's seat in the registry: bootstrap, restart from disk, join, re-seat.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use causeway_registry::{NodeConfig, RegistryClient, RegistryServer, TlsConfigs};
use causeway_trust::{ALPN_REGISTRY, ClusterName, GatewayIdentity};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tracing::info;

use crate::config::GatewayConfig;

/// Raft tick: the election timeout is a whole number of these.
const TICK: Duration = Duration::from_millis(50);
/// How long a join keeps trying the listed members.
const JOIN_DEADLINE: Duration = Duration::from_secs(60);

/// The registry member id of a cluster's gateway: stable across restarts and the
/// same on every member, derived from the cluster name (never 0).
pub fn member_id(cluster: &ClusterName) -> u64 {
    let digest = Sha256::digest(cluster.as_str().as_bytes());
    let id = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    id.max(1)
}

pub(crate) fn tls(identity: &Arc<GatewayIdentity>) -> TlsConfigs {
    TlsConfigs {
        server: Arc::new(identity.server_config(&[ALPN_REGISTRY])),
        client: Arc::new(identity.client_config(&[ALPN_REGISTRY])),
    }
}

fn member_dir(config: &GatewayConfig) -> PathBuf {
    config.registry.data_dir.join("registry")
}

fn has_state(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

fn node_config(config: &GatewayConfig, bootstrap: bool) -> NodeConfig {
    let id = member_id(&config.cluster);
    let advertise = config.registry_advertise().to_string();
    let mut node = NodeConfig::new(id, advertise.clone(), member_dir(config));
    node.tick_interval = TICK;
    node.election_ticks =
        (config.registry.election_timeout.as_millis() / TICK.as_millis()).max(3) as usize;
    node.heartbeat_ticks = (node.election_ticks / 5).max(1);
    if bootstrap {
        node.initial_members = BTreeMap::from([(id, advertise)]);
    }
    node
}

/// Starts this gateway's registry member: from its files when it has any, as a new
/// one-member registry when nothing is to be joined, else by joining a listed member.
pub(crate) async fn start_member(
    config: &GatewayConfig,
    identity: &Arc<GatewayIdentity>,
) -> Result<RegistryServer> {
    let dir = member_dir(config);
    let restarting = has_state(&dir);
    let bootstrap = !restarting && config.registry.join.is_empty();
    let server = serve(config, identity, bootstrap).await?;
    if restarting {
        info!(dir = %dir.display(), "registry member restarted from disk");
    } else if bootstrap {
        info!("bootstrapped a new one-member registry");
    } else {
        join(config, identity, &config.registry.join).await?;
    }
    Ok(server)
}

async fn serve(
    config: &GatewayConfig,
    identity: &Arc<GatewayIdentity>,
    bootstrap: bool,
) -> Result<RegistryServer> {
    let listener = TcpListener::bind(config.registry.listen)
        .await
        .with_context(|| format!("binding the registry on {}", config.registry.listen))?;
    Ok(RegistryServer::start(
        node_config(config, bootstrap),
        listener,
        tls(identity),
        None,
    )
    .await?)
}

/// Asks the members at `peers`, in turn, to add this gateway; retries until one
/// accepts or the deadline passes.
pub(crate) async fn join(
    config: &GatewayConfig,
    identity: &Arc<GatewayIdentity>,
    peers: &[SocketAddr],
) -> Result<()> {
    let id = member_id(&config.cluster);
    let advertise = config.registry_advertise().to_string();
    let tls = tls(identity);
    let deadline = tokio::time::Instant::now() + JOIN_DEADLINE;
    let mut last_error = String::new();
    while tokio::time::Instant::now() < deadline {
        for peer in peers {
            let attempt = async {
                let client = RegistryClient::connect(&peer.to_string(), tls.client.clone())?;
                client.join(id, &advertise).await
            };
            match attempt.await {
                Ok(members) => {
                    info!(via = %peer, members = members.len(), "joined the registry");
                    return Ok(());
                }
                Err(e) => {
                    last_error = format!("{peer}: {e}");
                    info!(via = %peer, error = %e, "join attempt failed; retrying");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("could not join the registry through {peers:?}: {last_error}")
}

/// Gives up this gateway's own registry (one member, nobody else in it) and joins
/// the federation at `peer` instead: what `causeway link --peer` does.
pub(crate) async fn reseat(
    config: &GatewayConfig,
    identity: &Arc<GatewayIdentity>,
    current: RegistryServer,
    peer: SocketAddr,
) -> Result<RegistryServer> {
    current.kill().await;
    let dir = member_dir(config);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("clearing {} before joining", dir.display()))?;
    }
    let server = serve(config, identity, false).await?;
    join(config, identity, &[peer]).await?;
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_stable_distinct_and_nonzero() {
        let west = member_id(&"west".parse().unwrap());
        assert_eq!(west, member_id(&"west".parse().unwrap()));
        assert_ne!(west, member_id(&"east".parse().unwrap()));
        assert_ne!(west, 0);
    }
}
