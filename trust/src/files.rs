//! Reading and writing PEM files with errors that name the file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rustls_pki_types::{CertificateDer, pem::PemObject};

/// A problem with one file on disk.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not the PEM it should be.
    #[error("{path}: unreadable PEM: {reason}")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The file exists and overwriting was not asked for.
    #[error("{path} already exists; pass --force to overwrite it")]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

/// Longest PEM file we read: a bundle of many roots fits easily, a mistaken large
/// file is refused before it is parsed.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

fn read_bounded(path: &Path) -> Result<Vec<u8>, FileError> {
    let io = |source| FileError::Io {
        path: path.to_owned(),
        source,
    };
    let len = fs::metadata(path).map_err(io)?.len();
    if len > MAX_PEM_BYTES {
        return Err(FileError::BadPem {
            path: path.to_owned(),
            reason: format!("{len} bytes is larger than the {MAX_PEM_BYTES}-byte limit"),
        });
    }
    fs::read(path).map_err(io)
}

/// Reads every certificate in a PEM file; at least one must be there.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let bytes = read_bounded(path)?;
    parse_certs(&bytes).map_err(|reason| FileError::BadPem {
        path: path.to_owned(),
        reason,
    })
}

/// Parses every certificate in PEM text; at least one must be there.
pub(crate) fn parse_certs(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(certs)
}

/// Reads a whole PEM file as text (for rcgen, which parses PEM itself).
pub(crate) fn read_text(path: &Path) -> Result<String, FileError> {
    let bytes = read_bounded(path)?;
    String::from_utf8(bytes).map_err(|_| FileError::BadPem {
        path: path.to_owned(),
        reason: "not UTF-8 text".into(),
    })
}

/// Whether a file may be written: absent, or present and `force` given.
pub(crate) fn check_writable(path: &Path, force: bool) -> Result<(), FileError> {
    if !force && path.exists() {
        return Err(FileError::Exists {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Writes `contents` to `path`, creating parent folders. Secrets get mode 0600 from
/// the moment the file exists, never world-readable for an instant.
pub(crate) fn write(path: &Path, contents: &str, secret: bool) -> Result<(), FileError> {
    let io = |source| FileError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path).map_err(io)?;
    #[cfg(unix)]
    if secret {
        // An existing file keeps its old mode on open; tighten it explicitly.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// PEM text for a list of DER certificates.
pub fn certs_to_pem<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> String {
    certs
        .into_iter()
        .map(|c| to_pem("CERTIFICATE", c.as_ref()))
        .collect()
}

/// One PEM block with LF line endings, as RFC 7468 files have (the `pem` crate
/// writes CRLF unless told otherwise, which some parsers read wrongly).
pub(crate) fn to_pem(tag: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(tag, der.to_vec()), config)
}
