//! Commands that talk to a running gateway over its admin HTTP: `status`, `check`,
//! `resolve`, `link`, `unlink`, `export`, `unexport`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};

use super::Output;
use crate::admin::{ApiError, ApiOk, LinkRequest};
use crate::config::{ExportConfig, PortConfig};
use crate::dns_probe;
use crate::status::StatusReport;

/// The default admin address of a gateway on this host.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:15090";

/// Days of validity below which `check` warns about the cluster issuer.
const ISSUER_WARN_DAYS: i64 = 7;

/// Where the gateway's admin endpoint is.
#[derive(Debug, Clone, Args)]
pub struct AdminTarget {
    /// The gateway's admin address.
    #[arg(long, env = "CAUSEWAY_ADMIN", default_value = DEFAULT_ADMIN)]
    pub admin: SocketAddr,
}

/// A client of one gateway's admin endpoint.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client for the gateway at `admin`.
    pub fn new(admin: SocketAddr) -> Self {
        Self {
            base: format!("http://{admin}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a plain HTTP client builds"),
        }
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<StatusReport> {
        let url = format!("{}/v1/status", self.base);
        let resp = self.http.get(&url).send().await.with_context(|| {
            format!("cannot reach the gateway's admin endpoint at {url}; is `causeway gateway run` running, and is --admin right?")
        })?;
        Ok(resp.error_for_status()?.json().await?)
    }

    async fn answer(resp: reqwest::Response) -> Result<String> {
        if resp.status().is_success() {
            Ok(resp.json::<ApiOk>().await?.message)
        } else {
            let status = resp.status();
            match resp.json::<ApiError>().await {
                Ok(e) => bail!("{}", e.message),
                Err(_) => bail!("the gateway answered {status}"),
            }
        }
    }

    /// `POST /v1/link`.
    pub async fn link(&self, peer: SocketAddr) -> Result<String> {
        let resp = self
            .http
            .post(format!("{}/v1/link", self.base))
            .json(&LinkRequest { peer })
            .timeout(Duration::from_secs(120))
            .send()
            .await?;
        Self::answer(resp).await
    }

    /// `DELETE /v1/clusters/{cluster}`.
    pub async fn unlink(&self, cluster: &str) -> Result<String> {
        let resp = self
            .http
            .delete(format!("{}/v1/clusters/{cluster}", self.base))
            .send()
            .await?;
        Self::answer(resp).await
    }

    /// `PUT /v1/exports`.
    pub async fn export(&self, export: &ExportConfig) -> Result<String> {
        let resp = self
            .http
            .put(format!("{}/v1/exports", self.base))
            .json(export)
            .send()
            .await?;
        Self::answer(resp).await
    }

    /// `DELETE /v1/exports/{namespace}/{name}`.
    pub async fn unexport(&self, namespace: &str, name: &str) -> Result<String> {
        let resp = self
            .http
            .delete(format!("{}/v1/exports/{namespace}/{name}", self.base))
            .send()
            .await?;
        Self::answer(resp).await
    }
}

// === status ===

/// Arguments of `causeway status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Output,
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2} ms"))
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
        "ALIVE",
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
            p.cluster.clone(),
            p.gateway_address.clone(),
            if p.alive { "✓".into() } else { "✗".into() },
            ms(p.rtt_p50_ms),
            ms(p.rtt_p99_ms),
            format!("{} open / {}", p.streams_active, p.streams_total),
            p.exports.to_string(),
            imports_from(&p.cluster).to_string(),
            p.last_error.clone().unwrap_or_default(),
        ]);
    }
    out.push_str(&format!("{table}\n"));
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

// === check ===

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
    let mut out = Vec::new();
    let cert = &s.certificate;
    out.push(check(
        "certificates valid",
        cert.expires_in_seconds > 0 && cert.issuer_expires_in_seconds > ISSUER_WARN_DAYS * 86_400,
        format!(
            "leaf expires in {}h, cluster issuer in {} days",
            cert.expires_in_seconds / 3600,
            cert.issuer_expires_in_seconds / 86_400
        ),
        "renew the cluster issuer with `causeway trust issue-cluster … --force` and restart the gateway",
    ));
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
                .map(|e| format!("{}: {e}", p.cluster))
        }))
        .collect();
    out.push(check(
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
            format!("{} trust a different bundle than {}", foreign.join(", "), s.cluster)
        },
        "give every cluster the same bundle.pem (causeway trust issue-cluster copies it from the CA folder) and restart the gateways that differ",
    ));
    out.push(check(
        "registry quorum",
        s.registry.has_quorum,
        format!(
            "{} member(s), leader {}",
            s.registry.members.len(),
            s.registry.leader_id.map_or("unknown".into(), |l| l.to_string())
        ),
        "start the registry members that are down, or remove dead ones with `causeway unlink <cluster>`",
    ));
    let dead: Vec<String> = s
        .peers
        .iter()
        .filter(|p| !p.alive)
        .map(|p| match &p.last_error {
            Some(e) => format!("{} ({e})", p.cluster),
            None => p.cluster.clone(),
        })
        .collect();
    out.push(check(
        "peers reachable",
        dead.is_empty(),
        if dead.is_empty() {
            format!("{} peer(s) answer probes", s.peers.len())
        } else {
            format!("unreachable: {}", dead.join(", "))
        },
        "check that the peer's gateway runs and UDP to its tunnel address is allowed; `causeway status` shows the last error",
    ));
    let mut wrong = Vec::new();
    for import in &s.imports {
        match dns_answers(&import.dns_name) {
            Ok(addrs) if addrs.contains(&import.address) => {}
            Ok(addrs) => wrong.push(format!("{} → {:?}", import.dns_name, addrs)),
            Err(e) => wrong.push(format!("{}: {e}", import.dns_name)),
        }
    }
    out.push(check(
        "DNS answers every import",
        wrong.is_empty(),
        if wrong.is_empty() {
            format!("{} import(s) resolve at {}", s.imports.len(), s.dns.listen)
        } else {
            wrong.join("; ")
        },
        "check the gateway log for DNS errors and that nothing else holds the DNS port",
    ));
    let unbound: Vec<String> = s
        .imports
        .iter()
        .filter(|i| !i.listening)
        .map(|i| format!("{}/{}", i.namespace, i.name))
        .collect();
    out.push(check(
        "listener for every import",
        unbound.is_empty(),
        if unbound.is_empty() {
            format!("{} import(s) listening", s.imports.len())
        } else {
            format!("not listening: {}", unbound.join(", "))
        },
        "another process may hold the import's address and port; see the gateway log",
    ));
    out
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
    let report = AdminClient::new(a.target.admin).status().await?;
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
    let results = evaluate(&report, &|name| {
        answers
            .get(name)
            .cloned()
            .unwrap_or_else(|| Err("not queried".into()))
    });
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

// === link, unlink, export, unexport ===

/// Arguments of `causeway link`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["peer", "token", "name"])))]
pub struct LinkArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// A registry member of the federation to join (`host:port`); the running local
    /// gateway joins through it.
    #[arg(long)]
    peer: Option<SocketAddr>,
    /// A join token from `causeway token create`: installs this cluster's issuer and
    /// the members to join, for the gateway's next start.
    #[arg(long, requires = "config")]
    token: Option<std::path::PathBuf>,
    /// With --token: the gateway config whose issuer folder receives the issuer.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// With --token: overwrite an existing issuer.
    #[arg(long)]
    force: bool,
    /// Kubernetes: print a ClusterLink manifest to this peer cluster instead of
    /// joining; apply it with `kubectl apply -f -`.
    #[arg(long, value_name = "PEER", requires_all = ["registry", "gateway"])]
    name: Option<String>,
    /// With --name: a registry member of the peer's federation (`host:port`);
    /// repeat for several.
    #[arg(long, value_name = "ADDR", requires = "name")]
    registry: Vec<String>,
    /// With --name: the peer gateway's tunnel address (`host:port`).
    #[arg(long, value_name = "ADDR", requires = "name")]
    gateway: Option<String>,
}

/// Prints the ClusterLink manifest of `causeway link --name`.
fn print_cluster_link(peer: String, registry: Vec<String>, gateway: String) -> Result<ExitCode> {
    use causeway_k8s::manifests::{LinkOptions, link_manifest, link_yaml};
    let link = link_manifest(LinkOptions {
        peer,
        registry,
        gateway,
        probe: Default::default(),
        token_secret_ref: None,
    })
    .map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("invalid ClusterLink:\n  {}", lines.join("\n  "))
    })?;
    print!("{}", link_yaml(&link)?);
    Ok(ExitCode::SUCCESS)
}

/// Runs `causeway link`.
pub async fn link(a: LinkArgs) -> Result<ExitCode> {
    if let (Some(name), Some(gateway)) = (a.name, a.gateway) {
        return print_cluster_link(name, a.registry, gateway);
    }
    if let (Some(token), Some(config)) = (a.token, a.config) {
        return super::token::install(super::token::InstallArgs {
            token,
            config,
            force: a.force,
        });
    }
    let peer = a.peer.context("--peer or --token is required")?;
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("joining the federation through {peer}"));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let result = AdminClient::new(a.target.admin).link(peer).await;
    spinner.finish_and_clear();
    let message = result.context("link failed; check that the peer's registry address is right and that both gateways share one trust bundle")?;
    println!("✓ {message}");
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `causeway unlink`.
#[derive(Debug, Args)]
pub struct UnlinkArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// The cluster to remove from the federation.
    cluster: String,
}

/// Runs `causeway unlink`.
pub async fn unlink(a: UnlinkArgs) -> Result<ExitCode> {
    let message = AdminClient::new(a.target.admin).unlink(&a.cluster).await?;
    println!("✓ {message}");
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `causeway export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// The service as `namespace/name`.
    service: String,
    /// Ports as `port[:target_port][/name]`, e.g. `80:8080/http`.
    #[arg(long = "port", required = true)]
    ports: Vec<String>,
    /// Endpoint IP addresses.
    #[arg(long = "endpoint", required = true)]
    endpoints: Vec<std::net::IpAddr>,
    /// Weight relative to other exporting clusters.
    #[arg(long, default_value_t = 100)]
    weight: u32,
}

fn split_service(service: &str) -> Result<(String, String)> {
    match service.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Ok((ns.into(), name.into())),
        _ => bail!("{service:?} is not namespace/name"),
    }
}

fn parse_port(spec: &str) -> Result<PortConfig> {
    let (numbers, name) = match spec.split_once('/') {
        Some((n, name)) => (n, Some(name.to_owned())),
        None => (spec, None),
    };
    let (port, target) = match numbers.split_once(':') {
        Some((p, t)) => (p, Some(t)),
        None => (numbers, None),
    };
    let num = |s: &str| {
        s.parse::<u64>()
            .with_context(|| format!("{spec:?}: {s:?} is not a number"))
    };
    Ok(PortConfig {
        name,
        port: num(port)?,
        target_port: target.map(num).transpose()?,
        protocol: "tcp".into(),
    })
}

/// Runs `causeway export`.
pub async fn export(a: ExportArgs) -> Result<ExitCode> {
    let (namespace, name) = split_service(&a.service)?;
    let export = ExportConfig {
        namespace,
        name,
        ports: a
            .ports
            .iter()
            .map(|p| parse_port(p))
            .collect::<Result<_>>()?,
        endpoints: a.endpoints,
        weight: a.weight,
        labels: Default::default(),
    };
    let message = AdminClient::new(a.target.admin).export(&export).await?;
    println!("✓ {message}");
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `causeway unexport`.
#[derive(Debug, Args)]
pub struct UnexportArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// The service as `namespace/name`.
    service: String,
}

/// Runs `causeway unexport`.
pub async fn unexport(a: UnexportArgs) -> Result<ExitCode> {
    let (namespace, name) = split_service(&a.service)?;
    let message = AdminClient::new(a.target.admin)
        .unexport(&namespace, &name)
        .await?;
    println!("✓ {message}");
    Ok(ExitCode::SUCCESS)
}

// === resolve ===

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{CertificateStatus, ImportStatus, PeerStatus, RegistryStatus};

    fn healthy() -> StatusReport {
        StatusReport {
            cluster: "west".into(),
            trust_domain: "causeway.local".into(),
            ready: true,
            certificate: CertificateStatus {
                expires_in_seconds: 80_000,
                issuer_expires_in_seconds: 300 * 86_400,
                bundle_fingerprints: vec!["aa".into()],
                ..Default::default()
            },
            registry: RegistryStatus {
                has_quorum: true,
                ..Default::default()
            },
            peers: vec![PeerStatus {
                cluster: "east".into(),
                alive: true,
                bundle_fingerprints: vec!["aa".into()],
                ..Default::default()
            }],
            imports: vec![ImportStatus {
                namespace: "shop".into(),
                name: "web".into(),
                address: "127.77.0.9".into(),
                listening: true,
                dns_name: "web.shop.svc.clusterset.local".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn status_shows_ejected_clusters() {
        let mut s = healthy();
        s.ejections = vec![crate::status::EjectionStatus {
            service: "shop/web".into(),
            cluster: "east".into(),
            remaining_seconds: 29.6,
            ejections: 2,
        }];
        let text = render_status(&s);
        assert!(
            text.contains("ejected: east for shop/web (30s left, ejection 2 in a row)"),
            "{text}"
        );
    }

    #[test]
    fn status_shows_traffic_policies_with_their_source_and_conflicts() {
        use crate::status::{TrafficConflictStatus, TrafficPolicyStatus, TrafficStatus};
        let mut s = healthy();
        s.traffic = TrafficStatus {
            in_effect: vec![TrafficPolicyStatus {
                service: "shop/web".into(),
                source: "catalog:east".into(),
                routing: "weighted east=90,west=10".into(),
                apply_to: Vec::new(),
            }],
            declared: Vec::new(),
            conflicts: vec![TrafficConflictStatus {
                service: "shop/web".into(),
                owner: "north".into(),
                followed: "catalog:east".into(),
            }],
        };
        let text = render_status(&s);
        assert!(
            text.contains("traffic policy shop/web: weighted east=90,west=10 (from catalog:east)"),
            "{text}"
        );
        assert!(
            text.contains("conflict shop/web: policy of north not followed; catalog:east wins"),
            "{text}"
        );
    }

    fn right_dns(_: &str) -> Result<Vec<String>, String> {
        Ok(vec!["127.77.0.9".into()])
    }

    #[test]
    fn a_healthy_gateway_passes_every_check() {
        let results = evaluate(&healthy(), &right_dns);
        assert!(results.iter().all(|r| r.ok), "{results:#?}");
        assert_eq!(results.len(), 6);
    }

    #[test]
    fn each_fault_fails_its_own_check_with_a_hint() {
        let mut s = healthy();
        s.peers[0].bundle_fingerprints = vec!["bb".into()];
        s.peers[0].alive = false;
        s.certificate.issuer_expires_in_seconds = 3 * 86_400;
        s.registry.has_quorum = false;
        s.imports[0].listening = false;
        let results = evaluate(&s, &|_| Ok(vec!["127.0.0.1".into()]));
        let failed: Vec<&str> = results
            .iter()
            .filter(|r| !r.ok)
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(
            failed,
            vec![
                "certificates valid",
                "one trust bundle",
                "registry quorum",
                "peers reachable",
                "DNS answers every import",
                "listener for every import"
            ]
        );
        assert!(results.iter().filter(|r| !r.ok).all(|r| r.hint.is_some()));
        let bundle = &results[1];
        assert!(
            bundle.detail.contains("east trust a different bundle"),
            "{}",
            bundle.detail
        );
    }

    #[test]
    fn routes_prefer_alive_then_nearest_and_pinned_names_reach_one_cluster() {
        let mut s = healthy();
        s.dns.zone = "clusterset.local".into();
        s.imports[0].clusters = vec!["east".into(), "north".into()];
        s.peers.push(PeerStatus {
            cluster: "north".into(),
            alive: true,
            rtt_ms: Some(0.5),
            ..Default::default()
        });
        s.peers[0].rtt_ms = Some(2.0);
        let (svc, order) = route(&s, "web.shop.svc.clusterset.local").unwrap();
        assert_eq!(svc, "shop/web");
        assert!(
            order[0].starts_with("north") && order[1].starts_with("east"),
            "{order:?}"
        );
        s.peers[1].alive = false;
        let (_, order) = route(&s, "web.shop.svc.clusterset.local.").unwrap();
        assert!(order[0].starts_with("east"), "{order:?}");
        let (_, order) = route(&s, "north.web.shop.svc.clusterset.local").unwrap();
        assert_eq!(order.len(), 1);
        assert!(route(&s, "web.shop.svc.example.org").is_err());
        assert!(route(&s, "api.shop.svc.clusterset.local").is_err());
    }

    #[test]
    fn port_specs_parse() {
        assert_eq!(
            parse_port("80:8080/http").unwrap(),
            PortConfig {
                name: Some("http".into()),
                port: 80,
                target_port: Some(8080),
                protocol: "tcp".into()
            }
        );
        assert!(parse_port("eighty").is_err());
        assert!(split_service("shop").is_err());
    }

    #[test]
    fn status_shows_the_access_default_and_hidden_imports() {
        let mut s = healthy();
        s.access = crate::status::AccessStatus {
            default: "deny".into(),
            default_source: "federation".into(),
            enforce: "new".into(),
            hidden_imports: vec![crate::status::HiddenImport {
                namespace: "shop".into(),
                name: "api".into(),
                cluster: "north".into(),
                reason: "port 9090: denied by the federation default (no policy matches)".into(),
            }],
            ..Default::default()
        };
        let text = render_status(&s);
        assert!(text.contains("access: default deny (federation)"), "{text}");
        assert!(
            text.contains("hidden import shop/api from north: port 9090: denied"),
            "{text}"
        );
    }
}
