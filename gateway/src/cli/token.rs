//! Token join: one file that lets a new cluster join, with nothing else to copy.
//!
//! `causeway token create` (run where the CA folder is) writes the bundle, a fresh
//! issuer for the new cluster and the registry members to join through, with an
//! expiry. `causeway link --token FILE --config gateway.toml` (run on the new
//! cluster) checks the expiry, installs the issuer where the config expects it and
//! records the members, so `causeway gateway run` joins on start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use causeway_trust::{ClusterIssuer, ClusterName, ISSUER_VALIDITY, RootCa, TrustBundle, ca_files};
use clap::Args;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::admin_client::{AdminClient, DEFAULT_ADMIN};
use crate::config::GatewayConfig;

/// The token format's version; a newer file is refused rather than misread.
const TOKEN_VERSION: u32 = 1;
/// Largest token file read.
const MAX_TOKEN_BYTES: u64 = 256 * 1024;

/// The contents of a join token.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinToken {
    /// Format version.
    pub version: u32,
    /// The cluster the token admits.
    pub cluster: ClusterName,
    /// When the token stops being accepted (Unix seconds).
    pub expires_at: i64,
    /// Registry members to join through.
    pub members: Vec<SocketAddr>,
    /// The federation's trust bundle (PEM).
    pub bundle_pem: String,
    /// The cluster's issuer certificate (PEM).
    pub issuer_pem: String,
    /// The cluster's issuer key (PEM): the token is a secret.
    pub issuer_key_pem: String,
}

/// Arguments of `causeway token create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The cluster that will join.
    #[arg(long)]
    cluster: ClusterName,
    /// The CA folder made by `causeway trust init`.
    #[arg(long)]
    ca: PathBuf,
    /// A running gateway whose registry members go in the token.
    #[arg(long, default_value = DEFAULT_ADMIN)]
    admin: SocketAddr,
    /// Registry members to put in the token instead of asking a gateway.
    #[arg(long = "member")]
    members: Vec<SocketAddr>,
    /// How long the token may be used, e.g. 1h, 30m.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Where to write the token (mode 0600).
    #[arg(long)]
    out: PathBuf,
}

/// Arguments of `causeway link --token`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The token file from `causeway token create`.
    pub token: PathBuf,
    /// The new cluster's gateway config; the issuer goes to its [trust].issuer_dir.
    pub config: PathBuf,
    /// Overwrite an existing issuer.
    pub force: bool,
}

/// Runs `causeway token create`.
pub async fn create(a: CreateArgs) -> Result<ExitCode> {
    let root = RootCa::load(&a.ca)?;
    let bundle = TrustBundle::load(&a.ca.join(ca_files::BUNDLE))?;
    let members = if a.members.is_empty() {
        let status = AdminClient::new(a.admin)
            .status()
            .await
            .context("pass --member ADDR to name registry members without a running gateway")?;
        status
            .registry
            .members
            .iter()
            .filter_map(|m| m.address.parse().ok())
            .collect()
    } else {
        a.members
    };
    anyhow::ensure!(
        !members.is_empty(),
        "no registry member to put in the token"
    );
    let issuer = root.issue_cluster(a.cluster.clone(), ISSUER_VALIDITY, bundle.clone())?;
    let token = JoinToken {
        version: TOKEN_VERSION,
        cluster: a.cluster.clone(),
        expires_at: (OffsetDateTime::now_utc() + a.ttl).unix_timestamp(),
        members,
        bundle_pem: bundle.to_pem(),
        issuer_pem: causeway_trust::certs_to_pem([issuer.cert()]),
        issuer_key_pem: issuer.key_pem(),
    };
    write_secret(&a.out, &serde_json::to_string_pretty(&token)?)?;
    println!(
        "token for cluster {} written to {} (expires in {}, {} member(s))",
        a.cluster,
        a.out.display(),
        humantime::format_duration(a.ttl),
        token.members.len()
    );
    println!(
        "on the new cluster: causeway link --token {} --config <gateway.toml>",
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{} (it must not exist yet)", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// Reads and checks a token: version, expiry, and that its issuer is a valid CA for
/// the named cluster under its bundle.
pub fn read(path: &Path, now: OffsetDateTime) -> Result<(JoinToken, ClusterIssuer)> {
    let len = std::fs::metadata(path)
        .with_context(|| path.display().to_string())?
        .len();
    anyhow::ensure!(
        len <= MAX_TOKEN_BYTES,
        "{}: {len} bytes is not a token",
        path.display()
    );
    let text = std::fs::read_to_string(path)?;
    let token: JoinToken = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a Causeway join token", path.display()))?;
    if token.version != TOKEN_VERSION {
        bail!(
            "{}: token version {} is not supported (this causeway reads version {TOKEN_VERSION})",
            path.display(),
            token.version
        );
    }
    if now.unix_timestamp() > token.expires_at {
        let expired = OffsetDateTime::from_unix_timestamp(token.expires_at)
            .map_or_else(|_| token.expires_at.to_string(), |t| t.to_string());
        bail!(
            "{}: the token expired at {expired}; create a new one with `causeway token create --cluster {}`",
            path.display(),
            token.cluster
        );
    }
    let issuer = ClusterIssuer::from_pem(
        path,
        &token.issuer_pem,
        &token.issuer_key_pem,
        &token.bundle_pem,
    )?;
    anyhow::ensure!(
        issuer.cluster() == &token.cluster,
        "{}: the issuer is for cluster {}, the token for {}",
        path.display(),
        issuer.cluster(),
        token.cluster
    );
    anyhow::ensure!(
        !token.members.is_empty(),
        "{}: the token names no registry member",
        path.display()
    );
    Ok((token, issuer))
}

/// Runs `causeway link --token FILE --config FILE`.
pub fn install(a: InstallArgs) -> Result<ExitCode> {
    let (token, issuer) = read(&a.token, OffsetDateTime::now_utc())?;
    let config =
        GatewayConfig::load(&a.config, std::env::vars()).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        config.cluster == token.cluster,
        "the token is for cluster {}, but {} configures cluster {}",
        token.cluster,
        a.config.display(),
        config.cluster
    );
    issuer.write(&config.trust.issuer_dir, a.force)?;
    std::fs::create_dir_all(&config.registry.data_dir)?;
    let join_file = config.registry.data_dir.join(crate::daemon::JOIN_FILE);
    std::fs::write(&join_file, serde_json::to_string(&token.members)?)?;
    println!(
        "✓ installed the issuer for {} in {} and {} registry member(s) to join",
        token.cluster,
        config.trust.issuer_dir.display(),
        token.members.len()
    );
    println!("next: causeway gateway run --config {}", a.config.display());
    Ok(ExitCode::SUCCESS)
}
