//! Runs the DNS benchmark of `causeway-bench` from this crate, for measuring before
//! the bench binary wires it: `cargo run --release -p causeway-mirror --example dns_bench`.

use clap::Parser;

#[path = "../../bench/src/dns.rs"]
pub mod dns;

/// Command line: the benchmark's own options.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    dns: dns::DnsBenchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dns::run(Cli::parse().dns).await
}
