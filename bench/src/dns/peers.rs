//! The peers Causeway is measured against: nsd and unbound, each started from a
//! temporary directory with the benchmark's zone, stopped by its pid, and the CPU time
//! they and the processes they fork use.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use causeway_testing::free_port;

use super::ZONE;

/// A server process started by this run, stopped by its pid.
pub(super) struct Daemon {
    name: &'static str,
    child: Child,
    /// Where it answers queries.
    pub(super) addr: SocketAddr,
}

impl Daemon {
    /// The pid of the process started.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the daemon and what it forked.
    pub(super) fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGTERM lets nsd stop the server processes it forked; SIGKILL if it hangs.
        // Its forked processes are noted first: once it exits they are orphans.
        let forked = descendants(&processes(), self.child.id());
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.stop_forked(&forked);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} (pid {pid}) ignored SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stop_forked(&forked);
    }

    /// Stops the processes the daemon forked, by pid, if they outlived it.
    fn stop_forked(&self, forked: &[u32]) {
        let deadline = Instant::now() + Duration::from_secs(5);
        // Alive and still ours: the pid was not reused by something else.
        let alive = |p: &u32| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|cmdline| cmdline.contains(self.name))
        };
        while forked.iter().any(alive) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for p in forked.iter().filter(|p| alive(p)) {
            eprintln!("{}: forked process {p} outlived it; stopping it", self.name);
            let _ = Command::new("kill")
                .args(["-TERM", &p.to_string()])
                .status();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn spawn(
    name: &'static str,
    program: &str,
    args: &[&str],
    dir: &Path,
    port: u16,
) -> Result<Daemon> {
    let log = std::fs::File::create(dir.join(format!("{name}.out")))?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    Ok(Daemon {
        name,
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    })
}

/// Starts nsd serving `records` with `workers` server processes.
pub(super) fn start_nsd(
    dir: &Path,
    records: &BTreeMap<String, std::net::Ipv4Addr>,
    workers: usize,
) -> Result<Daemon> {
    let dir = dir.join("nsd");
    std::fs::create_dir_all(&dir)?;
    let mut zone = format!(
        "$ORIGIN {ZONE}.\n$TTL 5\n@ IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 604800 5\n@ IN NS ns.{ZONE}.\nns IN A 127.0.0.1\n"
    );
    for (name, address) in records {
        writeln!(zone, "{name}. IN A {address}")?;
    }
    std::fs::write(dir.join("zone"), zone)?;
    let port = free_port()?;
    let d = dir.display();
    let conf = format!(
        "server:\n  ip-address: 127.0.0.1@{port}\n  server-count: {workers}\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  logfile: \"{d}/nsd.log\"\n  verbosity: 0\n  do-ip6: no\n  reuseport: yes\nremote-control:\n  control-enable: no\nzone:\n  name: {ZONE}\n  zonefile: \"{d}/zone\"\n"
    );
    let conf_path = dir.join("nsd.conf");
    std::fs::write(&conf_path, conf)?;
    let conf_arg = conf_path.display().to_string();
    spawn("nsd", "nsd", &["-d", "-c", &conf_arg], &dir, port)
}

/// Starts unbound serving `records` as local data with `workers` threads.
pub(super) fn start_unbound(
    dir: &Path,
    records: &BTreeMap<String, std::net::Ipv4Addr>,
    workers: usize,
) -> Result<Daemon> {
    let dir = dir.join("unbound");
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let d = dir.display();
    let mut conf = format!(
        "server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  num-threads: {workers}\n  so-reuseport: yes\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  use-syslog: no\n  logfile: \"{d}/unbound.log\"\n  verbosity: 0\n  do-ip6: no\n  do-daemonize: no\n  access-control: 127.0.0.0/8 allow\n  module-config: \"iterator\"\n  local-zone: \"{ZONE}.\" static\n"
    );
    for (name, address) in records {
        writeln!(conf, "  local-data: \"{name}. 5 IN A {address}\"")?;
    }
    conf.push_str("remote-control:\n  control-enable: no\n");
    let conf_path = dir.join("unbound.conf");
    std::fs::write(&conf_path, conf)?;
    let conf_arg = conf_path.display().to_string();
    spawn("unbound", "unbound", &["-d", "-c", &conf_arg], &dir, port)
}

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ, 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

/// Every process: pid → (parent pid, user + system CPU seconds).
fn processes() -> BTreeMap<u32, (u32, f64)> {
    // Fields after the command name: state, ppid, ..., utime (14th), stime (15th).
    let read = |stat: &str| -> Option<(u32, f64)> {
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ppid = fields.get(1)?.parse().ok()?;
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some((ppid, ticks / CLOCK_TICKS))
    };
    let mut table = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return table;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if let Some(parsed) = read(&stat) {
            table.insert(pid, parsed);
        }
    }
    table
}

/// The processes below `pid` (children, grandchildren, ...).
fn descendants(table: &BTreeMap<u32, (u32, f64)>, pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for (&other, &(mut parent, _)) in table {
        // Walk up; the depth bound guards against a pid reused mid-scan.
        for _ in 0..16 {
            if parent == pid {
                found.push(other);
                break;
            }
            match table.get(&parent) {
                Some(&(up, _)) if parent > 1 => parent = up,
                _ => break,
            }
        }
    }
    found
}

/// User and system CPU seconds of process `pid`, and with `below` of every process
/// below it too (nsd's server runs in a grandchild of the process started).
pub(super) fn cpu_seconds(pid: u32, below: bool) -> Result<f64> {
    let table = processes();
    let own = table
        .get(&pid)
        .with_context(|| format!("no process {pid}"))?
        .1;
    let others = if below {
        descendants(&table, pid)
            .iter()
            .filter_map(|p| table.get(p))
            .map(|(_, t)| t)
            .sum()
    } else {
        0.0
    };
    Ok(own + others)
}
