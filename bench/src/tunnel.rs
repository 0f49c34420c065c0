//! Tunnel: Causeway's QUIC tunnel against direct loopback TCP and an stunnel4
//! mutual-TLS 1.3 tunnel.
//!
//! Every path ends at the same in-process servers (a sink and a 1 KiB echo) and
//! is driven by the same blocking load generator:
//!
//! ```text
//! direct:   client ───────────────────────────────▶ server
//! stunnel:  client ─▶ stunnel (client) ─TLS─▶ stunnel (server) ─▶ server
//! causeway: client ─▶ gateway A ─QUIC/mTLS─▶ gateway B ─▶ server
//! ```
//!
//! The two Causeway gateways run in a child process (this binary re-executed with
//! `--gateways`), and the two stunnels are their own processes, so each tunnel's
//! CPU seconds and peak RSS are read from `/proc/<pid>` alone, without the load
//! generator's. Measured: single-stream and N-stream throughput, and p50/p99/p99.9
//! round-trip time of 1 KiB request/response at a fixed rate and at saturation.
//!
//! This file holds the run (paths in alternating rounds, medians, the table); the
//! in-process servers and load generator live in `load`, the stunnel pair in
//! `stunnel`, and the gateway pair (parent and child side) in `gateways`.

mod gateways;
pub(crate) mod load;
mod stunnel;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gateways::{serve_gateways, start_causeway};
use load::{latency, start_echo, start_sink, throughput};
use stunnel::start_stunnel;

/// Size of one request and one response in the latency tests.
const MESSAGE: usize = 1024;
/// Chunk the throughput clients write.
const CHUNK: usize = 256 << 10;
/// How long a tunnel may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Service names the gateways carry.
const SINK: &str = "sink";
/// See [`SINK`].
const ECHO: &str = "echo";

/// Options of `causeway-bench tunnel`.
#[derive(Debug, Clone, clap::Args)]
pub struct TunnelBenchArgs {
    /// Seconds of each throughput measurement.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Streams in the multi-stream throughput measurement.
    #[arg(long, default_value_t = 8)]
    pub streams: usize,
    /// Requests per second in the fixed-rate latency measurement.
    #[arg(long, default_value_t = 2000)]
    pub rate: u32,
    /// Seconds of each latency measurement.
    #[arg(long, default_value_t = 5)]
    pub latency_seconds: u64,
    /// The stunnel binary (Debian package `stunnel4`).
    #[arg(long, default_value = "stunnel4")]
    pub stunnel: String,
    /// Rounds over all paths; each figure is the median.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Leave stunnel out (for machines without it).
    #[arg(long)]
    pub skip_stunnel: bool,
    /// Worker threads of each gateway's runtime; 0 runs both gateways on one
    /// shared multi-threaded runtime.
    #[arg(long, default_value_t = 1)]
    pub gateway_threads: usize,
    /// QUIC congestion controller of the gateways: cubic, bbr or newreno.
    #[arg(long, default_value = "cubic")]
    pub congestion: String,
    /// QUIC send window of the gateways, in bytes (0: the default).
    #[arg(long, default_value_t = 0)]
    pub send_window: u64,
    /// Largest splice buffer of the gateways, in bytes.
    #[arg(long, default_value_t = 512 << 10)]
    pub buffer_size: usize,
    /// Internal: run the two gateways for a parent run, forwarding to
    /// `<sink>,<echo>` addresses, until stdin closes.
    #[arg(long, hide = true, value_name = "SINK,ECHO")]
    pub gateways: Option<String>,
}

/// Runs the benchmark and prints a table.
pub async fn run(args: TunnelBenchArgs) -> Result<()> {
    if let Some(backends) = &args.gateways {
        return serve_gateways(backends, &args).await;
    }
    tokio::task::spawn_blocking(move || run_blocking(&args))
        .await
        .context("benchmark thread panicked")?
}

// === the run ===

/// One tunnel under test: where clients connect, and the processes to measure.
struct Path_ {
    name: &'static str,
    sink: SocketAddr,
    echo: SocketAddr,
    processes: Vec<Child>,
}

impl Drop for Path_ {
    fn drop(&mut self) {
        for p in &mut self.processes {
            // Only the processes this run started, by their handle.
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Results {
    single_gbps: f64,
    multi_gbps: f64,
    fixed: Latency,
    saturated: Latency,
    cpu_seconds: f64,
    peak_rss_kib: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Latency {
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    rate: f64,
}

fn run_blocking(args: &TunnelBenchArgs) -> Result<()> {
    let sink = start_sink("127.0.0.1:0".parse()?)?;
    let echo = start_echo()?;
    let dir = tempdir()?;
    let mut paths = vec![Path_ {
        name: "direct",
        sink,
        echo,
        processes: Vec::new(),
    }];
    if args.skip_stunnel {
        eprintln!("stunnel: skipped (--skip-stunnel)");
    } else {
        paths.push(start_stunnel(args, &dir, sink, echo)?);
    }
    paths.push(start_causeway(args, sink, echo)?);

    // Rounds alternate the paths, so a burst of load elsewhere on the machine
    // hits all of them; each figure is the median over the rounds.
    let mut runs: Vec<Vec<Results>> = vec![Vec::new(); paths.len()];
    for round in 1..=args.repeat.max(1) {
        for (path, results) in paths.iter().zip(&mut runs) {
            eprintln!("round {round}/{}: {}", args.repeat.max(1), path.name);
            results.push(measure(path, args)?);
        }
    }
    let rows: Vec<(&str, Results)> = paths
        .iter()
        .zip(&runs)
        .map(|(p, r)| (p.name, median(r)))
        .collect();
    drop(paths);
    print_table(args, &rows);
    // Best effort: the directory only holds throw-away certificates.
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The per-field median of several runs (CPU seconds: per run; RSS: the peak).
fn median(runs: &[Results]) -> Results {
    let mid = |f: &dyn Fn(&Results) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let lat = |g: &dyn Fn(&Results) -> Latency| Latency {
        p50_us: mid(&|r| g(r).p50_us),
        p99_us: mid(&|r| g(r).p99_us),
        p999_us: mid(&|r| g(r).p999_us),
        rate: mid(&|r| g(r).rate),
    };
    Results {
        single_gbps: mid(&|r| r.single_gbps),
        multi_gbps: mid(&|r| r.multi_gbps),
        fixed: lat(&|r| r.fixed),
        saturated: lat(&|r| r.saturated),
        cpu_seconds: mid(&|r| r.cpu_seconds),
        peak_rss_kib: runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0),
    }
}

fn measure(path: &Path_, args: &TunnelBenchArgs) -> Result<Results> {
    let pids: Vec<u32> = path.processes.iter().map(Child::id).collect();
    let cpu_before = cpu_seconds(&pids)?;
    let secs = Duration::from_secs(args.seconds);
    eprintln!("{}: single stream", path.name);
    let single_gbps = throughput(path.sink, 1, Duration::ZERO, secs)?;
    eprintln!("{}: {} streams", path.name, args.streams);
    let multi_gbps = throughput(path.sink, args.streams, Duration::ZERO, secs)?;
    let lat = Duration::from_secs(args.latency_seconds);
    let (mut fixed, mut saturated) = (Latency::default(), Latency::default());
    if args.latency_seconds > 0 {
        eprintln!("{}: latency at {}/s", path.name, args.rate);
        fixed = latency(path.echo, Some(args.rate), lat)?;
        eprintln!("{}: latency at saturation", path.name);
        saturated = latency(path.echo, None, lat)?;
    }
    let cpu_seconds = cpu_seconds(&pids)? - cpu_before;
    let peak_rss_kib = pids.iter().map(|&p| peak_rss_kib(p).unwrap_or(0)).sum();
    Ok(Results {
        single_gbps,
        multi_gbps,
        fixed,
        saturated,
        cpu_seconds,
        peak_rss_kib,
    })
}

fn print_table(args: &TunnelBenchArgs, rows: &[(&str, Results)]) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<9} {:>9} {:>9} | {:>27} | {:>36} | {:>7} {:>8}",
        "path",
        "1 stream",
        format!("{} strm", args.streams),
        format!("RTT µs at {}/s p50/p99/p99.9", args.rate),
        "RTT µs saturated p50/p99/p99.9 (req/s)",
        "CPU s",
        "RSS MiB"
    );
    for (name, r) in rows {
        let _ = writeln!(
            out,
            "{:<9} {:>6.2} Gb {:>6.2} Gb | {:>8.1} {:>8.1} {:>9.1} | {:>7.1} {:>7.1} {:>8.1} ({:>8.0}) | {:>7.2} {:>8.1}",
            name,
            r.single_gbps,
            r.multi_gbps,
            r.fixed.p50_us,
            r.fixed.p99_us,
            r.fixed.p999_us,
            r.saturated.p50_us,
            r.saturated.p99_us,
            r.saturated.p999_us,
            r.saturated.rate,
            r.cpu_seconds,
            r.peak_rss_kib as f64 / 1024.0
        );
    }
    let find = |n: &str| rows.iter().find(|(name, _)| *name == n).map(|(_, r)| r);
    if let Some(c) = find("causeway") {
        for base in ["stunnel", "direct"] {
            let Some(b) = find(base) else { continue };
            let _ = writeln!(
                out,
                "causeway/{base:<7}: 1 stream {:.2}x, {} streams {:.2}x, added p99 at {}/s {:+.1} µs (direct p99 {:.1} µs)",
                c.single_gbps / b.single_gbps,
                args.streams,
                c.multi_gbps / b.multi_gbps,
                args.rate,
                c.fixed.p99_us - b.fixed.p99_us,
                find("direct").map_or(0.0, |d| d.fixed.p99_us),
            );
        }
        if let (Some(s), Some(d)) = (find("stunnel"), find("direct")) {
            let _ = writeln!(
                out,
                "added p99 at {}/s over direct: causeway {:+.1} µs, stunnel {:+.1} µs",
                args.rate,
                c.fixed.p99_us - d.fixed.p99_us,
                s.fixed.p99_us - d.fixed.p99_us
            );
        }
    }
    println!("{out}");
}

// === process accounting ===

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

/// CPU seconds (user and system) the processes `pids` have used so far.
pub(crate) fn cpu_seconds(pids: &[u32]) -> Result<f64> {
    let mut total = 0.0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("read /proc/{pid}/stat"))?;
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .context("malformed stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11).context("no utime")?.parse()?;
        let stime: f64 = fields.get(12).context("no stime")?.parse()?;
        total += (utime + stime) / CLOCK_TICKS;
    }
    Ok(total)
}

fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("no value")?
        .parse()?)
}

// === set-up ===

/// A directory for throw-away certificates and configurations.
fn tempdir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("causeway-bench-tunnel-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Waits until a 1 KiB round trip through `addr` works.
fn wait_for_echo(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let attempt = (|| -> Result<()> {
            let mut s = TcpStream::connect(addr)?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(&[1u8; MESSAGE])?;
            let mut r = [0u8; MESSAGE];
            s.read_exact(&mut r)?;
            Ok(())
        })();
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                bail!("{addr} did not start within {START_TIMEOUT:?}: {e}")
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}
