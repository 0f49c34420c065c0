//! `causeway trust …`: the federation's certificate authorities on disk.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use causeway_trust::{
    ClusterIssuer, ClusterName, ISSUER_VALIDITY, LEAF_LIFETIME, ROOT_VALIDITY, Role, RootCa,
    TrustBundle, TrustDomain, Verification, ca_files, inspect_file,
};
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::NOTHING};

use super::Output;

/// Certificate-authority tasks.
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Create a federation root CA (ECDSA P-256, 10 years) and its bundle.
    ///
    /// Writes root.pem, root.key (mode 0600) and bundle.pem into --out. Keep root.key
    /// offline; clusters only need bundle.pem and their own issuer.
    Init(InitArgs),
    /// Create the intermediate issuer for one cluster, signed by the root.
    ///
    /// Writes issuer.pem, issuer.key (mode 0600) and bundle.pem into --out: everything a
    /// gateway of that cluster needs to mint its own short-lived certificates.
    IssueCluster(IssueClusterArgs),
    /// Mint a gateway leaf certificate from a cluster issuer into files.
    ///
    /// Gateways mint their own leaves in memory; this is for debugging and for tools
    /// such as openssl s_client. Writes leaf.pem (leaf then issuer) and leaf.key.
    Mint(MintArgs),
    /// Replace the root with a new one; the bundle keeps old and new.
    ///
    /// Leaves under either root verify until `causeway trust prune` removes the old
    /// one. Re-issue every cluster's issuer from the new root in between.
    Rotate(RotateArgs),
    /// Drop every root but the current one from the bundle (the end of a rotation).
    Prune(RotateArgs),
    /// Show what a certificate file holds and whether it verifies against a bundle.
    Inspect(InspectArgs),
}

/// Arguments of `causeway trust init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The federation's SPIFFE trust domain.
    #[arg(long, default_value = TrustDomain::DEFAULT)]
    trust_domain: TrustDomain,
    /// Folder for root.pem, root.key and bundle.pem.
    #[arg(long)]
    out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

/// Arguments of `causeway trust issue-cluster`.
#[derive(Debug, Args)]
pub struct IssueClusterArgs {
    /// The cluster's name (a lowercase DNS label).
    #[arg(long)]
    cluster: ClusterName,
    /// The CA folder made by `causeway trust init`.
    #[arg(long)]
    ca: PathBuf,
    /// Folder for issuer.pem, issuer.key and bundle.pem.
    #[arg(long)]
    out: PathBuf,
    /// How long the issuer is valid, e.g. 365days, 90d, 12h.
    #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
    validity: Duration,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

/// Arguments of `causeway trust mint`.
#[derive(Debug, Args)]
pub struct MintArgs {
    /// The cluster issuer folder made by `causeway trust issue-cluster`.
    #[arg(long)]
    issuer: PathBuf,
    /// Folder for leaf.pem and leaf.key.
    #[arg(long)]
    out: PathBuf,
    /// How long the leaf is valid, e.g. 24h.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    lifetime: Duration,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

/// Arguments of `causeway trust rotate` and `prune`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The CA folder made by `causeway trust init`.
    #[arg(long)]
    ca: PathBuf,
}

/// Arguments of `causeway trust inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A PEM file: the certificate first, then any chain.
    file: PathBuf,
    /// A bundle to verify against.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Output,
}

/// Runs one `causeway trust` command.
pub fn run(cmd: TrustCommand) -> Result<ExitCode> {
    match cmd {
        TrustCommand::Init(a) => {
            let root = RootCa::generate(a.trust_domain.clone(), ROOT_VALIDITY)?;
            root.write_new(&a.out, a.force)?;
            println!(
                "created root for trust domain {} in {}",
                a.trust_domain,
                a.out.display()
            );
            println!(
                "next: causeway trust issue-cluster --cluster <name> --ca {} --out <dir>",
                a.out.display()
            );
        }
        TrustCommand::IssueCluster(a) => {
            let root = RootCa::load(&a.ca)?;
            let bundle = TrustBundle::load(&a.ca.join(ca_files::BUNDLE))?;
            let issuer = root.issue_cluster(a.cluster.clone(), a.validity, bundle)?;
            issuer.write(&a.out, a.force)?;
            let days = a.validity.min(ISSUER_VALIDITY * 10).as_secs() / 86_400;
            println!(
                "created issuer for cluster {} ({} days) in {}",
                a.cluster,
                days,
                a.out.display()
            );
        }
        TrustCommand::Mint(a) => {
            let issuer = ClusterIssuer::load(&a.issuer)?;
            let leaf = issuer.mint(Role::Gateway, a.lifetime.min(LEAF_LIFETIME * 365))?;
            leaf.write(&a.out, a.force)?;
            println!(
                "minted {} (serial {}) in {}",
                leaf.info
                    .spiffe_id
                    .map(|i| i.to_string())
                    .unwrap_or_default(),
                leaf.info.serial,
                a.out.display()
            );
        }
        TrustCommand::Rotate(a) => {
            let rotation = RootCa::rotate(&a.ca, ROOT_VALIDITY)?;
            println!("new root {}", rotation.new_fingerprint);
            println!("old root {} stays in the bundle", rotation.old_fingerprint);
            println!(
                "next: re-issue each cluster's issuer from {}, roll gateways, then `causeway trust prune --ca {}`",
                a.ca.display(),
                a.ca.display()
            );
        }
        TrustCommand::Prune(a) => {
            let bundle = RootCa::prune(&a.ca)?;
            println!(
                "bundle now holds {} root(s): {}",
                bundle.roots().len(),
                bundle.fingerprints().join(", ")
            );
        }
        TrustCommand::Inspect(a) => return inspect(a),
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(a: InspectArgs) -> Result<ExitCode> {
    let bundle = a.bundle.as_deref().map(TrustBundle::load).transpose()?;
    let report = inspect_file(&a.file, bundle.as_ref())?;
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => {
            let mut table = Table::new();
            table.load_preset(NOTHING);
            let rows = [
                ("subject", report.subject.clone()),
                (
                    "spiffe id",
                    report.spiffe_id.clone().unwrap_or_else(|| "(none)".into()),
                ),
                ("issuer", report.issuer.clone()),
                ("serial", report.serial.clone()),
                ("not before", report.not_before.clone()),
                ("not after", report.not_after.clone()),
                ("days left", report.days_left.to_string()),
                ("ca", report.is_ca.to_string()),
                ("sha256", report.sha256_fingerprint.clone()),
            ];
            for (k, v) in rows {
                table.add_row(vec![k.to_owned(), v]);
            }
            if let Some(v) = &report.verification {
                let verdict = match v {
                    Verification::Verified => "✓ verifies against the bundle".to_owned(),
                    Verification::Failed { reason } => format!("✗ {reason}"),
                };
                table.add_row(vec!["verification".to_owned(), verdict]);
            }
            println!("{table}");
        }
    }
    let failed = matches!(report.verification, Some(Verification::Failed { .. }));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
