//! A TLS client no one here wrote, `openssl s_client`, against a real registry port:
//! without a certificate and with a certificate from a foreign root it is refused;
//! with a certificate of the federation it gets through (so the test can tell).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use causeway_testing::{TestFederation, require_tool};
use causeway_trust::{LEAF_LIFETIME, Role};
use support::*;

/// Runs `openssl s_client` against `port` with extra arguments; returns (exit ok,
/// combined output).
fn s_client(port: u16, extra: &[&str]) -> anyhow::Result<(bool, String)> {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-tls1_3",
            "-alpn",
            "h2",
            "-servername",
            "registry.causeway",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Send an HTTP/2 preface once connected, so the server has to read (and the
    // client sees any alert the server sent after verifying its certificate).
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("piped");
        let _ = stdin.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = child.wait_with_output()?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

fn write_leaf(dir: &Path, fed: &TestFederation, cluster: &str) -> anyhow::Result<()> {
    let leaf = fed.issuer(cluster).mint(Role::Gateway, LEAF_LIFETIME)?;
    leaf.write(dir, true)?;
    Ok(())
}

/// Whether openssl reports that the server ended the connection with an alert.
fn refused(text: &str) -> bool {
    text.contains(" alert ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_without_or_with_a_foreign_certificate_is_refused() -> anyhow::Result<()> {
    if !require_tool("openssl") {
        return Ok(());
    }
    let reg = TestRegistry::start(1, |_| {}).await?;
    let port = reg.addrs[&1].port();
    let dir = tempfile::tempdir()?;
    let foreign_dir = dir.path().join("foreign");
    let ours_dir = dir.path().join("ours");
    std::fs::create_dir_all(&foreign_dir)?;
    std::fs::create_dir_all(&ours_dir)?;
    // Same trust domain and cluster name, another root: only the chain differs.
    write_leaf(&foreign_dir, &TestFederation::new(), "west")?;
    write_leaf(&ours_dir, &reg.fed, "west")?;
    let args = |d: &Path| {
        [
            "-cert".to_owned(),
            d.join("leaf.pem").display().to_string(),
            "-cert_chain".to_owned(),
            d.join("leaf.pem").display().to_string(),
            "-key".to_owned(),
            d.join("leaf.key").display().to_string(),
        ]
    };

    let (none_ok, none) = tokio::task::spawn_blocking(move || s_client(port, &[])).await??;
    eprintln!("--- no certificate (exit ok: {none_ok}):\n{none}");
    assert!(!none_ok, "openssl exited successfully:\n{none}");
    // TLS 1.3 alert 116: the server requires a client certificate.
    assert!(none.contains("alert certificate required"), "{none}");

    let foreign_args = args(&foreign_dir);
    let (foreign_ok, foreign) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = foreign_args.iter().map(String::as_str).collect();
        s_client(port, &refs)
    })
    .await??;
    eprintln!("--- foreign certificate (exit ok: {foreign_ok}):\n{foreign}");
    assert!(!foreign_ok, "openssl exited successfully:\n{foreign}");
    // Alert 46: the server could not verify the certificate.
    assert!(foreign.contains("alert certificate unknown"), "{foreign}");

    let ours_args = args(&ours_dir);
    let (ours_ok, ours) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = ours_args.iter().map(String::as_str).collect();
        s_client(port, &refs)
    })
    .await??;
    eprintln!("--- federation certificate (exit ok: {ours_ok}):\n{ours}");
    assert!(!refused(&ours), "a federation client was refused:\n{ours}");
    assert!(ours.contains("ALPN protocol: h2"), "{ours}");
    Ok(())
}
