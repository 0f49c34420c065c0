//! The `causeway` command line: one subcommand per operator task.

pub mod ops;
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
    /// Show this cluster's view of the federation: peers, RTT, streams, registry.
    Status(ops::StatusArgs),
    /// Run named health checks with a hint for each failure; exits non-zero on any.
    Check(ops::CheckArgs),
    /// Ask the local gateway to join the federation through a registry member.
    Link(ops::LinkArgs),
    /// Remove a cluster (its registry seat and exports) from the federation.
    Unlink(ops::UnlinkArgs),
    /// Export a service from this cluster (standalone mode).
    Export(ops::ExportArgs),
    /// Stop exporting a service from this cluster (standalone mode).
    Unexport(ops::UnexportArgs),
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
        Command::Status(a) => block_on(ops::status(a)),
        Command::Check(a) => block_on(ops::run_check(a)),
        Command::Link(a) => block_on(ops::link(a)),
        Command::Unlink(a) => block_on(ops::unlink(a)),
        Command::Export(a) => block_on(ops::export(a)),
        Command::Unexport(a) => block_on(ops::unexport(a)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
