//! Exports made at run time (`causeway export`, the admin API) through any replica
//! of the cluster. They are the cluster's: its record in the catalog lists them
//! (`ClusterRecord::runtime_exports`), and every replica serves what the record
//! says. The data folder keeps a copy, so a restarted gateway serves them before it
//! reaches the registry, and survives a crash and a reload of the config file.
//!
//! The file is written whole, to a temporary name, synced, then renamed over the
//! old one: after a crash it holds the set before or after the change, never a
//! part. An answer to `causeway export` is given only after the write.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use causeway_registry::{Command, Node, RuntimeExport};
use causeway_trust::ClusterName;
use tracing::{info, warn};

use super::Exports;
use crate::config::{ExportConfig, PortConfig};

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

    /// Replaces the set with `next` (the cluster record's) and saves it; `false`
    /// when it already was that set. The set is taken even when saving fails (the
    /// error says so): the record, not the copy, is what the cluster serves.
    pub(crate) fn replace(&mut self, next: Vec<ExportConfig>) -> Result<bool> {
        if next == self.exports {
            return Ok(false);
        }
        if let Err(e) = self.save(next.clone()) {
            self.exports = next;
            return Err(e);
        }
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

/// Serves the runtime exports the cluster's record lists, when it lists any (`None`:
/// no replica has put one since runtime exports became the cluster's; see
/// [`seed`]). Returns whether the set changed.
pub(crate) fn follow(exports: &Exports, listed: Option<&[RuntimeExport]>) -> bool {
    let Some(listed) = listed else {
        return false;
    };
    let next: Vec<ExportConfig> = listed
        .iter()
        .filter_map(|r| {
            let export = from_record(r);
            if export.is_none() {
                warn!(service = %r.export.service, "runtime export with an endpoint that is not an address left out");
            }
            export
        })
        .collect();
    let changed = exports.runtime.lock().expect("exports lock").replace(next);
    let changed = changed.unwrap_or_else(|e| {
        warn!(error = %format!("{e:#}"), "runtime exports taken from the cluster record but not saved");
        true
    });
    if changed {
        info!(
            exports = listed.len(),
            "runtime exports follow the cluster record"
        );
        exports.remerge();
        super::exports_changed(exports);
    }
    changed
}

/// The commands that put this gateway's saved runtime exports into its cluster's
/// record, when the record has never listed any: the first replica to start after
/// runtime exports became the cluster's hands over what it kept.
pub(crate) fn seed(exports: &Exports, node: &Node, cluster: &ClusterName) -> Vec<Command> {
    let unlisted = node.read_local(|catalog| {
        let record = catalog.cluster(cluster);
        record.is_some_and(|r| r.value.runtime_exports.is_none())
    });
    if !unlisted {
        return Vec::new();
    }
    let runtime = exports.runtime.lock().expect("exports lock");
    runtime
        .list()
        .iter()
        .filter_map(|e| to_record(cluster, e).ok())
        .map(Command::PutRuntimeExport)
        .collect()
}

/// Whether `cluster`'s record lists `namespace/name` among its runtime exports, as
/// far as the local catalog knows.
pub(crate) fn record_lists(
    node: &Node,
    cluster: &ClusterName,
    namespace: &str,
    name: &str,
) -> bool {
    node.read_local(|catalog| {
        let record = catalog.cluster(cluster);
        let listed = record.and_then(|c| c.value.runtime_exports.as_deref());
        listed
            .unwrap_or_default()
            .iter()
            .any(|r| r.export.service.namespace() == namespace && r.export.service.name() == name)
    })
}

/// The catalog record of `cluster`'s runtime export `e` (validated already).
pub(crate) fn to_record(cluster: &ClusterName, e: &ExportConfig) -> Result<RuntimeExport> {
    Ok(RuntimeExport {
        export: super::to_catalog(cluster, e)?,
        endpoints: e.endpoints.iter().map(ToString::to_string).collect(),
        target_ports: e
            .ports
            .iter()
            .map(|p| p.target_port.unwrap_or(p.port) as u16)
            .collect(),
    })
}

/// The runtime export a catalog record describes, in the form [`to_record`] reads;
/// `None` when its endpoints are not addresses (the registry checks they are).
pub(crate) fn from_record(record: &RuntimeExport) -> Option<ExportConfig> {
    let export = &record.export;
    let ports = export
        .ports
        .iter()
        .zip(&record.target_ports)
        .map(|(p, target)| PortConfig {
            // An unnamed port is published as `tcp-<port>`: unnamed again here.
            name: (p.name != format!("tcp-{}", p.port)).then(|| p.name.clone()),
            port: u64::from(p.port),
            target_port: (*target != p.port).then_some(u64::from(*target)),
            protocol: "tcp".into(),
        })
        .collect();
    Some(ExportConfig {
        namespace: export.service.namespace().to_owned(),
        name: export.service.name().to_owned(),
        ports,
        endpoints: record
            .endpoints
            .iter()
            .map(|a| a.parse().ok())
            .collect::<Option<_>>()?,
        weight: export.weight,
        labels: export.labels.clone(),
    })
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
        assert!(runtime.replace(vec![export("web", 80), export("api", 8080)])?);
        assert!(runtime.replace(vec![export("web", 81), export("api", 8080)])?);
        assert!(!runtime.replace(vec![export("web", 81), export("api", 8080)])?);
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

    #[test]
    fn a_record_reads_back_as_the_export_it_was_made_from() -> Result<()> {
        let cluster: ClusterName = "east".parse()?;
        let plain = export("web", 80);
        let mut full = export("api", 8080);
        full.ports[0].name = Some("http".into());
        full.ports[0].target_port = Some(9090);
        full.ports.push(PortConfig {
            name: None,
            port: 8443,
            target_port: Some(8443),
            protocol: "tcp".into(),
        });
        full.endpoints.push("fd00::7".parse()?);
        full.weight = 7;
        full.labels.insert("tier".into(), "front".into());
        for e in [plain, full] {
            let record = to_record(&cluster, &e)?;
            let back = from_record(&record).expect("addresses");
            assert_eq!(to_record(&cluster, &back)?, record, "{e:?}");
        }
        assert_eq!(
            from_record(&to_record(&cluster, &export("web", 80))?),
            Some(export("web", 80))
        );
        Ok(())
    }
}
