//! Real mutual-TLS handshakes over TCP (tokio-rustls) and QUIC (quinn) between
//! identities of one federation, and every way a peer is refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use causeway_testing::TestFederation;
use causeway_trust::{
    ALPN_TUNNEL, ClusterIssuer, GatewayIdentity, PeerRejected, Role, SpiffeId, TrustBundle,
    peer_identity, rejection_of,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const DEADLINE: Duration = Duration::from_secs(10);

fn server_name() -> ServerName<'static> {
    ServerName::try_from("gateway.causeway").expect("valid name")
}

/// The rustls error inside an I/O error from tokio-rustls, if any.
fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// What the server saw of one TCP handshake: the client's identity or the error.
type ServerOutcome = std::result::Result<SpiffeId, std::io::Error>;

/// Starts a TLS echo server and returns its address and a receiver of outcomes.
async fn tcp_server(
    config: rustls::ServerConfig,
) -> Result<(
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<ServerOutcome>,
)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(mut tls) => {
                        let certs = tls.get_ref().1.peer_certificates().unwrap_or_default();
                        let id = peer_identity(certs).expect("verified peers carry an ID");
                        let _ = tx.send(Ok(id));
                        let mut buf = [0u8; 1024];
                        while let Ok(n) = tls.read(&mut buf).await {
                            if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        }
    });
    Ok((addr, rx))
}

async fn tcp_connect(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(server_name(), tcp)
        .await?;
    // TLS 1.3 clients finish before the server has checked their certificate; a
    // round trip makes the server's verdict visible to the client too.
    tls.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await?;
    Ok(tls)
}

async fn next_outcome(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<ServerOutcome>,
) -> ServerOutcome {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("server reports within the deadline")
        .expect("server alive")
}

/// A client config presenting `chain`/`key` (possibly malformed) and trusting `trust`.
fn client_presenting(
    trust: &Arc<GatewayIdentity>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> rustls::ClientConfig {
    #[derive(Debug)]
    struct Fixed(Arc<CertifiedKey>);
    impl rustls::client::ResolvesClientCert for Fixed {
        fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
        fn has_certs(&self) -> bool {
            true
        }
    }
    let provider = rustls::crypto::ring::default_provider();
    let key = provider
        .key_provider
        .load_private_key(key)
        .expect("key loads");
    let mut config = trust.client_config(&[ALPN_TUNNEL]);
    config.client_auth_cert_resolver = Arc::new(Fixed(Arc::new(CertifiedKey::new(chain, key))));
    config
}

/// Connects with a client presenting `chain` and returns why the server refused it.
async fn refused_with(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<PeerRejected> {
    let fed_server = SERVER_FED.with(|f| f.clone());
    let server = fed_server.identity("east");
    let (addr, mut rx) = tcp_server(server.server_config(&[ALPN_TUNNEL])).await?;
    let client = client_presenting(&server, chain, key);
    let client_result = tcp_connect(addr, client).await;
    assert!(client_result.is_err(), "the client must not get through");
    match next_outcome(&mut rx).await {
        Ok(id) => bail!("server accepted {id}"),
        Err(e) => {
            let tls = tls_error(&e).with_context(|| format!("not a TLS error: {e}"))?;
            Ok(rejection_of(tls)
                .with_context(|| format!("not refused by our verifier: {tls}"))?
                .clone())
        }
    }
}

thread_local! {
    static SERVER_FED: Arc<TestFederation> = Arc::new(TestFederation::new());
}

fn same_fed_issuer(cluster: &str) -> ClusterIssuer {
    SERVER_FED.with(|f| f.issuer(cluster))
}

/// A leaf from the test federation's west issuer with exactly `uri` and a validity
/// window from `from` to `to` seconds relative to now.
fn west_leaf(uri: String, from: i64, to: i64) -> Result<causeway_trust::Leaf> {
    let now = OffsetDateTime::now_utc();
    Ok(same_fed_issuer("west").mint_raw(
        &[uri],
        now + time::Duration::seconds(from),
        now + time::Duration::seconds(to),
    )?)
}

fn gateway_uri(domain: &str, cluster: &str) -> String {
    format!("spiffe://{domain}/cluster/{cluster}/gateway")
}

#[tokio::test(flavor = "current_thread")]
async fn gateways_of_one_federation_see_each_other_over_tcp() -> Result<()> {
    let fed = TestFederation::new();
    let west = fed.identity("west");
    let east = fed.identity("east");
    let (addr, mut rx) = tcp_server(east.server_config(&[ALPN_TUNNEL])).await?;
    let tls = tcp_connect(addr, west.client_config(&[ALPN_TUNNEL])).await?;
    let server_seen = peer_identity(tls.get_ref().1.peer_certificates().unwrap())?;
    assert_eq!(server_seen.cluster.as_str(), "east");
    assert_eq!(server_seen.role, Role::Gateway);
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(ALPN_TUNNEL));
    let client_seen = next_outcome(&mut rx).await?;
    assert_eq!(
        client_seen.to_string(),
        "spiffe://causeway.local/cluster/west/gateway"
    );
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn gateways_of_one_federation_see_each_other_over_quic() -> Result<()> {
    let fed = TestFederation::new();
    let west = fed.identity("west");
    let east = fed.identity("east");
    let server_crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(east.server_config(&[ALPN_TUNNEL]))?;
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(server_crypto)),
        "127.0.0.1:0".parse()?,
    )?;
    let addr = server.local_addr()?;
    let accept = tokio::spawn(async move {
        let conn = server.accept().await.expect("incoming").await?;
        let certs = conn
            .peer_identity()
            .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
            .expect("client presented certificates");
        let id = peer_identity(&certs).expect("verified peer has an ID");
        let (mut send, mut recv) = conn.accept_bi().await?;
        let msg = recv.read_to_end(64).await.expect("read");
        send.write_all(&msg).await.expect("echo");
        send.finish().expect("finish");
        conn.closed().await;
        anyhow::Ok(id)
    });
    let client_crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(west.client_config(&[ALPN_TUNNEL]))?;
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(client_crypto)));
    let conn = client.connect(addr, "gateway.causeway")?.await?;
    let certs = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .context("server certificates")?;
    assert_eq!(peer_identity(&certs)?.cluster.as_str(), "east");
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(b"hello over quic").await?;
    send.finish()?;
    assert_eq!(recv.read_to_end(64).await?, b"hello over quic");
    conn.close(0u32.into(), b"done");
    let seen = tokio::time::timeout(DEADLINE, accept).await???;
    assert_eq!(seen.cluster.as_str(), "west");
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn quic_refuses_a_foreign_root() -> Result<()> {
    let fed = TestFederation::new();
    let foreign = TestFederation::new();
    let east = fed.identity("east");
    let intruder = foreign.identity("west");
    // The intruder trusts our root, so only our server's check of its certificate
    // stands between it and the tunnel.
    intruder.set_bundle(fed.root().bundle());
    let server_crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(east.server_config(&[ALPN_TUNNEL]))?;
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(server_crypto)),
        "127.0.0.1:0".parse()?,
    )?;
    let addr = server.local_addr()?;
    let accept = tokio::spawn(async move { server.accept().await.expect("incoming").await });
    let client_crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(intruder.client_config(&[ALPN_TUNNEL]))?;
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(client_crypto)));
    // In TLS 1.3 the client may finish before the server has judged its certificate;
    // the server's verdict is what must refuse it.
    let _ = client.connect(addr, "gateway.causeway")?.await;
    let server_result = tokio::time::timeout(DEADLINE, accept).await??;
    let err = server_result.expect_err("a foreign root must not connect");
    let quinn::ConnectionError::TransportError(e) = &err else {
        panic!("unexpected refusal: {err}");
    };
    assert!(e.to_string().contains("trust bundle"), "{e}");
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_without_a_certificate_is_refused() -> Result<()> {
    let fed = TestFederation::new();
    let east = fed.identity("east");
    let (addr, mut rx) = tcp_server(east.server_config(&[ALPN_TUNNEL])).await?;
    let anonymous = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(causeway_trust::SpiffeVerifier::new(
        Arc::new(arc_swap::ArcSwap::from_pointee(
            east.bundle().as_ref().clone(),
        )),
        Arc::new(rustls::crypto::ring::default_provider()),
    )))
    .with_no_client_auth();
    assert!(tcp_connect(addr, anonymous).await.is_err());
    let err = next_outcome(&mut rx).await.expect_err("server must refuse");
    let tls = tls_error(&err).context("TLS error")?;
    assert!(
        matches!(tls, rustls::Error::NoCertificatesPresented),
        "unexpected reason: {tls}"
    );
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn a_chain_from_a_foreign_root_is_refused() -> Result<()> {
    let foreign = TestFederation::new();
    let leaf = foreign
        .issuer("west")
        .mint(Role::Gateway, Duration::from_secs(3600))?;
    assert_eq!(
        refused_with(leaf.chain, leaf.key).await?,
        PeerRejected::UnknownIssuer
    );
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn the_right_root_but_another_trust_domain_is_refused() -> Result<()> {
    let leaf = west_leaf(gateway_uri("other.example", "west"), -60, 3600)?;
    let why = refused_with(leaf.chain, leaf.key).await?;
    assert!(
        matches!(&why, PeerRejected::ForeignTrustDomain { id, .. } if id.contains("other.example")),
        "{why}"
    );
    assert!(why.to_string().contains("not in our trust domain"));
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn a_certificate_without_a_spiffe_id_is_refused() -> Result<()> {
    let leaf = west_leaf("https://west.example/".to_owned(), -60, 3600)?;
    assert_eq!(
        refused_with(leaf.chain, leaf.key).await?,
        PeerRejected::NoSpiffeId
    );
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn an_expired_leaf_is_refused() -> Result<()> {
    let leaf = west_leaf(gateway_uri("causeway.local", "west"), -7200, -3600)?;
    assert_eq!(
        refused_with(leaf.chain, leaf.key).await?,
        PeerRejected::Expired
    );
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn a_leaf_not_valid_yet_is_refused() -> Result<()> {
    let leaf = west_leaf(gateway_uri("causeway.local", "west"), 3600, 7200)?;
    assert_eq!(
        refused_with(leaf.chain, leaf.key).await?,
        PeerRejected::NotYetValid
    );
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn a_leaf_signed_by_a_non_ca_is_refused() -> Result<()> {
    // A genuine west leaf (not a CA) used as if it were an issuer.
    let issuer = same_fed_issuer("west");
    let fake_ca = issuer.mint(Role::Gateway, Duration::from_secs(3600))?;
    let fake_ca_key = rcgen::KeyPair::try_from(&fake_ca.key)?;
    let signer = rcgen::Issuer::from_ca_cert_der(&fake_ca.chain[0], &fake_ca_key)?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        gateway_uri("causeway.local", "west").try_into()?,
    )];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &signer)?;
    let chain = vec![
        cert.der().clone(),
        fake_ca.chain[0].clone(),
        issuer.cert().clone(),
    ];
    let why = refused_with(chain, PrivateKeyDer::Pkcs8(key.serialize_der().into())).await?;
    // webpki reports a non-CA signer as an unknown issuer or as an end entity used as CA;
    // either way the handshake is refused by our verifier with a reason.
    assert!(matches!(why, PeerRejected::IssuerNotCa), "{why}");
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn an_issuer_cannot_vouch_for_another_cluster() -> Result<()> {
    let leaf = west_leaf(gateway_uri("causeway.local", "north"), -60, 3600)?;
    let why = refused_with(leaf.chain, leaf.key).await?;
    assert!(matches!(why, PeerRejected::WrongIssuer { .. }), "{why}");
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn renewal_changes_the_serial_for_new_handshakes_and_keeps_open_connections() -> Result<()> {
    let fed = TestFederation::new();
    let east = fed.identity("east");
    let west = fed.identity_with_lifetime("west", Duration::from_secs(3));
    let renewal = west.spawn_renewal();
    let (addr, mut rx) = tcp_server(east.server_config(&[ALPN_TUNNEL])).await?;

    let mut before = tcp_connect(addr, west.client_config(&[ALPN_TUNNEL])).await?;
    next_outcome(&mut rx).await?;
    let serial_before = west.current().info.serial.clone();

    // The background task renews at 2/3 of the 3 s lifetime; wait for it.
    let mut renewals = west.renewals();
    tokio::time::timeout(DEADLINE, renewals.changed()).await??;
    let serial_after = west.current().info.serial.clone();
    assert_ne!(serial_before, serial_after);

    // The connection opened before renewal still exchanges data.
    before.write_all(b"still").await?;
    let mut buf = [0u8; 5];
    before.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"still");

    // A new handshake presents the new leaf: the server sees the new serial.
    let after = tcp_connect(addr, west.client_config(&[ALPN_TUNNEL])).await?;
    next_outcome(&mut rx).await?;
    let presented = after.get_ref().1.peer_certificates().unwrap();
    assert_eq!(peer_identity(presented)?.cluster.as_str(), "east");
    renewal.abort();
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn the_server_sees_the_renewed_serial() -> Result<()> {
    let fed = TestFederation::new();
    let east = fed.identity("east");
    let west = fed.identity("west");
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(Arc::new(east.server_config(&[ALPN_TUNNEL])));
    let serials = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (tcp, _) = listener.accept().await?;
            let mut tls = acceptor.accept(tcp).await?;
            let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
            seen.push(causeway_trust::CertInfo::parse(&leaf)?.serial);
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await?;
            tls.write_all(&buf).await?;
        }
        anyhow::Ok(seen)
    });
    let first = west.current().info.serial.clone();
    let _a = tcp_connect(addr, west.client_config(&[ALPN_TUNNEL])).await?;
    west.renew()?;
    let second = west.current().info.serial.clone();
    let _b = tcp_connect(addr, west.client_config(&[ALPN_TUNNEL])).await?;
    let seen = tokio::time::timeout(DEADLINE, serials).await???;
    assert_eq!(seen, vec![first, second]);
    assert_ne!(seen[0], seen[1]);
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn a_bundle_with_old_and_new_roots_accepts_leaves_under_either() -> Result<()> {
    let old = TestFederation::new();
    let new = TestFederation::new();
    let both = TrustBundle::from_certs(
        std::path::Path::new("<test>"),
        vec![old.root().cert().clone(), new.root().cert().clone()],
    )?;
    let server = old.identity("east");
    server.set_bundle(both.clone());
    let (addr, mut rx) = tcp_server(server.server_config(&[ALPN_TUNNEL])).await?;
    for fed in [&old, &new] {
        let client = fed.identity("west");
        client.set_bundle(both.clone());
        tcp_connect(addr, client.client_config(&[ALPN_TUNNEL])).await?;
        assert_eq!(next_outcome(&mut rx).await?.cluster.as_str(), "west");
    }
    // Without the new root, a leaf under it is refused.
    server.set_bundle(old.root().bundle());
    let stranger = new.identity("west");
    stranger.set_bundle(both);
    assert!(
        tcp_connect(addr, stranger.client_config(&[ALPN_TUNNEL]))
            .await
            .is_err()
    );
    let err = next_outcome(&mut rx).await.expect_err("refused");
    assert_eq!(
        rejection_of(tls_error(&err).context("tls error")?),
        Some(&PeerRejected::UnknownIssuer)
    );
    Ok(())
}
