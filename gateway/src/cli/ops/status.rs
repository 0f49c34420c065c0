//! `causeway status`: the federation as this gateway sees it, as tables.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};

use super::ms;
use crate::cli::Output;
use crate::cli::admin_client::{AdminClient, AdminTarget};
use crate::status::StatusReport;

/// Arguments of `causeway status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Output,
}

/// Renders a status report as the tables `causeway status` prints.
pub fn render_status(s: &StatusReport) -> String {
    let mut out = String::new();
    let ready = if s.ready { "ready" } else { "NOT READY" };
    out.push_str(&format!(
        "cluster {} ({}) — {ready}\n",
        s.cluster, s.trust_domain
    ));
    for reason in &s.not_ready {
        out.push_str(&format!("  ! {reason}\n"));
    }
    let leader = s
        .registry
        .members
        .iter()
        .find(|m| Some(m.id) == s.registry.leader_id)
        .map_or_else(|| "none".to_owned(), |m| m.cluster.clone());
    out.push_str(&format!(
        "registry: leader {leader}, term {}, revision {}, commit {}, applied {}, quorum {}\n",
        s.registry.term,
        s.registry.revision,
        s.registry.commit_index,
        s.registry.applied_index,
        if s.registry.has_quorum { "yes" } else { "NO" }
    ));
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header(vec![
        "CLUSTER",
        "GATEWAY",
        "LINK",
        "RTT p50",
        "RTT p99",
        "STREAMS",
        "EXPORTS",
        "IMPORTS",
        "LAST ERROR",
    ]);
    let imports_from = |cluster: &str| {
        s.imports
            .iter()
            .filter(|i| i.clusters.iter().any(|c| c == cluster))
            .count()
    };
    table.add_row(vec![
        format!("{} (here)", s.cluster),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        s.exports.len().to_string(),
        s.imports.len().to_string(),
        String::new(),
    ]);
    for p in &s.peers {
        table.add_row(vec![
            p.label(),
            p.gateway_address.clone(),
            p.link.label().into(),
            ms(p.rtt_p50_ms),
            ms(p.rtt_p99_ms),
            format!("{} open / {}", p.streams_active, p.streams_total),
            p.exports.to_string(),
            imports_from(&p.cluster).to_string(),
            p.last_error.clone().unwrap_or_default(),
        ]);
    }
    out.push_str(&format!("{table}\n"));
    out.push_str(&render_exports(&s.exports));
    out.push_str(&render_access(&s.access));
    out.push_str(&render_traffic(&s.traffic));
    for e in &s.ejections {
        out.push_str(&format!(
            "ejected: {} for {} ({:.0}s left, ejection {} in a row)\n",
            e.cluster, e.service, e.remaining_seconds, e.ejections
        ));
    }
    out
}

/// The export lines of `causeway status`: each export and where it comes from.
fn render_exports(exports: &[crate::status::ExportStatus]) -> String {
    let mut out = String::new();
    for e in exports {
        let ports: Vec<String> = e.ports.iter().map(ToString::to_string).collect();
        out.push_str(&format!(
            "export {}/{} ports {} from {}\n",
            e.namespace,
            e.name,
            ports.join(","),
            e.source.label()
        ));
    }
    out
}

/// The access lines of `causeway status`: the default, then hidden imports.
fn render_access(a: &crate::status::AccessStatus) -> String {
    let mut out = format!(
        "access: default {} ({}), enforce {}, {} policies, {} denied issuer(s)\n",
        a.default,
        a.default_source,
        a.enforce,
        a.policies.len(),
        a.denied_issuers.len()
    );
    for h in &a.hidden_imports {
        out.push_str(&format!(
            "  hidden import {}/{} from {}: {}\n",
            h.namespace, h.name, h.cluster, h.reason
        ));
    }
    out
}

/// The traffic policy lines of `causeway status`: what is in effect and from where,
/// what this cluster declares for whom, and conflicts.
fn render_traffic(t: &crate::status::TrafficStatus) -> String {
    let mut out = String::new();
    for p in &t.in_effect {
        out.push_str(&format!(
            "traffic policy {}: {} (from {})\n",
            p.service, p.routing, p.source
        ));
    }
    for p in &t.declared {
        out.push_str(&format!(
            "  declared for {}: {} applies to {}\n",
            p.service,
            p.routing,
            p.apply_to.join(",")
        ));
    }
    for c in &t.conflicts {
        let why = match c.followed.strip_prefix("none: ") {
            Some(reason) => reason.to_owned(),
            None => format!("{} wins", c.followed),
        };
        out.push_str(&format!(
            "  conflict {}: policy of {} not followed; {why}\n",
            c.service, c.owner
        ));
    }
    out
}

/// Runs `causeway status`.
pub async fn status(a: StatusArgs) -> Result<ExitCode> {
    let report = AdminClient::new(a.target.admin).status().await?;
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print!("{}", render_status(&report)),
    }
    Ok(ExitCode::SUCCESS)
}
