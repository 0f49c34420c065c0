//! The `causeway` command line: one subcommand per operator task.

mod trust;

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

/// Runs one parsed command line and turns its outcome into an exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Trust(cmd) => trust::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
