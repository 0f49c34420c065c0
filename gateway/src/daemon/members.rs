//! This gateway's seat in the registry: bootstrap, restart from disk, join, re-seat.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use causeway_registry::{NodeConfig, RegistryClient, RegistryServer, TlsConfigs};
use causeway_trust::{ALPN_REGISTRY, GatewayIdentity};
use tokio::net::TcpListener;
use tracing::info;

use crate::config::GatewayConfig;

/// Name of the file in the data folder recording the members a join token named
/// (`causeway link --token`); used on first start when `registry.join` is empty.
pub const JOIN_FILE: &str = "join-members.json";

/// Members recorded by a token install.
pub(crate) fn recorded_members(data_dir: &Path) -> Vec<SocketAddr> {
    std::fs::read_to_string(data_dir.join(JOIN_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Raft tick: the election timeout is a whole number of these.
const TICK: Duration = Duration::from_millis(50);
/// How long a join keeps trying the listed members.
const JOIN_DEADLINE: Duration = Duration::from_secs(60);

pub use causeway_registry::member_id;

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

/// Starts this gateway's registry member: from its files when it has any, or as a
/// new one-member registry when nothing is to be joined. Returns whether the member
/// still has to join through `registry.join` (see [`join_in_background`]).
pub(crate) async fn start_member(
    config: &GatewayConfig,
    identity: &Arc<GatewayIdentity>,
) -> Result<(RegistryServer, bool)> {
    let dir = member_dir(config);
    let restarting = has_state(&dir);
    let bootstrap = !restarting && config.registry.join.is_empty();
    let server = serve(config, identity, bootstrap).await?;
    if restarting {
        info!(dir = %dir.display(), "registry member restarted from disk");
    } else if bootstrap {
        info!("bootstrapped a new one-member registry");
    }
    Ok((server, !restarting && !bootstrap))
}

/// An error with every cause, so the reason at the bottom (often a certificate
/// verdict) reaches the operator.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
}

/// Keeps asking the members in `registry.join` to add this gateway until one does;
/// every failure is visible in status. The rest of the gateway runs meanwhile.
pub(crate) async fn join_in_background(shared: Arc<super::Shared>) {
    let config = &shared.config;
    let id = member_id(&config.cluster);
    let advertise = config.registry_advertise().to_string();
    let tls = tls(&shared.identity);
    let mut delay = Duration::from_millis(200);
    loop {
        for peer in &config.registry.join {
            let attempt = async {
                let client = RegistryClient::connect(&peer.to_string(), tls.client.clone())?;
                client.join(id, &advertise).await
            };
            match attempt.await {
                Ok(members) => {
                    info!(via = %peer, members = members.len(), "joined the registry");
                    shared.state.lock().expect("state lock").registry_error = None;
                    shared.republish.notify_one();
                    return;
                }
                Err(e) => {
                    let reason = format!("joining through {peer}: {}", error_chain(&e));
                    info!(error = %reason, "join attempt failed; retrying");
                    shared.state.lock().expect("state lock").registry_error = Some(reason);
                }
            }
        }
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn serve(
    config: &GatewayConfig,
    identity: &Arc<GatewayIdentity>,
    bootstrap: bool,
) -> Result<RegistryServer> {
    let listener = TcpListener::bind(config.registry.listen)
        .await
        .with_context(|| format!("binding the registry on {}", config.registry.listen))?;
    // The member keeps the identity's issuer denylist equal to the catalog's after
    // every apply, so the tunnel's verifiers (sharing it) refuse at once.
    Ok(RegistryServer::start_with_denylist(
        node_config(config, bootstrap),
        listener,
        tls(identity),
        None,
        identity.denylist().clone(),
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
