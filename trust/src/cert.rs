//! What Causeway reads out of one X.509 certificate.

use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::name::AuthorityId;

/// The facts of one certificate that trust decisions and reports need.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// Subject distinguished name, RFC 4514 text.
    pub subject: String,
    /// Issuer distinguished name, RFC 4514 text.
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Start of the validity window.
    pub not_before: OffsetDateTime,
    /// End of the validity window.
    pub not_after: OffsetDateTime,
    /// Whether basic constraints mark it as a CA.
    pub is_ca: bool,
    /// The path length constraint of a CA, if any.
    pub path_len: Option<u32>,
    /// The Causeway SPIFFE ID among its URI SANs, if one parses.
    pub spiffe_id: Option<AuthorityId>,
    /// Every URI SAN, as written.
    pub uris: Vec<String>,
    /// DER of the subject public key info, to match a private key against.
    pub spki_der: Vec<u8>,
    /// SHA-256 over the whole DER certificate, lowercase hex.
    pub sha256: String,
}

/// Why a certificate could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not a readable X.509 certificate: {0}")]
pub struct CertParseError(pub String);

impl CertInfo {
    /// Parses a DER certificate.
    pub fn parse(der: &CertificateDer<'_>) -> Result<Self, CertParseError> {
        let (rest, cert) =
            X509Certificate::from_der(der.as_ref()).map_err(|e| CertParseError(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertParseError(
                "trailing bytes after the certificate".into(),
            ));
        }
        let constraints = cert
            .basic_constraints()
            .map_err(|e| CertParseError(format!("basic constraints: {e}")))?;
        let (is_ca, path_len) = constraints
            .map(|c| (c.value.ca, c.value.path_len_constraint))
            .unwrap_or((false, None));
        let uris: Vec<String> = cert
            .subject_alternative_name()
            .map_err(|e| CertParseError(format!("subject alternative names: {e}")))?
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::URI(u) => Some((*u).to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let spiffe_id = uris
            .iter()
            .filter(|u| u.starts_with("spiffe://"))
            .find_map(|u| u.parse().ok());
        Ok(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.tbs_certificate.raw_serial_as_string().replace(':', ""),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            is_ca,
            path_len,
            spiffe_id,
            uris,
            spki_der: cert.public_key().raw.to_vec(),
            sha256: hex::encode(Sha256::digest(der.as_ref())),
        })
    }

    /// Whether `now` falls inside the validity window.
    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// Whether `child`'s signature verifies with `parent`'s public key.
pub(crate) fn signed_by(child: &CertificateDer<'_>, parent: &CertificateDer<'_>) -> bool {
    let (Ok((_, child)), Ok((_, parent))) = (
        X509Certificate::from_der(child.as_ref()),
        X509Certificate::from_der(parent.as_ref()),
    ) else {
        return false;
    };
    child.issuer() == parent.subject() && child.verify_signature(Some(parent.public_key())).is_ok()
}
