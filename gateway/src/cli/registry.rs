//! `causeway registry`: talks to a registry member directly over its mutual-TLS
//! gRPC API, with an operator identity minted from the gateway config's cluster
//! issuer. For operators and tests that need the catalog's own view (revisions,
//! watch streams) rather than a gateway's summary of it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use causeway_registry::{CatalogEvent, GetKey, ReadConsistency, RegistryClient, Revision};
use causeway_trust::{ALPN_REGISTRY, ClusterIssuer, GatewayIdentity, Role};
use clap::{Args, Subcommand};
use futures::StreamExt as _;
use tokio::io::AsyncWriteExt as _;

use crate::config::GatewayConfig;

/// Lifetime of the operator leaf minted for one command.
const ADMIN_LEAF_LIFETIME: Duration = Duration::from_secs(3600);
/// Pause before a watch reconnects after its stream failed.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

/// Registry commands.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Follow the catalog: one JSON line per event, `{"revision":N,"kind":"change"}` or
    /// `{"revision":N,"kind":"snapshot"}`. When the stream breaks it reconnects from the
    /// last revision printed and says so with a `{"kind":"reconnect",...}` line (a
    /// snapshot may follow a reconnect). Runs until interrupted.
    Watch(WatchArgs),
    /// Print the member's view of the registry (leader, term, indexes, members) as JSON.
    Status(MemberArgs),
    /// Print the whole catalog (clusters, exports, policies) as JSON.
    Get(GetArgs),
}

/// Which member to talk to, and as whom.
#[derive(Debug, Clone, Args)]
pub struct MemberArgs {
    /// The gateway's TOML configuration: its `[trust].issuer_dir` mints the operator
    /// identity, and its registry address is the member asked (unless --addr).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Another member's registry address (`host:port`) to ask instead.
    #[arg(long)]
    pub addr: Option<SocketAddr>,
}

/// Arguments of `causeway registry watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// The member, and the identity.
    #[command(flatten)]
    pub member: MemberArgs,
    /// Start after this revision (0: from the beginning).
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Exit at the first broken stream instead of reconnecting.
    #[arg(long)]
    pub no_reconnect: bool,
}

/// Arguments of `causeway registry get`.
#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// The member, and the identity.
    #[command(flatten)]
    pub member: MemberArgs,
    /// Confirm with the leader first (reflects every write committed before the call);
    /// by default the member answers from its own applied state.
    #[arg(long)]
    pub linearizable: bool,
}

/// Runs one registry command.
pub async fn run(cmd: RegistryCommand) -> Result<ExitCode> {
    match cmd {
        RegistryCommand::Watch(a) => watch(a).await,
        RegistryCommand::Status(a) => {
            let client = connect(&a)?;
            let status = client.status().await?;
            println!("{}", serde_json::to_string_pretty(&status)?);
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Get(a) => {
            let client = connect(&a.member)?;
            let consistency = if a.linearizable {
                ReadConsistency::Linearizable
            } else {
                ReadConsistency::Local
            };
            let snapshot = client.get(GetKey::All, consistency).await?;
            println!("{}", serde_json::to_string_pretty(&snapshot)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A client of the member named by `args`, authenticated as the config's cluster
/// with the admin role.
fn connect(args: &MemberArgs) -> Result<RegistryClient> {
    let config = GatewayConfig::load(&args.config, std::env::vars())?;
    let issuer = ClusterIssuer::load(&config.trust.issuer_dir)
        .with_context(|| "loading the cluster issuer ([trust].issuer_dir)")?;
    let identity = GatewayIdentity::new(issuer, Role::Admin, ADMIN_LEAF_LIFETIME)?;
    let addr = args
        .addr
        .or(config.advertise.registry)
        .unwrap_or(config.registry.listen);
    let tls = Arc::new(identity.client_config(&[ALPN_REGISTRY]));
    Ok(RegistryClient::connect(&addr.to_string(), tls)?)
}

async fn line(out: &mut tokio::io::Stdout, value: serde_json::Value) -> Result<()> {
    let mut text = value.to_string();
    text.push('\n');
    out.write_all(text.as_bytes()).await?;
    out.flush().await?;
    Ok(())
}

async fn watch(args: WatchArgs) -> Result<ExitCode> {
    let client = connect(&args.member)?;
    let mut out = tokio::io::stdout();
    let mut last = args.from;
    loop {
        let error = match client.watch(Revision(last)).await {
            Ok(mut stream) => loop {
                match stream.next().await {
                    Some(Ok(event)) => {
                        let kind = match &event {
                            CatalogEvent::Snapshot(_) => "snapshot",
                            CatalogEvent::Change(_) => "change",
                        };
                        last = event.revision().0;
                        line(
                            &mut out,
                            serde_json::json!({ "revision": last, "kind": kind }),
                        )
                        .await?;
                    }
                    Some(Err(e)) => break e.to_string(),
                    None => break "the member ended the stream".to_owned(),
                }
            },
            Err(e) => e.to_string(),
        };
        if args.no_reconnect {
            anyhow::bail!("watch ended: {error}");
        }
        line(
            &mut out,
            serde_json::json!({ "kind": "reconnect", "from": last, "error": error }),
        )
        .await?;
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}
