//! The `causeway` command line: one subcommand per operator task.

pub mod admin_client;
pub mod kube;
pub mod ops;
pub mod registry;
pub mod token;
pub mod trust;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Causeway links Kubernetes clusters and plain hosts into one service federation.
///
/// Each cluster runs a gateway. Gateways share a trust anchor, replicate one service
/// catalog with Raft, mirror remote services into local DNS (clusterset.local), and
/// carry traffic between clusters as QUIC streams over mutual TLS.
#[derive(Debug, Parser)]
#[command(
    name = "causeway",
    version,
    about,
    long_about,
    propagate_version = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The operator's tasks.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the federation's certificate authorities: roots, cluster issuers, bundles.
    #[command(subcommand)]
    Trust(trust::TrustCommand),
    /// Print the Kubernetes manifests that run this cluster's gateway (namespace, CRDs,
    /// RBAC, config, trust Secret, Deployment, Services) for `kubectl apply -f -`.
    Install(kube::InstallArgs),
    /// Run the gateway daemon.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Three clusters federated on this machine, with traffic and DNS across them,
    /// shown live.
    Demo(crate::demo::DemoArgs),
    /// Serve `hello from <cluster>` over HTTP (a stand-in service for tests and
    /// examples).
    #[command(hide = true)]
    Echo(EchoArgs),
    /// Show this cluster's view of the federation: peers, RTT, streams, registry.
    Status(ops::StatusArgs),
    /// Run named health checks with a hint for each failure; exits non-zero on any.
    Check(ops::CheckArgs),
    /// Create join tokens for new clusters.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show what the local DNS answers for a name and where its traffic would go.
    Resolve(ops::ResolveArgs),
    /// Join the federation: through a registry member (--peer), or by installing a
    /// join token (--token) before the gateway's first start; or, on Kubernetes, print
    /// a ClusterLink manifest (--name PEER --registry ADDR --gateway ADDR).
    Link(ops::LinkArgs),
    /// Remove a cluster (its registry seat and exports) from the federation, or
    /// with CLUSTER/REPLICA one gone replica of its gateway (the cluster stays).
    Unlink(ops::UnlinkArgs),
    /// Export a service from this cluster (standalone mode).
    ///
    /// The export is saved in the gateway's data folder and survives restarts,
    /// crashes and reloads of the config file until `unexport`; a service the
    /// config file exports is the file's to change. The command answers once the
    /// registry has committed the export; after 10 s without a commit it fails,
    /// saying the export is saved and will be published once the registry has a
    /// quorum.
    Export(ops::ExportArgs),
    /// Stop exporting a service from this cluster (standalone mode).
    ///
    /// Removes an export made with `causeway export` (the config file's exports
    /// are removed in the file). Answers once the registry has committed it, as
    /// `export` does.
    Unexport(ops::UnexportArgs),
    /// Talk to a registry member directly: watch the catalog, read it, show the member.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
}

/// Daemon commands.
#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Run this cluster's gateway from a TOML config until SIGTERM; SIGHUP or an edit
    /// of the file reloads its exports.
    Run(RunArgs),
}

/// Arguments of `causeway gateway run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The gateway's TOML configuration (see examples/standalone/).
    #[arg(long, short)]
    pub config: std::path::PathBuf,
    /// This gateway's name among its cluster's replicas (a DNS label; on Kubernetes
    /// the pod's name). Each replica of a cluster needs its own name, data folder and
    /// addresses; over the config file's `replica`.
    #[arg(long, env = "CAUSEWAY_REPLICA")]
    pub replica: Option<causeway_trust::ReplicaName>,
    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, value_enum, default_value_t)]
    pub log_format: crate::telemetry::LogFormat,
}

/// Join-token commands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Write a join token for a new cluster: bundle, a fresh issuer for it, and the
    /// registry members to join through. Expires (default 1h); keep it secret.
    Create(token::CreateArgs),
}

/// Arguments of `causeway echo`.
#[derive(Debug, clap::Args)]
pub struct EchoArgs {
    /// Address to listen on.
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    /// The cluster name to answer with.
    #[arg(long)]
    pub cluster: String,
}

/// How a command prints its result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned text for people.
    #[default]
    Text,
    /// JSON for scripts.
    Json,
}

fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    future: F,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

/// Runs one parsed command line and turns its outcome into an exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Trust(cmd) => trust::run(cmd),
        Command::Gateway(GatewayCommand::Run(a)) => {
            crate::telemetry::init(a.log_format);
            block_on(async move {
                crate::app::run(a.config, a.replica).await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Demo(a) => {
            crate::telemetry::init_quiet();
            block_on(crate::demo::run(a))
        }
        Command::Echo(a) => block_on(async move {
            crate::federation::serve_echo(a.listen, a.cluster).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Install(a) => kube::install(a),
        Command::Token(TokenCommand::Create(a)) => block_on(token::create(a)),
        Command::Resolve(a) => block_on(ops::resolve(a)),
        Command::Status(a) => block_on(ops::status(a)),
        Command::Check(a) => block_on(ops::run_check(a)),
        Command::Link(a) => block_on(ops::link(a)),
        Command::Unlink(a) => block_on(ops::unlink(a)),
        Command::Export(a) => block_on(ops::export(a)),
        Command::Unexport(a) => block_on(ops::unexport(a)),
        Command::Registry(cmd) => block_on(registry::run(cmd)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
