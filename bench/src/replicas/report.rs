//! The tables: what was pinned where, throughput and spread per replica count, and
//! where the CPU went.

use std::fmt::Write as _;

use super::deployment::Deployment;
use super::usage::CpuUse;
use super::{ClientLoad, Measurement, ReplicasBenchArgs};

/// Prints which CPU each replica is pinned to, and what is not pinned.
pub(super) fn print_setup(deployments: &[Deployment], cpus: &[usize]) {
    let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
    println!(
        "\nCPUs this run may use: {} ({})",
        cpus.len(),
        list.join(", ")
    );
    for d in deployments {
        let pins: Vec<String> = d
            .pins()
            .iter()
            .map(|(name, cpu)| format!("{name} → CPU {cpu}"))
            .collect();
        println!("{} replica(s): {}", d.replicas(), pins.join(", "));
    }
    println!(
        "not pinned (any of CPUs {}): west's gateway, the client and the sink (threads of \
         this process), the echo services; they share these CPUs with the replicas",
        list.join(", ")
    );
}

/// The measurements of one (replica count, stream count), over the rounds.
struct Cell<'a> {
    replicas: usize,
    load: ClientLoad,
    runs: Vec<&'a Measurement>,
}

impl Cell<'_> {
    fn median_gbps(&self) -> f64 {
        let mut v: Vec<f64> = self.runs.iter().map(|m| m.gbps).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or_default()
    }

    /// Per replica, the sum over the rounds of `f`.
    fn per_replica(&self, f: fn(&Measurement) -> &Vec<f64>) -> Vec<f64> {
        let mut sums = vec![0.0; self.replicas];
        for m in &self.runs {
            for (sum, v) in sums.iter_mut().zip(f(m)) {
                *sum += v;
            }
        }
        sums
    }

    /// CPU use summed over the rounds.
    fn cpu(&self) -> CpuUse {
        let mut total = CpuUse::default();
        for m in &self.runs {
            total.add(&m.cpu);
        }
        total
    }
}

fn cells<'a>(args: &ReplicasBenchArgs, measurements: &'a [Measurement]) -> Vec<Cell<'a>> {
    let mut cells = Vec::new();
    for &replicas in &args.replicas {
        for load in super::loads(args) {
            let runs = measurements
                .iter()
                .filter(|m| m.replicas == replicas && m.load == load)
                .collect();
            cells.push(Cell {
                replicas,
                load,
                runs,
            });
        }
    }
    // Read by load, then by replica count.
    cells.sort_by_key(|c| (c.load.open_gap, c.load.streams, c.replicas));
    cells
}

/// How a load's streams were opened.
fn opened(load: ClientLoad) -> String {
    if load.open_gap.is_zero() {
        "at once".to_owned()
    } else {
        format!("{} ms apart", load.open_gap.as_millis())
    }
}

/// Largest over smallest; 1 for a single value, infinite when one is zero.
fn max_over_min(v: &[f64]) -> f64 {
    let max = v.iter().copied().fold(f64::MIN, f64::max);
    let min = v.iter().copied().fold(f64::MAX, f64::min);
    if min > 0.0 { max / min } else { f64::INFINITY }
}

/// Coefficient of variation: the population standard deviation over the mean.
fn cv(v: &[f64]) -> f64 {
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    if mean == 0.0 {
        return 0.0;
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    var.sqrt() / mean
}

fn joined(v: &[f64], f: impl Fn(f64) -> String) -> String {
    v.iter().map(|&x| f(x)).collect::<Vec<_>>().join(" / ")
}

/// Prints the throughput and spread table, then the CPU table.
pub(super) fn print_results(args: &ReplicasBenchArgs, measurements: &[Measurement]) {
    let cells = cells(args, measurements);
    let rounds = args.repeat.max(1);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n| streams | opened | replicas | Gbit/s (median of {rounds}) | rounds, Gbit/s | vs 1 replica \
         | streams per replica (all rounds) | bytes per replica | bytes max/min | bytes CV |\n\
         |---|---|---|---|---|---|---|---|---|---|"
    );
    for cell in &cells {
        let base = cells
            .iter()
            .find(|c| c.replicas == 1 && c.load == cell.load)
            .map(Cell::median_gbps);
        let ratio = base.map_or_else(
            || "–".to_owned(),
            |b| format!("{:.2}×", cell.median_gbps() / b),
        );
        let each: Vec<f64> = cell.runs.iter().map(|m| m.gbps).collect();
        let streams = cell.per_replica(|m| &m.replica_streams);
        let bytes = cell.per_replica(|m| &m.replica_bytes);
        let all: f64 = bytes.iter().sum();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {} | {ratio} | {} | {} % | {:.2} | {:.3} |",
            cell.load.streams,
            opened(cell.load),
            cell.replicas,
            cell.median_gbps(),
            joined(&each, |g| format!("{g:.2}")),
            joined(&streams, |s| format!("{s:.0}")),
            joined(&bytes, |b| format!("{:.0}", 100.0 * b / all.max(1.0))),
            max_over_min(&bytes),
            cv(&bytes),
        );
    }
    out.push_str(&cpu_table(&cells));
    println!("{out}");
}

/// Cores used (CPU seconds over wall seconds) per group, and the machine's busy and
/// soft-interrupt shares, over every round of each cell.
fn cpu_table(cells: &[Cell<'_>]) -> String {
    let most = cells.iter().map(|c| c.replicas).max().unwrap_or(1);
    let names: Vec<&str> = super::REPLICAS[..most].to_vec();
    let mut out = format!(
        "\nCPU, in cores (CPU seconds / wall seconds, warm-up second included), over all rounds:\n\n\
         | streams | opened | replicas | machine busy | softirq | client+sink | west | {} | others |\n\
         |---|---|---|---|---|---|---|{}---|\n",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for cell in cells {
        let cpu = cell.cpu();
        let cores = |name: &str| {
            let group = cpu.groups.iter().find(|(n, _)| n == name);
            group.map_or_else(|| "–".to_owned(), |(_, s)| format!("{:.2}", s / cpu.wall))
        };
        let m = cpu.machine;
        let replicas: Vec<String> = names.iter().map(|n| cores(n)).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} % | {:.0} % | {} | {} | {} | {} |",
            cell.load.streams,
            opened(cell.load),
            cell.replicas,
            100.0 * m.busy / m.total.max(1.0),
            100.0 * m.softirq / m.total.max(1.0),
            cores("client+sink"),
            cores("west"),
            replicas.join(" | "),
            cores("others"),
        );
    }
    out
}
