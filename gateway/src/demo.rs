//! `causeway demo`: three clusters federated on this machine, traffic and DNS
//! across them, shown live; failover on request.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use tokio::io::AsyncBufReadExt;
use tokio::sync::RwLock;

use crate::admin::AdminApi;
use crate::federation::LocalFederation;

const CLUSTERS: [&str; 3] = ["west", "east", "north"];
/// The cluster stopped to show failover.
const FAILOVER_VICTIM: usize = 2;
/// How long convergence may take before the demo gives up.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `causeway demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run the checks once without the live view and exit 0 only if traffic crossed
    /// in every direction and failover worked.
    #[arg(long)]
    once: bool,
    /// In the live view, stop north's gateway after this many seconds to show
    /// failover (otherwise press f then Enter).
    #[arg(long, value_name = "SECONDS")]
    failover: Option<u64>,
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner.set_message("creating a trust domain, issuers and three gateways (west, east, north)");
    let fed = LocalFederation::start(&CLUSTERS).await?;
    spinner.set_message("waiting for the catalog to converge and imports to listen");
    let converged = fed.wait_converged(CONVERGE_TIMEOUT).await;
    spinner.finish_and_clear();
    converged?;
    println!(
        "✓ three gateways federated in {:.1}s (trust and data in {})",
        started.elapsed().as_secs_f64(),
        fed.dir().display()
    );
    show_dns(&fed).await?;
    let crossed = cross_traffic(&fed).await;
    let all_crossed = crossed.iter().all(|(_, _, r)| r.is_ok());
    if args.once {
        let mut fed = fed;
        let failover = failover(&mut fed).await;
        match &failover {
            Ok(took) => println!(
                "✓ failover: {} stopped; new connections from west reached east after {:.2}s",
                CLUSTERS[FAILOVER_VICTIM],
                took.as_secs_f64()
            ),
            Err(e) => println!("✗ failover: {e:#}"),
        }
        fed.shutdown().await;
        return Ok(if all_crossed && failover.is_ok() {
            println!("demo passed: traffic crossed in every direction");
            ExitCode::SUCCESS
        } else {
            println!("demo FAILED");
            ExitCode::FAILURE
        });
    }
    live(fed, args.failover).await
}

async fn show_dns(fed: &LocalFederation) -> Result<()> {
    println!("\nDNS (each cluster's gateway answers for clusterset.local):");
    for (i, m) in fed.members.iter().enumerate() {
        let server = fed.gateway(i)?.dns_addr();
        let name = LocalFederation::service_name();
        let ips = crate::dns_probe::query_a(server, &name, Duration::from_secs(2)).await?;
        println!("  {:<6} {name} → {ips:?}", m.cluster);
    }
    Ok(())
}

type Crossing = (String, String, Result<String>);

/// One request from every cluster to every other cluster's pinned name.
async fn cross_traffic(fed: &LocalFederation) -> Vec<Crossing> {
    let mut out = Vec::new();
    for (i, from) in fed.members.iter().enumerate() {
        for to in fed.members.iter().filter(|m| m.cluster != from.cluster) {
            let result = fed
                .request(i, &LocalFederation::pinned_name(&to.cluster))
                .await
                .and_then(|body| {
                    if body.contains(&format!("hello from {}", to.cluster)) {
                        Ok(body.trim().to_owned())
                    } else {
                        bail!("answered by the wrong cluster: {}", body.trim())
                    }
                });
            out.push((from.cluster.clone(), to.cluster.clone(), result));
        }
    }
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["FROM", "TO", "RESULT"]);
    for (from, to, r) in &out {
        let cell = match r {
            Ok(body) => format!("✓ {body}"),
            Err(e) => format!("✗ {e:#}"),
        };
        table.add_row(vec![from.clone(), to.clone(), cell]);
    }
    println!(
        "\nTraffic across every pair (GET http://<cluster>.echo.demo.svc.clusterset.local:8080/):\n{table}"
    );
    out
}

/// Stops the victim and measures how long until new connections from west to the
/// unpinned name are answered by east only.
async fn failover(fed: &mut LocalFederation) -> Result<Duration> {
    let name = LocalFederation::service_name();
    fed.kill(FAILOVER_VICTIM).await;
    let stopped = Instant::now();
    let deadline = stopped + Duration::from_secs(15);
    let mut streak = 0;
    while Instant::now() < deadline {
        match fed.request(0, &name).await {
            Ok(body) if body.contains("hello from east") => {
                streak += 1;
                if streak >= 5 {
                    return Ok(stopped.elapsed());
                }
            }
            _ => streak = 0,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("new connections did not settle on east within 15s")
}

async fn live(fed: LocalFederation, auto_failover: Option<u64>) -> Result<ExitCode> {
    let fed = Arc::new(RwLock::new(fed));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    // Background traffic so the numbers move: every pair, twice a second.
    let traffic = {
        let (fed, ok, failed) = (fed.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            loop {
                {
                    let fed = fed.read().await;
                    for i in 0..fed.members.len() {
                        if fed.members[i].gateway.is_none() {
                            continue;
                        }
                        for to in &fed.members {
                            // Only running clusters: requests pinned to a stopped one
                            // would fail by design.
                            if to.cluster == fed.members[i].cluster || to.gateway.is_none() {
                                continue;
                            }
                            let to = to.cluster.as_str();
                            let counter =
                                match fed.request(i, &LocalFederation::pinned_name(to)).await {
                                    Ok(_) => &ok,
                                    Err(_) => &failed,
                                };
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let started = Instant::now();
    let mut failed_over = false;
    let mut stdin_open = true;
    let mut note = String::new();
    loop {
        if let Some(after) = auto_failover
            && !failed_over
            && started.elapsed() >= Duration::from_secs(after)
        {
            note = trigger_failover(&fed).await;
            failed_over = true;
        }
        draw(&*fed.read().await, &ok, &failed, &note);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(l)) if l.trim() == "f" && !failed_over => {
                    note = trigger_failover(&fed).await;
                    failed_over = true;
                }
                Ok(Some(l)) if l.trim() == "q" => break,
                // No terminal (or it closed): keep refreshing until Ctrl-C.
                Ok(None) | Err(_) => stdin_open = false,
                Ok(Some(_)) => {}
            },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    traffic.abort();
    let _ = traffic.await;
    let fed = Arc::try_unwrap(fed)
        .map_err(|_| anyhow::anyhow!("traffic task still holds the federation"))?
        .into_inner();
    fed.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn trigger_failover(fed: &RwLock<LocalFederation>) -> String {
    let mut fed = fed.write().await;
    fed.kill(FAILOVER_VICTIM).await;
    format!(
        "{} stopped: requests to echo.demo.svc.clusterset.local now go to the remaining clusters",
        CLUSTERS[FAILOVER_VICTIM]
    )
}

fn draw(fed: &LocalFederation, ok: &AtomicU64, failed: &AtomicU64, note: &str) {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "LINK",
        "ALIVE",
        "RTT",
        "STREAMS",
        "BYTES OUT",
        "BYTES IN",
        "LAST ERROR",
    ]);
    for m in &fed.members {
        let Some(g) = &m.gateway else {
            table.add_row(vec![format!("{} (stopped)", m.cluster)]);
            continue;
        };
        for p in g.api().status().peers {
            table.add_row(vec![
                format!("{} → {}", m.cluster, p.cluster),
                if p.alive { "✓".into() } else { "✗".into() },
                p.rtt_ms.map_or("-".into(), |r| format!("{r:.2} ms")),
                format!("{} open / {}", p.streams_active, p.streams_total),
                p.bytes_sent.to_string(),
                p.bytes_received.to_string(),
                p.last_error.unwrap_or_default(),
            ]);
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "\x1b[2J\x1b[H");
    let _ = writeln!(
        out,
        "Causeway demo — three clusters on this machine. Requests ok: {}, failed: {}",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "{table}");
    if !note.is_empty() {
        let _ = writeln!(out, "{note}");
    }
    let _ = writeln!(
        out,
        "f + Enter: stop north (failover)   q + Enter or Ctrl-C: quit"
    );
    let _ = out.flush();
}
