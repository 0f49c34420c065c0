//! A cluster's issuer (intermediate CA): loaded from its folder or a join token's PEM,
//! checked against the bundle, and the minter of that cluster's gateway leaves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

use super::{
    BACKDATE, TrustBundle, TrustError, check_ca, check_key_matches, dn, issuer_files,
    load_key_pair, now, parse_info,
};
use crate::cert::CertInfo;
use crate::files::{self, FileError};
use crate::name::{AuthorityId, ClusterName, Role, SpiffeId, TrustDomain};

/// One cluster's intermediate CA: it mints that cluster's gateway leaves.
pub struct ClusterIssuer {
    cert: CertificateDer<'static>,
    key: KeyPair,
    cluster: ClusterName,
    trust_domain: TrustDomain,
    bundle: TrustBundle,
}

impl std::fmt::Debug for ClusterIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterIssuer")
            .field("cluster", &self.cluster)
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

/// A freshly minted leaf with its chain.
pub struct Leaf {
    /// Leaf first, then the cluster issuer.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// Facts of the leaf certificate.
    pub info: CertInfo,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("serial", &self.info.serial)
            .field("not_after", &self.info.not_after)
            .finish_non_exhaustive()
    }
}

impl Leaf {
    /// Writes `leaf.pem` (leaf, then issuer) and `leaf.key` (PKCS#8, mode 0600) into
    /// `dir`; refuses to overwrite unless `force`.
    pub fn write(&self, dir: &Path, force: bool) -> Result<(), TrustError> {
        let cert_path = dir.join("leaf.pem");
        let key_path = dir.join("leaf.key");
        files::check_writable(&cert_path, force)?;
        files::check_writable(&key_path, force)?;
        files::write(&cert_path, &files::certs_to_pem(&self.chain), false)?;
        let key = files::to_pem("PRIVATE KEY", self.key.secret_der());
        files::write(&key_path, &key, true)?;
        Ok(())
    }
}

impl ClusterIssuer {
    /// An issuer from a certificate its root just signed.
    pub(super) fn new(
        cert: CertificateDer<'static>,
        key: KeyPair,
        cluster: ClusterName,
        trust_domain: TrustDomain,
        bundle: TrustBundle,
    ) -> Self {
        Self {
            cert,
            key,
            cluster,
            trust_domain,
            bundle,
        }
    }

    /// Reads an issuer folder and checks everything an operator can get wrong: the
    /// PEM, that the key matches, that the issuer is a CA and currently valid, that it
    /// names its cluster, and that a root in `bundle.pem` signed it.
    pub fn load(dir: &Path) -> Result<Self, TrustError> {
        let cert_path = dir.join(issuer_files::ISSUER_CERT);
        let key_path = dir.join(issuer_files::ISSUER_KEY);
        let bundle_path = dir.join(issuer_files::BUNDLE);
        let cert = files::read_certs(&cert_path)?.remove(0);
        let info = parse_info(&cert_path, &cert)?;
        check_ca(&cert_path, &info)?;
        let key = load_key_pair(&key_path)?;
        check_key_matches(&key_path, &cert_path, &key, &info)?;
        let bundle = TrustBundle::load(&bundle_path)?;
        Self::from_parts(cert_path, cert, info, key, bundle, bundle_path)
    }

    fn from_parts(
        cert_path: PathBuf,
        cert: CertificateDer<'static>,
        info: CertInfo,
        key: KeyPair,
        bundle: TrustBundle,
        bundle_path: PathBuf,
    ) -> Result<Self, TrustError> {
        let Some(AuthorityId::Issuer(trust_domain, cluster)) = info.spiffe_id else {
            return Err(TrustError::MissingSpiffeId {
                path: cert_path,
                expected: "spiffe://<trust-domain>/cluster/<cluster>",
            });
        };
        if &trust_domain != bundle.trust_domain() {
            return Err(TrustError::DomainMismatch {
                path: cert_path,
                found: trust_domain,
                expected: bundle.trust_domain().clone(),
            });
        }
        if bundle.signer_of(&cert).is_none() {
            return Err(TrustError::Untrusted {
                path: cert_path,
                bundle: bundle_path,
            });
        }
        Ok(Self {
            cert,
            key,
            cluster,
            trust_domain,
            bundle,
        })
    }

    /// Writes `issuer.pem`, `issuer.key` (0600) and `bundle.pem` into `dir`.
    pub fn write(&self, dir: &Path, force: bool) -> Result<(), TrustError> {
        let paths = [
            issuer_files::ISSUER_CERT,
            issuer_files::ISSUER_KEY,
            issuer_files::BUNDLE,
        ]
        .map(|f| dir.join(f));
        for path in &paths {
            files::check_writable(path, force)?;
        }
        files::write(&paths[0], &files::certs_to_pem([&self.cert]), false)?;
        files::write(&paths[1], &self.key.serialize_pem(), true)?;
        files::write(&paths[2], &self.bundle.to_pem(), false)?;
        Ok(())
    }

    /// The cluster this issuer serves.
    pub fn cluster(&self) -> &ClusterName {
        &self.cluster
    }

    /// The federation's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The bundle of roots this issuer trusts.
    pub fn bundle(&self) -> &TrustBundle {
        &self.bundle
    }

    /// The issuer certificate.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The issuer's private key as PEM (for token files; handle as a secret).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Builds an issuer from PEM text (as carried in a join token) and checks it as
    /// [`ClusterIssuer::load`] does; `origin` names the source in errors.
    pub fn from_pem(
        origin: &Path,
        cert_pem: &str,
        key_pem: &str,
        bundle_pem: &str,
    ) -> Result<Self, TrustError> {
        let bad = |reason: String| {
            TrustError::File(FileError::BadPem {
                path: origin.to_owned(),
                reason,
            })
        };
        let cert = files::parse_certs(cert_pem.as_bytes())
            .map_err(&bad)?
            .remove(0);
        let info = parse_info(origin, &cert)?;
        check_ca(origin, &info)?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| bad(format!("issuer key: {e}")))?;
        check_key_matches(origin, origin, &key, &info)?;
        let roots = files::parse_certs(bundle_pem.as_bytes()).map_err(&bad)?;
        let bundle = TrustBundle::from_certs(origin, roots)?;
        Self::from_parts(
            origin.to_owned(),
            cert,
            info,
            key,
            bundle,
            origin.to_owned(),
        )
    }

    /// Mints a leaf for `role` in this cluster, valid from now for `lifetime`.
    pub fn mint(&self, role: Role, lifetime: Duration) -> Result<Leaf, TrustError> {
        let id = SpiffeId::of(self.trust_domain.clone(), self.cluster.clone(), role);
        self.mint_id(&id, lifetime)
    }

    /// Mints a leaf for `id` (a replica's, say), valid from now for `lifetime`.
    /// `id` must be of this issuer's trust domain and cluster.
    pub fn mint_id(&self, id: &SpiffeId, lifetime: Duration) -> Result<Leaf, TrustError> {
        if id.trust_domain != self.trust_domain || id.cluster != self.cluster {
            return Err(TrustError::ForeignId {
                id: id.to_string(),
                issuer: format!("spiffe://{}/cluster/{}", self.trust_domain, self.cluster),
            });
        }
        let start = now();
        self.mint_raw(&[id.to_string()], start - BACKDATE, start + lifetime)
    }

    /// Mints a leaf with exactly the given URI SANs and validity window. Meant for
    /// tests and tools that need unusual certificates (expired, foreign IDs); gateways
    /// use [`ClusterIssuer::mint`].
    pub fn mint_raw(
        &self,
        uris: &[String],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Leaf, TrustError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.not_before = not_before;
        params.not_after = not_after;
        params.distinguished_name = dn(format!("Causeway {} gateway", self.cluster));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.subject_alt_names = uris
            .iter()
            .map(|u| Ok(SanType::URI(u.clone().try_into()?)))
            .collect::<Result<_, rcgen::Error>>()?;
        let issuer = Issuer::from_ca_cert_der(&self.cert, &self.key)?;
        let cert = params.signed_by(&key, &issuer)?;
        let der = cert.der().clone();
        let info = CertInfo::parse(&der).expect("a certificate rcgen just made parses");
        Ok(Leaf {
            chain: vec![der, self.cert.clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            info,
        })
    }
}
