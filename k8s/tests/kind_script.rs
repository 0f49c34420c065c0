//! `e2e/kind/run.sh` and `kind-configs/`: the script passes shellcheck, its dry run
//! prints the whole plan without Docker or kind, and the cluster configs keep the
//! clusters' addresses apart and publish the gateway's NodePorts.

mod support;

use std::net::Ipv4Addr;
use std::process::Command;

fn script() -> std::path::PathBuf {
    support::repo().join("e2e/kind/run.sh")
}

/// PATH without the directories that hold docker or kind.
fn path_without_container_tools() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let kept: Vec<_> = std::env::split_paths(&path)
        .filter(|dir| !dir.join("docker").exists() && !dir.join("kind").exists())
        .collect();
    std::env::join_paths(kept)
        .expect("PATH entries join")
        .into_string()
        .expect("a UTF-8 PATH")
}

#[test]
fn run_sh_passes_shellcheck() {
    if !causeway_testing::require_tool("shellcheck") {
        return;
    }
    let out = Command::new("shellcheck")
        .arg(script())
        .output()
        .expect("shellcheck runs");
    assert!(
        out.status.success(),
        "shellcheck e2e/kind/run.sh:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dry_run(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .env("PATH", path_without_container_tools())
        .env("CAUSEWAY_E2E_WORK", "/nonexistent/causeway-kind")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "run.sh {args:?} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn dry_run_prints_the_whole_plan_without_docker_or_kind() {
    let plan = dry_run(&["--dry-run"]);
    for cluster in ["west", "east", "north"] {
        for expected in [
            format!(
                "+ kind create cluster --config {}/kind-configs/{cluster}.yaml",
                support::repo().display()
            ),
            format!("kind load docker-image causeway:e2e --name causeway-{cluster}"),
            format!("trust issue-cluster --cluster {cluster}"),
            format!(
                "install --cluster {cluster} --trust-from /nonexistent/causeway-kind/{cluster}"
            ),
            format!("| kubectl --context kind-causeway-{cluster} apply -f -"),
        ] {
            assert!(plan.contains(&expected), "plan lacks {expected:?}:\n{plan}");
        }
    }
    for expected in [
        "+ docker build -t causeway:e2e",
        "trust init --out /nonexistent/causeway-kind/ca",
        "link --name west --registry",
        "examples/kubernetes/serviceexport.yaml",
        "kind: AccessPolicy\nmetadata:\n  name: demo-from-all",
        "http://web.demo.svc.clusterset.local",
    ] {
        assert!(plan.contains(expected), "plan lacks {expected:?}:\n{plan}");
    }
    let down = dry_run(&["--down", "--dry-run"]);
    assert!(
        down.contains("+ kind delete cluster --name causeway-north"),
        "{down}"
    );
}

fn cidr(text: &str) -> (u32, u32) {
    let (addr, len) = text.split_once('/').expect("a CIDR");
    let addr: Ipv4Addr = addr.parse().expect("an IPv4 network");
    let len: u32 = len.parse().expect("a prefix length");
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    (u32::from(addr) & mask, mask)
}

fn overlap(a: &str, b: &str) -> bool {
    let ((na, ma), (nb, mb)) = (cidr(a), cidr(b));
    let mask = ma & mb; // the shorter prefix
    na & mask == nb & mask
}

#[test]
fn kind_configs_keep_subnets_apart_and_publish_the_node_ports() {
    let mut subnets = Vec::new();
    let mut host_ports = Vec::new();
    for cluster in ["west", "east", "north"] {
        let path = support::repo().join(format!("kind-configs/{cluster}.yaml"));
        let text = std::fs::read_to_string(&path).expect("a kind config");
        let config = support::documents(&text).remove(0);
        assert_eq!(config["name"], format!("causeway-{cluster}"));
        for key in ["podSubnet", "serviceSubnet"] {
            let subnet = config["networking"][key]
                .as_str()
                .expect("a subnet")
                .to_owned();
            subnets.push((format!("{cluster}.{key}"), subnet));
        }
        let mappings = config["nodes"][0]["extraPortMappings"]
            .as_array()
            .expect("port mappings");
        let published: Vec<(u64, &str)> = mappings
            .iter()
            .map(|m| {
                host_ports.push((
                    m["hostPort"].as_u64().expect("hostPort"),
                    m["protocol"].clone(),
                ));
                (
                    m["containerPort"].as_u64().expect("containerPort"),
                    m["protocol"].as_str().expect("protocol"),
                )
            })
            .collect();
        assert_eq!(published, [(30443, "UDP"), (30444, "TCP")], "{cluster}");
    }
    for (i, (name_a, a)) in subnets.iter().enumerate() {
        for (name_b, b) in &subnets[i + 1..] {
            assert!(!overlap(a, b), "{name_a} {a} overlaps {name_b} {b}");
        }
    }
    let mut unique = host_ports.clone();
    unique.sort_by_key(|(port, _)| *port);
    unique.dedup();
    assert_eq!(
        unique.len(),
        host_ports.len(),
        "host ports collide: {host_ports:?}"
    );
}
