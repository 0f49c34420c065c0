//! The cluster issuer as a Secret, read from a folder written by
//! `causeway trust issue-cluster`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use causeway_trust::issuer_files::{BUNDLE, ISSUER_CERT, ISSUER_KEY};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::{InstallError, NAMESPACE, TRUST_SECRET, meta};

/// The three files of a cluster issuer folder. `Debug` never shows the key.
#[derive(Clone)]
pub struct TrustMaterial {
    dir: PathBuf,
    issuer_pem: Vec<u8>,
    issuer_key: Vec<u8>,
    bundle_pem: Vec<u8>,
}

impl fmt::Debug for TrustMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustMaterial")
            .field("dir", &self.dir)
            .field("issuer_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl TrustMaterial {
    /// Reads `issuer.pem`, `issuer.key` and `bundle.pem` from `dir`; a missing file is
    /// an error naming it.
    pub fn from_dir(dir: &Path) -> Result<Self, InstallError> {
        let read = |file: &'static str| {
            let path = dir.join(file);
            std::fs::read(&path).map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    InstallError::MissingTrustFile {
                        dir: dir.to_owned(),
                        file,
                    }
                } else {
                    InstallError::ReadTrustFile { path, source }
                }
            })
        };
        Ok(Self {
            dir: dir.to_owned(),
            issuer_pem: read(ISSUER_CERT)?,
            issuer_key: read(ISSUER_KEY)?,
            bundle_pem: read(BUNDLE)?,
        })
    }

    /// The Secret the gateway mounts as its issuer folder.
    pub(crate) fn to_secret(&self) -> Secret {
        let data = BTreeMap::from([
            (ISSUER_CERT.to_owned(), ByteString(self.issuer_pem.clone())),
            (ISSUER_KEY.to_owned(), ByteString(self.issuer_key.clone())),
            (BUNDLE.to_owned(), ByteString(self.bundle_pem.clone())),
        ]);
        Secret {
            metadata: meta(TRUST_SECRET, Some(NAMESPACE)),
            type_: Some("Opaque".into()),
            data: Some(data),
            ..Secret::default()
        }
    }
}
