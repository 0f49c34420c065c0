//! The `causeway` command.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = causeway_gateway::cli::Cli::parse();
    causeway_gateway::cli::run(cli)
}
