//! `causeway resolve`: what the local DNS answers for a name, and where new
//! connections to it would go.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::ms;
use crate::cli::admin_client::{AdminClient, AdminTarget};
use crate::dns_probe;
use crate::status::StatusReport;

/// Arguments of `causeway resolve`.
#[derive(Debug, Args)]
pub struct ResolveArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// A clusterset name, e.g. web.shop.svc.clusterset.local or
    /// east.web.shop.svc.clusterset.local.
    name: String,
}

/// Where a connection to an import would go: peers in rotation, nearest first.
pub fn route(s: &StatusReport, name: &str) -> Result<(String, Vec<String>)> {
    let name = name.trim_end_matches('.');
    let zone = s.dns.zone.trim_end_matches('.');
    let in_zone = name
        .strip_suffix(zone)
        .and_then(|rest| rest.strip_suffix(".svc."))
        .with_context(|| format!("{name} is not a service name in {zone}"))?;
    let labels: Vec<&str> = in_zone.split('.').collect();
    let (pinned, svc, ns) = match labels.as_slice() {
        [svc, ns] => (None, *svc, *ns),
        [cluster, svc, ns] => (Some(*cluster), *svc, *ns),
        _ => bail!("{name}: expected <svc>.<ns>.svc.{zone} or <cluster>.<svc>.<ns>.svc.{zone}"),
    };
    let import = s
        .imports
        .iter()
        .find(|i| i.name == svc && i.namespace == ns)
        .with_context(|| format!("{ns}/{svc} is not imported by {}", s.cluster))?;
    let mut candidates: Vec<&crate::status::PeerStatus> = s
        .peers
        .iter()
        .filter(|p| import.clusters.contains(&p.cluster))
        .filter(|p| pinned.is_none_or(|c| c == p.cluster))
        .collect();
    candidates.sort_by(|a, b| {
        b.alive.cmp(&a.alive).then(
            a.rtt_ms
                .unwrap_or(f64::MAX)
                .total_cmp(&b.rtt_ms.unwrap_or(f64::MAX)),
        )
    });
    let order = candidates
        .iter()
        .map(|p| {
            format!(
                "{} ({}, rtt {})",
                p.cluster,
                if p.alive { "alive" } else { "out of rotation" },
                ms(p.rtt_ms)
            )
        })
        .collect();
    Ok((format!("{ns}/{svc}"), order))
}

/// Runs `causeway resolve`.
pub async fn resolve(a: ResolveArgs) -> Result<ExitCode> {
    let status = AdminClient::new(a.target.admin).status().await?;
    let server: SocketAddr = status.dns.listen.parse()?;
    let answer = dns_probe::query_a(server, &a.name, Duration::from_secs(2)).await;
    match &answer {
        Ok(ips) => println!("{} → {ips:?} (from {server})", a.name),
        Err(e) => println!("{} does not resolve: {e}", a.name),
    }
    let (service, order) = route(&status, &a.name)?;
    println!("service {service}; new connections go to, in order of preference:");
    for (i, peer) in order.iter().enumerate() {
        println!("  {}. {peer}", i + 1);
    }
    Ok(if answer.is_ok() && !order.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
