//! `causeway check`: named health checks on a gateway's status, each with a hint
//! for when it fails.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::Output;
use crate::cli::admin_client::{AdminClient, AdminTarget};
use crate::dns_probe;
use crate::status::{PeerLink, StatusReport};

mod replicas;

/// Days of validity below which `check` warns about the cluster issuer.
const ISSUER_WARN_DAYS: i64 = 7;

/// One named check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckResult {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do when it failed.
    pub hint: Option<String>,
}

fn check(name: &str, ok: bool, detail: String, hint: &str) -> CheckResult {
    CheckResult {
        name: name.into(),
        ok,
        detail,
        hint: (!ok).then(|| hint.to_owned()),
    }
}

/// Evaluates every check on a status report; DNS answers come from `dns_answers`
/// (name → addresses the gateway's DNS returned).
pub fn evaluate(
    s: &StatusReport,
    dns_answers: &dyn Fn(&str) -> Result<Vec<String>, String>,
) -> Vec<CheckResult> {
    vec![
        certificates_valid(s),
        one_trust_bundle(s),
        registry_quorum(s),
        peers_reachable(s),
        dns_answers_every_import(s, dns_answers),
        listener_for_every_import(s),
    ]
}

fn certificates_valid(s: &StatusReport) -> CheckResult {
    let cert = &s.certificate;
    check(
        "certificates valid",
        cert.expires_in_seconds > 0 && cert.issuer_expires_in_seconds > ISSUER_WARN_DAYS * 86_400,
        format!(
            "leaf expires in {}h, cluster issuer in {} days",
            cert.expires_in_seconds / 3600,
            cert.issuer_expires_in_seconds / 86_400
        ),
        "renew the cluster issuer with `causeway trust issue-cluster … --force` and restart the gateway",
    )
}

/// Every peer shares this gateway's bundle, and no handshake was refused over trust.
fn one_trust_bundle(s: &StatusReport) -> CheckResult {
    let cert = &s.certificate;
    let foreign: Vec<&str> = s
        .peers
        .iter()
        .filter(|p| {
            !p.bundle_fingerprints.is_empty() && p.bundle_fingerprints != cert.bundle_fingerprints
        })
        .map(|p| p.cluster.as_str())
        .collect();
    // Handshakes refused because of the bundle: our verifier's words when we distrust
    // a peer, the TLS alert when a peer distrusts us.
    let distrust = |text: &str| {
        let t = text.to_ascii_lowercase();
        t.contains("trust bundle") || t.contains("unknownca") || t.contains("unknown ca")
    };
    let refused: Vec<String> = s
        .not_ready
        .iter()
        .filter(|r| distrust(r))
        .cloned()
        .chain(s.peers.iter().filter_map(|p| {
            p.last_error
                .as_deref()
                .filter(|e| distrust(e))
                .map(|e| format!("{}: {e}", p.label()))
        }))
        .collect();
    check(
        "one trust bundle",
        foreign.is_empty() && refused.is_empty(),
        if !refused.is_empty() {
            format!("handshakes refused over trust: {}", refused.join("; "))
        } else if foreign.is_empty() {
            format!(
                "{} cluster(s) share bundle {}",
                s.peers.len() + 1,
                short(&cert.bundle_fingerprints)
            )
        } else {
            format!(
                "{} trust a different bundle than {}",
                foreign.join(", "),
                s.cluster
            )
        },
        "give every cluster the same bundle.pem (causeway trust issue-cluster copies it from the CA folder) and restart the gateways that differ",
    )
}

fn registry_quorum(s: &StatusReport) -> CheckResult {
    check(
        "registry quorum",
        s.registry.has_quorum,
        format!(
            "{} member(s), leader {}",
            s.registry.members.len(),
            s.registry
                .leader_id
                .map_or("unknown".into(), |l| l.to_string())
        ),
        "start the registry members that are down, or remove dead ones with `causeway unlink <cluster>`",
    )
}

/// Fails only on a peer the tunnel dialed and lost: a peer never needed (nothing
/// imported from it has been used) is not dialed yet, which is no fault.
fn peers_reachable(s: &StatusReport) -> CheckResult {
    let dead: Vec<String> = s
        .peers
        .iter()
        .filter(|p| p.link == PeerLink::Down)
        .map(|p| match &p.last_error {
            Some(e) => format!("{} ({e})", p.label()),
            None => p.label(),
        })
        .collect();
    let count = |link: PeerLink| s.peers.iter().filter(|p| p.link == link).count();
    let mut detail = format!("{} peer(s) answer probes", count(PeerLink::Up));
    for (link, what) in [
        (
            PeerLink::NotDialed,
            "not dialed yet (no connection needed so far)",
        ),
        (PeerLink::Draining, "draining"),
    ] {
        if count(link) > 0 {
            detail.push_str(&format!(", {} {what}", count(link)));
        }
    }
    check(
        "peers reachable",
        dead.is_empty(),
        if dead.is_empty() {
            detail
        } else {
            format!("unreachable: {}", dead.join(", "))
        },
        "check that the peer's gateway runs and UDP to its tunnel address is allowed; `causeway status` shows the last error",
    )
}

fn dns_answers_every_import(
    s: &StatusReport,
    dns_answers: &dyn Fn(&str) -> Result<Vec<String>, String>,
) -> CheckResult {
    let mut wrong = Vec::new();
    for import in &s.imports {
        match dns_answers(&import.dns_name) {
            Ok(addrs) if addrs.contains(&import.address) => {}
            Ok(addrs) => wrong.push(format!("{} → {:?}", import.dns_name, addrs)),
            Err(e) => wrong.push(format!("{}: {e}", import.dns_name)),
        }
    }
    check(
        "DNS answers every import",
        wrong.is_empty(),
        if wrong.is_empty() {
            format!("{} import(s) resolve at {}", s.imports.len(), s.dns.listen)
        } else {
            wrong.join("; ")
        },
        "check the gateway log for DNS errors and that nothing else holds the DNS port",
    )
}

fn listener_for_every_import(s: &StatusReport) -> CheckResult {
    let unbound: Vec<String> = s
        .imports
        .iter()
        .filter(|i| !i.listening)
        .map(|i| format!("{}/{}", i.namespace, i.name))
        .collect();
    check(
        "listener for every import",
        unbound.is_empty(),
        if unbound.is_empty() {
            format!("{} import(s) listening", s.imports.len())
        } else {
            format!("not listening: {}", unbound.join(", "))
        },
        "another process may hold the import's address and port; see the gateway log",
    )
}

fn short(fingerprints: &[String]) -> String {
    fingerprints
        .iter()
        .map(|f| &f[..f.len().min(12)])
        .collect::<Vec<_>>()
        .join("+")
}

/// Arguments of `causeway check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Output,
}

/// Runs `causeway check`.
pub async fn run_check(a: CheckArgs) -> Result<ExitCode> {
    let client = AdminClient::new(a.target.admin);
    let report = client.status().await?;
    let server: SocketAddr = report
        .dns
        .listen
        .parse()
        .context("the gateway reported an unreadable DNS address")?;
    let mut answers = std::collections::HashMap::new();
    for import in &report.imports {
        let result = dns_probe::query_a(server, &import.dns_name, Duration::from_secs(2))
            .await
            .map(|ips| ips.iter().map(ToString::to_string).collect())
            .map_err(|e| e.to_string());
        answers.insert(import.dns_name.clone(), result);
    }
    let mut results = evaluate(&report, &|name| {
        answers
            .get(name)
            .cloned()
            .unwrap_or_else(|| Err("not queried".into()))
    });
    results.extend(replicas::replicas_agree(&replicas::settled(&client).await?));
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&results)?),
        Output::Text => {
            for r in &results {
                let mark = if r.ok { "✓" } else { "✗" };
                println!("{mark} {:<26} {}", r.name, r.detail);
                if let Some(hint) = &r.hint {
                    println!("    hint: {hint}");
                }
            }
        }
    }
    let failed = results.iter().filter(|r| !r.ok).count();
    if failed > 0 {
        eprintln!("{failed} check(s) failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
