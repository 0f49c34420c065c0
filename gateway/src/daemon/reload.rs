//! Reloading what may change without a restart — `[[export]]`, `[access]` and
//! `[[traffic_policy]]` — from the config file, on SIGHUP or when the file changes.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use tracing::warn;

use super::{Shared, exports, policy, traffic};
use crate::config::GatewayConfig;

/// Re-reads the config file and applies its reloadable sections. The file is
/// validated as a whole first: one that does not validate changes nothing. Other
/// settings need a restart. A reload reaches every policy and the exports, so it
/// takes the whole gateway.
pub(crate) fn reload_from_file(shared: &Shared) -> Result<()> {
    let path = shared
        .local
        .config_file
        .as_ref()
        .context("this gateway was not started from a config file")?;
    let fresh = GatewayConfig::load(path, std::env::vars())?;
    policy::set_config(&shared.access, &shared.tunnel, fresh.access);
    // Traffic policies apply to new streams at once, and are published.
    let metrics = &shared.telemetry.metrics;
    traffic::set_file(
        &shared.traffic,
        &shared.tunnel,
        metrics,
        fresh.traffic_policies,
    );
    let _ = exports::apply_reloaded(&shared.exports, fresh.exports, path);
    Ok(())
}

/// Watches the config file and reloads it when it changes. Editors replace files,
/// so the folder is watched and events are filtered by name.
pub(crate) fn watch_file(path: &Path, shared: Shared) -> Result<notify::RecommendedWatcher> {
    let name = path.file_name().map(ToOwned::to_owned);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let runtime = tokio::runtime::Handle::current();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let ours = event
            .paths
            .iter()
            .any(|p| p.file_name().map(ToOwned::to_owned) == name);
        if ours && (event.kind.is_modify() || event.kind.is_create()) {
            let shared = shared.clone();
            runtime.spawn(async move {
                // Let the writer finish before reading.
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Err(e) = reload_from_file(&shared) {
                    warn!(error = %e, "reload refused; the running configuration stays");
                }
            });
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
