//! The `causeway` command line: one subcommand per operator task.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Causeway links Kubernetes clusters and plain hosts into one service federation.
#[derive(Debug, Parser)]
#[command(name = "causeway", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The operator's tasks.
#[derive(Debug, Subcommand)]
pub enum Command {}

/// Runs one parsed command line and turns its outcome into an exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {}
}
