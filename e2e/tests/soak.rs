//! A soak: churn with steady traffic for `CAUSEWAY_SOAK_SECS` seconds (30 minutes
//! by default). Not part of CI; run it with
//!
//! ```text
//! cargo test -p causeway-e2e --test soak -- --ignored --nocapture
//! ```
//!
//! Three clusters in network namespaces. West runs a client (one request after
//! another to the echo service, which east and north export) and a writer
//! (`causeway export` of a new service, then `unexport` of the oldest once ten
//! are live, every half second). Each minute east is cut off for ten seconds
//! and north is killed (`kill -9`) and restarted five seconds later. It checks:
//! no request fails outside those fault windows, every acknowledged write is in
//! every member's catalog at the end, and the RSS and open files of the
//! gateways that are never killed do not drift (last quarter against the first,
//! after a warm-up).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use causeway_e2e::{Client, Federation, Sample, can_run, cli_in, exported};

const NAMES: [&str; 3] = ["west", "east", "north"];
const CONVERGE: Duration = Duration::from_secs(90);
/// One round of faults; its schedule is in [`ROUND_STEPS`].
const ROUND: Duration = Duration::from_secs(60);
/// Failures this long after a fault is repaired still belong to it.
const GRACE: Duration = Duration::from_secs(5);
/// How long one request of the client may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Live exports the writer keeps.
const LIVE: usize = 10;
/// One write every this long.
const WRITE_EVERY: Duration = Duration::from_millis(500);
/// Memory and open files are sampled this often.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Most drift allowed between the first and the last quarter, after warm-up.
const MAX_DRIFT: f64 = 0.10;

/// A fault and when, within a round, it starts and ends.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// East cut off from the others.
    Partition,
    /// North killed, then restarted.
    Kill,
}

/// (fault, start, end) within each round.
const ROUND_STEPS: [(Fault, u64, u64); 2] = [(Fault::Partition, 0, 10), (Fault::Kill, 20, 25)];

/// What the writer did: the service and whether the command was acknowledged.
#[derive(Debug)]
struct Op {
    name: String,
    export: bool,
    ok: bool,
}

/// RSS (KiB) and open files of a process, from /proc.
fn usage(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

/// The relative change of the median of the last quarter of `values` against
/// the median of the first.
fn drift(values: &[u64]) -> f64 {
    let quarter = (values.len() / 4).max(1);
    let median = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v[v.len() / 2] as f64
    };
    let first = median(&values[..quarter]);
    let last = median(&values[values.len() - quarter..]);
    (last - first) / first.max(1.0)
}

#[test]
#[ignore = "a 30-minute soak; run it by name"]
fn soak_churn_with_steady_traffic() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let secs: u64 = std::env::var("CAUSEWAY_SOAK_SECS").map_or(Ok(1800), |s| s.parse())?;
    let mut fed = Federation::start(&NAMES)?;
    let result = soak(&mut fed, Duration::from_secs(secs));
    if result.is_err() {
        eprintln!("{}", fed.logs());
    }
    result
}

fn soak(fed: &mut Federation, length: Duration) -> Result<()> {
    fed.wait_converged(CONVERGE)?;
    fed.wait_voters(3, CONVERGE)?;
    let url = fed.url("west", "echo.demo.svc.clusterset.local")?;
    let client = Client::start(&fed.cluster("west").ns, &url, REQUEST_TIMEOUT);
    let started = client.now();
    let mut windows: Vec<(Duration, Duration)> = Vec::new();
    let mut ops: Vec<Op> = Vec::new();
    let mut samples: Vec<[(u64, u64); 2]> = Vec::new();
    let mut live: std::collections::VecDeque<String> = Default::default();
    let (mut next_write, mut next_sample) = (Instant::now(), Instant::now());
    let begun = Instant::now();
    let mut fault_open: Option<(Fault, Duration)> = None;
    while begun.elapsed() < length {
        let in_round = begun.elapsed().as_secs() % ROUND.as_secs();
        step_faults(fed, in_round, client.now(), &mut fault_open, &mut windows)?;
        if Instant::now() >= next_write {
            next_write += WRITE_EVERY;
            write_once(fed, &mut ops, &mut live)?;
        }
        if Instant::now() >= next_sample {
            next_sample += SAMPLE_EVERY;
            let [west, east] = ["west", "east"].map(|c| {
                let pid = fed.cluster(c).gateway.pid().unwrap_or_default();
                usage(pid).unwrap_or_default()
            });
            samples.push([west, east]);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Repair whatever is open, then let the client run a while on a whole federation.
    if let Some((fault, since)) = fault_open.take() {
        repair(fed, fault)?;
        windows.push((since, client.now()));
    }
    let quiet_from = client.now();
    fed.wait_for("quiet traffic", CONVERGE, |_| {
        Ok(client.now() > quiet_from + GRACE * 2)
    })?;
    let requests = client.stop();
    report(fed, &requests, &windows, &ops, &samples, started)
}

/// Opens or repairs the fault the round's schedule says, at `in_round` seconds.
fn step_faults(
    fed: &mut Federation,
    in_round: u64,
    now: Duration,
    open: &mut Option<(Fault, Duration)>,
    windows: &mut Vec<(Duration, Duration)>,
) -> Result<()> {
    let due = ROUND_STEPS
        .iter()
        .find(|(_, from, to)| (*from..*to).contains(&in_round))
        .map(|(f, _, _)| *f);
    match (*open, due) {
        (None, Some(fault)) => {
            match fault {
                Fault::Partition => fed.lab.partition("east", &["west", "north"])?,
                Fault::Kill => fed.cluster_mut("north").gateway.kill9()?,
            }
            *open = Some((fault, now));
        }
        (Some((fault, since)), None) => {
            repair(fed, fault)?;
            windows.push((since, now));
            *open = None;
        }
        _ => {}
    }
    Ok(())
}

fn repair(fed: &mut Federation, fault: Fault) -> Result<()> {
    match fault {
        Fault::Partition => fed.lab.heal("east"),
        Fault::Kill => fed.cluster_mut("north").gateway.restart(),
    }
}

/// One write of the writer on west: an export of a new service, or, with
/// [`LIVE`] live, an unexport of the oldest.
fn write_once(
    fed: &Federation,
    ops: &mut Vec<Op>,
    live: &mut std::collections::VecDeque<String>,
) -> Result<()> {
    let ns = &fed.cluster("west").ns;
    let (name, export) = if live.len() >= LIVE {
        (live.pop_front().expect("not empty"), false)
    } else {
        let name = format!("s{}", ops.len());
        live.push_back(name.clone());
        (name, true)
    };
    let service = format!("demo/{name}");
    let (ok, _) = if export {
        let args = ["export", &service, "--port", "9000:18080/http"];
        cli_in(ns, &[&args[..], &["--endpoint", "127.0.0.1"]].concat())?
    } else {
        cli_in(ns, &["unexport", &service])?
    };
    ops.push(Op { name, export, ok });
    Ok(())
}

/// What every member's catalog must hold of the writer's services: those whose
/// every operation was acknowledged, present if the last was an export.
fn expected(ops: &[Op]) -> (BTreeSet<String>, BTreeSet<String>) {
    let unsure: BTreeSet<&str> = ops
        .iter()
        .filter(|o| !o.ok)
        .map(|o| o.name.as_str())
        .collect();
    let mut present = BTreeSet::new();
    let mut absent = BTreeSet::new();
    for op in ops.iter().filter(|o| !unsure.contains(o.name.as_str())) {
        if op.export {
            absent.remove(&op.name);
            present.insert(op.name.clone());
        } else {
            present.remove(&op.name);
            absent.insert(op.name.clone());
        }
    }
    (present, absent)
}

fn report(
    fed: &Federation,
    requests: &[Sample],
    windows: &[(Duration, Duration)],
    ops: &[Op],
    samples: &[[(u64, u64); 2]],
    started: Duration,
) -> Result<()> {
    let in_window = |s: &Sample| {
        windows
            .iter()
            .any(|(from, to)| s.end >= *from && s.start <= *to + GRACE)
    };
    let failed: Vec<&Sample> = requests.iter().filter(|s| !s.ok).collect();
    let outside: Vec<String> = failed
        .iter()
        .filter(|s| s.start >= started && !in_window(s))
        .map(|s| format!("at {:?}: {}", s.start, s.body.trim()))
        .collect();
    let (present, absent) = expected(ops);
    let mut lost = Vec::new();
    fed.wait_for("every acknowledged write everywhere", CONVERGE, |fed| {
        lost.clear();
        for name in NAMES {
            let catalog = fed.registry(name, "get", &[])?;
            let has = exported(&catalog, "west");
            lost.extend(
                present
                    .difference(&has)
                    .map(|w| format!("{name} lacks {w}")),
            );
            lost.extend(
                absent
                    .intersection(&has)
                    .map(|w| format!("{name} still has {w}")),
            );
        }
        Ok(lost.is_empty())
    })
    .map_err(|e| anyhow::anyhow!("{e:#}: {lost:?}"))?;
    let after_warmup = &samples[samples.len() / 5..];
    let series = |i: usize, f: fn(&(u64, u64)) -> u64| -> Vec<u64> {
        after_warmup.iter().map(|s| f(&s[i])).collect()
    };
    let mut drifts = Vec::new();
    for (i, name) in ["west", "east"].iter().enumerate() {
        let rss = series(i, |s| s.0);
        let fds = series(i, |s| s.1);
        drifts.push((format!("{name} rss"), drift(&rss), rss));
        drifts.push((format!("{name} fds"), drift(&fds), fds));
    }
    let acknowledged = ops.iter().filter(|o| o.ok).count();
    eprintln!(
        "SUMMARY soak: faults={} (partitions of east, kill -9 and restart of north) \
         requests={} failed={} failed_outside_fault_windows={} writes={} acknowledged={} \
         lost=0 drift={:?}",
        windows.len(),
        requests.len(),
        failed.len(),
        outside.len(),
        ops.len(),
        acknowledged,
        drifts
            .iter()
            .map(|(what, d, v)| format!(
                "{what} {:+.1}% ({}..{})",
                d * 100.0,
                v.iter().min().unwrap_or(&0),
                v.iter().max().unwrap_or(&0)
            ))
            .collect::<Vec<_>>()
    );
    ensure!(
        outside.is_empty(),
        "requests failed outside fault windows: {outside:?}"
    );
    for (what, d, _) in &drifts {
        if d.abs() > MAX_DRIFT {
            bail!("{what} drifted {:+.1}% after warm-up", d * 100.0);
        }
    }
    Ok(())
}
