//! `causeway trust …` as an operator runs it, checked with openssl as a second
//! implementation.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::Result;
use causeway_testing::require_tool;

fn causeway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(args)
        .output()
        .expect("causeway runs")
}

fn ok(args: &[&str]) -> String {
    let out = causeway(args);
    assert!(
        out.status.success(),
        "causeway {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// A CA and a west issuer in a temp folder.
fn federation(dir: &Path) {
    ok(&[
        "trust",
        "init",
        "--trust-domain",
        "example.org",
        "--out",
        p(&dir.join("ca")),
    ]);
    ok(&[
        "trust",
        "issue-cluster",
        "--cluster",
        "west",
        "--ca",
        p(&dir.join("ca")),
        "--out",
        p(&dir.join("west")),
    ]);
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    federation(dir.path());
    let again = causeway(&["trust", "init", "--out", p(&dir.path().join("ca"))]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    ok(&[
        "trust",
        "init",
        "--out",
        p(&dir.path().join("ca")),
        "--force",
    ]);
}

#[test]
fn bad_cluster_names_are_refused_with_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    federation(dir.path());
    let out = causeway(&[
        "trust",
        "issue-cluster",
        "--cluster",
        "West_1",
        "--ca",
        p(&dir.path().join("ca")),
        "--out",
        p(&dir.path().join("x")),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a DNS label"), "{stderr}");
}

#[test]
fn openssl_accepts_what_we_issue() -> Result<()> {
    if !require_tool("openssl") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    federation(dir.path());
    ok(&[
        "trust",
        "mint",
        "--issuer",
        p(&dir.path().join("west")),
        "--out",
        p(&dir.path().join("leaf")),
    ]);
    // leaf.pem holds the leaf then the issuer; openssl verify reads the first.
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.path().join("ca/bundle.pem"))
        .arg("-untrusted")
        .arg(dir.path().join("west/issuer.pem"))
        .arg(dir.path().join("leaf/leaf.pem"))
        .output()?;
    assert!(
        verify.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.path().join("leaf/leaf.pem"))
        .output()?;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("URI:spiffe://example.org/cluster/west/gateway"),
        "{text}"
    );
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
    let issuer = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.path().join("west/issuer.pem"))
        .output()?;
    let issuer = String::from_utf8_lossy(&issuer.stdout);
    assert!(issuer.contains("CA:TRUE, pathlen:0"), "{issuer}");
    let root = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.path().join("ca/root.pem"))
        .output()?;
    assert!(String::from_utf8_lossy(&root.stdout).contains("ASN1 OID: prime256v1"));
    Ok(())
}

#[test]
fn inspect_reports_identity_validity_and_verdict() -> Result<()> {
    let dir = tempfile::tempdir()?;
    federation(dir.path());
    ok(&[
        "trust",
        "mint",
        "--issuer",
        p(&dir.path().join("west")),
        "--out",
        p(&dir.path().join("leaf")),
    ]);
    let json = ok(&[
        "trust",
        "inspect",
        p(&dir.path().join("leaf/leaf.pem")),
        "--bundle",
        p(&dir.path().join("ca/bundle.pem")),
        "-o",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(
        report["spiffe_id"],
        "spiffe://example.org/cluster/west/gateway"
    );
    assert_eq!(report["verification"]["result"], "verified");
    assert_eq!(report["days_left"], 0);
    assert_eq!(report["sha256_fingerprint"].as_str().unwrap().len(), 64);

    // Against another federation's bundle it fails, says why, and exits non-zero.
    ok(&[
        "trust",
        "init",
        "--trust-domain",
        "example.org",
        "--out",
        p(&dir.path().join("other")),
    ]);
    let out = causeway(&[
        "trust",
        "inspect",
        p(&dir.path().join("leaf/leaf.pem")),
        "--bundle",
        p(&dir.path().join("other/bundle.pem")),
    ]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("✗") && stdout.contains("trust bundle"),
        "{stdout}"
    );
    Ok(())
}

#[test]
fn rotate_then_prune() -> Result<()> {
    let dir = tempfile::tempdir()?;
    federation(dir.path());
    let ca = dir.path().join("ca");
    let out = ok(&["trust", "rotate", "--ca", p(&ca)]);
    assert!(out.contains("stays in the bundle"), "{out}");
    let bundle = std::fs::read_to_string(ca.join("bundle.pem"))?;
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2);
    // The issuer made before rotation verifies against the two-root bundle.
    ok(&[
        "trust",
        "inspect",
        p(&dir.path().join("west/issuer.pem")),
        "--bundle",
        p(&ca.join("bundle.pem")),
    ]);
    let out = ok(&["trust", "prune", "--ca", p(&ca)]);
    assert!(out.contains("1 root"), "{out}");
    let stale = causeway(&[
        "trust",
        "inspect",
        p(&dir.path().join("west/issuer.pem")),
        "--bundle",
        p(&ca.join("bundle.pem")),
    ]);
    assert!(
        !stale.status.success(),
        "the old issuer must fail after prune"
    );
    Ok(())
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["trust", "--help"],
        vec!["trust", "init", "--help"],
        vec!["trust", "issue-cluster", "--help"],
        vec!["trust", "mint", "--help"],
        vec!["trust", "rotate", "--help"],
        vec!["trust", "prune", "--help"],
        vec!["trust", "inspect", "--help"],
    ] {
        let out = ok(&args);
        assert!(out.contains("Usage:"), "{args:?}: {out}");
    }
}
