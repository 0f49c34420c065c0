//! `causeway trust inspect`: what a certificate file holds and whether it verifies.

use std::path::Path;

use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::authority::{TrustBundle, TrustError};
use crate::cert::{CertInfo, signed_by};
use crate::files;
use crate::verify::verify_chain;

/// What an operator wants to know about one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateReport {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// The SPIFFE ID in its URI SAN, if any.
    pub spiffe_id: Option<String>,
    /// Serial number, hex.
    pub serial: String,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// Whole days until it expires (negative once expired).
    pub days_left: i64,
    /// Whether it is a CA.
    pub is_ca: bool,
    /// SHA-256 fingerprint of the DER certificate, hex.
    pub sha256_fingerprint: String,
    /// The verdict against a bundle, when one was given.
    pub verification: Option<Verification>,
}

/// Whether a certificate verifies against a bundle, and why not.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Verification {
    /// It chains to a root in the bundle and is valid now.
    Verified,
    /// It does not; the reason says why.
    Failed {
        /// What failed.
        reason: String,
    },
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Reports on the first certificate in `path`; the rest of the file is taken as its
/// chain (intermediates). With a bundle, also says whether it verifies.
pub fn inspect_file(
    path: &Path,
    bundle: Option<&TrustBundle>,
) -> Result<CertificateReport, TrustError> {
    let certs = files::read_certs(path)?;
    let info = CertInfo::parse(&certs[0]).map_err(|e| TrustError::BadCertificate {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let now = OffsetDateTime::now_utc();
    let verification = bundle.map(|b| match verify(b, &certs, &info, now) {
        Ok(()) => Verification::Verified,
        Err(reason) => Verification::Failed { reason },
    });
    Ok(CertificateReport {
        subject: info.subject.clone(),
        issuer: info.issuer.clone(),
        spiffe_id: info.spiffe_id.as_ref().map(|id| id.to_string()),
        serial: info.serial.clone(),
        not_before: rfc3339(info.not_before),
        not_after: rfc3339(info.not_after),
        days_left: (info.not_after - now).whole_days(),
        is_ca: info.is_ca,
        sha256_fingerprint: info.sha256.clone(),
        verification,
    })
}

fn verify(
    bundle: &TrustBundle,
    certs: &[CertificateDer<'static>],
    info: &CertInfo,
    now: OffsetDateTime,
) -> Result<(), String> {
    if !info.is_ca {
        let provider = rustls::crypto::ring::default_provider();
        let unix = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            now.unix_timestamp().max(0) as u64,
        ));
        return verify_chain(
            bundle,
            &provider,
            &certs[0],
            &certs[1..],
            unix,
            webpki::KeyUsage::client_auth(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string());
    }
    // A CA (a root or a cluster issuer): walk signatures up to a bundle root.
    if !info.is_valid_at(now) {
        return Err(format!(
            "outside its validity window ({} to {})",
            rfc3339(info.not_before),
            rfc3339(info.not_after)
        ));
    }
    if bundle.roots().iter().any(|r| r == &certs[0]) {
        return Ok(());
    }
    let mut current = &certs[0];
    for _ in 0..certs.len() {
        if let Some(_root) = bundle.roots().iter().find(|r| signed_by(current, r)) {
            return Ok(());
        }
        match certs
            .iter()
            .find(|c| *c != current && signed_by(current, c))
        {
            Some(parent) => current = parent,
            None => break,
        }
    }
    Err("not signed by any root in the bundle".into())
}
