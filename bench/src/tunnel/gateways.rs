//! The Causeway path: two gateways in a child process, B exporting the sink and echo
//! and A importing them over QUIC/mTLS. The parent starts the child and reads where
//! A listens; the child builds the gateways and serves until its stdin closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{Context, Result};
use causeway_trust::{
    GatewayIdentity, ISSUER_VALIDITY, LEAF_LIFETIME, ROOT_VALIDITY, Role, RootCa, TrustDomain,
};
use causeway_tunnel::{
    AllowAll, Import, ImportPeer, LocalService, Metrics, ServiceTarget, Tunnel, TunnelConfig,
};
use tokio::runtime::Runtime;

use super::{ECHO, Path_, SINK, TunnelBenchArgs, wait_for_echo};

/// Starts the gateway process (this binary with `--gateways`) and waits until its
/// imports relay.
pub(super) fn start_causeway(
    args: &TunnelBenchArgs,
    sink: SocketAddr,
    echo: SocketAddr,
) -> Result<Path_> {
    let exe = std::env::current_exe().context("locate this binary")?;
    let mut child = Command::new(exe)
        .arg("tunnel")
        .arg("--gateways")
        .arg(format!("{sink},{echo}"))
        .arg("--gateway-threads")
        .arg(args.gateway_threads.to_string())
        .arg("--buffer-size")
        .arg(args.buffer_size.to_string())
        .arg("--congestion")
        .arg(&args.congestion)
        .arg("--send-window")
        .arg(args.send_window.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the gateway process")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let mut addrs = line
        .strip_prefix("READY ")
        .with_context(|| format!("gateway process said {line:?}"))?
        .trim()
        .split(',');
    let sink_in: SocketAddr = addrs.next().context("sink address")?.parse()?;
    let echo_in: SocketAddr = addrs.next().context("echo address")?.parse()?;
    let path = Path_ {
        name: "causeway",
        sink: sink_in,
        echo: echo_in,
        processes: vec![child],
    };
    wait_for_echo(path.echo)?;
    Ok(path)
}

/// The child side: gateways B (exporting the sink and echo) and A (importing
/// them), until stdin closes. With `--gateway-threads N > 0` each gateway gets
/// its own runtime of N threads, as two gateway processes would.
pub(super) async fn serve_gateways(backends: &str, args: &TunnelBenchArgs) -> Result<()> {
    let (sink, echo) = backends
        .split_once(',')
        .context("--gateways takes SINK,ECHO")?;
    let (sink, echo): (SocketAddr, SocketAddr) = (sink.parse()?, echo.parse()?);
    let root = RootCa::generate(TrustDomain::default(), ROOT_VALIDITY)?;
    let config = tunnel_config(args)?;
    let (rt_a, rt_b) = (
        runtime(args.gateway_threads)?,
        runtime(args.gateway_threads)?,
    );

    let b = start_gateway(&root, "east", config.clone(), rt_b.as_ref())?;
    b.set_local_services([
        LocalService {
            target: target(SINK),
            endpoints: vec![sink],
        },
        LocalService {
            target: target(ECHO),
            endpoints: vec![echo],
        },
    ]);
    let a = Arc::new(start_gateway(&root, "west", config, rt_a.as_ref())?);
    let listens = import_backends(&a, rt_a.as_ref(), b.local_addr()).await?;
    println!("READY {},{}", listens[0], listens[1]);
    std::io::stdout().flush()?;
    // Until the parent goes away.
    tokio::task::spawn_blocking(|| {
        let mut buf = [0u8; 64];
        while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
    })
    .await?;
    a.close();
    b.close();
    for rt in [rt_a, rt_b].into_iter().flatten() {
        rt.shutdown_background();
    }
    Ok(())
}

/// The tunnel settings the benchmark's options choose.
fn tunnel_config(args: &TunnelBenchArgs) -> Result<TunnelConfig> {
    let mut config = TunnelConfig {
        listen: "127.0.0.1:0".parse()?,
        buffer_size: args.buffer_size,
        congestion: args.congestion.parse().map_err(anyhow::Error::msg)?,
        ..TunnelConfig::default()
    };
    if args.send_window > 0 {
        config.send_window = args.send_window;
    }
    Ok(config)
}

/// A runtime of `threads` threads; `None` for 0 (the gateway shares the current one).
fn runtime(threads: usize) -> Result<Option<Runtime>> {
    if threads == 0 {
        return Ok(None);
    }
    Ok(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?,
    ))
}

fn target(name: &str) -> ServiceTarget {
    ServiceTarget::new("bench", name, 9000)
}

/// Starts the gateway of `cluster`, with an identity from `root`, on `runtime` if
/// given.
fn start_gateway(
    root: &RootCa,
    cluster: &str,
    config: TunnelConfig,
    runtime: Option<&Runtime>,
) -> Result<Tunnel> {
    let _guard = runtime.map(Runtime::enter);
    Ok(Tunnel::start(
        config,
        identity(root, cluster)?,
        Arc::new(Metrics::new()),
        Arc::new(AllowAll),
    )?)
}

fn identity(root: &RootCa, cluster: &str) -> Result<Arc<GatewayIdentity>> {
    let issuer = root.issue_cluster(cluster.parse()?, ISSUER_VALIDITY, root.bundle())?;
    Ok(GatewayIdentity::new(issuer, Role::Gateway, LEAF_LIFETIME)?)
}

/// Imports the sink and echo on A from B at `east`; where A listens for each.
async fn import_backends(
    a: &Arc<Tunnel>,
    rt_a: Option<&Runtime>,
    east: SocketAddr,
) -> Result<Vec<SocketAddr>> {
    let peers = vec![ImportPeer {
        cluster: "east".parse()?,
        replica: None,
        gateway: east,
        weight: 1,
    }];
    let mut listens = Vec::new();
    for name in [SINK, ECHO] {
        let import = Import {
            target: target(name),
            bind: "127.0.0.1:0".parse()?,
            peers: peers.clone(),
        };
        // The listener's tasks belong to A's runtime.
        let addr = match rt_a {
            Some(rt) => {
                let a = a.clone();
                rt.spawn(async move { a.add_import(import).await })
                    .await??
            }
            None => a.add_import(import).await?,
        };
        listens.push(addr);
    }
    Ok(listens)
}
