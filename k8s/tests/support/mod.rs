//! Helpers shared by the integration tests: repository paths and YAML documents.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in the repository")
        .to_owned()
}

/// `examples/kubernetes/`.
pub(crate) fn examples() -> PathBuf {
    repo().join("examples/kubernetes")
}

/// Every non-empty document of a multi-document YAML text, as JSON.
pub(crate) fn documents(yaml: &str) -> Vec<serde_json::Value> {
    serde_norway::Deserializer::from_str(yaml)
        .filter_map(|doc| {
            Option::<serde_json::Value>::deserialize(doc).expect("every document parses")
        })
        .collect()
}
