//! External tools a test needs.

/// Whether an external tool a test needs (e.g. `openssl`, `dig`) is on the PATH.
///
/// Missing in CI (`CI` set), the test must fail: CI installs every tool its tests use.
/// Missing elsewhere, the test prints why it is skipped and the caller returns early.
pub fn require_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required in CI; .ci/run must install it"
        );
        eprintln!("skipped: {tool} is not installed (install it to run this test)");
    }
    found
}
