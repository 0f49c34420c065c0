//! The federation root: generated, loaded, rotated and pruned in its CA folder, and
//! the issuer of every cluster's intermediate CA.

use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::{
    BACKDATE, ClusterIssuer, TrustBundle, TrustError, ca_files, check_ca, check_key_matches, dn,
    key_tag, load_key_pair, now, parse_info, uri_san,
};
use crate::cert::CertInfo;
use crate::files;
use crate::name::{AuthorityId, ClusterName, TrustDomain};

/// A federation root: the trust anchor every cluster shares.
pub struct RootCa {
    cert: CertificateDer<'static>,
    key: KeyPair,
    trust_domain: TrustDomain,
}

impl std::fmt::Debug for RootCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never printed.
        f.debug_struct("RootCa")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl RootCa {
    /// A new root (ECDSA P-256) for `trust_domain`, valid for `validity`.
    pub fn generate(trust_domain: TrustDomain, validity: Duration) -> Result<Self, TrustError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let start = now();
        params.not_before = start - BACKDATE;
        params.not_after = start + validity;
        params.distinguished_name = dn(format!("Causeway root {trust_domain} {}", key_tag(&key)));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.subject_alt_names = vec![uri_san(&AuthorityId::Root(trust_domain.clone()))?];
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert: cert.der().clone(),
            key,
            trust_domain,
        })
    }

    /// Reads `root.pem` and `root.key` from a CA folder and checks they belong together.
    pub fn load(dir: &Path) -> Result<Self, TrustError> {
        let cert_path = dir.join(ca_files::ROOT_CERT);
        let key_path = dir.join(ca_files::ROOT_KEY);
        let cert = files::read_certs(&cert_path)?.remove(0);
        let info = parse_info(&cert_path, &cert)?;
        check_ca(&cert_path, &info)?;
        let key = load_key_pair(&key_path)?;
        check_key_matches(&key_path, &cert_path, &key, &info)?;
        let Some(AuthorityId::Root(trust_domain)) = info.spiffe_id else {
            return Err(TrustError::MissingSpiffeId {
                path: cert_path,
                expected: "spiffe://<trust-domain>",
            });
        };
        Ok(Self {
            cert,
            key,
            trust_domain,
        })
    }

    /// The root certificate.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The federation's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// A bundle holding just this root.
    pub fn bundle(&self) -> TrustBundle {
        TrustBundle::from_certs(Path::new("<generated root>"), vec![self.cert.clone()])
            .expect("a root generated or loaded here is a valid CA of its trust domain")
    }

    /// Writes `root.pem`, `root.key` (0600) and `bundle.pem` into `dir`. Refuses to
    /// overwrite any of them unless `force`.
    pub fn write_new(&self, dir: &Path, force: bool) -> Result<(), TrustError> {
        let paths =
            [ca_files::ROOT_CERT, ca_files::ROOT_KEY, ca_files::BUNDLE].map(|f| dir.join(f));
        for path in &paths {
            files::check_writable(path, force)?;
        }
        self.write_root(dir)?;
        files::write(&paths[2], &self.bundle().to_pem(), false)?;
        Ok(())
    }

    fn write_root(&self, dir: &Path) -> Result<(), TrustError> {
        files::write(
            &dir.join(ca_files::ROOT_CERT),
            &files::certs_to_pem([&self.cert]),
            false,
        )?;
        files::write(
            &dir.join(ca_files::ROOT_KEY),
            &self.key.serialize_pem(),
            true,
        )?;
        Ok(())
    }

    /// Replaces the root in a CA folder with a new one. The old root and key move to
    /// `retired/`, and `bundle.pem` holds every root it held before plus the new one,
    /// so issuers and leaves under either keep verifying until the old root is pruned.
    pub fn rotate(dir: &Path, validity: Duration) -> Result<Rotation, TrustError> {
        let old = Self::load(dir)?;
        let bundle_path = dir.join(ca_files::BUNDLE);
        let mut roots = TrustBundle::load(&bundle_path)?.into_roots();
        let new = Self::generate(old.trust_domain.clone(), validity)?;
        roots.push(new.cert.clone());
        let bundle = TrustBundle::from_certs(&bundle_path, roots)?;

        let old_info = CertInfo::parse(&old.cert).expect("loaded root parses");
        let retired = dir.join(ca_files::RETIRED);
        let stem = &old_info.sha256[..16];
        files::write(
            &retired.join(format!("root-{stem}.pem")),
            &files::certs_to_pem([&old.cert]),
            false,
        )?;
        files::write(
            &retired.join(format!("root-{stem}.key")),
            &old.key.serialize_pem(),
            true,
        )?;
        new.write_root(dir)?;
        files::write(&bundle_path, &bundle.to_pem(), false)?;
        Ok(Rotation {
            old_fingerprint: old_info.sha256,
            new_fingerprint: CertInfo::parse(&new.cert).expect("new root parses").sha256,
            bundle,
        })
    }

    /// Removes every root but the current one from `bundle.pem`: the end of a rotation,
    /// once every cluster has an issuer under the new root.
    pub fn prune(dir: &Path) -> Result<TrustBundle, TrustError> {
        let current = Self::load(dir)?;
        let bundle = current.bundle();
        files::write(&dir.join(ca_files::BUNDLE), &bundle.to_pem(), false)?;
        Ok(bundle)
    }

    /// A new intermediate CA for one cluster (path length 0: it signs leaves only),
    /// valid for `validity` but never past this root's own end.
    pub fn issue_cluster(
        &self,
        cluster: ClusterName,
        validity: Duration,
        bundle: TrustBundle,
    ) -> Result<ClusterIssuer, TrustError> {
        let start = now();
        self.issue_cluster_between(cluster, start - BACKDATE, start + validity, bundle)
    }

    /// Like [`RootCa::issue_cluster`] with an explicit validity window (clamped to the
    /// root's own); for tools and tests that need unusual issuers.
    pub fn issue_cluster_between(
        &self,
        cluster: ClusterName,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        bundle: TrustBundle,
    ) -> Result<ClusterIssuer, TrustError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.not_before = not_before;
        params.not_after = not_after;
        if let Ok(root) = CertInfo::parse(&self.cert) {
            params.not_after = params.not_after.min(root.not_after);
        }
        params.distinguished_name = dn(format!("Causeway issuer {cluster} {}", key_tag(&key)));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.use_authority_key_identifier_extension = true;
        params.subject_alt_names = vec![uri_san(&AuthorityId::Issuer(
            self.trust_domain.clone(),
            cluster.clone(),
        ))?];
        let issuer = Issuer::from_ca_cert_der(&self.cert, &self.key)?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(ClusterIssuer::new(
            cert.der().clone(),
            key,
            cluster,
            self.trust_domain.clone(),
            bundle,
        ))
    }
}

/// The outcome of [`RootCa::rotate`].
#[derive(Debug)]
pub struct Rotation {
    /// Fingerprint of the root that was replaced (still in the bundle).
    pub old_fingerprint: String,
    /// Fingerprint of the new root.
    pub new_fingerprint: String,
    /// The bundle now on disk.
    pub bundle: TrustBundle,
}
