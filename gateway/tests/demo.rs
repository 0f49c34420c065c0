//! The README's first command, run the way CI runs it: `causeway demo --once` must
//! federate three clusters, carry traffic in every direction and fail over.

use std::process::Command;

#[test]
fn the_demo_passes_in_one_shot_mode() {
    let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["demo", "--once"])
        .output()
        .expect("causeway runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("demo passed"), "{stdout}");
    for (from, to) in [
        ("west", "east"),
        ("west", "north"),
        ("east", "west"),
        ("east", "north"),
        ("north", "west"),
        ("north", "east"),
    ] {
        let row = stdout
            .lines()
            .find(|l| l.contains(&format!("│ {from:<5} ┆ {to:<5} ┆")))
            .unwrap_or_else(|| panic!("no row {from} → {to} in:\n{stdout}"));
        assert!(row.contains(&format!("✓ hello from {to}")), "{row}");
    }
    assert!(stdout.contains("✓ failover"), "{stdout}");
}
