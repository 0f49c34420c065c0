//! Gateway replicas: cluster east runs three (`east.a`, `east.b`, `east.c`, each a
//! host of its own), and west imports east's echo service under steady load of new
//! connections. A replica's crash costs at most the streams it carried; a rolling
//! restart with drain costs nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use causeway_e2e::{Federation, Load, Sample, can_run};

const NAMES: [&str; 4] = ["west", "east.a", "east.b", "east.c"];
const REPLICAS: [&str; 3] = ["east.a", "east.b", "east.c"];
const CONVERGE: Duration = Duration::from_secs(90);
/// New connections a second the load aims at; the floor is 200.
const RATE: u32 = 300;
/// Each thread makes one request at a time, so the rate holds while answers take less
/// than THREADS / RATE (0.85 s): on a machine loaded by more than the tests (a build
/// beside `stress-ng`), answers took 0.55 s, and 64 threads made only 115/s.
const THREADS: u32 = 256;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The tunnel's hedge delay (`hedge_delay_ms`, default 100): an open to a replica
/// that died is tried on a sibling after this.
const HEDGE: Duration = Duration::from_millis(100);

/// Starts the federation and waits until west lists east's three replicas and
/// listens on the import of east's echo service; returns that import's address.
fn start() -> Result<(Federation, SocketAddr)> {
    start_with(|_, config| config)
}

/// [`start`], with each gateway's config text passed through `edit`.
fn start_with(edit: impl Fn(&str, String) -> String) -> Result<(Federation, SocketAddr)> {
    let fed = Federation::start_with(&NAMES, edit)?;
    let listed = |fed: &Federation| -> Result<bool> {
        let rows = east_rows(fed)?;
        Ok(rows.len() == 3 && fed.dig("west", &Federation::pinned("east"))?.len() == 1)
    };
    fed.wait_for("west lists east's 3 replicas", CONVERGE, listed)
        .inspect_err(|_| eprintln!("{}", fed.logs()))?;
    let url = fed.url("west", &Federation::pinned("east"))?;
    let authority = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    Ok((fed, authority.parse().context("import address")?))
}

/// West's status rows of east's replicas: replica name → link.
fn east_rows(fed: &Federation) -> Result<BTreeMap<String, String>> {
    let status = fed.status("west")?;
    let peers = status["peers"].as_array().context("peers")?;
    Ok(peers
        .iter()
        .filter(|p| p["cluster"] == "east")
        .filter_map(|p| {
            let replica = p["replica"].as_str()?.to_owned();
            Some((replica, p["link"].as_str().unwrap_or_default().to_owned()))
        })
        .collect())
}

/// [`start`], with west's load on east's echo service running and spread over
/// every replica.
fn start_loaded() -> Result<(Federation, Load)> {
    let (fed, target) = start()?;
    let west = &fed.cluster("west").ns;
    let load = Load::start(west, target, RATE, THREADS, REQUEST_TIMEOUT)?;
    warm_up(&fed, &load)?;
    Ok((fed, load))
}

/// How many requests each replica answered (`hello from east.b`).
fn served_by(samples: &[Sample]) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for s in samples.iter().filter(|s| s.ok) {
        let who = s.body.trim().rsplit(' ').next().unwrap_or_default();
        *by.entry(who.to_owned()).or_default() += 1;
    }
    by
}

/// Runs the load until every replica has answered, so the crash or restart comes
/// with traffic spread over all three.
fn warm_up(fed: &Federation, load: &Load) -> Result<()> {
    fed.wait_for("every replica serves", CONVERGE, |_| {
        let by = served_by(&load.samples());
        Ok(REPLICAS
            .iter()
            .all(|r| by.get(*r).copied().unwrap_or(0) >= 20))
    })?;
    Ok(())
}

/// Requests a second over the run.
fn rate(samples: &[Sample]) -> f64 {
    let span = samples.last().map_or(0.0, |s| s.start.as_secs_f64())
        - samples.first().map_or(0.0, |s| s.start.as_secs_f64());
    samples.len() as f64 / span.max(1e-3)
}

fn failures(samples: &[Sample]) -> Vec<&Sample> {
    samples.iter().filter(|s| !s.ok).collect()
}

#[test]
fn a_killed_replica_costs_only_the_streams_it_carried() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let (mut fed, load) = start_loaded()?;
    let checked = replica_checks(&fed, "east.a")?;
    for line in [
        "✓ replicas reachable",
        "3 replicas answer",
        "✓ replicas at one catalog revision",
        "✓ replicas share import pools",
    ] {
        ensure!(
            checked.contains(line),
            "before the kill, no {line:?}:\n{checked}"
        );
    }
    let killed_at = load.now();
    fed.cluster_mut("east.b").gateway.kill9()?;
    fed.wait_for("west takes east.b out of rotation", CONVERGE, |fed| {
        Ok(east_rows(fed)?.get("b").is_some_and(|link| link != "up"))
    })?;
    let checked = replica_checks(&fed, "east.a")?;
    ensure!(
        checked.contains("✗ replicas reachable") && checked.contains("unreachable: east/b"),
        "after the kill, check does not name east/b:\n{checked}"
    );
    // Serve on for as long again as the detection took, or at least 3 s.
    let until = killed_at + (load.now() - killed_at).max(Duration::from_secs(3)) * 2;
    fed.wait_for("load after the kill", CONVERGE, |_| Ok(load.now() >= until))?;
    let samples = load.stop();
    let in_flight = samples
        .iter()
        .filter(|s| s.start <= killed_at && s.end >= killed_at)
        .count();
    let failed = failures(&samples);
    let late: Vec<&&Sample> = failed
        .iter()
        .filter(|s| s.start > killed_at + HEDGE)
        .collect();
    let after: Vec<Sample> = samples
        .iter()
        .filter(|s| s.start > killed_at)
        .cloned()
        .collect();
    eprintln!(
        "SUMMARY replica kill: {} requests at {:.0}/s, {} failed ({} in flight at the kill), \
         0 allowed after kill+{HEDGE:?}: {}; served after the kill {:?}",
        samples.len(),
        rate(&samples),
        failed.len(),
        in_flight,
        late.len(),
        served_by(&after)
    );
    if let Some(first) = late.first() {
        bail!(
            "{} new connections failed after the hedge delay, first: {first:?}",
            late.len()
        );
    }
    ensure!(
        failed.len() <= in_flight,
        "{} requests failed, more than the {in_flight} in flight at the kill",
        failed.len()
    );
    ensure!(
        !served_by(&after).contains_key("east.b"),
        "the dead replica served"
    );
    // Checked after the failures, which say more when both go wrong.
    ensure!(
        rate(&samples) >= 200.0,
        "the load made {:.0} connections/s",
        rate(&samples)
    );
    // The operator takes the dead replica off the list; east stays.
    let (ok, text) = fed.cli("west", &["unlink", "east/zz"])?;
    ensure!(
        !ok && text.contains("does not exist"),
        "unknown replica: {text}"
    );
    let (ok, text) = fed.cli("west", &["unlink", "east/b"])?;
    ensure!(ok, "unlink east/b: {text}");
    fed.wait_for("east.b off west's list", CONVERGE, |fed| {
        Ok(east_rows(fed)?.keys().map(String::as_str).eq(["a", "c"]))
    })?;
    Ok(())
}

#[test]
fn a_rolling_restart_with_drain_fails_no_request() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let (mut fed, load) = start_loaded()?;
    for replica in REPLICAS {
        let name = replica.rsplit('.').next().unwrap_or_default().to_owned();
        fed.cluster_mut(replica).gateway.terminate()?;
        fed.cluster_mut(replica).gateway.restart()?;
        let back = load.samples().len();
        fed.wait_for(&format!("{replica} serves again"), CONVERGE, |fed| {
            let up = east_rows(fed)?.get(&name).is_some_and(|link| link == "up");
            let served = served_by(&load.samples()[back..]);
            Ok(up && served.get(replica).copied().unwrap_or(0) > 0)
        })
        .inspect_err(|_| eprintln!("{}", fed.logs()))?;
    }
    let samples = load.stop();
    let failed = failures(&samples);
    eprintln!(
        "SUMMARY rolling restart: {} requests at {:.0}/s, {} failed, served {:?}",
        samples.len(),
        rate(&samples),
        failed.len(),
        served_by(&samples)
    );
    if let Some(first) = failed.first() {
        eprintln!("{}", fed.logs());
        bail!("{} requests failed, first: {first:?}", failed.len());
    }
    ensure!(
        rate(&samples) >= 200.0,
        "the load made {:.0} connections/s",
        rate(&samples)
    );
    Ok(())
}

/// The lines of `causeway check` at `at` about the cluster's replicas, with hints.
fn replica_checks(fed: &Federation, at: &str) -> Result<String> {
    let (_, text) = fed.cli(at, &["check"])?;
    let mut lines = text.lines().peekable();
    let mut kept = Vec::new();
    while let Some(line) = lines.next() {
        if line.contains(" replicas ") {
            kept.push(line);
            if let Some(hint) = lines.next_if(|l| l.trim_start().starts_with("hint:")) {
                kept.push(hint);
            }
        }
    }
    Ok(kept.join("\n"))
}

/// West's view of the registry's voters: member names (`west`, `east/b`).
fn voters(fed: &Federation) -> Result<Vec<String>> {
    let status = fed.status("west")?;
    let members = status["registry"]["members"]
        .as_array()
        .context("members")?;
    Ok(members
        .iter()
        .filter(|m| m["voter"] == true)
        .filter_map(|m| m["cluster"].as_str().map(str::to_owned))
        .collect())
}

#[test]
fn a_killed_voter_replicas_seat_goes_to_a_sibling_and_writes_continue() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let (mut fed, _) = start()?;
    // Seats go to clusters without one first, and a second east replica votes only
    // to make three voters; the third east replica stays a learner.
    fed.wait_voters(3, CONVERGE)?;
    let before = voters(&fed)?;
    let east: Vec<&String> = before.iter().filter(|v| v.starts_with("east/")).collect();
    ensure!(east.len() == 2, "voters {before:?}");
    let victim = east[0].replace('/', ".");
    fed.cluster_mut(&victim).gateway.kill9()?;
    let killed = std::time::Instant::now();
    let writer = causeway_e2e::Writer::default();
    let ns = fed.cluster("west").ns.clone();
    let writes = std::thread::scope(|scope| -> Result<Vec<causeway_e2e::Write>> {
        let running = scope.spawn(|| writer.run(&ns));
        let handed = fed.wait_for("the seat handed to east's learner", CONVERGE, |fed| {
            let now = voters(fed)?;
            Ok(now.len() == 3 && !now.contains(&victim.replace('.', "/")))
        });
        writer.wait_acknowledged(5, CONVERGE)?;
        writer.stop();
        let _ = running.join();
        handed?;
        Ok(writer.finished())
    })?;
    let after = voters(&fed)?;
    let slowest = writes.iter().map(|w| w.took).max().unwrap_or_default();
    let failed = writes.iter().filter(|w| !w.ok).count();
    eprintln!(
        "SUMMARY voter replica kill: voters {before:?} → {after:?} {:.1}s after the kill; \
         {} writes through west, {failed} refused, slowest {slowest:?}",
        killed.elapsed().as_secs_f64(),
        writes.len()
    );
    ensure!(
        failed == 0,
        "{failed} writes refused while 2 of 3 voters lived"
    );
    Ok(())
}

/// Which east replicas answered `name` in `tries` requests from west.
fn answered_by(fed: &Federation, name: &str, tries: usize) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for _ in 0..tries {
        if let Ok(body) = fed.request("west", name) {
            let who = body
                .trim()
                .rsplit(' ')
                .next()
                .unwrap_or_default()
                .to_owned();
            *by.entry(who).or_default() += 1;
        }
    }
    by
}

/// Whether `replica`'s status lists the export `demo/<name>` from the CLI.
fn serves_runtime(fed: &Federation, replica: &str, name: &str) -> Result<bool> {
    let status = fed.status(replica)?;
    let exports = status["exports"].as_array().context("exports")?;
    Ok(exports
        .iter()
        .any(|e| e["name"] == name && e["source"] == "cli"))
}

#[test]
fn a_runtime_export_is_the_clusters_through_any_replica() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let (mut fed, _) = start()?;
    let name = "extra.demo.svc.clusterset.local";
    let args = ["export", "demo/extra", "--port", "8080:18080/http"];
    let (ok, text) = fed.cli(
        "east.a",
        &[&args[..], &["--endpoint", "127.0.0.1"]].concat(),
    )?;
    ensure!(ok, "export at east.a: {text}");
    // Each replica serves it from its own host: its echo names the replica.
    fed.wait_for(
        "every east replica serves the runtime export",
        CONVERGE,
        |fed| {
            let by = answered_by(fed, name, 12);
            Ok(REPLICAS.iter().all(|r| by.contains_key(*r)))
        },
    )
    .inspect_err(|_| eprintln!("{}", fed.logs()))?;
    for replica in REPLICAS {
        ensure!(
            serves_runtime(&fed, replica, "extra")?,
            "{replica} lists it"
        );
    }

    // The replica it was made through dies: the cluster's export stays served.
    fed.cluster_mut("east.a").gateway.kill9()?;
    fed.wait_for("east.b and east.c serve it", CONVERGE, |fed| {
        let by = answered_by(fed, name, 8);
        Ok(by.contains_key("east.b") && by.contains_key("east.c") && !by.contains_key("east.a"))
    })?;

    // Unexported through another replica: gone from every replica and from west.
    let (ok, text) = fed.cli("east.b", &["unexport", "demo/extra"])?;
    ensure!(ok, "unexport at east.b: {text}");
    fed.wait_for("west no longer resolves it", CONVERGE, |fed| {
        Ok(fed.dig("west", name)?.is_empty())
    })?;
    ensure!(
        !serves_runtime(&fed, "east.c", "extra")?,
        "east.c dropped it"
    );

    // East.a comes back with its copy saved before the unexport: the record wins.
    fed.cluster_mut("east.a").gateway.restart()?;
    fed.wait_for("west lists east.a again", CONVERGE, |fed| {
        Ok(east_rows(fed)?.get("a").is_some_and(|link| link == "up"))
    })?;
    fed.wait_for("east.a follows the record", CONVERGE, |fed| {
        Ok(!serves_runtime(fed, "east.a", "extra")?)
    })?;
    ensure!(fed.dig("west", name)?.is_empty(), "nothing put it back");
    Ok(())
}

/// How many registry members `name`'s status lists.
fn members(fed: &Federation, name: &str) -> Result<usize> {
    let status = fed.status(name)?;
    let members = status["registry"]["members"]
        .as_array()
        .context("members")?;
    Ok(members.len())
}

#[test]
fn a_replica_gone_past_the_grace_leaves_the_registry_and_rejoins_when_back() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    // The shortest grace the config allows: 10 election timeouts.
    let (mut fed, _) = start_with(|_, config| {
        config.replace(
            "election_timeout = \"500ms\"\n",
            "election_timeout = \"500ms\"\nreplica_grace = \"5s\"\n",
        )
    })?;
    // Status shows the member's last polled view: wait for every member in it.
    let all = NAMES.len();
    fed.wait_for("east.a lists every member", CONVERGE, |fed| {
        Ok(members(fed, "east.a")? == all)
    })?;
    fed.cluster_mut("east.b").gateway.kill9()?;
    fed.wait_for("east.b off east's list", CONVERGE, |fed| {
        Ok(east_rows(fed)?.keys().map(String::as_str).eq(["a", "c"]))
    })
    .inspect_err(|_| eprintln!("{}", fed.logs()))?;
    fed.wait_for("east.b's member removed", CONVERGE, |fed| {
        Ok(members(fed, "east.a")? == all - 1)
    })
    .inspect_err(|_| eprintln!("{}", fed.logs()))?;
    // Back: it knows no leader, asks the members it knows to add it, is added,
    // catches up, finds itself off the list and registers again.
    fed.cluster_mut("east.b").gateway.restart()?;
    fed.wait_for("east.b a member again", CONVERGE, |fed| {
        Ok(members(fed, "east.a")? == all)
    })
    .inspect_err(|_| eprintln!("{}", fed.logs()))?;
    fed.wait_for("west sends east.b requests again", CONVERGE, |fed| {
        Ok(east_rows(fed)?.contains_key("b")
            && answered_by(fed, &Federation::pinned("east"), 6).contains_key("east.b"))
    })
    .inspect_err(|_| eprintln!("{}", fed.logs()))?;
    Ok(())
}
