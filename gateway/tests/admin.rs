//! The admin endpoint of a running federation: health, readiness, status JSON and
//! the metrics operators scrape, after real traffic has crossed.

use std::time::Duration;

use anyhow::Result;
use causeway_gateway::federation::LocalFederation;

async fn get(addr: std::net::SocketAddr, path: &str) -> Result<(u16, String)> {
    let resp = reqwest::get(format!("http://{addr}{path}")).await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_status_reflect_the_federation() -> Result<()> {
    let fed = LocalFederation::start(&["west", "east"]).await?;
    fed.wait_converged(Duration::from_secs(30)).await?;
    let body = fed
        .request(0, &LocalFederation::pinned_name("east"))
        .await?;
    assert!(body.contains("hello from east"));
    // A name that does not exist counts as NXDOMAIN.
    let west = fed.gateway(0)?;
    let _ = causeway_gateway::dns_probe::query_a(
        west.dns_addr(),
        "nope.demo.svc.clusterset.local",
        Duration::from_secs(1),
    )
    .await;

    let admin = west.admin_addr();
    assert_eq!(get(admin, "/live").await?.0, 200);
    let (code, ready) = get(admin, "/ready").await?;
    assert_eq!(code, 200, "{ready}");
    let (code, status) = get(admin, "/v1/status").await?;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status)?;
    assert_eq!(status["cluster"], "west");
    assert_eq!(status["peers"][0]["cluster"], "east");
    assert!(
        status["peers"][0]["bytes_received"].as_u64() > Some(0),
        "{status:#}"
    );

    let (code, metrics) = get(admin, "/metrics").await?;
    assert_eq!(code, 200);
    for name in [
        "causeway_tunnel_peer_rtt_seconds_bucket{",
        "causeway_tunnel_peer_alive{",
        "causeway_tunnel_streams_opened_total{",
        "causeway_tunnel_payload_bytes_total{",
        "causeway_registry_term ",
        "causeway_registry_leader ",
        "causeway_registry_commit_index ",
        "causeway_registry_applied_index ",
        "causeway_catalog_revision ",
        "causeway_certificate_expiry_timestamp_seconds ",
        "causeway_dns_queries_total{",
        "causeway_imports 1",
        "causeway_exports 1",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    assert!(
        metrics.contains("rcode=\"Nxdomain\"} 1") || metrics.contains("rcode=\"Nxdomain\"} 2"),
        "{metrics}"
    );
    // Bad admin input is refused with a reason, and changes nothing.
    let client = reqwest::Client::new();
    let resp = client
        .put(format!("http://{admin}/v1/exports"))
        .header("content-type", "application/json")
        .body(r#"{"namespace":"Bad NS","name":"x","ports":[{"port":70000}],"endpoints":["127.0.0.1"]}"#)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 400);
    let text = resp.text().await?;
    assert!(
        text.contains("export[1].namespace") && text.contains("70000 is not a port"),
        "{text}"
    );
    let resp = client
        .put(format!("http://{admin}/v1/exports"))
        .header("content-type", "application/json")
        .body(vec![b'x'; 100_000])
        .send()
        .await?;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    assert_eq!(
        get(admin, "/v1/status")
            .await?
            .1
            .matches("\"namespace\":\"demo\"")
            .count(),
        2
    );
    fed.shutdown().await;
    Ok(())
}

/// Port 0 in every listen address: the gateway binds free ports, its config shows
/// them, and a restart from that config takes the same ports again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_ports_0_are_bound_shown_and_kept_across_a_restart() -> Result<()> {
    let mut fed = LocalFederation::start(&["west"]).await?;
    let running = fed.gateway(0)?.config().clone();
    let bound = [
        running.registry.listen,
        running.tunnel.listen,
        running.dns.listen,
        running.admin.listen,
    ];
    assert!(bound.iter().all(|a| a.port() != 0), "{bound:?}");
    assert_eq!(running.tunnel.listen, fed.gateway(0)?.tunnel_addr());
    assert_eq!(running.dns.listen, fed.gateway(0)?.dns_addr());
    assert_eq!(running.admin.listen, fed.gateway(0)?.admin_addr());
    tokio::net::TcpStream::connect(running.registry.listen).await?;

    fed.kill(0).await;
    fed.restart(0).await?;
    fed.wait_converged(Duration::from_secs(30)).await?;
    let again = fed.gateway(0)?;
    assert_eq!(
        [
            again.config().registry.listen,
            again.tunnel_addr(),
            again.dns_addr(),
            again.admin_addr()
        ],
        bound
    );
    assert_eq!(get(again.admin_addr(), "/live").await?.0, 200);
    fed.shutdown().await;
    Ok(())
}

/// Three linked gateways where only west exports: east and north import from west
/// alone and never need each other, and `causeway check` passes at both, naming
/// the peer not dialed yet instead of calling it unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_where_a_peer_was_never_needed() -> Result<()> {
    use causeway_gateway::admin::AdminApi;
    let mut fed = LocalFederation::start(&["west", "east", "north"]).await?;
    fed.wait_converged(Duration::from_secs(30)).await?;
    // East and north start again exporting nothing.
    for i in [1, 2] {
        fed.kill(i).await;
        fed.members[i].config.exports.clear();
        fed.restart(i).await?;
    }
    // East and north import from west alone once the withdrawals are applied.
    // Restarting the members may have moved the registry's leader: wait for a
    // ready gateway with a quorum too, which `check` checks.
    let what = "imports from west alone, ready, with a quorum";
    causeway_testing::eventually(Duration::from_secs(30), what, || {
        let settled = [1, 2].iter().all(|i| {
            let status = fed.gateway(*i).expect("running").api().status();
            status.ready
                && status.registry.has_quorum
                && status.imports.iter().any(|i| i.clusters == ["west"])
        });
        std::future::ready(settled.then_some(()))
    })
    .await?;
    for i in [1, 2] {
        fed.request(i, &LocalFederation::service_name()).await?;
        let admin = fed.gateway(i)?.admin_addr().to_string();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_causeway"))
            .args(["check", "--admin", &admin])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "check at {i}: {text}");
        assert!(text.contains("1 not dialed yet"), "{text}");
        assert!(!text.contains("unreachable"), "{text}");
    }
    fed.shutdown().await;
    Ok(())
}
