//! This gateway's seat in the registry: bootstrap, restart from disk, join, re-seat.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use causeway_registry::{
    Command, Node, NodeConfig, NodeError, NodeStatus, RegistryClient, RegistryServer, TlsConfigs,
};
use causeway_trust::{ALPN_REGISTRY, GatewayIdentity};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tracing::{info, warn};

mod rejoin;

pub(crate) use rejoin::rejoin_when_removed;

use super::Local;
use crate::admin::ApiError;
use crate::config::GatewayConfig;

/// This gateway's registry member and what is known of it: the handle every part
/// that reads or writes the catalog goes through.
pub(crate) struct Membership {
    /// The running member; taken when the gateway stops, swapped by a re-seat.
    registry: tokio::sync::Mutex<Option<RegistryServer>>,
    /// The current member; replaced when `link` re-seats it.
    node: RwLock<Node>,
    /// The member's last status, refreshed by the metrics poller (status calls
    /// are async; `causeway status` is answered without waiting on the member).
    last_status: Mutex<Option<(NodeStatus, OffsetDateTime)>>,
    /// Why joining the registry fails, while it does.
    join_error: Mutex<Option<String>>,
}

impl Membership {
    /// The seat of the member `registry` runs.
    pub(crate) fn new(registry: RegistryServer) -> Self {
        Self {
            node: RwLock::new(registry.node().clone()),
            registry: tokio::sync::Mutex::new(Some(registry)),
            last_status: Mutex::default(),
            join_error: Mutex::default(),
        }
    }

    /// The current member.
    pub(crate) fn node(&self) -> Node {
        self.node.read().expect("node lock poisoned").clone()
    }

    /// The member's last status and when it was taken; `None` before the first.
    pub(crate) fn last_status(&self) -> Option<(NodeStatus, OffsetDateTime)> {
        self.last_status.lock().expect("status lock").clone()
    }

    /// Records the member's status as of now.
    pub(crate) fn set_last_status(&self, status: NodeStatus) {
        *self.last_status.lock().expect("status lock") = Some((status, OffsetDateTime::now_utc()));
    }

    /// Why joining the registry fails, while it does.
    pub(crate) fn join_error(&self) -> Option<String> {
        self.join_error.lock().expect("join error lock").clone()
    }

    fn set_join_error(&self, error: Option<String>) {
        *self.join_error.lock().expect("join error lock") = error;
    }

    /// Stops the member (once; later calls find nothing to stop).
    pub(crate) async fn stop(&self) {
        // Taken out first: the slot is free while the member stops.
        let registry = self.registry.lock().await.take();
        if let Some(registry) = registry {
            registry.kill().await;
        }
    }

    /// Gives up this gateway's own one-member registry and joins the federation at
    /// `peer` instead. Refused while the registry has other members: leaving a
    /// federation is `causeway unlink`'s decision, not a side effect of a link.
    pub(crate) async fn reseat(
        &self,
        config: &GatewayConfig,
        identity: &Arc<GatewayIdentity>,
        peer: SocketAddr,
    ) -> Result<(), ApiError> {
        let members = self
            .node()
            .status()
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?
            .members
            .len();
        if members > 1 {
            return Err(ApiError::bad_request(format!(
                "this gateway's registry already has {members} members; it is linked (use `causeway unlink` first)"
            )));
        }
        let mut slot = self.registry.lock().await;
        let current = slot
            .take()
            .ok_or_else(|| ApiError::unavailable("the gateway is stopping"))?;
        let server = reseat(config, identity, current, peer)
            .await
            .map_err(|e| ApiError::unavailable(format!("{e:#}")))?;
        *self.node.write().expect("node lock") = server.node().clone();
        *slot = Some(server);
        Ok(())
    }
}

/// Proposes `commands` in order, stopping at the first failure, which is logged as
/// `what` failing: the publishers repeat the rest on their next round.
pub(crate) async fn propose_in_order(
    node: &Node,
    commands: Vec<Command>,
    what: &str,
) -> Result<(), NodeError> {
    for command in commands {
        if let Err(e) = node.propose(&command).await {
            warn!(error = %e, kind = command.kind(), "{what} failed");
            return Err(e);
        }
    }
    Ok(())
}

/// How often a publisher re-checks the catalog against this gateway's records
/// even without a change here: a lost proposal or a re-seated member is repaired
/// within this time.
const REPUBLISH_INTERVAL: Duration = Duration::from_secs(5);

/// Runs `once` (one round of a publisher, named `what` in logs) now, then after
/// every `wake` and every [`REPUBLISH_INTERVAL`], until `cancel`.
pub(crate) async fn keep_publishing<F, Fut>(
    what: &str,
    cancel: &tokio_util::sync::CancellationToken,
    wake: &tokio::sync::Notify,
    mut once: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), NodeError>>,
{
    loop {
        if let Err(e) = once().await {
            tracing::debug!(error = %e, "{what} not published yet");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(REPUBLISH_INTERVAL) => {}
        }
    }
}

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
    let id = member_id(&config.cluster, config.replica.as_ref());
    let advertise = config.registry_advertise().to_string();
    let mut node = NodeConfig::new(id, advertise.clone(), member_dir(config));
    node.tick_interval = TICK;
    node.election_ticks =
        (config.registry.election_timeout.as_millis() / TICK.as_millis()).max(3) as usize;
    node.heartbeat_ticks = (node.election_ticks / 5).max(1);
    node.replica_grace = config.registry.replica_grace;
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
    listener: TcpListener,
) -> Result<(RegistryServer, bool)> {
    let dir = member_dir(config);
    let restarting = has_state(&dir);
    let bootstrap = !restarting && config.registry.join.is_empty();
    let server = serve(config, identity, bootstrap, listener).await?;
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
/// Returns whether it joined (false: the gateway stopped first).
pub(crate) async fn join_in_background(membership: Arc<Membership>, local: Arc<Local>) -> bool {
    let config = &local.config;
    let id = member_id(&config.cluster, config.replica.as_ref());
    let advertise = config.registry_advertise().to_string();
    let tls = tls(&local.identity);
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
                    membership.set_join_error(None);
                    return true;
                }
                Err(e) => {
                    let reason = format!("joining through {peer}: {}", error_chain(&e));
                    info!(error = %reason, "join attempt failed; retrying");
                    membership.set_join_error(Some(reason));
                }
            }
        }
        tokio::select! {
            _ = local.cancel.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Binds the registry's listen address (port 0 picks a free port: the listener
/// tells which).
pub(crate) async fn bind(config: &GatewayConfig) -> Result<TcpListener> {
    TcpListener::bind(config.registry.listen)
        .await
        .with_context(|| format!("binding the registry on {}", config.registry.listen))
}

async fn serve(
    config: &GatewayConfig,
    identity: &Arc<GatewayIdentity>,
    bootstrap: bool,
    listener: TcpListener,
) -> Result<RegistryServer> {
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
    let id = member_id(&config.cluster, config.replica.as_ref());
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
async fn reseat(
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
    let server = serve(config, identity, false, bind(config).await?).await?;
    join(config, identity, &[peer]).await?;
    Ok(server)
}
