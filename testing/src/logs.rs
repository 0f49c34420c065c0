//! Logs of the code under test, in the test's output.

/// Logs to the test output at `level`, or as `RUST_LOG` says. Safe to call from
/// every test: only the first call installs the subscriber.
pub fn init_logs(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
