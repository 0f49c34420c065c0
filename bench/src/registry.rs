//! Raft registry benchmark: Causeway's registry against etcd, three members each, on
//! loopback, in one run.
//!
//! Both systems are driven over gRPC with the same load: `1` and `--clients` concurrent
//! writers, values of `--value-bytes`, over a fixed key space, spread round-robin over
//! the three members (followers forward to the leader in both). Causeway runs in this
//! process over mutual TLS (its only mode); etcd runs as three `etcd` processes over
//! plaintext gRPC. Both fsync on the same disk. Failover is the time from stopping the
//! leader without a clean shutdown (SIGKILL for etcd; aborting the member's tasks and
//! cutting its connections for Causeway) to the next acknowledged write.
//!
//! `run` measures each system in turn and prints the ratios; the load generator lives
//! in `load`, the in-process Causeway registry in `causeway`, the etcd processes and
//! their gRPC client in `etcd`.

mod causeway;
mod etcd;
mod load;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use causeway::CausewayCluster;
use clap::Args;
use etcd::EtcdCluster;
use load::{Stats, load};

/// Options of `causeway-bench registry`.
#[derive(Debug, Clone, Args)]
pub struct RegistryBenchArgs {
    /// Seconds each measured load phase runs (after a one-second warm-up).
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Concurrent writers in the many-clients phase.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Bytes of value per write.
    #[arg(long, default_value_t = 256)]
    pub value_bytes: usize,
    /// Distinct keys written (writes overwrite them round-robin).
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// Causeway's election timeout in milliseconds (ticks are 50 ms).
    #[arg(long, default_value_t = 300)]
    pub election_timeout_ms: u64,
    /// Leader kills measured per system (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub failover_rounds: usize,
    /// The etcd binary (Debian package `etcd-server`).
    #[arg(long, default_value = "etcd")]
    pub etcd: String,
    /// Parent directory for data (use a real disk: fsync cost is what is measured).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Measure Causeway only.
    #[arg(long)]
    pub skip_etcd: bool,
}

/// How long any one write may take before the attempt is abandoned.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// After a leader is stopped, how long one write attempt waits before the client
/// retries (a write forwarded to the dead leader is never answered). The same for both
/// systems.
const FAILOVER_ATTEMPT: Duration = Duration::from_millis(250);

/// Runs the benchmark and prints a table with ratios to etcd.
pub async fn run(args: RegistryBenchArgs) -> anyhow::Result<()> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("causeway-bench-registry-")
        .tempdir_in(&base)
        .with_context(|| format!("creating a data directory in {}", base.display()))?;

    println!(
        "registry benchmark: 3 members each, {} s per phase, {}-byte values, {} keys",
        args.seconds, args.value_bytes, args.keys
    );
    let causeway = measure_causeway(dir.path(), &args).await?;
    if args.skip_etcd {
        return Ok(());
    }
    let etcd = measure_etcd(dir.path(), &args).await?;
    print_ratios(&args, &causeway, &etcd);
    Ok(())
}

/// What one system measured: writes with one client and with `--clients`, and the
/// failover times.
struct Measured {
    one: Stats,
    many: Stats,
    failovers: Vec<Duration>,
}

async fn measure_causeway(dir: &Path, args: &RegistryBenchArgs) -> anyhow::Result<Measured> {
    let mut causeway = CausewayCluster::start(dir, args).await?;
    let one = load(1, args, causeway.writer(args)).await?;
    let many = load(args.clients, args, causeway.writer(args)).await?;
    let mut failovers = Vec::new();
    for _ in 0..args.failover_rounds {
        failovers.push(causeway.failover(args).await?);
    }
    causeway.stop().await;
    print_row("causeway", 1, &one);
    print_row("causeway", args.clients, &many);
    println!(
        "causeway failover (leader stopped -> next acknowledged write): {}",
        ms_list(&failovers)
    );
    Ok(Measured {
        one,
        many,
        failovers,
    })
}

async fn measure_etcd(dir: &Path, args: &RegistryBenchArgs) -> anyhow::Result<Measured> {
    let mut etcd = EtcdCluster::start(dir, args).await?;
    let one = load(1, args, etcd.writer(args)).await?;
    let many = load(args.clients, args, etcd.writer(args)).await?;
    let mut failovers = Vec::new();
    for _ in 0..args.failover_rounds {
        failovers.push(etcd.failover(args).await?);
    }
    etcd.stop();
    print_row("etcd", 1, &one);
    print_row("etcd", args.clients, &many);
    println!(
        "etcd failover (SIGKILL leader -> next acknowledged write): {}",
        ms_list(&failovers)
    );
    Ok(Measured {
        one,
        many,
        failovers,
    })
}

fn print_ratios(args: &RegistryBenchArgs, c: &Measured, e: &Measured) {
    println!("\n{:<34} {:>10}", "ratio (causeway / etcd)", "value");
    println!(
        "{:<34} {:>9.2}x",
        "writes/s, 1 client",
        c.one.rate() / e.one.rate()
    );
    println!(
        "{:<34} {:>9.2}x",
        format!("writes/s, {} clients", args.clients),
        c.many.rate() / e.many.rate()
    );
    println!(
        "{:<34} {:>9.2}x",
        "p50 latency, 1 client",
        ratio(c.one.p50, e.one.p50)
    );
    println!(
        "{:<34} {:>9.2}x",
        format!("p99 latency, {} clients", args.clients),
        ratio(c.many.p99, e.many.p99)
    );
    println!(
        "{:<34} {:>9.2}x",
        "failover time (median)",
        ratio(median(&c.failovers), median(&e.failovers))
    );
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms_list(v: &[Duration]) -> String {
    let parts: Vec<String> = v
        .iter()
        .map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
        .collect();
    format!(
        "{} (median {:.0} ms)",
        parts.join(", "),
        median(v).as_secs_f64() * 1000.0
    )
}

fn print_row(system: &str, clients: usize, s: &Stats) {
    println!(
        "{system:<9} clients={clients:<3} writes/s={:>9.0}  p50={:>7.2} ms  p99={:>7.2} ms  errors={}",
        s.rate(),
        s.p50.as_secs_f64() * 1000.0,
        s.p99.as_secs_f64() * 1000.0,
        s.errors
    );
}

async fn retry_until<T, F, Fut>(limit: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
