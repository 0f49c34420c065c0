//! Roots, the trust bundle, and cluster issuers: the certificate authorities of a
//! federation and the files they live in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, TrustAnchor};
use time::OffsetDateTime;

use crate::cert::{CertInfo, signed_by};
use crate::files::{self, FileError};
use crate::name::{AuthorityId, ClusterName, Role, SpiffeId, TrustDomain};

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

// === impl TrustBundle ===

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

    fn signer_of(&self, cert: &CertificateDer<'_>) -> Option<&CertificateDer<'static>> {
        self.roots.iter().find(|root| signed_by(cert, root))
    }
}

// === impl RootCa ===

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
        let mut roots = TrustBundle::load(&bundle_path)?.roots;
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
        Ok(ClusterIssuer {
            cert: cert.der().clone(),
            key,
            cluster,
            trust_domain: self.trust_domain.clone(),
            bundle,
        })
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

// === impl ClusterIssuer ===

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
        let key = pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            self.key.secret_der().to_vec(),
        ));
        files::write(&key_path, &key, true)?;
        Ok(())
    }
}

impl ClusterIssuer {
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
        let start = now();
        let id = SpiffeId {
            trust_domain: self.trust_domain.clone(),
            cluster: self.cluster.clone(),
            role,
        };
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
