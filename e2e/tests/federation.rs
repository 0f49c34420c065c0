//! Real gateway processes in network namespaces: the failure rules of DESIGN.md,
//! shown with kills (`kill -9`) and partitions (`nft` drop rules).
//!
//! Needs root, `ip`, `nft`, `dig` and `curl`; outside CI a missing one skips the test
//! with the reason printed. Each test builds its own lab of namespaces.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use causeway_e2e::{Client, Federation, Sample, Writer, can_run, percentile};

const CONVERGE: Duration = Duration::from_secs(60);
/// The registry's gRPC port in the test configs.
const REGISTRY_PORT: u16 = 15444;
/// How long one request of a continuous client may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// `[registry] replica_grace` in the partition test: 10 election timeouts.
const GRACE: Duration = Duration::from_secs(5);
/// How long a new leader may take: twenty of the configs' 500 ms election
/// timeouts, for a machine whose cores are busy.
const ELECTION_WAIT: Duration = Duration::from_secs(10);

/// Whether `cluster` imports a service called `service`, per its status.
fn imports(fed: &Federation, cluster: &str, service: &str) -> Result<bool> {
    Ok(import_names(fed, cluster)?.contains(service))
}

/// The names of the services `cluster` imports, per its status.
fn import_names(fed: &Federation, cluster: &str) -> Result<std::collections::BTreeSet<String>> {
    Ok(fed.status(cluster)?["imports"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// `causeway export demo/<name>` on `cluster` with a port of its own; its exit status.
fn export(fed: &Federation, cluster: &str, name: &str, port: u16) -> Result<()> {
    let (ok, out) = fed.cli(
        cluster,
        &[
            "export",
            &format!("demo/{name}"),
            "--port",
            &format!("{port}:18080/http"),
            "--endpoint",
            "127.0.0.1",
        ],
    )?;
    if !ok {
        bail!("export demo/{name} on {cluster}: {out}");
    }
    Ok(())
}

/// Failed samples, summarised for a failure message.
fn failures(samples: &[Sample]) -> Vec<String> {
    samples
        .iter()
        .filter(|s| !s.ok)
        .map(|s| format!("at {:?}: {}", s.start, s.body.trim()))
        .collect()
}

fn body_from(body: &str, cluster: &str) -> bool {
    body.contains(&format!("hello from {cluster}"))
}

/// Runs `test`, printing every gateway log when it fails.
fn with_logs(fed: &Federation, test: impl FnOnce(&Federation) -> Result<()>) -> Result<()> {
    let result = test(fed);
    if result.is_err() {
        eprintln!("{}", fed.logs());
    }
    result
}

#[test]
fn three_clusters_resolve_and_carry_traffic_across_every_pair() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let names = ["west", "east", "north"];
    let fed = Federation::start(&names)?;
    with_logs(&fed, |fed| {
        let took = fed.wait_converged(CONVERGE)?;
        eprintln!("SUMMARY happy path: faults=0 converged_in={took:?}");
        for from in names {
            // The service name resolves to this cluster's own import address.
            let all = fed.dig(from, "echo.demo.svc.clusterset.local")?;
            assert_eq!(all.len(), 1, "{from}: {all:?}");
            assert!(all[0].starts_with("127.77."), "{from}: {all:?}");
            for to in names.iter().filter(|t| **t != from) {
                let body = fed.request(from, &Federation::pinned(to))?;
                assert!(body_from(&body, to), "{from} → {to}: {body}");
            }
        }
        // Unknown names in the zone are NXDOMAIN; names outside it are REFUSED.
        let out = fed
            .cluster("west")
            .ns
            .exec("dig", &["@127.0.0.1", "nope.demo.svc.clusterset.local"])?;
        assert!(out.contains("NXDOMAIN"), "{out}");
        let out = fed
            .cluster("west")
            .ns
            .exec("dig", &["@127.0.0.1", "example.com"])?;
        assert!(out.contains("REFUSED"), "{out}");
        // Status shows three alive peers and check passes.
        let status = fed.status("west")?;
        let alive = status["peers"]
            .as_array()
            .context("peers")?
            .iter()
            .filter(|p| p["alive"] == true)
            .count();
        assert_eq!(alive, 2, "{status:#}");
        let (ok, out) = fed.cli("west", &["check"])?;
        assert!(ok, "{out}");
        Ok(())
    })
}

#[test]
fn a_killed_registry_leader_is_replaced_and_nothing_acknowledged_is_lost() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let names = ["west", "east", "north"];
    let mut fed = Federation::start(&names)?;
    let (leader_name, old_leader) = {
        let f = &fed;
        let mut result = Ok(());
        let mut leader = String::new();
        let mut leader_id = 0;
        // A leader's loss is survived only with three voters: learners are
        // promoted once caught up, which can come after the imports converged.
        if let Err(e) = f
            .wait_converged(CONVERGE)
            .and_then(|_| f.wait_voters(3, CONVERGE))
        {
            result = Err(e);
        } else {
            let s = f.status("west")?;
            leader_id = s["registry"]["leader_id"].as_u64().context("leader")?;
            leader = s["registry"]["members"]
                .as_array()
                .context("members")?
                .iter()
                .find(|m| m["id"].as_u64() == Some(leader_id))
                .and_then(|m| m["cluster"].as_str())
                .context("leader cluster")?
                .to_owned();
        }
        if result.is_err() {
            eprintln!("{}", f.logs());
        }
        result?;
        (leader, leader_id)
    };
    let survivor = names
        .iter()
        .find(|n| **n != leader_name)
        .copied()
        .context("survivor")?;
    // Exports through the CLI on a survivor, one after another, across the kill.
    let writer = Writer::default();
    let ns = fed.cluster(survivor).ns.clone();
    let (killed, elected) = std::thread::scope(|scope| {
        scope.spawn(|| writer.run(&ns));
        let mut faults = || -> Result<_> {
            writer.wait_acknowledged(3, CONVERGE)?;
            fed.cluster_mut(&leader_name).gateway.kill9()?;
            let killed = Instant::now();
            let elected = fed.wait_for("new leader", ELECTION_WAIT, |fed| {
                let s = fed.status(survivor)?;
                let leader = s["registry"]["leader_id"].as_u64();
                Ok(leader.is_some_and(|l| l != old_leader) && s["registry"]["has_quorum"] == true)
            })?;
            // Writes keep being accepted after the election.
            writer.wait_acknowledged_since(killed, 3, CONVERGE)?;
            Ok((killed, elected))
        };
        let result = faults();
        writer.stop();
        result
    })
    .inspect_err(|_| eprintln!("{}", fed.logs()))?;
    let writes = writer.finished();
    let acknowledged: Vec<&str> = writes
        .iter()
        .filter(|w| w.ok)
        .map(|w| w.name.as_str())
        .collect();
    // The killed member restarts from disk and catches up: every cluster imports
    // every acknowledged export.
    fed.cluster_mut(&leader_name).gateway.restart()?;
    let caught_up = fed
        .wait_for("every acknowledged export imported", CONVERGE, |fed| {
            for name in names.iter().filter(|n| **n != survivor) {
                let imported = import_names(fed, name)?;
                if let Some(missing) = acknowledged.iter().find(|a| !imported.contains(**a)) {
                    bail!("{name} does not import {missing}");
                }
            }
            Ok(true)
        })
        .inspect_err(|_| eprintln!("{}", fed.logs()))?;
    let slowest = writes
        .iter()
        .filter(|w| w.start + w.took >= killed)
        .map(|w| w.took)
        .max()
        .unwrap_or_default();
    let refused = writes.iter().filter(|w| !w.ok).count();
    eprintln!(
        "SUMMARY leader: faults=1 (kill -9 of the leader, {leader_name}) new_leader_after={elected:?} \
         writes_acknowledged={} writes_refused={refused} writes_lost=0 \
         slowest_cli_export_across_the_kill={slowest:?} restarted_member_caught_up_in={caught_up:?}",
        acknowledged.len()
    );
    Ok(())
}

#[test]
fn a_partitioned_cluster_keeps_serving_what_it_knew_and_converges_after_healing() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let names = ["west", "east", "north"];
    // The shortest grace the config allows (10 election timeouts): a cluster unheard
    // for longer loses its exports, and gets them back when it returns.
    let fed = Federation::start_with(&names, |_, config| {
        config.replace(
            "election_timeout = \"500ms\"\n",
            &format!(
                "election_timeout = \"500ms\"\nreplica_grace = \"{}s\"\n",
                GRACE.as_secs()
            ),
        )
    })?;
    with_logs(&fed, |fed| {
        fed.wait_converged(CONVERGE)?;
        // The majority keeps committing only if it holds two of three voters.
        fed.wait_voters(3, CONVERGE)?;
        let north_name = Federation::pinned("north");
        ensure!(
            !fed.dig("west", &north_name)?.is_empty(),
            "west resolves {north_name}"
        );
        let west_url = fed.url("north", &Federation::pinned("west"))?;
        let addr_before = fed.dig("north", &Federation::pinned("west"))?;
        let is_stale = |fed: &Federation| -> Result<bool> {
            let s = fed.status("north")?;
            Ok(s["ready"] == false
                && s["registry"]["has_quorum"] == false
                && s["not_ready"].to_string().contains("no quorum"))
        };

        // 1. Control plane cut (the registry port), data plane up: north reports stale
        // status while its traffic to west keeps flowing.
        let client = Client::start(&fed.cluster("north").ns, &west_url, REQUEST_TIMEOUT);
        fed.lab
            .partition_port("north", &["west", "east"], REGISTRY_PORT)?;
        let stale_cp =
            fed.wait_for("north reports no quorum", Duration::from_secs(15), is_stale)?;
        // The majority keeps committing: west's export reaches east, not north.
        export(fed, "west", "during-cp", 9100)?;
        fed.wait_for("east imports during-cp", CONVERGE, |fed| {
            imports(fed, "east", "during-cp")
        })?;
        assert!(!imports(fed, "north", "during-cp")?);
        let seen = client.samples().len();
        fed.wait_for("north keeps sending", Duration::from_secs(15), |_| {
            Ok(client.samples().len() >= seen + 10)
        })?;
        let cp_samples = client.stop();
        let failed = failures(&cp_samples);
        assert!(
            failed.is_empty(),
            "north → west failed during a control-plane partition: {failed:?}"
        );
        assert!(cp_samples.iter().all(|s| body_from(&s.body, "west")));

        // 2. Full partition: north's own DNS keeps answering with the same address and
        // its import listeners stay bound.
        fed.lab.partition("north", &["west", "east"])?;
        export(fed, "east", "during-full", 9101)?;
        fed.wait_for("west imports during-full", CONVERGE, |fed| {
            imports(fed, "west", "during-full")
        })?;
        fed.wait_for(
            "north still reports no quorum",
            Duration::from_secs(15),
            is_stale,
        )?;
        assert_eq!(fed.dig("north", &Federation::pinned("west"))?, addr_before);
        let status = fed.status("north")?;
        let echo = status["imports"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == "echo"))
            .context("north still imports echo")?;
        assert_eq!(echo["listening"], true, "{echo:#}");
        // Unheard past the grace period, north loses its exports: west's DNS stops
        // naming north's echo.
        let withdrawn = fed.wait_for("north's exports withdrawn", CONVERGE, |fed| {
            Ok(fed.dig("west", &north_name)?.is_empty())
        })?;

        // 3. Healing: every member converges to the same revision, north sees both
        // exports, and its traffic flows again.
        fed.lab.heal("north")?;
        let converged = fed.wait_for("members converge", CONVERGE, |fed| {
            let revisions: Vec<serde_json::Value> = names
                .iter()
                .map(|n| fed.status(n).map(|s| s["registry"]["revision"].clone()))
                .collect::<Result<_>>()?;
            Ok(revisions.iter().all(|r| *r == revisions[0])
                && imports(fed, "north", "during-cp")?
                && imports(fed, "north", "during-full")?
                && !fed.dig("west", &north_name)?.is_empty())
        })?;
        // The data path comes back on its own clock: north's tunnel redials west
        // once its dial in flight (started during the partition) gives up.
        let healed = converged;
        let traffic_back = fed.wait_for("north reaches west again", CONVERGE, |fed| {
            Ok(fed
                .request("north", &Federation::pinned("west"))
                .is_ok_and(|body| body_from(&body, "west")))
        })?;
        eprintln!(
            "SUMMARY partition: faults=2 (registry-port partition, full partition) \
             control-plane-partition requests north→west={} failed=0 stale_reported_after={stale_cp:?} \
             writes_acknowledged=2 writes_lost=0 exports_withdrawn_after={withdrawn:?} \
             convergence_after_heal_with_exports_back={healed:?} \
             north_to_west_after_convergence={traffic_back:?}",
            cp_samples.len()
        );
        Ok(())
    })
}

#[test]
fn new_connections_fail_over_when_an_exporting_gateway_dies() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    const KILLS: usize = 3;
    let names = ["west", "east", "north"];
    let mut fed = Federation::start(&names)?;
    fed.wait_converged(CONVERGE)
        .and_then(|_| fed.wait_voters(3, CONVERGE))
        .inspect_err(|_| eprintln!("{}", fed.logs()))?;
    // From west, the unpinned name reaches east or north.
    let url = fed.url("west", "echo.demo.svc.clusterset.local")?;
    let client = Client::start(&fed.cluster("west").ns, &url, REQUEST_TIMEOUT);
    let client_started = std::time::SystemTime::now();
    let mut rounds = Vec::new();
    let mut recoveries = Vec::new();
    let result = (|| -> Result<()> {
        fed.wait_for("north serves", CONVERGE, |fed| {
            Ok(body_from(
                &fed.request("west", &Federation::pinned("north"))?,
                "north",
            ))
        })?;
        for _ in 0..KILLS {
            let killed = client.now();
            fed.cluster_mut("north").gateway.kill9()?;
            // Failed over: the last five new connections all reached east.
            fed.wait_for("failover to east", Duration::from_secs(15), |_| {
                let after: Vec<Sample> = client
                    .samples()
                    .into_iter()
                    .filter(|s| s.start > killed)
                    .collect();
                Ok(after.len() >= 5
                    && after[after.len() - 5..]
                        .iter()
                        .all(|s| s.ok && body_from(&s.body, "east")))
            })?;
            let restarted = client.now();
            // north comes back and serves again.
            fed.cluster_mut("north").gateway.restart()?;
            rounds.push((killed, restarted));
            let back = fed.wait_for("north serves again", CONVERGE, |fed| {
                Ok(body_from(
                    &fed.request("west", &Federation::pinned("north"))?,
                    "north",
                ))
            })?;
            recoveries.push(back);
        }
        Ok(())
    })();
    let end = client.now();
    let samples = client.stop();
    if result.is_err() {
        eprintln!("{}", fed.logs());
    }
    result?;
    let mut outages = Vec::new();
    for (i, (killed, restarted)) in rounds.iter().enumerate() {
        let next = rounds.get(i + 1).map_or(end, |r| r.0);
        // Failover time: from the kill to the end of the last failed request.
        let outage = samples
            .iter()
            .filter(|s| !s.ok && s.end > *killed && s.start < *restarted)
            .map(|s| s.end - *killed)
            .max()
            .unwrap_or_default();
        outages.push(outage);
        // Coming back breaks nothing (a request still in flight at the next kill
        // belongs to that kill).
        let broken: Vec<Sample> = samples
            .iter()
            .filter(|s| s.start >= *restarted && s.end < next)
            .filter(|s| !s.ok)
            .cloned()
            .collect();
        if !broken.is_empty() {
            eprintln!("{}", fed.logs());
            bail!(
                "requests failed after north's restart at {restarted:?} (killed at {killed:?}, \
                 test started {:?} ago): {:?}",
                client_started.elapsed().unwrap_or_default(),
                failures(&broken)
            );
        }
    }
    eprintln!(
        "SUMMARY failover: faults={KILLS} (kill -9 of north) requests={} failed={} \
         failover p50={:?} max={:?} each={outages:?} \
         restarted north serving again (pinned) after {recoveries:?}",
        samples.len(),
        samples.iter().filter(|s| !s.ok).count(),
        percentile(&outages, 50.0),
        percentile(&outages, 100.0),
    );
    Ok(())
}

#[test]
fn a_restarted_exporter_serves_the_first_request_after_it_is_back() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    const RESTARTS: usize = 3;
    let names = ["west", "north"];
    // Probes would take twenty intervals to give up on north's dead connection, so
    // only the restarted process's stateless reset can end it quickly.
    let mut fed = Federation::start_with(&names, |_, text| {
        text.replace("probe_misses = 3", "probe_misses = 20")
    })?;
    let pinned = Federation::pinned("north");
    fed.wait_converged(CONVERGE)
        .inspect_err(|_| eprintln!("{}", fed.logs()))?;
    let mut back = Vec::new();
    let result = (|| -> Result<()> {
        // West's pooled connection to north is up and carrying.
        fed.wait_for("west reaches north", CONVERGE, |fed| {
            Ok(body_from(&fed.request("west", &pinned)?, "north"))
        })?;
        for _ in 0..RESTARTS {
            fed.cluster_mut("north").gateway.kill9()?;
            let restarted = Instant::now();
            fed.cluster_mut("north").gateway.restart()?;
            // North answers its admin API once its tunnel serves its exports.
            fed.wait_for("north back", CONVERGE, |fed| {
                Ok(fed.status("north").is_ok())
            })?;
            // West still holds the dead connection; the first request on it is
            // reset by the new process and made again on a fresh connection.
            let body = fed.request("west", &pinned)?;
            ensure!(
                body_from(&body, "north"),
                "first request after the restart: {body}"
            );
            back.push(restarted.elapsed());
        }
        let series =
            "causeway_tunnel_peer_connections_ended_total{peer=\"north\",reason=\"reset\"}";
        let resets = fed.metric("west", series)?;
        ensure!(
            resets >= RESTARTS as f64,
            "west saw {resets} resets from north's {RESTARTS} restarts"
        );
        Ok(())
    })();
    if result.is_err() {
        eprintln!("{}", fed.logs());
    }
    result?;
    eprintln!(
        "SUMMARY restart: faults={RESTARTS} (kill -9 and restart of north) first request after \
         each restart served by north; restart to served: {back:?}"
    );
    Ok(())
}

#[test]
fn a_restarted_gateway_republishes_its_exports_and_keeps_runtime_ones() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let names = ["west", "east", "north"];
    let mut fed = Federation::start(&names)?;
    fed.wait_converged(CONVERGE)
        .and_then(|_| fed.wait_voters(3, CONVERGE))
        .inspect_err(|_| eprintln!("{}", fed.logs()))?;
    // A run-time export that is not in east's config file.
    export(&fed, "east", "ephemeral", 9200)?;
    fed.wait_for("west imports ephemeral", CONVERGE, |fed| {
        imports(fed, "west", "ephemeral")
    })?;
    // Traffic between the two other clusters runs throughout east's restart.
    let url = fed.url("west", &Federation::pinned("north"))?;
    let client = Client::start(&fed.cluster("west").ns, &url, REQUEST_TIMEOUT);
    // Restart: east republishes its config's exports and its saved run-time one
    // in one command; both stay imported, west's traffic to east resumes.
    fed.cluster_mut("east").gateway.restart()?;
    let result = (|| -> Result<Duration> {
        let took = fed.wait_for(
            "east ready again with its configured and run-time exports",
            CONVERGE,
            |fed| {
                let east = fed.status("east")?;
                let exports = east["exports"].to_string();
                let imports = fed.status("west")?["imports"].to_string();
                Ok(east["ready"] == true
                    && exports.contains("\"source\":\"cli\"")
                    && imports.contains("ephemeral")
                    && imports.contains("\"echo\""))
            },
        )?;
        fed.wait_for("traffic to east", CONVERGE, |fed| {
            Ok(body_from(
                &fed.request("west", &Federation::pinned("east"))?,
                "east",
            ))
        })?;
        // And a while after it is back.
        let seen = client.samples().len();
        fed.wait_for("west keeps sending", Duration::from_secs(15), |_| {
            Ok(client.samples().len() >= seen + 20)
        })?;
        Ok(took)
    })();
    let samples = client.stop();
    let took = result.inspect_err(|_| eprintln!("{}", fed.logs()))?;
    let failed = failures(&samples);
    assert!(
        failed.is_empty(),
        "west → north failed while east restarted: {failed:?}"
    );
    assert!(samples.iter().all(|s| body_from(&s.body, "north")));
    eprintln!(
        "SUMMARY restart: faults=1 (restart of east) requests west→north={} failed=0 \
         runtime exports kept=1 republished_in={took:?}",
        samples.len()
    );
    Ok(())
}

/// The serial of `cluster`'s current leaf.
fn serial(fed: &Federation, cluster: &str) -> Result<String> {
    fed.status(cluster)?["certificate"]["serial"]
        .as_str()
        .map(str::to_owned)
        .context("certificate.serial")
}

#[test]
fn no_stream_fails_across_certificate_renewals() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    // The shortest lifetime the gateway accepts; renewal comes at 2/3 of it (40 s).
    const RENEWALS: usize = 2;
    let names = ["west", "east"];
    let fed = Federation::start_with(&names, |_, text| {
        text.lines()
            .map(|l| {
                if l.starts_with("leaf_lifetime") {
                    "leaf_lifetime = \"1m\"".to_owned()
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    with_logs(&fed, |fed| {
        fed.wait_converged(CONVERGE)?;
        let mut serials: Vec<Vec<String>> = names
            .iter()
            .map(|n| serial(fed, n).map(|s| vec![s]))
            .collect::<Result<_>>()?;
        // One long-lived connection west → east, a request every 250 ms on it
        // (line-buffered so every answer is on disk when it is stopped), and new
        // connections east → west one after another.
        let url = fed.url("west", &Federation::pinned("east"))?;
        let out_path = fed.dir().join("long-lived.out");
        let mut long = fed
            .cluster("west")
            .ns
            .command(std::path::Path::new("stdbuf"))
            .args([
                "-oL",
                "curl",
                "-sS",
                "--rate",
                "4/s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{num_connects}\\n",
                &format!("{url}?n=[1-100000]"),
            ])
            .stdout(std::fs::File::create(&out_path)?)
            .stderr(std::fs::File::create(fed.dir().join("long-lived.err"))?)
            .spawn()?;
        let url_back = fed.url("east", &Federation::pinned("west"))?;
        let client = Client::start(&fed.cluster("east").ns, &url_back, REQUEST_TIMEOUT);
        let renewed = fed.wait_for(
            "two renewals on both gateways",
            Duration::from_secs(150),
            |fed| {
                for (i, name) in names.iter().enumerate() {
                    let s = serial(fed, name)?;
                    if serials[i].last() != Some(&s) {
                        eprintln!("{name}: new leaf {s}");
                        serials[i].push(s);
                    }
                }
                Ok(serials.iter().all(|s| s.len() > RENEWALS))
            },
        );
        // A few more requests on the long-lived connection after the last renewal.
        let lines = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        let before = lines(&out_path).lines().count();
        let more = fed.wait_for(
            "more requests after renewal",
            Duration::from_secs(10),
            |_| Ok(lines(&out_path).lines().count() >= before + 4),
        );
        let exited = long.try_wait()?;
        let _ = std::process::Command::new("kill")
            .arg(long.id().to_string())
            .status();
        let _ = long.wait();
        let samples = client.stop();
        renewed?;
        more?;
        assert!(
            exited.is_none(),
            "the long-lived curl exited early: {exited:?}"
        );
        let out = lines(&out_path);
        let answers: Vec<&str> = out.lines().collect();
        let connects: usize = answers
            .iter()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
            .sum();
        assert!(
            answers.iter().all(|l| l.starts_with("200 ")),
            "long-lived connection: {:?}",
            answers
                .iter()
                .filter(|l| !l.starts_with("200 "))
                .collect::<Vec<_>>()
        );
        assert_eq!(connects, 1, "the long-lived connection was re-established");
        let failed = failures(&samples);
        assert!(failed.is_empty(), "new connections failed: {failed:?}");
        eprintln!(
            "SUMMARY renewal: faults={} renewals (leaf lifetime 1m) long-lived requests={} on 1 connection, \
             new connections={} failed=0 leaves={serials:?}",
            serials.iter().map(|s| s.len() - 1).sum::<usize>(),
            answers.len(),
            samples.len(),
        );
        Ok(())
    })
}
