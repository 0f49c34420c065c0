//! The load generator: concurrent clients writing for a fixed time through whatever
//! `Writer` a system provides, and the rates and latencies they saw.

use std::future::Future;
use std::time::{Duration, Instant};

use super::{RegistryBenchArgs, WRITE_TIMEOUT};

/// What one phase of writes measured.
pub(super) struct Stats {
    writes: u64,
    pub(super) errors: u64,
    elapsed: Duration,
    pub(super) p50: Duration,
    pub(super) p99: Duration,
}

impl Stats {
    /// Acknowledged writes per second.
    pub(super) fn rate(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64()
    }
}

/// Something that performs write number `seq` as client `client`.
pub(super) trait Writer: Clone + Send + Sync + 'static {
    fn write(&self, client: usize, seq: u64) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A one-second warm-up, then `--seconds` of writes by `clients` clients.
pub(super) async fn load<W: Writer>(
    clients: usize,
    args: &RegistryBenchArgs,
    writer: W,
) -> anyhow::Result<Stats> {
    // Warm-up: connections, leader, caches.
    run_phase(clients, Duration::from_secs(1), writer.clone()).await?;
    run_phase(clients, Duration::from_secs(args.seconds), writer).await
}

async fn run_phase<W: Writer>(
    clients: usize,
    length: Duration,
    writer: W,
) -> anyhow::Result<Stats> {
    let start = Instant::now();
    let deadline = start + length;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut seq = client as u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match tokio::time::timeout(WRITE_TIMEOUT, writer.write(client, seq)).await {
                    Ok(Ok(())) => latencies.push(t0.elapsed()),
                    _ => errors += 1,
                }
                seq += clients as u64;
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(Stats {
        writes: all.len() as u64,
        errors,
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
    })
}
