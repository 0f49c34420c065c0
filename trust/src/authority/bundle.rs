//! The trust bundle: the roots that verify, all of one trust domain.

use std::path::Path;

use rustls_pki_types::{CertificateDer, TrustAnchor};

use super::{TrustError, check_ca, parse_info};
use crate::cert::{CertInfo, signed_by};
use crate::files;
use crate::name::{AuthorityId, TrustDomain};

/// The set of roots that verify: one normally, two or more during rotation.
#[derive(Debug, Clone)]
pub struct TrustBundle {
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    trust_domain: TrustDomain,
}

impl TrustBundle {
    /// A bundle of the given roots; all must be CAs of one trust domain.
    pub fn from_certs(
        path: &Path,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, TrustError> {
        let mut domain: Option<TrustDomain> = None;
        let mut anchors = Vec::with_capacity(roots.len());
        for root in &roots {
            let info = parse_info(path, root)?;
            check_ca(path, &info)?;
            let Some(AuthorityId::Root(found)) = info.spiffe_id else {
                return Err(TrustError::MissingSpiffeId {
                    path: path.to_owned(),
                    expected: "spiffe://<trust-domain>",
                });
            };
            match &domain {
                Some(expected) if *expected != found => {
                    return Err(TrustError::DomainMismatch {
                        path: path.to_owned(),
                        found,
                        expected: expected.clone(),
                    });
                }
                _ => domain = Some(found),
            }
            let anchor =
                webpki::anchor_from_trusted_cert(root).map_err(|e| TrustError::BadCertificate {
                    path: path.to_owned(),
                    reason: format!("not usable as a trust anchor: {e}"),
                })?;
            anchors.push(anchor.to_owned());
        }
        let trust_domain = domain.ok_or_else(|| TrustError::BadCertificate {
            path: path.to_owned(),
            reason: "the bundle holds no root".into(),
        })?;
        Ok(Self {
            roots,
            anchors,
            trust_domain,
        })
    }

    /// Reads a bundle file (PEM, one or more roots).
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        Self::from_certs(path, files::read_certs(path)?)
    }

    /// The roots, newest last, taken out of the bundle.
    pub(super) fn into_roots(self) -> Vec<CertificateDer<'static>> {
        self.roots
    }

    /// The roots, newest last.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// The roots as webpki trust anchors.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// The trust domain every root names.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The bundle as PEM text.
    pub fn to_pem(&self) -> String {
        files::certs_to_pem(&self.roots)
    }

    /// SHA-256 fingerprints of the roots; two gateways share a bundle when these match.
    pub fn fingerprints(&self) -> Vec<String> {
        self.roots
            .iter()
            .filter_map(|r| CertInfo::parse(r).ok())
            .map(|i| i.sha256)
            .collect()
    }

    /// The root that signed `cert`, if any.
    pub(super) fn signer_of(&self, cert: &CertificateDer<'_>) -> Option<&CertificateDer<'static>> {
        self.roots.iter().find(|root| signed_by(cert, root))
    }
}
