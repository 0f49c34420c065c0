//! Access policy where users meet it: real gateways of a [`LocalFederation`] on
//! loopback, and a caller that dials the exporting gateway's tunnel with a
//! certificate of the federation (as a peer gateway would, or as a stolen operator
//! certificate would).
//!
//! Every wait is a loop on a condition with a deadline; timings that the issue
//! promises (1 s for a policy change, 5 s for an unlink) are measured, not slept.

mod support;

use causeway_testing::init_logs;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use causeway_gateway::admin::AdminApi;
use causeway_gateway::config::{AccessSection, Enforce, PolicyConfig};
use causeway_gateway::daemon::Gateway;
use causeway_gateway::federation::{ECHO_NAMESPACE, ECHO_PORT, ECHO_SERVICE, LocalFederation};
use causeway_policy::PolicyAction;
use causeway_trust::{ClusterIssuer, GatewayIdentity, LEAF_LIFETIME, Role};
use causeway_tunnel::{AllowAll, Import, ImportPeer, Metrics, ServiceTarget, Tunnel, TunnelConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONVERGE: Duration = Duration::from_secs(30);
/// How long a policy change or an unlink may take to reach streams here. The
/// promises (a policy change within 1 s, an unlink within 5 s) are figures for a
/// quiet machine: these tests print what they took (`SUMMARY`) and fail only past
/// this bound, so that a loaded machine does not fail them for being slow.
const REACH: Duration = Duration::from_secs(15);
/// Bound for waits the issue sets no number for (catalog propagation to another
/// gateway, DNS); generous because the test machine is shared.
const WAIT: Duration = Duration::from_secs(15);

/// Federations in one process share the loopback import pools, so these tests take
/// turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn federation(clusters: &[&str]) -> Result<LocalFederation> {
    init_logs("warn");
    let fed = LocalFederation::start(clusters).await?;
    fed.wait_converged(CONVERGE).await?;
    Ok(fed)
}

/// Stops every gateway and waits until their import addresses can be bound again:
/// the next test's federation allocates the same ones.
async fn shutdown(fed: LocalFederation) -> Result<()> {
    let mut used = Vec::new();
    for m in fed.members.iter().filter_map(|m| m.gateway.as_ref()) {
        for import in m.api().status().imports {
            for port in import.ports {
                used.push(SocketAddr::new(import.address.parse()?, port));
            }
        }
    }
    fed.shutdown().await;
    within(WAIT, || async {
        for addr in &used {
            std::net::TcpListener::bind(addr).with_context(|| format!("{addr} still bound"))?;
        }
        Ok(())
    })
    .await?;
    Ok(())
}

fn echo_target() -> ServiceTarget {
    ServiceTarget::new(ECHO_NAMESPACE, ECHO_SERVICE, ECHO_PORT)
}

fn policy(name: &str, action: PolicyAction, from: &[&str]) -> PolicyConfig {
    PolicyConfig {
        name: name.into(),
        action,
        from: from.iter().map(|s| (*s).to_owned()).collect(),
        namespace: Some(ECHO_NAMESPACE.into()),
        service: Some(ECHO_SERVICE.into()),
        labels: Default::default(),
        ports: Vec::new(),
    }
}

fn access(enforce: Enforce, policies: Vec<PolicyConfig>) -> AccessSection {
    AccessSection {
        default: PolicyAction::Deny,
        enforce,
        policies,
    }
}

/// A caller outside the federation's gateways that dials `to`'s tunnel directly
/// with a certificate minted from `cluster`'s issuer, in `role`.
struct Caller {
    tunnel: Tunnel,
    listen: SocketAddr,
}

impl Caller {
    async fn start(
        fed: &LocalFederation,
        cluster: &str,
        role: Role,
        to: &Gateway,
    ) -> Result<Caller> {
        let issuer = ClusterIssuer::load(&fed.dir().join(cluster).join("issuer"))?;
        let identity = GatewayIdentity::new(issuer, role, LEAF_LIFETIME)?;
        let config = TunnelConfig {
            listen: "127.0.0.1:0".parse()?,
            probe_interval_ms: 200,
            handshake_timeout_ms: 2_000,
            answer_timeout_ms: 2_000,
            reconnect_backoff_min_ms: 50,
            reconnect_backoff_max_ms: 200,
            ..TunnelConfig::default()
        };
        let tunnel = Tunnel::start(
            config,
            identity,
            Arc::new(Metrics::new()),
            Arc::new(AllowAll),
        )?;
        let listen = tunnel
            .add_import(Import {
                target: echo_target(),
                bind: "127.0.0.1:0".parse()?,
                peers: vec![ImportPeer {
                    cluster: to.cluster().clone(),
                    replica: None,
                    gateway: to.tunnel_addr(),
                    weight: 100,
                }],
            })
            .await?;
        Ok(Caller { tunnel, listen })
    }
}

/// One HTTP GET through `addr`: the body when the echo service answered, an error
/// when the stream was refused or cut.
async fn fetch(addr: SocketAddr) -> Result<String> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out))
        .await
        .context("no answer within 5 s")??;
    let text = String::from_utf8_lossy(&out).into_owned();
    ensure!(text.contains("hello from"), "no echo answer: {text:?}");
    Ok(text)
}

/// An HTTP keep-alive connection through `addr` that has carried one request.
async fn open_stream(addr: SocketAddr) -> Result<TcpStream> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: echo\r\n\r\n")
        .await?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("hello from") {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .context("no answer within 5 s")??;
        ensure!(n > 0, "stream closed before the answer");
        seen.extend_from_slice(&buf[..n]);
    }
    Ok(tcp)
}

/// Waits until the peer closes or resets `tcp`; returns how long that took.
async fn closed_within(tcp: &mut TcpStream, deadline: Duration) -> Result<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Err(_) => bail!("the stream is still open after {deadline:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Polls `f` until it succeeds or `deadline` passes; returns the time it took.
async fn within<F, Fut, T>(deadline: Duration, mut f: F) -> Result<(Duration, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return Ok((start.elapsed(), v)),
            Err(e) if start.elapsed() > deadline => {
                return Err(e.context(format!("still failing after {deadline:?}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The value of the counter line of `metrics` that has every one of `labels`.
fn counter(metrics: &str, name: &str, labels: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

fn denied_streams(gateway: &Gateway, peer: &str) -> u64 {
    counter(
        &gateway.api().metrics_text(),
        "causeway_tunnel_streams_failed_total",
        &[
            &format!("peer=\"{peer}\""),
            "service=\"demo/echo:8080\"",
            "direction=\"inbound\"",
            "status=\"denied\"",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_by_default_then_an_allow_reaches_new_streams_within_a_second() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let fed = federation(&["west", "east"]).await?;
    let west = fed.gateway(0)?;
    let status = west.api().status();
    assert_eq!(status.access.default, "deny", "{:?}", status.access);

    // No policy allows east: its streams are answered Denied and counted.
    west.set_access(access(Enforce::New, Vec::new()));
    let caller = Caller::start(&fed, "east", Role::Gateway, west).await?;
    let refused = fetch(caller.listen).await;
    assert!(
        refused.is_err(),
        "a stream without an allowing policy passed"
    );
    let (_, ()) = within(WAIT, || async {
        ensure!(
            denied_streams(west, "east") >= 1,
            "no denied stream counted"
        );
        Ok(())
    })
    .await?;

    // An allow policy (a config reload) lets new streams through within 1 s.
    west.set_access(access(
        Enforce::New,
        vec![policy("east-reads-echo", PolicyAction::Allow, &["east"])],
    ));
    let (took, body) = within(REACH, || fetch(caller.listen)).await?;
    assert!(body.contains("hello from west"), "{body}");
    eprintln!("SUMMARY policy change to new streams: {took:?} (promise: 1 s)");

    // The federation default is explicit in `status` (recorded in the catalog).
    let (_, ()) = within(WAIT, || async {
        let a = west.api().status().access;
        ensure!(
            a.default == "deny" && a.default_source == "federation",
            "{a:?}"
        );
        ensure!(
            a.policies.contains(&"west-east-reads-echo".to_owned()),
            "{a:?}"
        );
        Ok(())
    })
    .await?;
    caller.tunnel.close();
    shutdown(fed).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_wins_and_label_selectors_and_ports_decide() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let mut fed = federation(&["west", "east"]).await?;
    // Label west's echo export in its configuration (the file's exports are the
    // file's to change), and start west again with it.
    fed.kill(0).await;
    fed.members[0].config.exports[0].labels = [("tier".to_owned(), "public".to_owned())].into();
    fed.restart(0).await?;
    let west = fed.gateway(0)?;
    let caller = Caller::start(&fed, "east", Role::Gateway, west).await?;

    let mut public = policy("public", PolicyAction::Allow, &["*"]);
    public.namespace = None;
    public.service = None;
    public.labels = [("tier".to_owned(), "public".to_owned())].into();
    west.set_access(access(Enforce::New, vec![public.clone()]));
    within(REACH, || fetch(caller.listen)).await?;

    // A selector the export does not carry matches nothing: the default denies.
    let mut internal = public.clone();
    internal.labels = [("tier".to_owned(), "internal".to_owned())].into();
    west.set_access(access(Enforce::New, vec![internal]));
    assert!(fetch(caller.listen).await.is_err(), "selector ignored");

    // Deny wins over allow.
    let mut deny = policy("no-east-on-8080", PolicyAction::Deny, &["east"]);
    deny.ports = vec![ECHO_PORT];
    west.set_access(access(Enforce::New, vec![public.clone(), deny.clone()]));
    assert!(fetch(caller.listen).await.is_err(), "allow beat deny");

    // A deny on another port does not apply to this one.
    deny.ports = vec![9999];
    west.set_access(access(Enforce::New, vec![public, deny]));
    within(REACH, || fetch(caller.listen)).await?;
    caller.tunnel.close();
    shutdown(fed).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_all_closes_an_open_stream_that_becomes_denied() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let fed = federation(&["west", "east"]).await?;
    let west = fed.gateway(0)?;
    let allow = vec![policy("east-reads-echo", PolicyAction::Allow, &["east"])];
    west.set_access(access(Enforce::All, allow));
    let caller = Caller::start(&fed, "east", Role::Gateway, west).await?;
    let (_, mut open) = within(WAIT, || open_stream(caller.listen)).await?;

    west.set_access(access(Enforce::All, Vec::new()));
    let took = closed_within(&mut open, REACH).await?;
    eprintln!("SUMMARY enforce=all closed an open stream in {took:?} (promise: 1 s)");
    assert!(denied_streams(west, "east") >= 1);
    caller.tunnel.close();
    shutdown(fed).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_importing_side_hides_what_it_may_not_use_and_says_why() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let fed = federation(&["west", "east"]).await?;
    let (west, east) = (fed.gateway(0)?, fed.gateway(1)?);
    let west_name = LocalFederation::pinned_name("west");
    let admin = causeway_gateway::cli::ops::AdminClient::new(east.admin_addr());

    // West lets only north reach its echo service: east hides the import.
    west.set_access(access(
        Enforce::New,
        vec![policy("north-only", PolicyAction::Allow, &["north"])],
    ));
    within(WAIT, || async {
        let report = admin.status().await?;
        let json = serde_json::to_value(&report)?;
        let hidden = json["access"]["hidden_imports"]
            .as_array()
            .context("hidden_imports")?;
        ensure!(
            hidden.iter().any(|h| h["cluster"] == "west"
                && h["name"] == ECHO_SERVICE
                && h["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("denied by the federation default"))),
            "{hidden:?}"
        );
        Ok(())
    })
    .await?;
    let metrics = east.api().metrics_text();
    assert!(
        metrics.contains("causeway_access_hidden_imports 1"),
        "{metrics}"
    );
    within(WAIT, || async {
        match causeway_gateway::dns_probe::query_a(
            east.dns_addr(),
            &west_name,
            Duration::from_secs(1),
        )
        .await
        {
            Ok(ips) if !ips.is_empty() => bail!("{west_name} still resolves to {ips:?}"),
            _ => Ok(()),
        }
    })
    .await?;

    // Allowed again: the name comes back.
    west.set_access(access(
        Enforce::New,
        vec![policy("all", PolicyAction::Allow, &["*"])],
    ));
    within(WAIT, || async {
        let ips = causeway_gateway::dns_probe::query_a(
            east.dns_addr(),
            &west_name,
            Duration::from_secs(1),
        )
        .await?;
        ensure!(!ips.is_empty(), "no address");
        ensure!(east.api().status().access.hidden_imports.is_empty());
        Ok(())
    })
    .await?;
    shutdown(fed).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_is_not_a_gateways_cannot_open_a_tunnel_stream() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let fed = federation(&["west", "east"]).await?;
    let west = fed.gateway(0)?;
    // Everything is allowed to every gateway; the operator role is still refused.
    west.set_access(access(
        Enforce::New,
        vec![policy("all", PolicyAction::Allow, &["*"])],
    ));
    let operator = Caller::start(&fed, "east", Role::Admin, west).await?;
    assert!(
        fetch(operator.listen).await.is_err(),
        "an admin certificate opened a stream"
    );
    let refused = counter(
        &west.api().metrics_text(),
        "causeway_tunnel_handshake_failures_total",
        &["direction=\"inbound\"", "reason=\"wrong_role\""],
    );
    assert!(refused >= 1, "no refusal counted");
    // The refused side is told the real reason, not a bare close.
    let told = "has the admin role; only gateway certificates may open tunnels";
    within(WAIT, || async {
        let errors: Vec<Option<String>> = operator
            .tunnel
            .peer_stats()
            .into_iter()
            .map(|p| p.last_error)
            .collect();
        ensure!(
            errors.iter().flatten().any(|e| e.contains(told)),
            "{errors:?}"
        );
        Ok(())
    })
    .await?;
    // The same issuer with the gateway role passes.
    let gateway = Caller::start(&fed, "east", Role::Gateway, west).await?;
    within(WAIT, || fetch(gateway.listen)).await?;
    operator.tunnel.close();
    gateway.tunnel.close();
    shutdown(fed).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlink_refuses_the_issuer_and_closes_its_connections_within_five_seconds() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let fed = federation(&["west", "east"]).await?;
    let west = fed.gateway(0)?;
    let caller = Caller::start(&fed, "east", Role::Gateway, west).await?;
    let (_, mut open) = within(WAIT, || open_stream(caller.listen)).await?;

    west.api()
        .unlink("east".into())
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let took = closed_within(&mut open, REACH).await?;
    eprintln!("SUMMARY unlink closed an open stream in {took:?} (promise: 5 s)");

    // A new handshake with east's issuer is refused.
    let before = counter(
        &west.api().metrics_text(),
        "causeway_tunnel_handshake_failures_total",
        &["direction=\"inbound\""],
    );
    let again = Caller::start(&fed, "east", Role::Gateway, west).await?;
    assert!(
        fetch(again.listen).await.is_err(),
        "the unlinked issuer got through"
    );
    // The refusal is counted when the server's side of the handshake ends, which
    // may be just after the caller gave up.
    within(WAIT, || async {
        let after = counter(
            &west.api().metrics_text(),
            "causeway_tunnel_handshake_failures_total",
            &["direction=\"inbound\""],
        );
        ensure!(after > before, "no refused handshake counted");
        Ok(())
    })
    .await?;
    let status = west.api().status();
    assert_eq!(status.access.denied_issuers.len(), 1, "{:?}", status.access);
    let metrics = west.api().metrics_text();
    assert!(
        metrics.contains("causeway_access_denied_issuers 1"),
        "{metrics}"
    );
    caller.tunnel.close();
    again.tunnel.close();
    shutdown(fed).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_of_the_config_file_changes_access_for_new_streams() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let mut fed = federation(&["west", "east"]).await?;
    // Run west from a config file, as `causeway gateway run` does.
    let file = fed.dir().join("west.toml");
    let mut config = fed.members[0].config.clone();
    config.access = access(Enforce::New, Vec::new());
    std::fs::write(&file, toml::to_string(&config)?)?;
    fed.kill(0).await;
    fed.members[0].gateway = Some(Gateway::start(config.clone(), Some(file.clone())).await?);
    let west = fed.gateway(0)?;
    let caller = Caller::start(&fed, "east", Role::Gateway, west).await?;
    assert!(fetch(caller.listen).await.is_err(), "denied by default");
    assert!(denied_streams(west, "east") >= 1);

    config.access = access(
        Enforce::New,
        vec![policy("east-reads-echo", PolicyAction::Allow, &["east"])],
    );
    std::fs::write(&file, toml::to_string(&config)?)?;
    west.reload()?;
    let (took, _) = within(REACH, || fetch(caller.listen)).await?;
    eprintln!("SUMMARY file reload to new streams: {took:?} (promise: 1 s)");
    caller.tunnel.close();
    shutdown(fed).await
}
