//! Install manifests.
