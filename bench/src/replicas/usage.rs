//! Where the CPU went during a measurement: CPU seconds per group of processes
//! (`/proc/<pid>/stat`) and the machine's busy and soft-interrupt time
//! (`/proc/stat`, which also counts kernel work no process is charged for).

use std::time::Instant;

use anyhow::{Context, Result};
use nix::sched::sched_getaffinity;
use nix::unistd::Pid;

use crate::tunnel::cpu_seconds;

/// Named groups of processes whose CPU time is read together.
pub(super) type Groups = Vec<(String, Vec<u32>)>;

/// The CPUs this process may run on, in order.
pub(super) fn allowed_cpus() -> Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0)).context("this process's CPUs")?;
    let cpus: Vec<usize> = (0..nix::sched::CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect();
    anyhow::ensure!(!cpus.is_empty(), "no CPU to run on");
    Ok(cpus)
}

/// CPU time of every CPU, in clock ticks, from the first line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct MachineTicks {
    /// All time, busy or not.
    pub(super) total: f64,
    /// Time not idle nor waiting for I/O.
    pub(super) busy: f64,
    /// Time in soft interrupts (much of the network stack's work).
    pub(super) softirq: f64,
}

impl MachineTicks {
    fn now() -> Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let line = stat.lines().next().context("empty /proc/stat")?;
        // cpu user nice system idle iowait irq softirq steal (guest time is in user).
        let ticks: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .context("/proc/stat cpu line")?;
        anyhow::ensure!(ticks.len() == 8, "short /proc/stat cpu line: {line}");
        let total: f64 = ticks.iter().sum();
        Ok(Self {
            total,
            busy: total - ticks[3] - ticks[4],
            softirq: ticks[6],
        })
    }

    /// Each field of `self` and `other` combined by `f`.
    fn zip(self, other: Self, f: fn(f64, f64) -> f64) -> Self {
        Self {
            total: f(self.total, other.total),
            busy: f(self.busy, other.busy),
            softirq: f(self.softirq, other.softirq),
        }
    }
}

/// CPU time read at one moment.
#[derive(Debug, Clone)]
pub(super) struct CpuReading {
    taken: Instant,
    groups: Vec<(String, f64)>,
    machine: MachineTicks,
}

/// CPU time used between two readings.
#[derive(Debug, Clone, Default)]
pub(super) struct CpuUse {
    /// Seconds of wall-clock time.
    pub(super) wall: f64,
    /// CPU seconds per group, in group order.
    pub(super) groups: Vec<(String, f64)>,
    /// The machine's ticks.
    pub(super) machine: MachineTicks,
}

impl CpuReading {
    /// CPU seconds of each group so far, and the machine's ticks.
    pub(super) fn now(groups: &Groups) -> Result<Self> {
        let taken = Instant::now();
        let groups = groups
            .iter()
            .map(|(name, pids)| Ok((name.clone(), cpu_seconds(pids)?)))
            .collect::<Result<_>>()?;
        Ok(Self {
            taken,
            groups,
            machine: MachineTicks::now()?,
        })
    }

    /// What was used since `before` (a reading of the same groups).
    pub(super) fn since(&self, before: &Self) -> CpuUse {
        let groups = self.groups.iter().zip(&before.groups);
        CpuUse {
            wall: (self.taken - before.taken).as_secs_f64(),
            groups: groups.map(|((n, a), (_, b))| (n.clone(), a - b)).collect(),
            machine: self.machine.zip(before.machine, |a, b| a - b),
        }
    }
}

impl CpuUse {
    /// Adds `other`, a use of the same groups (summing rounds).
    pub(super) fn add(&mut self, other: &Self) {
        self.wall += other.wall;
        self.machine = self.machine.zip(other.machine, |a, b| a + b);
        if self.groups.is_empty() {
            self.groups = other.groups.iter().map(|(n, _)| (n.clone(), 0.0)).collect();
        }
        for ((_, sum), (_, s)) in self.groups.iter_mut().zip(&other.groups) {
            *sum += s;
        }
    }
}
