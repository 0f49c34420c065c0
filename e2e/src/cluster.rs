//! A federation of real gateway processes, one cluster per namespace.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use causeway_trust::{ISSUER_VALIDITY, ROOT_VALIDITY, RootCa};

use crate::netns::{Lab, Namespace};
use crate::process::GatewayProcess;

/// The port every cluster's echo service is imported on.
pub const ECHO_PORT: u16 = 8080;
/// Where the echo service listens inside its namespace.
const ECHO_TARGET: u16 = 18080;
/// Admin HTTP inside each namespace.
const ADMIN: &str = "127.0.0.1:15090";

/// Runs `causeway <args>` inside `ns` against the gateway's admin API there (a
/// cluster's namespace; callers on other threads hold a clone of it). Returns
/// whether it succeeded and everything it printed.
pub fn cli_in(ns: &Namespace, args: &[&str]) -> Result<(bool, String)> {
    let mut all = vec![args[0], "--admin", ADMIN];
    all.extend_from_slice(&args[1..]);
    let out = ns.command(&crate::causeway_bin()).args(&all).output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// One cluster: a namespace with a gateway and an echo service.
#[derive(Debug)]
pub struct Cluster {
    /// The cluster's name.
    pub name: String,
    /// Its namespace.
    pub ns: Namespace,
    /// Its config file.
    pub config: PathBuf,
    /// The gateway process.
    pub gateway: GatewayProcess,
    /// The echo service answering `hello from <name>`.
    pub echo: GatewayProcess,
}

/// Clusters in namespaces on one bridge, the first bootstrapping the registry.
#[derive(Debug)]
pub struct Federation {
    /// The clusters, in order.
    pub clusters: Vec<Cluster>,
    /// The namespaces (dropped after the processes).
    pub lab: Lab,
    dir: tempfile::TempDir,
}

/// The cluster and replica a federation member's name stands for: `east.b` is
/// replica `b` of cluster `east`; `west` is the one unnamed gateway of `west`.
pub fn cluster_and_replica(name: &str) -> (&str, Option<&str>) {
    match name.split_once('.') {
        Some((cluster, replica)) => (cluster, Some(replica)),
        None => (name, None),
    }
}

fn config(name: &str, ns: &Namespace, join: Option<std::net::Ipv4Addr>) -> String {
    let join = join.map_or_else(String::new, |a| format!("\"{a}:15444\""));
    let (cluster, replica) = cluster_and_replica(name);
    let replica = replica.map_or_else(String::new, |r| format!("replica = \"{r}\"\n"));
    format!(
        r#"cluster = "{cluster}"
{replica}[trust]
issuer_dir = "issuer"
leaf_lifetime = "{lifetime}"
[registry]
listen = "{addr}:15444"
data_dir = "data"
join = [{join}]
election_timeout = "500ms"
[tunnel]
listen = "{addr}:15443"
probe_interval_ms = 500
probe_misses = 3
[dns]
listen = "127.0.0.1:53"
[admin]
listen = "{ADMIN}"
[[export]]
namespace = "demo"
name = "echo"
endpoints = ["127.0.0.1"]
ports = [{{ name = "http", port = {ECHO_PORT}, target_port = {ECHO_TARGET} }}]
# New federations deny by default: every cluster may reach the demo namespace
# (the echo service and the services the tests export there).
[[access.policy]]
name = "demo-from-all"
action = "allow"
from = ["*"]
namespace = "demo"
"#,
        addr = ns.addr,
        lifetime = std::env::var("CAUSEWAY_E2E_LEAF_LIFETIME").unwrap_or_else(|_| "24h".into()),
    )
}

impl Federation {
    /// Creates the namespaces, a trust domain, and starts every cluster's echo
    /// service and gateway.
    pub fn start(names: &[&str]) -> Result<Self> {
        Self::start_with(names, |_, text| text)
    }

    /// Like [`Federation::start`], letting `edit` change each cluster's config text.
    ///
    /// A name `cluster.replica` (`east.b`) is one replica of a cluster's gateway, in a
    /// namespace of its own (a host of its own); the replicas of a cluster share its
    /// issuer, and each runs its own echo service, answering `hello from east.b`.
    pub fn start_with(names: &[&str], edit: impl Fn(&str, String) -> String) -> Result<Self> {
        Self::start_in(Lab::new(names)?, names, edit)
    }

    /// Like [`Federation::start_with`], in a lab the caller made: it holds a
    /// namespace for every name, and may hold more (hosts without a gateway, such
    /// as a server behind a cluster).
    pub fn start_in(
        lab: Lab,
        names: &[&str],
        edit: impl Fn(&str, String) -> String,
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let root = RootCa::generate("causeway.local".parse()?, ROOT_VALIDITY)?;
        let mut clusters = Vec::new();
        let mut issuers = std::collections::BTreeMap::new();
        let first = lab.ns(names[0]).addr;
        for (i, name) in names.iter().enumerate() {
            let ns = lab.ns(name).clone();
            let cdir = dir.path().join(name);
            let cluster = cluster_and_replica(name).0;
            if !issuers.contains_key(cluster) {
                let issuer =
                    root.issue_cluster(cluster.parse()?, ISSUER_VALIDITY, root.bundle())?;
                issuers.insert(cluster.to_owned(), issuer);
            }
            issuers[cluster].write(&cdir.join("issuer"), false)?;
            let path = cdir.join("gateway.toml");
            let text = edit(name, config(name, &ns, (i > 0).then_some(first)));
            std::fs::write(&path, text)?;
            let echo = GatewayProcess::start(
                &ns,
                &[
                    "echo",
                    "--listen",
                    &format!("127.0.0.1:{ECHO_TARGET}"),
                    "--cluster",
                    name,
                ],
                &cdir.join("echo.log"),
            )?;
            let gateway = GatewayProcess::start(
                &ns,
                &[
                    "gateway",
                    "run",
                    "--config",
                    path.to_str().context("utf-8 path")?,
                ],
                &cdir.join("gateway.log"),
            )?;
            clusters.push(Cluster {
                name: name.to_string(),
                ns,
                config: path,
                gateway,
                echo,
            });
        }
        Ok(Self { clusters, lab, dir })
    }

    /// The cluster called `name`.
    pub fn cluster(&self, name: &str) -> &Cluster {
        self.clusters
            .iter()
            .find(|c| c.name == name)
            .expect("known cluster")
    }

    /// The cluster called `name`, mutably.
    pub fn cluster_mut(&mut self, name: &str) -> &mut Cluster {
        self.clusters
            .iter_mut()
            .find(|c| c.name == name)
            .expect("known cluster")
    }

    /// The folder with every cluster's files and logs.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// `causeway status -o json` run inside the cluster's namespace.
    pub fn status(&self, name: &str) -> Result<serde_json::Value> {
        let c = self.cluster(name);
        let out = c.ns.exec(
            crate::causeway_bin().to_str().context("utf-8 path")?,
            &["status", "--admin", ADMIN, "-o", "json"],
        )?;
        Ok(serde_json::from_str(&out)?)
    }

    /// The sum of the cluster's Prometheus samples whose series starts with
    /// `series` (a metric name, optionally with the first labels), from its
    /// admin `/metrics`.
    pub fn metric(&self, name: &str, series: &str) -> Result<f64> {
        let text = self.cluster(name).ns.exec(
            "curl",
            &["-sS", "--max-time", "3", &format!("http://{ADMIN}/metrics")],
        )?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(series))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// `causeway <args>` inside the cluster's namespace, with its exit status.
    pub fn cli(&self, name: &str, args: &[&str]) -> Result<(bool, String)> {
        cli_in(&self.cluster(name).ns, args)
    }

    /// The A records `dig` gets for `name` from the cluster's own DNS (UDP).
    pub fn dig(&self, from: &str, name: &str) -> Result<Vec<String>> {
        let out = self.cluster(from).ns.exec(
            "dig",
            &[
                "@127.0.0.1",
                "-p",
                "53",
                "+short",
                "+time=1",
                "+tries=2",
                name,
                "A",
            ],
        )?;
        Ok(out
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// Resolves `name` in `from` and GETs it on the echo port; returns the body.
    pub fn request(&self, from: &str, name: &str) -> Result<String> {
        let ips = self.dig(from, name)?;
        let ip = ips
            .first()
            .with_context(|| format!("{name} does not resolve in {from}"))?;
        self.cluster(from).ns.exec(
            "curl",
            &[
                "-sS",
                "--max-time",
                "3",
                &format!("http://{ip}:{ECHO_PORT}/"),
            ],
        )
    }

    /// The name that reaches only `cluster`'s echo service.
    pub fn pinned(cluster: &str) -> String {
        format!("{cluster}.echo.demo.svc.clusterset.local")
    }

    /// The URL of `name` on the echo port, resolved by the cluster `from`.
    pub fn url(&self, from: &str, name: &str) -> Result<String> {
        let ips = self.dig(from, name)?;
        let ip = ips
            .first()
            .with_context(|| format!("{name} does not resolve in {from}"))?;
        Ok(format!("http://{ip}:{ECHO_PORT}/"))
    }

    /// `causeway registry <sub> --config <its config> <extra…>` inside the cluster's
    /// namespace (its own registry member, read with its issuer), parsed as JSON.
    pub fn registry(&self, name: &str, sub: &str, extra: &[&str]) -> Result<serde_json::Value> {
        let c = self.cluster(name);
        let mut args = vec![
            "registry",
            sub,
            "--config",
            c.config.to_str().context("utf-8 path")?,
        ];
        args.extend_from_slice(extra);
        let out =
            c.ns.exec(crate::causeway_bin().to_str().context("utf-8 path")?, &args)?;
        Ok(serde_json::from_str(&out)?)
    }

    /// Starts `causeway registry watch` against the cluster's own member, inside its
    /// namespace; its JSON lines go to the returned process's log.
    pub fn watch(&self, name: &str) -> Result<GatewayProcess> {
        let c = self.cluster(name);
        let log = self.dir.path().join(name).join("watch.log");
        GatewayProcess::start(
            &c.ns,
            &[
                "registry",
                "watch",
                "--config",
                c.config.to_str().context("utf-8 path")?,
            ],
            &log,
        )
    }

    /// Polls `check` every 200 ms until it returns true or `timeout` passes; the
    /// last error or `what` is reported on timeout.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Result<bool>,
    ) -> Result<Duration> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            match check(self) {
                Ok(true) => return Ok(start.elapsed()),
                Ok(false) => last.clear(),
                Err(e) => last = format!("{e:#}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("{what}: not within {timeout:?} {last}")
    }

    /// The clusters whose gateway runs.
    fn running(&self) -> Vec<String> {
        self.clusters
            .iter()
            .filter(|c| c.gateway.is_running())
            .map(|c| c.name.clone())
            .collect()
    }

    /// Waits until every cluster with a running gateway imports the echo service
    /// from every other running cluster.
    pub fn wait_converged(&self, timeout: Duration) -> Result<Duration> {
        let running = self.running();
        self.wait_for("convergence", timeout, |fed| {
            for name in &running {
                let s = fed.status(name)?;
                let import = s["imports"]
                    .as_array()
                    .and_then(|a| a.iter().find(|i| i["name"] == "echo"));
                let from = import
                    .and_then(|i| i["clusters"].as_array())
                    .map_or(0, Vec::len);
                if from != running.len() - 1 || import.is_none_or(|i| i["listening"] != true) {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// Waits until every running gateway's registry member counts `voters` voters.
    /// Members join as learners and are promoted once caught up, so a federation
    /// can import from every cluster before its registry survives the loss of one:
    /// a test that kills a voter waits for this first.
    pub fn wait_voters(&self, voters: usize, timeout: Duration) -> Result<Duration> {
        let running = self.running();
        self.wait_for(&format!("{voters} registry voters"), timeout, |fed| {
            for name in &running {
                let s = fed.status(name)?;
                let seen = s["registry"]["members"]
                    .as_array()
                    .map_or(0, |m| m.iter().filter(|m| m["voter"] == true).count());
                if seen != voters {
                    bail!("{name} sees {seen} voters");
                }
            }
            Ok(true)
        })
    }

    /// Dumps every gateway log (on failure, for the reader of the test output).
    pub fn logs(&self) -> String {
        self.clusters
            .iter()
            .map(|c| format!("==== {} ====\n{}", c.name, c.gateway.log()))
            .collect()
    }
}

/// Names of the `demo/…` exports of `cluster` in the catalog `snapshot` (a
/// `causeway registry get`; services are written `namespace/name`).
pub fn exported(snapshot: &serde_json::Value, cluster: &str) -> std::collections::BTreeSet<String> {
    snapshot["exports"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["value"]["cluster"] == cluster)
                .filter_map(|e| e["value"]["service"].as_str()?.strip_prefix("demo/"))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}
