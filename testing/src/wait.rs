//! Waiting on a condition with a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// How often [`eventually`] checks: short against the deadlines tests use (a
/// second or more), long enough not to busy a loaded machine.
const POLL: Duration = Duration::from_millis(20);

/// Waits until `check` returns `Some`, polling every 20 ms, or fails after `limit`
/// naming `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}
