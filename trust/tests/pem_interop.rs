//! Every PEM file the project writes is RFC 7468 text with LF line endings, and
//! independent parsers (OpenSSL, Python's `ssl`) read each one whole: the chain's
//! issuer included, the key matching the leaf.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, ensure};
use causeway_testing::require_tool;
use causeway_trust::{ISSUER_VALIDITY, ROOT_VALIDITY, Role, RootCa};

/// Writes a root, a cluster issuer and a gateway leaf as the CLI does; returns
/// every file written.
fn write_all(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let root = RootCa::generate("causeway.local".parse()?, ROOT_VALIDITY)?;
    root.write_new(&dir.join("ca"), false)?;
    let issuer = root.issue_cluster("west".parse()?, ISSUER_VALIDITY, root.bundle())?;
    issuer.write(&dir.join("west"), false)?;
    let leaf = issuer.mint(Role::Gateway, Duration::from_secs(3600))?;
    leaf.write(&dir.join("leaf"), false)?;
    let mut files = Vec::new();
    for sub in ["ca", "west", "leaf"] {
        for entry in std::fs::read_dir(dir.join(sub))? {
            files.push(entry?.path());
        }
    }
    files.sort();
    Ok(files)
}

/// The files written into a new folder, when `tool` (that reads them) is here.
fn written_for(tool: &str) -> Result<Option<(tempfile::TempDir, Vec<std::path::PathBuf>)>> {
    if !require_tool(tool) {
        return Ok(None);
    }
    let dir = tempfile::tempdir()?;
    let files = write_all(dir.path())?;
    Ok(Some((dir, files)))
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "{program} {args:?}: {text}");
    Ok(text)
}

#[test]
fn every_pem_file_has_lf_line_endings() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files = write_all(dir.path())?;
    let pems: Vec<_> = files
        .iter()
        .filter(|f| matches!(f.extension().and_then(|e| e.to_str()), Some("pem" | "key")))
        .collect();
    ensure!(pems.len() >= 6, "files written: {files:?}");
    for file in pems {
        let text = std::fs::read_to_string(file)?;
        ensure!(!text.contains('\r'), "{} has CR characters", file.display());
        ensure!(text.starts_with("-----BEGIN "), "{}", file.display());
        ensure!(text.ends_with("-----\n"), "{}", file.display());
    }
    Ok(())
}

#[test]
fn openssl_verifies_the_written_chain_and_reads_every_key() -> Result<()> {
    let Some((dir, files)) = written_for("openssl")? else {
        return Ok(());
    };
    let path = |p: &str| dir.path().join(p).to_string_lossy().into_owned();
    let (bundle, leaf) = (path("ca/bundle.pem"), path("leaf/leaf.pem"));
    // leaf.pem holds the leaf, then its issuer: the issuer must be read as well.
    let verified = run(
        "openssl",
        &["verify", "-CAfile", &bundle, "-untrusted", &leaf, &leaf],
    )?;
    ensure!(verified.contains(": OK"), "{verified}");
    for key in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "key"))
    {
        run(
            "openssl",
            &["pkey", "-in", &key.to_string_lossy(), "-noout"],
        )?;
    }
    Ok(())
}

#[test]
fn python_ssl_loads_the_leaf_chain_with_its_key_and_the_bundle() -> Result<()> {
    let Some((dir, _)) = written_for("python3")? else {
        return Ok(());
    };
    let script = r#"
import ssl, sys
leaf, key, bundle = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_cert_chain(leaf, key)
ctx.load_verify_locations(cafile=bundle)
blocks = open(leaf).read().count("-----BEGIN CERTIFICATE-----")
ders = [ssl.PEM_cert_to_DER_cert("-----BEGIN CERTIFICATE-----" + b)
        for b in open(leaf).read().split("-----BEGIN CERTIFICATE-----")[1:]]
assert blocks == 2 == len(ders), (blocks, len(ders))
print("ok", len(ctx.get_ca_certs()))
"#;
    let path = |p: &str| dir.path().join(p).to_string_lossy().into_owned();
    let out = run(
        "python3",
        &[
            "-c",
            script,
            &path("leaf/leaf.pem"),
            &path("leaf/leaf.key"),
            &path("ca/bundle.pem"),
        ],
    )?;
    ensure!(out.starts_with("ok 1"), "{out}");
    Ok(())
}
