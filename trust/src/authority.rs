//! Roots, the trust bundle, and cluster issuers: the certificate authorities of a
//! federation and the files they live in.
//!
//! This file holds the validity periods, the folder layouts, the error type and the
//! checks every loaded CA passes; `bundle` holds the trust bundle, `root` the root CA
//! and its rotation, `issuer` the cluster issuers and the leaves they mint.

mod bundle;
mod issuer;
mod root;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{DistinguishedName, DnType, KeyPair, PublicKeyData, SanType};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::cert::CertInfo;
use crate::files::{self, FileError};
use crate::name::{AuthorityId, TrustDomain};
pub use bundle::TrustBundle;
pub use issuer::{ClusterIssuer, Leaf};
pub use root::{RootCa, Rotation};

/// How long a new root is valid: ten years, rotated by hand long before.
pub const ROOT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a cluster issuer is valid unless told otherwise: one year.
pub const ISSUER_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long a gateway leaf is valid unless told otherwise: one day, so a stolen key
/// is useful briefly and renewal is exercised every day.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How far back a new certificate's validity starts, so peers whose clocks lag a
/// little accept it at once.
const BACKDATE: Duration = Duration::from_secs(60);

/// File names inside a CA folder (`causeway trust init --out DIR`).
pub mod ca_files {
    /// The current root certificate.
    pub const ROOT_CERT: &str = "root.pem";
    /// The current root's private key (mode 0600).
    pub const ROOT_KEY: &str = "root.key";
    /// Every root that verifies: the current one and any kept during rotation.
    pub const BUNDLE: &str = "bundle.pem";
    /// Where rotated-out roots and keys are kept.
    pub const RETIRED: &str = "retired";
}

/// File names inside a cluster issuer folder (`causeway trust issue-cluster --out DIR`).
pub mod issuer_files {
    /// The cluster's intermediate CA certificate.
    pub const ISSUER_CERT: &str = "issuer.pem";
    /// Its private key (mode 0600).
    pub const ISSUER_KEY: &str = "issuer.key";
    /// The federation's trust bundle at the time of issue.
    pub const BUNDLE: &str = "bundle.pem";
}

/// What went wrong with a root, issuer or bundle.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A file problem.
    #[error(transparent)]
    File(#[from] FileError),
    /// The certificate could not be parsed.
    #[error("{path}: {reason}")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A private key does not belong to its certificate.
    #[error("{key} does not match the certificate in {cert}")]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// A certificate used to sign is not a CA.
    #[error("{path}: the certificate is not a CA (basic constraints do not allow signing)")]
    NotACa {
        /// The file.
        path: PathBuf,
    },
    /// A certificate's validity ended.
    #[error("{path}: expired at {not_after}")]
    Expired {
        /// The file.
        path: PathBuf,
        /// When it ended.
        not_after: OffsetDateTime,
    },
    /// A certificate's validity has not started.
    #[error("{path}: not valid until {not_before}")]
    NotYetValid {
        /// The file.
        path: PathBuf,
        /// When it starts.
        not_before: OffsetDateTime,
    },
    /// A certificate carries no SPIFFE ID of the expected form.
    #[error("{path}: no SPIFFE URI SAN of the form {expected}")]
    MissingSpiffeId {
        /// The file.
        path: PathBuf,
        /// What form was expected.
        expected: &'static str,
    },
    /// Certificates from different trust domains were mixed.
    #[error("{path}: trust domain {found} differs from {expected}")]
    DomainMismatch {
        /// The file.
        path: PathBuf,
        /// The domain found.
        found: TrustDomain,
        /// The domain expected.
        expected: TrustDomain,
    },
    /// An issuer is not signed by any root in the bundle.
    #[error("{path}: not signed by any root in {bundle}")]
    Untrusted {
        /// The issuer file.
        path: PathBuf,
        /// The bundle file.
        bundle: PathBuf,
    },
    /// A leaf was asked for an identity of another cluster or trust domain.
    #[error("{issuer} cannot issue {id}: an issuer signs only its own cluster's identities")]
    ForeignId {
        /// The identity asked for.
        id: String,
        /// The issuer's own ID.
        issuer: String,
    },
    /// A key we generated could not be loaded for signing.
    #[error("could not load a generated key: {0}")]
    KeyLoad(String),
    /// Certificate generation failed.
    #[error("could not generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn uri_san(id: &AuthorityId) -> Result<SanType, rcgen::Error> {
    Ok(SanType::URI(id.to_string().try_into()?))
}

/// A short tag from a CA's public key for its subject name: two CAs of the same
/// kind (a root and its successor, issuers of two federations) never share a
/// name, so path building never confuses them.
fn key_tag(key: &KeyPair) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(key.subject_public_key_info())[..4])
}

fn dn(common_name: String) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Causeway");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Checks what every CA certificate we load must satisfy, naming `path` on failure.
fn check_ca(path: &Path, info: &CertInfo) -> Result<(), TrustError> {
    if !info.is_ca {
        return Err(TrustError::NotACa {
            path: path.to_owned(),
        });
    }
    let now = now();
    if now > info.not_after {
        return Err(TrustError::Expired {
            path: path.to_owned(),
            not_after: info.not_after,
        });
    }
    if now < info.not_before {
        return Err(TrustError::NotYetValid {
            path: path.to_owned(),
            not_before: info.not_before,
        });
    }
    Ok(())
}

fn parse_info(path: &Path, der: &CertificateDer<'_>) -> Result<CertInfo, TrustError> {
    CertInfo::parse(der).map_err(|e| TrustError::BadCertificate {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn check_key_matches(
    key_path: &Path,
    cert_path: &Path,
    key: &KeyPair,
    info: &CertInfo,
) -> Result<(), TrustError> {
    if key.subject_public_key_info() != info.spki_der {
        return Err(TrustError::KeyMismatch {
            key: key_path.to_owned(),
            cert: cert_path.to_owned(),
        });
    }
    Ok(())
}

fn load_key_pair(path: &Path) -> Result<KeyPair, TrustError> {
    let text = files::read_text(path)?;
    KeyPair::from_pem(&text).map_err(|e| {
        TrustError::File(FileError::BadPem {
            path: path.to_owned(),
            reason: format!("no usable private key: {e}"),
        })
    })
}
