//! Three `causeway gateway run` processes on loopback, driven only through the CLI,
//! `dig` and `curl`, as an operator would: link, export, resolve, traffic, status and
//! check; then a gateway with the wrong trust bundle makes `check` fail with the hint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use causeway_testing::require_tool;

fn causeway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_causeway"))
}

fn run(args: &[&str]) -> Result<(bool, String)> {
    let out = causeway().args(args).output()?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// An import pool of this test process: the /16 depends on the process, so
/// two runs of these tests on one host (one loopback) do not bind the same
/// import addresses.
fn pool(third_octet: usize) -> String {
    format!("127.{}.{third_octet}.0/20", 100 + std::process::id() % 100)
}

fn free_port() -> u16 {
    causeway_testing::free_port().expect("a free loopback port")
}

/// Child processes killed when the test ends, however it ends.
#[derive(Default)]
struct Children(Vec<(String, Child, PathBuf)>);

impl Children {
    fn spawn(&mut self, name: &str, args: &[&str], log: &Path) -> Result<()> {
        let file = std::fs::File::create(log)?;
        let child = causeway()
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        self.0.push((name.to_owned(), child, log.to_owned()));
        Ok(())
    }

    fn logs(&self) -> String {
        self.0
            .iter()
            .map(|(n, _, log)| {
                format!(
                    "=== {n} ===\n{}\n",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Gw {
    name: String,
    admin: String,
    dns: u16,
    registry: SocketAddr,
}

impl Gw {
    /// A gateway on free loopback ports.
    fn new(name: &str) -> Self {
        Gw {
            name: name.into(),
            admin: format!("127.0.0.1:{}", free_port()),
            dns: free_port(),
            registry: format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
        }
    }
}

/// `causeway trust issue-cluster` for `name` from the CA folder `d/ca` into `d/name`.
fn issue(d: &Path, ca: &str, name: &str) -> Result<()> {
    let (ok, out) = run(&[
        "trust",
        "issue-cluster",
        "--cluster",
        name,
        "--ca",
        &d.join(ca).display().to_string(),
        "--out",
        &d.join(name).display().to_string(),
    ])?;
    anyhow::ensure!(ok, "{out}");
    Ok(())
}

fn config(
    dir: &Path,
    gw: &Gw,
    tunnel: u16,
    pool: &str,
    join: Option<SocketAddr>,
    echo: u16,
) -> String {
    let join = join.map_or_else(String::new, |a| format!("\"{a}\""));
    format!(
        r#"cluster = "{name}"
[trust]
issuer_dir = "{issuer}"
[registry]
listen = "{registry}"
data_dir = "{data}"
join = [{join}]
election_timeout = "500ms"
[tunnel]
listen = "127.0.0.1:{tunnel}"
probe_interval_ms = 300
[dns]
listen = "127.0.0.1:{dns}"
udp_workers = 1
[imports]
pools = ["{pool}"]
[admin]
listen = "{admin}"
[[export]]
namespace = "demo"
name = "echo"
endpoints = ["127.0.0.1"]
ports = [{{ name = "http", port = 8080, target_port = {echo} }}]
[[access.policy]]
name = "demo-from-all"
action = "allow"
from = ["*"]
namespace = "demo"
"#,
        name = gw.name,
        issuer = dir.join(&gw.name).display(),
        registry = gw.registry,
        data = dir.join(format!("data-{}", gw.name)).display(),
        dns = gw.dns,
        admin = gw.admin,
    )
}

fn status(gw: &Gw) -> Result<serde_json::Value> {
    let (ok, out) = run(&["status", "--admin", &gw.admin, "-o", "json"])?;
    anyhow::ensure!(ok, "{out}");
    Ok(serde_json::from_str(&out)?)
}

fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        match f() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{what}: not within {timeout:?}; last error: {last}")
}

fn dig(gw: &Gw, name: &str) -> Result<Vec<String>> {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &gw.dns.to_string(),
            "+short",
            "+time=1",
            "+tries=2",
            name,
        ])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect())
}

fn curl(ip: &str, port: u16) -> Result<String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "3", &format!("http://{ip}:{port}/")])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn three_processes_link_export_resolve_carry_traffic_and_pass_check() -> Result<()> {
    if !require_tool("dig") || !require_tool("curl") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let mut children = Children::default();
    let result = scenario(d, &mut children);
    if result.is_err() {
        eprintln!("{}", children.logs());
    }
    result
}

fn scenario(d: &Path, children: &mut Children) -> Result<()> {
    let p = |x: &Path| x.to_str().expect("utf-8").to_owned();
    let (ok, out) = run(&["trust", "init", "--out", &p(&d.join("ca"))])?;
    anyhow::ensure!(ok, "{out}");
    let names = ["west", "east", "north"];
    let mut gws = Vec::new();
    for (i, name) in names.iter().enumerate() {
        issue(d, "ca", name)?;
        let echo = free_port();
        children.spawn(
            &format!("{name}-echo"),
            &[
                "echo",
                "--listen",
                &format!("127.0.0.1:{echo}"),
                "--cluster",
                name,
            ],
            &d.join(format!("{name}-echo.log")),
        )?;
        let gw = Gw::new(name);
        // west bootstraps; east joins through its config; north starts alone and
        // is linked with `causeway link`.
        let join = (i == 1)
            .then_some(gws.first().map(|g: &Gw| g.registry))
            .flatten();
        let file = d.join(format!("{name}.toml"));
        std::fs::write(
            &file,
            config(d, &gw, free_port(), &pool(64 + i * 16), join, echo),
        )?;
        children.spawn(
            name,
            &["gateway", "run", "--config", &p(&file)],
            &d.join(format!("{name}.log")),
        )?;
        gws.push(gw);
    }
    let (west, east, north) = (&gws[0], &gws[1], &gws[2]);
    wait("north up", Duration::from_secs(20), || {
        Ok(status(north)?["registry"]["has_quorum"] == true)
    })?;
    let (ok, out) = run(&[
        "link",
        "--admin",
        &north.admin,
        "--peer",
        &west.registry.to_string(),
    ])?;
    anyhow::ensure!(ok, "link: {out}");
    assert!(out.contains("joined the federation"), "{out}");

    // Convergence: every gateway imports echo from both others, three alive peers
    // among the three.
    wait("convergence", Duration::from_secs(60), || {
        for gw in &gws {
            let s = status(gw)?;
            let alive = s["peers"]
                .as_array()
                .map_or(0, |p| p.iter().filter(|p| p["alive"] == true).count());
            let from = s["imports"]
                .as_array()
                .and_then(|a| a.iter().find(|i| i["name"] == "echo"))
                .and_then(|i| i["clusters"].as_array().map(Vec::len))
                .unwrap_or(0);
            if alive != 2 || from != 2 || s["ready"] != true {
                return Ok(false);
            }
        }
        Ok(true)
    })?;

    // Resolve with dig, send traffic with curl: every pair.
    for from in &gws {
        for to in gws.iter().filter(|g| g.name != from.name) {
            let name = format!("{}.echo.demo.svc.clusterset.local", to.name);
            let ips = dig(from, &name)?;
            let ip = ips
                .first()
                .with_context(|| format!("{name} from {}", from.name))?;
            let body = curl(ip, 8080)?;
            assert!(
                body.contains(&format!("hello from {}", to.name)),
                "{} → {}: {body}",
                from.name,
                to.name
            );
        }
    }

    // A run-time export on east resolves on west.
    let (ok, out) = run(&[
        "export",
        "--admin",
        &east.admin,
        "demo/extra",
        "--port",
        "9090:1/http",
        "--endpoint",
        "127.0.0.1",
    ])?;
    anyhow::ensure!(ok, "{out}");
    wait("extra resolves on west", Duration::from_secs(10), || {
        Ok(!dig(west, "extra.demo.svc.clusterset.local")?.is_empty())
    })?;
    let (ok, out) = run(&["unexport", "--admin", &east.admin, "demo/extra"])?;
    anyhow::ensure!(ok, "{out}");
    wait("extra gone on west", Duration::from_secs(10), || {
        Ok(dig(west, "extra.demo.svc.clusterset.local")?.is_empty())
    })?;

    // status -o json shows the three clusters, check passes everywhere.
    let s = status(west)?;
    let mut seen: Vec<String> = s["peers"]
        .as_array()
        .context("peers")?
        .iter()
        .filter(|p| p["alive"] == true)
        .map(|p| p["cluster"].as_str().unwrap_or_default().to_owned())
        .collect();
    seen.push(s["cluster"].as_str().unwrap_or_default().to_owned());
    seen.sort();
    assert_eq!(seen, vec!["east", "north", "west"]);
    for gw in &gws {
        let (ok, out) = run(&["check", "--admin", &gw.admin])?;
        assert!(ok, "check on {}: {out}", gw.name);
        assert_eq!(out.matches('✓').count(), 7, "{out}");
    }

    // A gateway whose bundle comes from another root cannot join, and check says why.
    let (ok, out) = run(&["trust", "init", "--out", &p(&d.join("rogue-ca"))])?;
    anyhow::ensure!(ok, "{out}");
    issue(d, "rogue-ca", "rogue")?;
    let rogue = Gw::new("rogue");
    let file = d.join("rogue.toml");
    std::fs::write(
        &file,
        config(d, &rogue, free_port(), &pool(128), Some(west.registry), 1),
    )?;
    children.spawn(
        "rogue",
        &["gateway", "run", "--config", &p(&file)],
        &d.join("rogue.log"),
    )?;
    let mut last = String::new();
    wait(
        "check on rogue names the bundle",
        Duration::from_secs(20),
        || {
            let (ok, out) = run(&["check", "--admin", &rogue.admin])?;
            last = out.clone();
            Ok(!ok
                && out.contains("✗ one trust bundle")
                && out.contains("hint: give every cluster the same bundle.pem"))
        },
    )
    .with_context(|| last.clone())?;
    Ok(())
}

#[test]
fn a_join_token_admits_a_new_cluster_and_expires() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let p = |x: &Path| x.to_str().expect("utf-8").to_owned();
    let mut children = Children::default();
    let (ok, out) = run(&["trust", "init", "--out", &p(&d.join("ca"))])?;
    anyhow::ensure!(ok, "{out}");
    issue(d, "ca", "west")?;
    let (west, east) = (Gw::new("west"), Gw::new("east"));
    let west_file = d.join("west.toml");
    std::fs::write(
        &west_file,
        config(d, &west, free_port(), &pool(160), None, 1),
    )?;
    children.spawn(
        "west",
        &["gateway", "run", "--config", &p(&west_file)],
        &d.join("west.log"),
    )?;
    let result = (|| {
        wait("west up", Duration::from_secs(20), || {
            Ok(status(&west)?["registry"]["has_quorum"] == true)
        })?;
        // The token carries west's registry address, read from west's status.
        let token = d.join("east.token");
        let (ok, out) = run(&[
            "token",
            "create",
            "--cluster",
            "east",
            "--ca",
            &p(&d.join("ca")),
            "--admin",
            &west.admin,
            "--out",
            &p(&token),
        ])?;
        anyhow::ensure!(ok, "{out}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&token)?.permissions().mode() & 0o777,
            0o600
        );
        // A token for another cluster is refused by a config for east... and the
        // right one installs east's issuer where its config expects it.
        let east_file = d.join("east.toml");
        std::fs::write(
            &east_file,
            config(d, &east, free_port(), &pool(176), None, 1),
        )?;
        let (ok, out) = run(&["link", "--token", &p(&token), "--config", &p(&east_file)])?;
        anyhow::ensure!(ok, "{out}");
        assert!(d.join("east/issuer.pem").exists());
        children.spawn(
            "east",
            &["gateway", "run", "--config", &p(&east_file)],
            &d.join("east.log"),
        )?;
        wait(
            "east joined and imports west's echo",
            Duration::from_secs(30),
            || {
                let s = status(&east)?;
                Ok(s["imports"].to_string().contains("\"echo\"")
                    && s["registry"]["members"].as_array().map_or(0, Vec::len) == 2)
            },
        )?;
        // Expiry: a token read after its expiry is refused with what to do.
        let later = time::OffsetDateTime::now_utc() + Duration::from_secs(2 * 3600);
        let err = causeway_gateway::cli::token::read(&token, later).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("expired") && text.contains("causeway token create"),
            "{text}"
        );
        Ok(())
    })();
    if result.is_err() {
        eprintln!("{}", children.logs());
    }
    result
}

#[test]
fn editing_the_config_file_reloads_exports_without_a_restart() -> Result<()> {
    if !require_tool("dig") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let p = |x: &Path| x.to_str().expect("utf-8").to_owned();
    let mut children = Children::default();
    let (ok, out) = run(&["trust", "init", "--out", &p(&d.join("ca"))])?;
    anyhow::ensure!(ok, "{out}");
    let (west, east) = (Gw::new("west"), Gw::new("east"));
    let mut files = Vec::new();
    for (g, pool, join) in [
        (&west, &pool(192), None),
        (&east, &pool(208), Some(west.registry)),
    ] {
        issue(d, "ca", &g.name)?;
        let file = d.join(format!("{}.toml", g.name));
        std::fs::write(&file, config(d, g, free_port(), pool, join, 1))?;
        children.spawn(
            &g.name,
            &["gateway", "run", "--config", &p(&file)],
            &d.join(format!("{}.log", g.name)),
        )?;
        files.push(file);
    }
    let result = (|| {
        wait("west imports east's echo", Duration::from_secs(30), || {
            Ok(!dig(&west, "east.echo.demo.svc.clusterset.local")?.is_empty())
        })?;
        let east_pid = children.0[1].1.id();
        // Add an export by editing east's file: the watcher reloads it.
        let mut text = std::fs::read_to_string(&files[1])?;
        text.push_str("[[export]]\nnamespace = \"demo\"\nname = \"added\"\nendpoints = [\"127.0.0.1\"]\nports = [{ name = \"http\", port = 8081, target_port = 1 }]\n");
        std::fs::write(&files[1], &text)?;
        wait("added resolves on west", Duration::from_secs(15), || {
            Ok(!dig(&west, "added.demo.svc.clusterset.local")?.is_empty())
        })?;
        // A broken edit is refused as a whole; the running exports stay.
        std::fs::write(&files[1], text.replace("port = 8081", "port = 70000"))?;
        let _ = Command::new("kill")
            .args(["-HUP", &east_pid.to_string()])
            .status()?;
        let east_log = d.join("east.log");
        wait(
            "east refuses the broken edit",
            Duration::from_secs(10),
            || Ok(std::fs::read_to_string(&east_log)?.contains("70000 is not a port")),
        )?;
        assert!(!dig(&west, "added.demo.svc.clusterset.local")?.is_empty());
        // Removing it again and sending SIGHUP drops it; the same process serves on.
        let without = text
            .split("[[export]]\nnamespace = \"demo\"\nname = \"added\"")
            .next()
            .unwrap_or_default()
            .to_owned();
        std::fs::write(&files[1], without)?;
        let _ = Command::new("kill")
            .args(["-HUP", &east_pid.to_string()])
            .status()?;
        wait("added gone on west", Duration::from_secs(15), || {
            Ok(dig(&west, "added.demo.svc.clusterset.local")?.is_empty())
        })?;
        assert_eq!(children.0[1].1.id(), east_pid);
        assert!(children.0[1].1.try_wait()?.is_none(), "east must still run");
        Ok(())
    })();
    if result.is_err() {
        eprintln!("{}", children.logs());
    }
    result
}
