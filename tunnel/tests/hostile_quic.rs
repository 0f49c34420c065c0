//! A QUIC client no one here wrote, Python's `aioquic` (`tests/quic_foreign/client.py`),
//! against a real tunnel endpoint: with a certificate from a foreign root it cannot
//! open a stream; with a certificate of the federation it can (so the test can tell).
//! `scripts/test.sh` installs aioquic; elsewhere the test skips when it is missing.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anyhow::{Result, ensure};
use causeway_testing::{TestFederation, require_tool};
use causeway_trust::{LEAF_LIFETIME, Role};
use causeway_tunnel::{
    AllowAll, LocalService, Metrics, Request, ServiceTarget, Tunnel, TunnelConfig,
};

/// Whether python3 can import aioquic; in CI it must.
fn aioquic_available() -> bool {
    if !require_tool("python3") {
        return false;
    }
    let ok = Command::new("python3")
        .args(["-c", "import aioquic"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "aioquic is required in CI; scripts/test.sh must install it"
        );
        eprintln!("skipped: the Python package aioquic is not installed");
    }
    ok
}

fn run_client(addr: std::net::SocketAddr, dir: &Path, header: &[u8]) -> Result<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/quic_foreign/client.py");
    let hex: String = header.iter().map(|b| format!("{b:02x}")).collect();
    let out = Command::new("python3")
        .arg(script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(dir.join("leaf.pem"))
        .arg(dir.join("leaf.key"))
        .arg(hex)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    ensure!(
        out.status.success(),
        "client.py failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_with_a_foreign_certificate_cannot_open_a_stream() -> Result<()> {
    if !aioquic_available() {
        return Ok(());
    }
    let fed = TestFederation::new();
    let tunnel = Tunnel::start(
        TunnelConfig {
            listen: "127.0.0.1:0".parse()?,
            ..TunnelConfig::default()
        },
        fed.identity("east"),
        Arc::new(Metrics::new()),
        Arc::new(AllowAll),
    )?;
    let target = ServiceTarget::new("shop", "web", 80);
    tunnel.set_local_services([LocalService {
        target: target.clone(),
        endpoints: vec!["127.0.0.1:9".parse()?],
    }]);
    let mut header = Vec::new();
    Request::Data {
        target,
        trace: None,
    }
    .encode(&mut header)?;

    let dir = tempfile::tempdir()?;
    let foreign = dir.path().join("foreign");
    let ours = dir.path().join("ours");
    for (path, federation) in [(&foreign, &TestFederation::new()), (&ours, &fed)] {
        std::fs::create_dir_all(path)?;
        // Same trust domain and cluster name: only the root differs.
        federation
            .issuer("west")
            .mint(Role::Gateway, LEAF_LIFETIME)?
            .write(path, true)?;
    }
    let addr = tunnel.local_addr();
    let (h1, h2) = (header.clone(), header);
    let foreign_out =
        tokio::task::spawn_blocking(move || run_client(addr, &foreign, &h1)).await??;
    eprintln!("foreign certificate: {foreign_out}");
    ensure!(
        foreign_out.starts_with("REFUSED"),
        "a foreign certificate opened a stream: {foreign_out}"
    );
    let ours_out = tokio::task::spawn_blocking(move || run_client(addr, &ours, &h2)).await??;
    eprintln!("federation certificate: {ours_out}");
    ensure!(
        ours_out.starts_with("OPENED"),
        "a federation certificate could not open a stream: {ours_out}"
    );
    Ok(())
}
