//! Side-by-side benchmarks: each runs Causeway and its peer (direct TCP, stunnel4,
//! nsd/unbound, etcd) in the same run on the same machine and prints ratios; the
//! replicas benchmark compares Causeway with itself at 1, 2 and 3 gateway replicas.
//! Results and the commands that produced them are in BENCHMARKS.md.
#![allow(
    unreachable_pub,
    reason = "each benchmark module's entry points are `pub` for readers; this is a binary"
)]

mod dns;
mod gateway;
mod registry;
mod replicas;
mod tunnel;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Causeway benchmarks. Build with --release.
#[derive(Debug, Parser)]
#[command(name = "causeway-bench", about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// QUIC tunnel vs direct TCP vs stunnel4: throughput, latency, CPU, RSS.
    Tunnel(tunnel::TunnelBenchArgs),
    /// Clusterset DNS vs nsd and unbound under dnsperf; change-to-resolve latency.
    Dns(dns::DnsBenchArgs),
    /// Raft registry vs etcd: writes/s, p50/p99 commit latency, leader-kill failover.
    Registry(registry::RegistryBenchArgs),
    /// Gateway RSS (idle, 10,000 imports) and export-to-DNS convergence.
    Gateway(gateway::GatewayBenchArgs),
    /// Cross-cluster throughput with 1, 2 and 3 gateway replicas, and their spread
    /// (network namespaces: needs root).
    Replicas(replicas::ReplicasBenchArgs),
    /// One gateway process (used by the gateway benchmark).
    #[command(hide = true)]
    RunGateway {
        #[arg(long)]
        config: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let result = runtime.block_on(async move {
        match cli.bench {
            Bench::Tunnel(a) => tunnel::run(a).await,
            Bench::Dns(a) => dns::run(a).await,
            Bench::Registry(a) => registry::run(a).await,
            Bench::Gateway(a) => gateway::run(a).await,
            Bench::Replicas(a) => replicas::run(a).await,
            Bench::RunGateway { config } => gateway::run_gateway(config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
