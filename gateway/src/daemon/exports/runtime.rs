//! Exports made at run time (`causeway export`, the admin API), kept in the data
//! folder so that they survive a restart, a crash and a reload of the config file.
//!
//! The file is written whole, to a temporary name, synced, then renamed over the
//! old one: after a crash it holds the set before or after the change, never a
//! part. An answer to `causeway export` is given only after the write.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tracing::{info, warn};

use crate::config::ExportConfig;

/// The file in the data folder that holds the runtime exports.
pub(crate) const RUNTIME_EXPORTS_FILE: &str = "runtime-exports.json";

/// Largest runtime exports file read: 10,000 exports of a few hundred bytes.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The runtime exports and the file that keeps them.
#[derive(Debug)]
pub(crate) struct RuntimeExports {
    path: PathBuf,
    exports: Vec<ExportConfig>,
}

impl RuntimeExports {
    /// The runtime exports saved in `data_dir`; none when the file is missing. An
    /// export that no longer validates is left out and logged; a file that cannot
    /// be read at all is an error, so that nothing is silently dropped.
    pub(crate) fn load(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(RUNTIME_EXPORTS_FILE);
        let exports = match read_bounded(&path)? {
            None => Vec::new(),
            Some(bytes) => serde_json::from_slice::<Vec<ExportConfig>>(&bytes)
                .with_context(|| format!("{} is not a list of exports", path.display()))?,
        };
        let mut valid = Vec::with_capacity(exports.len());
        for e in exports {
            let problems: Vec<String> = e.validate().iter().map(ToString::to_string).collect();
            if problems.is_empty() {
                valid.push(e);
            } else {
                warn!(service = %format!("{}/{}", e.namespace, e.name), problems = %problems.join("; "), "runtime export left out");
            }
        }
        if !valid.is_empty() {
            info!(exports = valid.len(), file = %path.display(), "runtime exports restored");
        }
        Ok(Self {
            path,
            exports: valid,
        })
    }

    /// The runtime exports, in the order they were made.
    pub(crate) fn list(&self) -> &[ExportConfig] {
        &self.exports
    }

    /// Puts `export` (replacing one of the same service) and saves the set; on a
    /// failed save nothing changes.
    pub(crate) fn put(&mut self, export: ExportConfig) -> Result<()> {
        let mut next = self.exports.clone();
        next.retain(|e| !(e.namespace == export.namespace && e.name == export.name));
        next.push(export);
        self.save(next)
    }

    /// Removes the runtime export of `namespace/name` and saves the set; `false`
    /// when there is none.
    pub(crate) fn remove(&mut self, namespace: &str, name: &str) -> Result<bool> {
        let mut next = self.exports.clone();
        next.retain(|e| !(e.namespace == namespace && e.name == name));
        if next.len() == self.exports.len() {
            return Ok(false);
        }
        self.save(next)?;
        Ok(true)
    }

    fn save(&mut self, next: Vec<ExportConfig>) -> Result<()> {
        let text = serde_json::to_vec_pretty(&next).context("encoding the runtime exports")?;
        write_durably(&self.path, &text)
            .with_context(|| format!("saving the runtime exports to {}", self.path.display()))?;
        self.exports = next;
        Ok(())
    }
}

/// The file's bytes, `None` when it does not exist; refuses one over the bound.
fn read_bounded(path: &Path) -> Result<Option<Vec<u8>>> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if len > MAX_FILE_BYTES {
        bail!(
            "{} holds {len} bytes; at most {MAX_FILE_BYTES}",
            path.display()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(bytes))
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one:
/// a synced temporary file renamed over it, then the folder synced.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(name: &str, port: u64) -> ExportConfig {
        ExportConfig {
            namespace: "shop".into(),
            name: name.into(),
            ports: vec![crate::config::PortConfig {
                name: None,
                port,
                target_port: None,
                protocol: "tcp".into(),
            }],
            endpoints: vec!["127.0.0.1".parse().unwrap()],
            weight: 100,
            labels: Default::default(),
        }
    }

    #[test]
    fn saved_exports_load_back_and_bad_entries_are_left_out() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut runtime = RuntimeExports::load(dir.path())?;
        assert!(runtime.list().is_empty());
        runtime.put(export("web", 80))?;
        runtime.put(export("api", 8080))?;
        runtime.put(export("web", 81))?;
        assert!(runtime.remove("shop", "api")?);
        assert!(!runtime.remove("shop", "api")?);
        let again = RuntimeExports::load(dir.path())?;
        assert_eq!(again.list(), [export("web", 81)]);

        let mut bad = export("bad", 70_000);
        bad.namespace = "Shop".into();
        let text = serde_json::to_vec(&vec![export("web", 81), bad])?;
        std::fs::write(dir.path().join(RUNTIME_EXPORTS_FILE), text)?;
        assert_eq!(
            RuntimeExports::load(dir.path())?.list(),
            [export("web", 81)]
        );

        std::fs::write(dir.path().join(RUNTIME_EXPORTS_FILE), "{not json")?;
        let err = RuntimeExports::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not a list of exports"), "{err}");
        Ok(())
    }
}
