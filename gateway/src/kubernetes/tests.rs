//! The gateway's side of the Kubernetes controllers, against real gateways: what a
//! `ServiceExport` publishes, what a `ClusterLink` probe reports. The controllers'
//! API traffic is tested in `causeway-k8s` against a scripted API server.

use std::collections::BTreeMap;
use std::time::Duration;

use causeway_k8s::controller::{ExportPort, ExportSink, ExportSpec, LinkDriver, Verdict};
use causeway_k8s::resources::Protocol;
use causeway_registry::ServiceKey;

use super::exports::{PlatformExports, PublishError};
use super::links::FederationLinks;
use crate::daemon::Shared;
use crate::federation::LocalFederation;

/// Held by tests that start a federation of more than one cluster: those of one
/// process allocate import addresses from the same pools, so two at once collide.
pub(super) static MANY_CLUSTERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The `ServiceExport` sink of the gateway `shared` holds the handles of.
fn platform_exports(shared: &Shared) -> PlatformExports {
    PlatformExports::new(
        shared.local.cluster.clone(),
        shared.exports.clone(),
        shared.membership.clone(),
    )
}

fn spec(name: &str, cluster_ip: Option<&str>, protocol: Protocol) -> ExportSpec {
    ExportSpec {
        namespace: "shop".into(),
        name: name.into(),
        ports: vec![ExportPort {
            name: Some("http".into()),
            port: 8080,
            protocol,
        }],
        ready_endpoints: 3,
        labels: BTreeMap::from([("app.kubernetes.io/name".into(), name.into())]),
        cluster_ip: cluster_ip.map(|ip| ip.parse().unwrap()),
    }
}

/// This cluster's export of `shop/name` in the local catalog: (endpoints, port).
fn catalog_export(fed: &LocalFederation, name: &str) -> Option<(u32, u16)> {
    let shared = fed.gateway(0).unwrap().shared();
    let key: ServiceKey = format!("shop/{name}").parse().unwrap();
    shared.membership.node().read_local(|catalog| {
        catalog
            .exports()
            .find(|e| e.value.cluster == shared.local.cluster && e.value.service == key)
            .map(|e| (e.value.endpoints, e.value.ports[0].port))
    })
}

#[tokio::test]
async fn service_exports_are_published_kept_across_reloads_and_withdrawn() {
    let fed = LocalFederation::start(&["west"]).await.unwrap();
    fed.wait_converged(Duration::from_secs(20)).await.unwrap();
    let shared = fed.gateway(0).unwrap().shared().clone();
    let sink = platform_exports(&shared);

    let outcome = sink
        .publish(spec("web", Some("10.96.0.10"), Protocol::Tcp))
        .await
        .unwrap();
    assert!(outcome.committed, "answered once committed");
    assert!(outcome.conflicts.is_empty());
    assert_eq!(
        catalog_export(&fed, "web"),
        Some((3, 8080)),
        "the ready endpoint count and the port are published"
    );

    // The config file's exports are replaced on reload; the platform's stay.
    let file = std::path::Path::new("gateway.toml");
    let generation = crate::daemon::exports::apply_reloaded(&shared.exports, Vec::new(), file)
        .expect("the file's exports changed");
    let wait = Duration::from_secs(10);
    assert!(crate::daemon::exports::committed(&shared.exports, generation, wait).await);
    assert_eq!(catalog_export(&fed, "web"), Some((3, 8080)));

    sink.withdraw("shop", "web").await.unwrap();
    assert_eq!(catalog_export(&fed, "web"), None, "withdrawn");
    sink.withdraw("shop", "web").await.unwrap();
    fed.shutdown().await;
}

#[tokio::test]
async fn service_exports_the_tunnel_cannot_carry_are_refused_with_the_reason() {
    let fed = LocalFederation::start(&["west"]).await.unwrap();
    let sink = platform_exports(fed.gateway(0).unwrap().shared());
    let headless = sink.publish(spec("db", None, Protocol::Tcp)).await;
    assert!(
        matches!(headless, Err(PublishError::Headless(_))),
        "{headless:?}"
    );
    let udp = sink
        .publish(spec("dns", Some("10.96.0.11"), Protocol::Udp))
        .await;
    assert!(matches!(udp, Err(PublishError::NoTcpPort(_))), "{udp:?}");
    let mut bad = spec("web", Some("10.96.0.12"), Protocol::Tcp);
    bad.labels.insert("key with spaces".into(), "v".into());
    let err = sink.publish(bad).await.unwrap_err();
    assert!(err.to_string().contains("labels"), "{err}");
    assert_eq!(catalog_export(&fed, "db"), None);
    assert_eq!(catalog_export(&fed, "web"), None);
    fed.shutdown().await;
}

#[tokio::test]
async fn a_link_probe_reports_membership_reachability_trust_and_imports() {
    let _one_at_a_time = MANY_CLUSTERS.lock().await;
    let fed = LocalFederation::start(&["west", "east"]).await.unwrap();
    fed.wait_converged(Duration::from_secs(30)).await.unwrap();
    // Traffic makes east dial west's tunnel.
    fed.request(1, &LocalFederation::pinned_name("west"))
        .await
        .unwrap();
    let east = fed.gateway(1).unwrap().shared();
    let links = FederationLinks::new(
        east.local.clone(),
        east.membership.clone(),
        east.imports.clone(),
        east.exports.clone(),
        east.tunnel.clone(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let report = loop {
        let report = links.probe("west").await.unwrap();
        if report.reachable.passed() || tokio::time::Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(report.joined, Verdict::Passed);
    assert_eq!(report.reachable, Verdict::Passed);
    assert_eq!(report.trust_verified, Verdict::Passed);
    assert!(report.rtt_millis.is_some_and(|r| r > 0.0), "{report:?}");
    assert_eq!(report.imported_services, 1, "the echo service");
    // Joining a federation this gateway is already in is a no-op.
    links.join("west", &["127.0.0.1:1".into()]).await.unwrap();

    let unknown = links.probe("south").await.unwrap();
    assert!(
        matches!(&unknown.joined, Verdict::Failed { reason, .. } if reason == "NotJoined"),
        "{unknown:?}"
    );
    assert!(matches!(&unknown.reachable, Verdict::Failed { reason, .. } if reason == "NotDialled"));
    assert_eq!(unknown.imported_services, 0);
    let bad = links.probe("Not_A_Name").await;
    assert!(bad.is_err());
    fed.shutdown().await;
}
