//! Replicas: the aggregate cross-cluster throughput of a cluster whose gateway runs
//! 1, 2 and 3 replicas, and how evenly streams spread over them.
//!
//! Real `causeway gateway run` processes, one per network namespace on a bridge
//! (the e2e tests' lab, in namespaces of this benchmark's own prefix):
//!
//! ```text
//! west ns: client ─▶ west's gateway ─QUIC─▶ east.a │ east.b │ east.c ─▶ server ns: sink
//! ```
//!
//! One federation per replica count runs for the whole benchmark; rounds alternate
//! between them, so a burst of load elsewhere on the machine hits every count.
//! Each east replica's process (every thread) is pinned to one CPU, round-robin
//! over the CPUs this process may use; the client, the sink (both threads of this
//! process), west's gateway and the idle echo processes are not pinned. Per
//! measurement: the client's bytes/s, each replica's streams and bytes from its own
//! `/metrics`, and CPU time per process and for the machine.
//!
//! This file holds the run; `deployment` starts and measures one federation,
//! `usage` reads CPU time, `report` prints the tables.

mod deployment;
mod report;
mod usage;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use deployment::Deployment;
use tokio::signal::unix::{SignalKind, signal};
use usage::CpuUse;

/// The replicas east's gateway may run: one namespace each.
const REPLICAS: [&str; 3] = ["east.a", "east.b", "east.c"];

/// Options of `causeway-bench replicas`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplicasBenchArgs {
    /// Replica counts of east's gateway to compare (1 to 3).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub replicas: Vec<usize>,
    /// Parallel streams of each measurement.
    #[arg(long, value_delimiter = ',', default_value = "8,32")]
    pub streams: Vec<usize>,
    /// Milliseconds between the client's stream opens: 0 opens them at once (a
    /// burst, as a connection pool's start does); a gap lets west count each open
    /// stream before it places the next.
    #[arg(long, value_delimiter = ',', default_value = "0,20")]
    pub open_gap_ms: Vec<u64>,
    /// Seconds of each measurement, after one second of warm-up.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Rounds over every replica count and stream count; each figure is the median.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
}

/// What west's client does in one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClientLoad {
    /// Parallel streams.
    streams: usize,
    /// Time between two stream opens.
    open_gap: Duration,
}

/// One measurement: west's client load on a federation whose east runs `replicas`.
#[derive(Debug, Clone)]
struct Measurement {
    replicas: usize,
    load: ClientLoad,
    /// What the client wrote, in Gbit/s.
    gbps: f64,
    /// Streams each replica took, in replica order.
    replica_streams: Vec<f64>,
    /// Bytes each replica received from west, in replica order.
    replica_bytes: Vec<f64>,
    /// CPU time over the measurement.
    cpu: CpuUse,
}

/// Runs the benchmark and prints its tables. SIGINT or SIGTERM stops it: every
/// process it started is killed and every namespace it made removed.
pub async fn run(args: ReplicasBenchArgs) -> Result<()> {
    check_machine(&args)?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let mut bench = tokio::task::spawn_blocking(move || run_blocking(&args, &stopping));
    tokio::select! {
        done = &mut bench => return done.context("benchmark thread panicked")?,
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("interrupted: stopping the processes and removing the namespaces of this run");
    stop.store(true, Ordering::SeqCst);
    // The benchmark thread sees the flag at its next step and unwinds, dropping
    // (killing, removing) what it started.
    let _ = bench.await;
    bail!("interrupted")
}

/// Root, the tools, the `causeway` binary, and sensible options.
fn check_machine(args: &ReplicasBenchArgs) -> Result<()> {
    let missing = causeway_e2e::missing(&["ip", "dig", "curl"]);
    ensure!(
        missing.is_empty(),
        "the replicas benchmark builds network namespaces and needs {}",
        missing.join(", ")
    );
    let bin = causeway_e2e::causeway_bin_path();
    ensure!(
        bin.is_file(),
        "no causeway binary at {}: build it with `cargo build --release -p causeway-gateway` \
         (same CARGO_TARGET_DIR) or point CAUSEWAY_BIN at one",
        bin.display()
    );
    ensure!(
        args.replicas
            .iter()
            .all(|n| (1..=REPLICAS.len()).contains(n)),
        "--replicas takes counts from 1 to {}",
        REPLICAS.len()
    );
    ensure!(
        !args.streams.is_empty() && args.streams.iter().all(|&k| k > 0),
        "--streams takes counts above 0"
    );
    ensure!(!args.open_gap_ms.is_empty(), "--open-gap-ms takes a list");
    Ok(())
}

/// Fails once the run has been told to stop.
fn interrupted(stop: &AtomicBool) -> Result<()> {
    ensure!(!stop.load(Ordering::SeqCst), "interrupted");
    Ok(())
}

fn run_blocking(args: &ReplicasBenchArgs, stop: &AtomicBool) -> Result<()> {
    let cpus = usage::allowed_cpus()?;
    let mut deployments = Vec::new();
    for &n in &args.replicas {
        interrupted(stop)?;
        eprintln!("starting west and {n} east replica(s)");
        deployments.push(Deployment::start(n, &cpus, stop)?);
    }
    report::print_setup(&deployments, &cpus);
    let all_pids: Vec<u32> = deployments.iter().flat_map(Deployment::pids).collect();
    let seconds = Duration::from_secs(args.seconds);
    let rounds = args.repeat.max(1);
    let mut measurements = Vec::new();
    for round in 1..=rounds {
        for deployment in &deployments {
            for load in loads(args) {
                interrupted(stop)?;
                eprintln!(
                    "round {round}/{rounds}: {} replica(s), {} streams opened {:?} apart",
                    deployment.replicas(),
                    load.streams,
                    load.open_gap
                );
                measurements.push(deployment.measure(load, seconds, &all_pids)?);
            }
        }
    }
    report::print_results(args, &measurements);
    // Dropping the deployments kills their processes and removes their namespaces.
    drop(deployments);
    Ok(())
}

/// Every client load the options ask for, in order.
fn loads(args: &ReplicasBenchArgs) -> Vec<ClientLoad> {
    let gaps = args.open_gap_ms.iter().map(|&ms| Duration::from_millis(ms));
    gaps.flat_map(|open_gap| {
        let streams = args.streams.iter();
        streams.map(move |&streams| ClientLoad { streams, open_gap })
    })
    .collect()
}
