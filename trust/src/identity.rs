//! A gateway's own identity: the current leaf, renewed in the background, and the
//! rustls configurations that present it and verify peers.

use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig, SignatureScheme};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::authority::{ClusterIssuer, LEAF_LIFETIME, TrustBundle, TrustError};
use crate::cert::CertInfo;
use crate::denylist::IssuerDenylist;
use crate::name::{ReplicaName, Role, SpiffeId};
use crate::verify::SpiffeVerifier;

/// Fraction of a leaf's lifetime after which it is renewed: 2/3, as SPIRE and
/// Istio do, so a failed renewal has a third of the lifetime to be retried.
const RENEW_NUMERATOR: u32 = 2;
const RENEW_DENOMINATOR: u32 = 3;
/// Wait between attempts when a renewal fails.
const RENEW_RETRY: Duration = Duration::from_secs(10);

/// The leaf a gateway presents right now.
#[derive(Debug)]
pub struct CurrentLeaf {
    /// What rustls presents.
    pub certified: Arc<CertifiedKey>,
    /// Facts of the leaf.
    pub info: CertInfo,
    /// When it was minted.
    pub minted_at: OffsetDateTime,
}

/// A gateway's identity: its cluster issuer, its current leaf and the shared bundle.
///
/// New handshakes pick up a renewed leaf at once; connections already open keep the
/// leaf they were established with, so renewal never drops a stream.
#[derive(Debug)]
pub struct GatewayIdentity {
    issuer: ClusterIssuer,
    id: SpiffeId,
    lifetime: Duration,
    current: ArcSwap<CurrentLeaf>,
    bundle: Arc<ArcSwap<TrustBundle>>,
    denylist: IssuerDenylist,
    provider: Arc<CryptoProvider>,
    renewals: watch::Sender<u64>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl GatewayIdentity {
    /// An identity for `role` minted from `issuer`, with leaves living `lifetime`.
    pub fn new(
        issuer: ClusterIssuer,
        role: Role,
        lifetime: Duration,
    ) -> Result<Arc<Self>, TrustError> {
        let id = SpiffeId::of(
            issuer.trust_domain().clone(),
            issuer.cluster().clone(),
            role,
        );
        Self::with_id(issuer, id, lifetime)
    }

    /// An identity for `id` (of `issuer`'s cluster) minted from `issuer`, with leaves
    /// living `lifetime`.
    pub fn with_id(
        issuer: ClusterIssuer,
        id: SpiffeId,
        lifetime: Duration,
    ) -> Result<Arc<Self>, TrustError> {
        let provider = provider();
        let first = mint(&issuer, &id, lifetime, &provider)?;
        let bundle = Arc::new(ArcSwap::from_pointee(issuer.bundle().clone()));
        Ok(Arc::new(Self {
            issuer,
            id,
            lifetime,
            current: ArcSwap::from_pointee(first),
            bundle,
            denylist: IssuerDenylist::new(),
            provider,
            renewals: watch::channel(0).0,
        }))
    }

    /// A gateway identity with the default 24 h leaf lifetime.
    pub fn gateway(issuer: ClusterIssuer) -> Result<Arc<Self>, TrustError> {
        Self::new(issuer, Role::Gateway, LEAF_LIFETIME)
    }

    /// The identity of one named replica of the cluster's gateway (unnamed when
    /// `replica` is `None`), with the default 24 h leaf lifetime.
    pub fn gateway_replica(
        issuer: ClusterIssuer,
        replica: Option<ReplicaName>,
    ) -> Result<Arc<Self>, TrustError> {
        let id = SpiffeId::gateway(issuer.trust_domain().clone(), issuer.cluster().clone())
            .with_replica(replica);
        Self::with_id(issuer, id, LEAF_LIFETIME)
    }

    /// Our SPIFFE ID.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The cluster issuer behind this identity.
    pub fn issuer(&self) -> &ClusterIssuer {
        &self.issuer
    }

    /// The leaf presented right now.
    pub fn current(&self) -> Arc<CurrentLeaf> {
        self.current.load_full()
    }

    /// The bundle peers are verified against right now.
    pub fn bundle(&self) -> Arc<TrustBundle> {
        self.bundle.load_full()
    }

    /// Replaces the bundle for the next handshakes (after a root rotation).
    pub fn set_bundle(&self, bundle: TrustBundle) {
        self.bundle.store(Arc::new(bundle));
    }

    /// The issuers this identity's configs refuse. Shared: replacing its contents
    /// (e.g. from the registry's denylist) applies to the next handshake of every
    /// config made from this identity.
    pub fn denylist(&self) -> &IssuerDenylist {
        &self.denylist
    }

    /// Mints a new leaf now and presents it from the next handshake on.
    pub fn renew(&self) -> Result<Arc<CurrentLeaf>, TrustError> {
        let leaf = Arc::new(mint(&self.issuer, &self.id, self.lifetime, &self.provider)?);
        self.current.store(leaf.clone());
        self.renewals.send_modify(|n| *n += 1);
        tracing::info!(
            identity = %self.id,
            serial = %leaf.info.serial,
            not_after = %leaf.info.not_after,
            "leaf certificate renewed"
        );
        Ok(leaf)
    }

    /// A receiver whose value counts renewals; it changes after each one.
    pub fn renewals(&self) -> watch::Receiver<u64> {
        self.renewals.subscribe()
    }

    /// When the current leaf is due for renewal.
    pub fn renew_at(&self) -> OffsetDateTime {
        let minted = self.current.load().minted_at;
        minted + self.lifetime * RENEW_NUMERATOR / RENEW_DENOMINATOR
    }

    /// Renews the leaf at 2/3 of its lifetime, forever, on the current tokio runtime.
    /// The task ends by itself when the identity is dropped.
    pub fn spawn_renewal(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(identity) = weak.upgrade() else {
                    return;
                };
                let wait = (identity.renew_at() - OffsetDateTime::now_utc())
                    .try_into()
                    .unwrap_or(Duration::ZERO);
                drop(identity);
                tokio::time::sleep(wait).await;
                let Some(identity) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = identity.renew() {
                    tracing::warn!(identity = %identity.id, error = %e, "leaf renewal failed; retrying");
                    drop(identity);
                    tokio::time::sleep(RENEW_RETRY).await;
                }
            }
        })
    }

    fn verifier(&self) -> Arc<SpiffeVerifier> {
        Arc::new(SpiffeVerifier::with_denylist(
            self.bundle.clone(),
            self.provider.clone(),
            self.denylist.clone(),
        ))
    }

    /// A TLS 1.3 server config that presents our current leaf, requires a client
    /// certificate, and verifies it against the bundle.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> ServerConfig {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("the ring provider supports TLS 1.3")
            .with_client_cert_verifier(self.verifier())
            .with_cert_resolver(Arc::new(LeafResolver(self.clone())));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    /// A TLS 1.3 client config that presents our current leaf and verifies the
    /// server against the bundle. The server name is not checked: any name works.
    pub fn client_config(self: &Arc<Self>, alpn: &[&[u8]]) -> ClientConfig {
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("the ring provider supports TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(self.verifier())
            .with_client_cert_resolver(Arc::new(LeafResolver(self.clone())));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

fn mint(
    issuer: &ClusterIssuer,
    id: &SpiffeId,
    lifetime: Duration,
    provider: &CryptoProvider,
) -> Result<CurrentLeaf, TrustError> {
    let minted_at = OffsetDateTime::now_utc();
    let leaf = issuer.mint_id(id, lifetime)?;
    let key = provider
        .key_provider
        .load_private_key(leaf.key)
        .map_err(|e| TrustError::KeyLoad(e.to_string()))?;
    Ok(CurrentLeaf {
        certified: Arc::new(CertifiedKey::new(leaf.chain, key)),
        info: leaf.info,
        minted_at,
    })
}

/// Presents the identity's current leaf on both sides of a handshake.
#[derive(Debug)]
struct LeafResolver(Arc<GatewayIdentity>);

impl ResolvesServerCert for LeafResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load().certified.clone())
    }
}

impl ResolvesClientCert for LeafResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
