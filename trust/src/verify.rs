//! Verifying a peer: its chain must lead to a root in the bundle through its own
//! cluster's issuer, and it must carry a SPIFFE ID in our trust domain.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::authority::TrustBundle;
use crate::cert::CertInfo;
use crate::denylist::{IssuerDenylist, IssuerFingerprint};
use crate::name::{AuthorityId, ClusterName, SpiffeId, TrustDomain};

/// Why a peer's certificate was refused. Each variant says what an operator should
/// look at.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRejected {
    /// The leaf's validity ended.
    #[error("peer certificate expired")]
    Expired,
    /// The leaf's validity has not started.
    #[error("peer certificate is not valid yet")]
    NotYetValid,
    /// No root in our bundle anchors the chain.
    #[error(
        "peer certificate chain does not lead to a root in our trust bundle (foreign or rotated-out root?)"
    )]
    UnknownIssuer,
    /// A certificate in the chain that signed another is not a CA.
    #[error("peer certificate was signed by a certificate that is not a CA")]
    IssuerNotCa,
    /// The leaf has no SPIFFE URI SAN of the workload form.
    #[error(
        "peer certificate has no SPIFFE URI SAN of the form spiffe://<domain>/cluster/<cluster>/<role>"
    )]
    NoSpiffeId,
    /// The leaf names another trust domain.
    #[error("peer identity {id} is not in our trust domain {ours}")]
    ForeignTrustDomain {
        /// The peer's claimed identity.
        id: String,
        /// Our trust domain.
        ours: TrustDomain,
    },
    /// The leaf was not signed by its own cluster's issuer.
    #[error("peer identity names cluster {claimed} but was issued by {issuer}")]
    WrongIssuer {
        /// The cluster the leaf claims.
        claimed: ClusterName,
        /// The issuer that signed it.
        issuer: String,
    },
    /// The chain goes through a cluster issuer the federation denied (the cluster
    /// was unlinked).
    #[error(
        "peer {cluster} presents a chain through denied issuer {fingerprint} (cluster unlinked)"
    )]
    DeniedIssuer {
        /// The cluster the leaf claims.
        cluster: ClusterName,
        /// The denied issuer's fingerprint.
        fingerprint: IssuerFingerprint,
    },
    /// Any other defect of the certificate or chain.
    #[error("peer certificate rejected: {0}")]
    BadCertificate(String),
}

/// rustls shows a custom certificate error with `Debug`; printing the sentence keeps
/// the reason readable in every log and error chain that passes through rustls.
impl std::fmt::Debug for PeerRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl From<PeerRejected> for rustls::Error {
    fn from(e: PeerRejected) -> Self {
        // Keep our reason in the error so logs say why; rustls sends a generic alert.
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
    }
}

fn map_webpki(e: webpki::Error) -> PeerRejected {
    use webpki::Error as W;
    match e {
        W::CertExpired { .. } => PeerRejected::Expired,
        W::CertNotValidYet { .. } => PeerRejected::NotYetValid,
        // A signature that fails under a same-named CA is a foreign chain too.
        W::UnknownIssuer | W::InvalidSignatureForPublicKey => PeerRejected::UnknownIssuer,
        W::EndEntityUsedAsCa | W::CaUsedAsEndEntity => PeerRejected::IssuerNotCa,
        other => PeerRejected::BadCertificate(format!("{other:?}")),
    }
}

/// The identity in a peer's leaf certificate, without verifying the chain. Use it on
/// certificates a verified handshake already accepted (quinn's `peer_identity`,
/// tokio-rustls' `peer_certificates`).
pub fn peer_identity(certs: &[CertificateDer<'_>]) -> Result<SpiffeId, PeerRejected> {
    let leaf = certs
        .first()
        .ok_or_else(|| PeerRejected::BadCertificate("no certificate presented".into()))?;
    let info = CertInfo::parse(leaf).map_err(|e| PeerRejected::BadCertificate(e.to_string()))?;
    match info.spiffe_id {
        Some(AuthorityId::Workload(id)) => Ok(id),
        _ => Err(PeerRejected::NoSpiffeId),
    }
}

/// Checks a presented chain against a bundle at time `now` for the given usage and
/// returns the peer's identity.
pub fn verify_chain(
    bundle: &TrustBundle,
    provider: &CryptoProvider,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: webpki::KeyUsage,
) -> Result<SpiffeId, PeerRejected> {
    let cert = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|e| PeerRejected::BadCertificate(format!("{e:?}")))?;
    let path = cert
        .verify_for_usage(
            provider.signature_verification_algorithms.all,
            bundle.anchors(),
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(map_webpki)?;
    let id = peer_identity(std::slice::from_ref(end_entity))?;
    if &id.trust_domain != bundle.trust_domain() {
        return Err(PeerRejected::ForeignTrustDomain {
            id: id.to_string(),
            ours: bundle.trust_domain().clone(),
        });
    }
    // A cluster's issuer may only vouch for its own cluster: otherwise one
    // compromised cluster could impersonate every other.
    let issuer = path.intermediate_certificates().next().ok_or_else(|| {
        PeerRejected::BadCertificate(
            "leaf signed directly by a root, not by a cluster issuer".into(),
        )
    })?;
    let issuer_info =
        CertInfo::parse(&issuer.der()).map_err(|e| PeerRejected::BadCertificate(e.to_string()))?;
    match issuer_info.spiffe_id {
        Some(AuthorityId::Issuer(domain, cluster))
            if domain == id.trust_domain && cluster == id.cluster =>
        {
            Ok(id)
        }
        other => Err(PeerRejected::WrongIssuer {
            claimed: id.cluster,
            issuer: other.map_or_else(|| issuer_info.subject.clone(), |o| o.to_string()),
        }),
    }
}

// === impl SpiffeVerifier ===

/// A rustls verifier for both sides of a Causeway connection. The bundle and the
/// issuer denylist are shared and swappable, so a rotated bundle or a newly denied
/// issuer applies to the next handshake.
#[derive(Debug)]
pub struct SpiffeVerifier {
    bundle: Arc<ArcSwap<TrustBundle>>,
    provider: Arc<CryptoProvider>,
    denylist: IssuerDenylist,
}

impl SpiffeVerifier {
    /// A verifier over `bundle` using `provider`'s signature algorithms, denying no
    /// issuer.
    pub fn new(bundle: Arc<ArcSwap<TrustBundle>>, provider: Arc<CryptoProvider>) -> Self {
        Self::with_denylist(bundle, provider, IssuerDenylist::new())
    }

    /// A verifier that also refuses every chain through an issuer in `denylist`.
    pub fn with_denylist(
        bundle: Arc<ArcSwap<TrustBundle>>,
        provider: Arc<CryptoProvider>,
        denylist: IssuerDenylist,
    ) -> Self {
        Self {
            bundle,
            provider,
            denylist,
        }
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
    ) -> Result<SpiffeId, rustls::Error> {
        let bundle = self.bundle.load();
        verify_chain(
            &bundle,
            &self.provider,
            end_entity,
            intermediates,
            now,
            usage,
        )
        .and_then(|id| {
            let denied = intermediates
                .iter()
                .map(IssuerFingerprint::of)
                .find(|fp| self.denylist.contains(fp));
            match denied {
                Some(fingerprint) => Err(PeerRejected::DeniedIssuer {
                    cluster: id.cluster,
                    fingerprint,
                }),
                None => Ok(id),
            }
        })
        .map_err(|e| {
            tracing::debug!(error = %e, "peer certificate refused");
            e.into()
        })
    }
}

/// The signature checks both rustls verifier traits ask for, identically: TLS 1.3
/// only, with the provider's algorithms.
macro_rules! signature_methods {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::Tls12NotOffered,
            ))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

impl ServerCertVerifier for SpiffeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        // Gateways are addressed by IP and port; identity is the SPIFFE ID, not a
        // DNS name, so the server name is not checked.
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
        )?;
        Ok(ServerCertVerified::assertion())
    }

    signature_methods!();
}

impl ClientCertVerifier for SpiffeVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
        )?;
        Ok(ClientCertVerified::assertion())
    }

    signature_methods!();
}

/// The reason behind a handshake error, when our verifier refused the peer. Lets
/// callers log and count refusals by reason.
pub fn rejection_of(err: &rustls::Error) -> Option<&PeerRejected> {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<PeerRejected>()
        }
        _ => None,
    }
}

impl PeerRejected {
    /// A short stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            PeerRejected::Expired => "expired",
            PeerRejected::NotYetValid => "not_yet_valid",
            PeerRejected::UnknownIssuer => "unknown_issuer",
            PeerRejected::IssuerNotCa => "issuer_not_ca",
            PeerRejected::NoSpiffeId => "no_spiffe_id",
            PeerRejected::ForeignTrustDomain { .. } => "foreign_trust_domain",
            PeerRejected::WrongIssuer { .. } => "wrong_issuer",
            PeerRejected::DeniedIssuer { .. } => "denied_issuer",
            PeerRejected::BadCertificate(_) => "bad_certificate",
        }
    }
}
