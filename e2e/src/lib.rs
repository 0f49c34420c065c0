//! Multi-process end-to-end tests: real `causeway` processes, each cluster in its own
//! network namespace, with partitions (`nft` drop rules) and kills (`kill -9`).
//!
//! Support code for those tests lives here; the tests live in `tests/`. Everything
//! runs inside namespaces this suite creates, joined by a bridge in a namespace of its
//! own: no address outside them is used, and the host's own network is untouched.
//! See `README.md` for the tiers of tests and what each needs.

pub mod client;
pub mod cluster;
pub mod load;
pub mod netns;
pub mod process;
pub mod watch;
pub mod writer;

pub use client::{Client, Sample, percentile};
pub use cluster::{Cluster, Federation, cli_in, cluster_and_replica, exported};
pub use load::Load;
pub use netns::{Lab, Namespace};
pub use process::GatewayProcess;
pub use watch::{WatchSummary, check_watch};
pub use writer::{Write, Writer};

/// Whether this machine can run namespace tests (root and the tools). Outside CI a
/// missing capability skips the test with the reason printed; in CI (`CI` set) it
/// fails, because CI installs everything these tests use.
pub fn can_run() -> bool {
    let missing = missing(&["ip", "nft", "dig", "curl", "stdbuf"]);
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "namespace tests need {} in CI; .ci/run must provide them",
        missing.join(", ")
    );
    eprintln!("skipped: namespace tests need {}", missing.join(", "));
    false
}

/// What this machine lacks of root and `tools` (programs on `PATH`); empty when
/// it has them all.
pub fn missing(tools: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root".to_owned());
    }
    for tool in tools {
        if !on_path(tool) {
            missing.push((*tool).to_owned());
        }
    }
    missing
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// Where the `causeway` binary under test is looked for: `CAUSEWAY_BIN`, else the
/// one cargo built next to the running binary (`target/<profile>/causeway` beside
/// a benchmark binary, or one folder up from a test binary in
/// `target/<profile>/deps`). It may not exist.
pub fn causeway_bin_path() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("CAUSEWAY_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("the running binary's path");
    let beside = exe.with_file_name("causeway");
    if beside.is_file() {
        return beside;
    }
    // target/<profile>/deps/<test> → target/<profile>/causeway
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("causeway"))
        .expect("test binaries live in target/<profile>/deps")
}

/// The `causeway` binary under test ([`causeway_bin_path`]).
///
/// # Panics
///
/// When the binary does not exist: cargo does not build another package's binary for
/// these tests, so the message says how to build it.
pub fn causeway_bin() -> std::path::PathBuf {
    let bin = causeway_bin_path();
    assert!(
        bin.is_file(),
        "the causeway binary is missing at {}: build it with `cargo build -p causeway-gateway` \
         (same CARGO_TARGET_DIR and profile as these tests) or point CAUSEWAY_BIN at one",
        bin.display()
    );
    bin
}
