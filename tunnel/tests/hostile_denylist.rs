//! An unlinked cluster's issuer at the tunnel: once the gateway identity's denylist
//! holds it, a handshake with a leaf from that issuer is refused with the reason,
//! while other clusters still connect. (The registry member keeps the list equal to
//! the catalog's `DenyIssuer`s; see registry/tests/identity.rs.)

use std::sync::Arc;

use anyhow::{Result, ensure};
use causeway_testing::TestFederation;
use causeway_testing::raw_connection;
use causeway_trust::IssuerFingerprint;
use causeway_tunnel::{AllowAll, Metrics, Tunnel, TunnelConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_issuer_cannot_open_a_tunnel_and_others_still_can() -> Result<()> {
    let fed = TestFederation::new();
    let east = fed.identity("east");
    let tunnel = Tunnel::start(
        TunnelConfig {
            listen: "127.0.0.1:0".parse()?,
            ..TunnelConfig::default()
        },
        east.clone(),
        Arc::new(Metrics::new()),
        Arc::new(AllowAll),
    )?;
    let west = fed.identity("west");
    let north = fed.identity("north");
    // Before the denial west connects.
    let before = raw_connection(&west, tunnel.local_addr()).await?;
    before.close(0u32.into(), b"done");

    // The tunnel was started before the list changed: its verifier reads the list
    // on every handshake.
    let fp = IssuerFingerprint::of_issuer(west.issuer());
    east.denylist().insert(fp);

    // In TLS 1.3 the client may finish its side before the server has judged its
    // certificate, so the refusal shows as the connection closing.
    let refused = match raw_connection(&west, tunnel.local_addr()).await {
        Err(e) => e.to_string(),
        Ok(conn) => conn.closed().await.to_string(),
    };
    eprintln!("west after the denial: {refused}");
    ensure!(
        refused.contains("denied issuer") && refused.contains(&fp.to_string()),
        "{refused}"
    );
    let other = raw_connection(&north, tunnel.local_addr()).await?;
    ensure!(other.close_reason().is_none(), "north was refused");
    Ok(())
}
