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
