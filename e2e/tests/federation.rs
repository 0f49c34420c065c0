//! Real gateway processes in network namespaces: the failure rules of DESIGN.md,
//! shown with kills (`kill -9`) and partitions (`nft` drop rules).
//!
//! Needs root, `ip`, `nft`, `dig` and `curl`; outside CI a missing one skips the test
//! with the reason printed. Each test builds its own lab of namespaces.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use causeway_e2e::{Federation, can_run};

const CONVERGE: Duration = Duration::from_secs(60);

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
        eprintln!("converged in {took:?}");
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
        if let Err(e) = f.wait_converged(CONVERGE) {
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
    // Acknowledged exports before the kill.
    let (ok, out) = fed.cli(
        survivor,
        &[
            "export",
            "demo/before",
            "--port",
            "9000:18080/http",
            "--endpoint",
            "127.0.0.1",
        ],
    )?;
    assert!(ok, "{out}");
    fed.cluster_mut(&leader_name).gateway.kill9()?;
    let killed = Instant::now();
    let elected = fed.wait_for("new leader", Duration::from_secs(10), |fed| {
        let s = fed.status(survivor)?;
        let leader = s["registry"]["leader_id"].as_u64();
        Ok(leader.is_some_and(|l| l != old_leader) && s["registry"]["has_quorum"] == true)
    })?;
    eprintln!("new leader after {elected:?}");
    // Writes keep being accepted.
    let (ok, out) = fed.cli(
        survivor,
        &[
            "export",
            "demo/after",
            "--port",
            "9001:18080/http",
            "--endpoint",
            "127.0.0.1",
        ],
    )?;
    assert!(ok, "{out}");
    assert!(killed.elapsed() < Duration::from_secs(30));
    // The killed member restarts from disk and catches up: it sees both exports.
    fed.cluster_mut(&leader_name).gateway.restart()?;
    let leader_name2 = leader_name.clone();
    fed.wait_for("restarted member catches up", CONVERGE, |fed| {
        let s = fed.status(&leader_name2)?;
        let names: Vec<String> = s["imports"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(names.contains(&"before".to_owned()) && names.contains(&"after".to_owned()))
    })
    .inspect_err(|_| eprintln!("{}", fed.logs()))?;
    if elected > Duration::from_secs(2) {
        bail!("leader election took {elected:?}, more than 2 s");
    }
    Ok(())
}

#[test]
fn a_partitioned_cluster_keeps_serving_what_it_knew_and_converges_after_healing() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let names = ["west", "east", "north"];
    let fed = Federation::start(&names)?;
    with_logs(&fed, |fed| {
        fed.wait_converged(CONVERGE)?;
        // north is cut off from the registry majority, but its own DNS answers and
        // its imports keep their addresses.
        fed.lab.partition("north", &["west", "east"])?;
        let before = fed.dig("north", &Federation::pinned("west"))?;
        assert_eq!(before.len(), 1);
        // The majority keeps committing.
        let (ok, out) = fed.cli(
            "west",
            &[
                "export",
                "demo/during",
                "--port",
                "9100:18080/http",
                "--endpoint",
                "127.0.0.1",
            ],
        )?;
        assert!(ok, "{out}");
        // north reports stale status.
        fed.wait_for("north reports no quorum", Duration::from_secs(15), |fed| {
            let s = fed.status("north")?;
            Ok(s["ready"] == false && s["not_ready"].to_string().contains("no quorum"))
        })?;
        assert_eq!(fed.dig("north", &Federation::pinned("west"))?, before);
        // Healing: north converges to the same revision and sees the new export.
        fed.lab.heal("north")?;
        fed.wait_for("north converges", CONVERGE, |fed| {
            let n = fed.status("north")?;
            let w = fed.status("west")?;
            Ok(n["registry"]["revision"] == w["registry"]["revision"]
                && n["imports"].to_string().contains("\"during\""))
        })?;
        Ok(())
    })
}

#[test]
fn new_connections_fail_over_when_an_exporting_gateway_dies() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let names = ["west", "east", "north"];
    let mut fed = Federation::start(&names)?;
    fed.wait_converged(CONVERGE)
        .inspect_err(|_| eprintln!("{}", fed.logs()))?;
    // From west, the unpinned name reaches east or north.
    let body = fed.request("west", "echo.demo.svc.clusterset.local")?;
    assert!(
        body_from(&body, "east") || body_from(&body, "north"),
        "{body}"
    );
    fed.cluster_mut("north").gateway.kill9()?;
    let took = fed.wait_for("failover to east", Duration::from_secs(15), |fed| {
        for _ in 0..5 {
            let body = fed.request("west", "echo.demo.svc.clusterset.local")?;
            if !body_from(&body, "east") {
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    eprintln!("failover measured: {took:?}");
    // north comes back and serves again.
    fed.cluster_mut("north").gateway.restart()?;
    fed.wait_for("north serves again", CONVERGE, |fed| {
        Ok(body_from(
            &fed.request("west", &Federation::pinned("north"))?,
            "north",
        ))
    })
    .inspect_err(|_| eprintln!("{}", fed.logs()))?;
    Ok(())
}

#[test]
fn a_restarted_gateway_republishes_exactly_its_exports() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let names = ["west", "east"];
    let mut fed = Federation::start(&names)?;
    fed.wait_converged(CONVERGE)
        .inspect_err(|_| eprintln!("{}", fed.logs()))?;
    // A run-time export that is not in east's config file.
    let (ok, out) = fed.cli(
        "east",
        &[
            "export",
            "demo/ephemeral",
            "--port",
            "9200:18080/http",
            "--endpoint",
            "127.0.0.1",
        ],
    )?;
    assert!(ok, "{out}");
    fed.wait_for("west imports ephemeral", CONVERGE, |fed| {
        Ok(fed.status("west")?["imports"]
            .to_string()
            .contains("ephemeral"))
    })?;
    // Restart: east republishes its config's exports in one command; the run-time
    // one is gone, the configured one is back, west's traffic to east resumes.
    fed.cluster_mut("east").gateway.restart()?;
    fed.wait_for(
        "stale export gone, configured export present",
        CONVERGE,
        |fed| {
            let imports = fed.status("west")?["imports"].to_string();
            Ok(!imports.contains("ephemeral") && imports.contains("\"echo\""))
        },
    )
    .inspect_err(|_| eprintln!("{}", fed.logs()))?;
    fed.wait_for("traffic to east", CONVERGE, |fed| {
        Ok(body_from(
            &fed.request("west", &Federation::pinned("east"))?,
            "east",
        ))
    })?;
    Ok(())
}
