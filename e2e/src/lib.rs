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
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root".to_owned());
    }
    for tool in ["ip", "nft", "dig", "curl", "stdbuf"] {
        if !on_path(tool) {
            missing.push(tool.to_owned());
        }
    }
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

/// The `causeway` binary under test: `CAUSEWAY_BIN`, or the one cargo built next to
/// this test binary.
///
/// # Panics
///
/// When the binary does not exist: cargo does not build another package's binary for
/// these tests, so the message says how to build it.
pub fn causeway_bin() -> std::path::PathBuf {
    let bin: std::path::PathBuf = match std::env::var_os("CAUSEWAY_BIN") {
        Some(bin) => bin.into(),
        None => {
            let exe = std::env::current_exe().expect("test binary path");
            // target/<profile>/deps/<test> → target/<profile>/causeway
            exe.parent()
                .and_then(|deps| deps.parent())
                .map(|profile| profile.join("causeway"))
                .expect("test binaries live in target/<profile>/deps")
        }
    };
    assert!(
        bin.is_file(),
        "the causeway binary is missing at {}: build it with `cargo build -p causeway-gateway` \
         (same CARGO_TARGET_DIR and profile as these tests) or point CAUSEWAY_BIN at one",
        bin.display()
    );
    bin
}
