//! Reloading what may change without a restart — `[[export]]`, `[access]` and
//! `[[traffic_policy]]` — from the config file, on SIGHUP or when the file changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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

/// How often the config file is also compared with what was last applied: a
/// file event that never arrives (a missed or overflowed inotify queue, a
/// ConfigMap's symlink swap on some file systems) delays a reload by at most this.
const RECHECK_EVERY: Duration = Duration::from_secs(2);

/// Watches the config file and reloads it when its content changes: on a file
/// event, and every [`RECHECK_EVERY`] in case an event was lost. Editors replace
/// files, so the folder is watched and events are filtered by name; several
/// events for one write reload once.
pub(crate) fn watch_file(
    path: &Path,
    loaded: Option<Vec<u8>>,
    shared: Shared,
) -> Result<notify::RecommendedWatcher> {
    let name = path.file_name().map(ToOwned::to_owned);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let file = Arc::new(WatchedFile {
        path: path.to_owned(),
        applied: Mutex::new(loaded),
    });
    let runtime = tokio::runtime::Handle::current();
    let (on_event, shared_for_event) = (file.clone(), shared.clone());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let ours = event.need_rescan()
            || event
                .paths
                .iter()
                .any(|p| p.file_name().map(ToOwned::to_owned) == name);
        if ours && (event.need_rescan() || event.kind.is_modify() || event.kind.is_create()) {
            let (file, shared) = (on_event.clone(), shared_for_event.clone());
            runtime.spawn(async move {
                // Let the writer finish before reading.
                tokio::time::sleep(Duration::from_millis(100)).await;
                file.reload_if_changed(&shared);
            });
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        let cancel = shared.local.cancel.clone();
        loop {
            tokio::select! {
                () = tokio::time::sleep(RECHECK_EVERY) => file.reload_if_changed(&shared),
                () = cancel.cancelled() => return,
            }
        }
    });
    Ok(watcher)
}

/// The watched config file and the content last applied from it.
struct WatchedFile {
    path: PathBuf,
    applied: Mutex<Option<Vec<u8>>>,
}

impl WatchedFile {
    /// Reloads when the file's content differs from what was last applied. A
    /// refused reload is not retried until the content changes again.
    fn reload_if_changed(&self, shared: &Shared) {
        let Ok(content) = std::fs::read(&self.path) else {
            return;
        };
        {
            let mut applied = self.applied.lock().expect("watched file lock");
            if applied.as_ref() == Some(&content) {
                return;
            }
            *applied = Some(content);
        }
        if let Err(e) = reload_from_file(shared) {
            warn!(error = %e, "reload refused; the running configuration stays");
        }
    }
}
