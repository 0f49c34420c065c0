//! A denied cluster issuer: its chains are refused by both verifier sides with a
//! reason naming the cluster and fingerprint, while other clusters still pass.

use std::sync::Arc;

use arc_swap::ArcSwap;
use causeway_testing::TestFederation;
use causeway_trust::{
    IssuerDenylist, IssuerFingerprint, PeerRejected, SpiffeVerifier, rejection_of,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;

#[test]
fn denied_issuer_is_refused_on_both_sides_and_others_pass() {
    let federation = TestFederation::new();
    let west = federation.identity("west");
    let east = federation.identity("east");
    let denylist = IssuerDenylist::new();
    let verifier = SpiffeVerifier::with_denylist(
        Arc::new(ArcSwap::from_pointee(federation.root().bundle())),
        Arc::new(rustls::crypto::ring::default_provider()),
        denylist.clone(),
    );
    let now = UnixTime::now();
    let chain_of = |id: &causeway_trust::GatewayIdentity| id.current().certified.cert.clone();
    let west_chain = chain_of(&west);
    let east_chain = chain_of(&east);
    assert!(
        verifier
            .verify_client_cert(&west_chain[0], &west_chain[1..], now)
            .is_ok()
    );

    let west_fp = IssuerFingerprint::of_issuer(west.issuer());
    assert_eq!(IssuerFingerprint::of_peer_chain(&west_chain), Some(west_fp));
    denylist.insert(west_fp);

    let err = verifier
        .verify_client_cert(&west_chain[0], &west_chain[1..], now)
        .unwrap_err();
    let name = ServerName::try_from("gateway.causeway").unwrap();
    let server_err = verifier
        .verify_server_cert(&west_chain[0], &west_chain[1..], &name, &[], now)
        .unwrap_err();
    for err in [&err, &server_err] {
        match rejection_of(err) {
            Some(PeerRejected::DeniedIssuer {
                cluster,
                fingerprint,
            }) => {
                assert_eq!(cluster.as_str(), "west");
                assert_eq!(*fingerprint, west_fp);
            }
            other => panic!("expected DeniedIssuer, got {other:?} ({err})"),
        }
    }
    assert!(err.to_string().contains(&west_fp.to_string()), "{err}");
    assert!(
        verifier
            .verify_client_cert(&east_chain[0], &east_chain[1..], now)
            .is_ok()
    );
    assert_eq!(denylist.denied_in_chain(&west_chain), Some(west_fp));
    assert_eq!(denylist.denied_in_chain(&east_chain), None);
}

#[test]
fn identity_configs_share_the_identity_denylist() {
    let federation = TestFederation::new();
    let west = federation.identity("west");
    let east = federation.identity("east");
    let _config = west.server_config(&[b"h2"]);
    // Filling the identity's list after the config was built still applies.
    west.denylist()
        .replace([IssuerFingerprint::of_issuer(east.issuer())]);
    assert_eq!(west.denylist().len(), 1);
    assert!(
        west.denylist()
            .denied_in_chain(&east.current().certified.cert)
            .is_some()
    );
}
