//! Seeded randomized chaos: kills (`kill -9`), restarts, partitions and heals of real
//! gateways in network namespaces, with a writer recording every acknowledged export
//! and registry watch streams checked for order. Replay a run with the seed it
//! prints: `CAUSEWAY_E2E_SEED=<seed>`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use causeway_e2e::{Federation, can_run, check_watch, exported};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

const STEPS: usize = 50;
const CONVERGE: Duration = Duration::from_secs(90);
/// The cluster the writer exports through. It is partitioned like the others but
/// never killed, so that every refusal the writer sees comes from the registry.
const WRITER: &str = "west";
/// Clusters that may be killed.
const KILLABLE: [&str; 2] = ["east", "north"];
const NAMES: [&str; 3] = ["west", "east", "north"];

/// The faults injected, by kind.
#[derive(Debug, Default)]
struct Faults {
    kills: usize,
    restarts: usize,
    partitions: usize,
    heals: usize,
}

#[test]
fn randomized_kills_and_partitions_lose_no_acknowledged_write() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let seed: u64 = match std::env::var("CAUSEWAY_E2E_SEED") {
        Ok(s) => s.parse().context("CAUSEWAY_E2E_SEED must be a number")?,
        Err(_) => rand::random(),
    };
    eprintln!("chaos seed: {seed} (replay with CAUSEWAY_E2E_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fed = Federation::start(&NAMES)?;
    let result = chaos(&mut fed, &mut rng, seed);
    if result.is_err() {
        eprintln!("chaos seed: {seed}\n{}", fed.logs());
    }
    result
}

fn chaos(fed: &mut Federation, rng: &mut StdRng, seed: u64) -> Result<()> {
    fed.wait_converged(CONVERGE)?;
    // Faults are survivable from here on: every member is a voter.
    fed.wait_voters(3, CONVERGE)?;
    // Watchers on the writer's member (never killed) and on a member that is.
    let mut watchers = vec![
        (WRITER, fed.watch(WRITER)?),
        (KILLABLE[0], fed.watch(KILLABLE[0])?),
    ];
    let mut faults = Faults::default();
    let mut down: BTreeSet<&str> = BTreeSet::new();
    let mut cut: BTreeSet<&str> = BTreeSet::new();
    let mut acknowledged: Vec<String> = Vec::new();
    let mut refused = 0usize;
    let mut log = Vec::new();
    let started = Instant::now();
    for step in 0..STEPS {
        let action = rng.random_range(0..4);
        let what = match action {
            0 => {
                let c = KILLABLE[rng.random_range(0..KILLABLE.len())];
                if down.insert(c) {
                    fed.cluster_mut(c).gateway.kill9()?;
                    faults.kills += 1;
                    format!("kill -9 {c}")
                } else {
                    fed.cluster_mut(c).gateway.restart()?;
                    down.remove(c);
                    faults.restarts += 1;
                    format!("restart {c}")
                }
            }
            1 => match down.iter().next().copied() {
                Some(c) => {
                    fed.cluster_mut(c).gateway.restart()?;
                    down.remove(c);
                    faults.restarts += 1;
                    format!("restart {c}")
                }
                None => "nothing to restart".to_owned(),
            },
            2 => {
                let c = NAMES[rng.random_range(0..NAMES.len())];
                let others: Vec<&str> = NAMES.iter().copied().filter(|n| *n != c).collect();
                if cut.insert(c) {
                    fed.lab.partition(c, &others)?;
                    faults.partitions += 1;
                    format!("partition {c}")
                } else {
                    format!("{c} already partitioned")
                }
            }
            _ => match cut.iter().next().copied() {
                Some(c) => {
                    fed.lab.heal(c)?;
                    cut.remove(c);
                    faults.heals += 1;
                    format!("heal {c}")
                }
                None => "nothing to heal".to_owned(),
            },
        };
        // The writer: one export per step, recorded when acknowledged.
        let name = format!("w{step}");
        let (ok, out) = fed.cli(
            WRITER,
            &[
                "export",
                &format!("demo/{name}"),
                "--port",
                &format!("{}:18080/http", 20000 + step),
                "--endpoint",
                "127.0.0.1",
            ],
        )?;
        if ok {
            acknowledged.push(name);
        } else {
            refused += 1;
            eprintln!("step {step}: export refused: {}", out.trim());
        }
        let dwell = Duration::from_millis(rng.random_range(200..1200));
        log.push(format!("{step}: {what} (dwell {dwell:?})"));
        eprintln!("step {step}: {what}");
        // Time under this fault before the next step: part of the schedule.
        std::thread::sleep(dwell);
    }
    let chaos_time = started.elapsed();
    // Heal everything and bring every gateway back.
    for c in std::mem::take(&mut cut) {
        fed.lab.heal(c)?;
        faults.heals += 1;
    }
    for c in std::mem::take(&mut down) {
        fed.cluster_mut(c).gateway.restart()?;
        faults.restarts += 1;
    }
    // Every acknowledged write is in every member's own catalog, and all members are
    // at one revision.
    let expected: BTreeSet<String> = acknowledged.iter().cloned().collect();
    let mut missing = BTreeSet::new();
    let mut revision = 0;
    let converged = fed
        .wait_for(
            "every member holds every acknowledged write",
            CONVERGE,
            |fed| {
                missing.clear();
                let mut revisions = BTreeSet::new();
                for name in NAMES {
                    let catalog = fed.registry(name, "get", &[])?;
                    revisions.insert(catalog["revision"].as_u64().context("revision")?);
                    for w in expected.difference(&exported(&catalog, WRITER)) {
                        missing.insert(format!("{name}:{w}"));
                    }
                }
                revision = revisions.last().copied().unwrap_or_default();
                Ok(missing.is_empty() && revisions.len() == 1)
            },
        )
        .with_context(|| format!("lost or not converged: {missing:?}"))?;
    // Every gateway imports the writer's exports, and traffic works on every pair.
    fed.wait_for("traffic on every pair", CONVERGE, |fed| {
        for from in NAMES {
            for to in NAMES.iter().filter(|t| **t != from) {
                let body = fed.request(from, &Federation::pinned(to))?;
                if !body.contains(&format!("hello from {to}")) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    })?;
    let imported = fed.status("north")?["imports"].to_string();
    let not_imported: Vec<&String> = acknowledged
        .iter()
        .filter(|w| !imported.contains(&format!("\"{w}\"")))
        .collect();
    assert!(
        not_imported.is_empty(),
        "north does not import {not_imported:?}"
    );
    // The watch streams reached the final revision, in order and without gaps.
    let mut watched = Vec::new();
    for (member, watcher) in &watchers {
        fed.wait_for("watch stream catches up", CONVERGE, |_| {
            Ok(check_watch(&watcher.log())?.last >= revision)
        })
        .with_context(|| format!("watch on {member}"))?;
        let summary = check_watch(&watcher.log()).with_context(|| format!("watch on {member}"))?;
        watched.push(format!(
            "{member}: {} changes, {} snapshots, {} reconnects, last {}",
            summary.changes, summary.snapshots, summary.reconnects, summary.last
        ));
    }
    for (_, watcher) in &mut watchers {
        watcher.kill9()?;
    }
    if !missing.is_empty() {
        bail!("acknowledged writes lost: {missing:?}");
    }
    eprintln!("schedule:\n  {}", log.join("\n  "));
    eprintln!(
        "SUMMARY chaos: seed={seed} steps={STEPS} in {chaos_time:?} faults: kills={} restarts={} \
         partitions={} heals={} writes_acknowledged={} writes_refused={refused} writes_lost=0 \
         final_revision={revision} convergence_after_heal={converged:?} watch: [{}]",
        faults.kills,
        faults.restarts,
        faults.partitions,
        faults.heals,
        acknowledged.len(),
        watched.join("; "),
    );
    Ok(())
}
