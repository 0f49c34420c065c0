//! `causeway link` and `causeway unlink`: joining the federation (through a registry
//! member, or by installing a join token), printing a Kubernetes ClusterLink, and
//! removing a cluster.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::admin_client::{AdminClient, AdminTarget};
use crate::cli::token;

/// Arguments of `causeway link`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["peer", "token", "name"])))]
pub struct LinkArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// A registry member of the federation to join (`host:port`); the running local
    /// gateway joins through it.
    #[arg(long)]
    peer: Option<SocketAddr>,
    /// A join token from `causeway token create`: installs this cluster's issuer and
    /// the members to join, for the gateway's next start.
    #[arg(long, requires = "config")]
    token: Option<std::path::PathBuf>,
    /// With --token: the gateway config whose issuer folder receives the issuer.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// With --token: overwrite an existing issuer.
    #[arg(long)]
    force: bool,
    /// Kubernetes: print a ClusterLink manifest to this peer cluster instead of
    /// joining; apply it with `kubectl apply -f -`.
    #[arg(long, value_name = "PEER", requires_all = ["registry", "gateway"])]
    name: Option<String>,
    /// With --name: a registry member of the peer's federation (`host:port`);
    /// repeat for several.
    #[arg(long, value_name = "ADDR", requires = "name")]
    registry: Vec<String>,
    /// With --name: the peer gateway's tunnel address (`host:port`).
    #[arg(long, value_name = "ADDR", requires = "name")]
    gateway: Option<String>,
}

/// Prints the ClusterLink manifest of `causeway link --name`.
fn print_cluster_link(peer: String, registry: Vec<String>, gateway: String) -> Result<ExitCode> {
    use causeway_k8s::manifests::{LinkOptions, link_manifest, link_yaml};
    let link = link_manifest(LinkOptions {
        peer,
        registry,
        gateway,
        probe: Default::default(),
        token_secret_ref: None,
    })
    .map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("invalid ClusterLink:\n  {}", lines.join("\n  "))
    })?;
    print!("{}", link_yaml(&link)?);
    Ok(ExitCode::SUCCESS)
}

/// Runs `causeway link`.
pub async fn link(a: LinkArgs) -> Result<ExitCode> {
    if let (Some(name), Some(gateway)) = (a.name, a.gateway) {
        return print_cluster_link(name, a.registry, gateway);
    }
    if let (Some(token), Some(config)) = (a.token, a.config) {
        return token::install(token::InstallArgs {
            token,
            config,
            force: a.force,
        });
    }
    let peer = a.peer.context("--peer or --token is required")?;
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("joining the federation through {peer}"));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let result = AdminClient::new(a.target.admin).link(peer).await;
    spinner.finish_and_clear();
    let message = result.context("link failed; check that the peer's registry address is right and that both gateways share one trust bundle")?;
    println!("✓ {message}");
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `causeway unlink`.
#[derive(Debug, Args)]
pub struct UnlinkArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// The cluster to remove from the federation, or `CLUSTER/REPLICA`: one gone
    /// replica of a cluster's gateway to take off the list (the cluster stays).
    cluster: String,
}

/// Runs `causeway unlink`.
pub async fn unlink(a: UnlinkArgs) -> Result<ExitCode> {
    let client = AdminClient::new(a.target.admin);
    let message = match a.cluster.split_once('/') {
        Some((cluster, replica)) => client.unlink_replica(cluster, replica).await?,
        None => client.unlink(&a.cluster).await?,
    };
    println!("✓ {message}");
    Ok(ExitCode::SUCCESS)
}
