//! Network namespaces joined by a bridge, and partitions made with nft drop rules.

use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use nix::sched::{CloneFlags, setns};

/// Runs a command and fails with its stderr when it fails.
pub fn sh(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One namespace of the lab, with its address on the lab's bridge.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// The namespace's name (`ip netns`).
    pub name: String,
    /// Its address on the bridge.
    pub addr: std::net::Ipv4Addr,
}

impl Namespace {
    /// Runs `program args…` inside this namespace.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// Runs `f` on a thread of its own that entered this namespace: the sockets it
    /// makes, and the threads it starts, are in the namespace (sockets stay where
    /// they were made, whichever thread uses them later).
    pub fn within<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let path = format!("/var/run/netns/{}", self.name);
        let netns = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        std::thread::spawn(move || {
            setns(&netns, CloneFlags::CLONE_NEWNET).context("entering the namespace")?;
            f()
        })
        .join()
        .map_err(|_| anyhow!("a thread in namespace {} panicked", self.name))?
    }

    /// A command that runs inside this namespace, for the caller to spawn.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }
}

/// A set of namespaces on one bridge (itself in a namespace of its own), removed
/// when dropped. Addresses are 10.<lab>.0.<n>/24, used only inside these namespaces.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    bridge_ns: String,
    subnet: u8,
    /// The namespaces, in creation order.
    pub namespaces: Vec<Namespace>,
}

impl Lab {
    /// A lab with one namespace per name, named `cw<digits>-<name>`.
    pub fn new(names: &[&str]) -> Result<Self> {
        Self::with_prefix("cw", names)
    }

    /// A lab with one namespace per name, named `<base><random digits>-<name>`: a
    /// base of its own tells one kind of lab's namespaces from another's.
    pub fn with_prefix(base: &str, names: &[&str]) -> Result<Self> {
        // Namespaces are global: a unique prefix lets labs of concurrent tests coexist.
        let tag: u32 = rand::random::<u32>() % 100_000;
        let prefix = format!("{base}{tag}");
        let subnet = 100 + (tag % 100) as u8;
        let bridge_ns = format!("{prefix}-br");
        let mut lab = Self {
            prefix,
            bridge_ns: bridge_ns.clone(),
            subnet,
            namespaces: Vec::new(),
        };
        sh("ip", &["netns", "add", &bridge_ns])?;
        lab.in_bridge(&["ip", "link", "add", "br0", "type", "bridge"])?;
        lab.in_bridge(&["ip", "link", "set", "br0", "up"])?;
        for (i, name) in names.iter().enumerate() {
            lab.add(name, i as u8 + 1)?;
        }
        Ok(lab)
    }

    fn in_bridge(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["netns", "exec", &self.bridge_ns];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    fn add(&mut self, name: &str, n: u8) -> Result<()> {
        let ns = format!("{}-{name}", self.prefix);
        let host_end = format!("{}v{n}", self.prefix);
        let addr = std::net::Ipv4Addr::new(10, self.subnet, 0, n);
        sh("ip", &["netns", "add", &ns])?;
        let inside = Namespace {
            name: ns.clone(),
            addr,
        };
        // Listed at once, so that it is removed even if what follows fails.
        self.namespaces.push(inside.clone());
        // The veth pair is born in the bridge namespace and one end moves out, so
        // the host's own namespace never holds either end.
        self.in_bridge(&[
            "ip", "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        self.in_bridge(&["ip", "link", "set", &host_end, "master", "br0"])?;
        self.in_bridge(&["ip", "link", "set", &host_end, "up"])?;
        let cidr = format!("{addr}/24");
        inside.exec("ip", &["addr", "add", &cidr, "dev", "eth0"])?;
        inside.exec("ip", &["link", "set", "eth0", "up"])?;
        inside.exec("ip", &["link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The namespace called `name`.
    pub fn ns(&self, name: &str) -> &Namespace {
        let full = format!("{}-{name}", self.prefix);
        self.namespaces
            .iter()
            .find(|n| n.name == full)
            .expect("namespace of this lab")
    }

    /// Drops all traffic between `a` and every namespace in `others`, both ways, with
    /// nft rules inside `a`.
    pub fn partition(&self, a: &str, others: &[&str]) -> Result<()> {
        self.drop_rules(a, others, "")
    }

    /// Drops only TCP to and from `port` between `a` and every namespace in `others`
    /// (e.g. the registry's port: a control-plane partition that leaves the data
    /// plane up), both ways, with nft rules inside `a`.
    pub fn partition_port(&self, a: &str, others: &[&str], port: u16) -> Result<()> {
        self.drop_rules(a, others, &format!("tcp dport {port}"))?;
        self.add_rules(a, others, &format!("tcp sport {port}"))
    }

    fn drop_rules(&self, a: &str, others: &[&str], matcher: &str) -> Result<()> {
        let ns = self.ns(a);
        let _ = ns.exec("nft", &["delete", "table", "inet", "causeway_partition"]);
        let script = "table inet causeway_partition {\n  chain input { type filter hook input priority 0; policy accept; }\n  chain output { type filter hook output priority 0; policy accept; }\n}\n";
        let path = std::env::temp_dir().join(format!("{}-partition.nft", ns.name));
        std::fs::write(&path, script)?;
        ns.exec("nft", &["-f", path.to_str().expect("utf-8 temp path")])?;
        self.add_rules(a, others, matcher)
    }

    fn add_rules(&self, a: &str, others: &[&str], matcher: &str) -> Result<()> {
        let ns = self.ns(a);
        let peers: Vec<String> = others.iter().map(|o| self.ns(o).addr.to_string()).collect();
        let set = format!("{{ {} }}", peers.join(", "));
        for (chain, dir) in [("input", "saddr"), ("output", "daddr")] {
            let rule =
                format!("add rule inet causeway_partition {chain} ip {dir} {set} {matcher} drop");
            let args: Vec<&str> = rule.split_whitespace().collect();
            ns.exec("nft", &args)?;
        }
        Ok(())
    }

    /// Removes every partition rule from `a`.
    pub fn heal(&self, a: &str) -> Result<()> {
        let ns = self.ns(a);
        let _ = ns.exec("nft", &["delete", "table", "inet", "causeway_partition"]);
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = sh("ip", &["netns", "del", &ns.name]);
        }
        let _ = sh("ip", &["netns", "del", &self.bridge_ns]);
    }
}
