//! Leader election against a scripted API server, in paused time: the elector
//! takes a free Lease, leaves one another replica holds until it expires, loses a
//! race it sees as a conflict, steps down when it cannot renew, and releases the
//! Lease on shutdown; the import writer writes only while it leads, and every
//! replica reads the mirrored ports and the ready gateway pods.

#[allow(dead_code)] // Each test binary uses a different subset.
#[path = "support/api_server.rs"]
mod api_server;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use api_server::{ApiServer, Exchange, STEP_TIMEOUT};
use causeway_k8s::controller::imports::ImportWriter;
use causeway_k8s::controller::{
    GatewayBackend, ImportOutcome, ImportPort, ImportView, MirrorConfig,
};
use causeway_k8s::leader::{Elector, Leadership, LeaseConfig, LeaseTimings};
use causeway_k8s::resources::Protocol;
use http::Method;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/causeway-system/leases";
const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/causeway-system/leases/causeway-gateway-controllers";

/// Awaits `future`, failing the test if it takes longer than [`STEP_TIMEOUT`].
async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(STEP_TIMEOUT, future)
        .await
        .expect("the step finished in time")
}

/// An elector for replica `identity` with the default timings, running until the
/// returned sender is used or dropped.
fn start_elector(identity: &str) -> (ApiServer, Leadership, oneshot::Sender<()>, JoinHandle<()>) {
    let (client, server) = api_server::start();
    let elector = Elector::new(
        client,
        LeaseConfig {
            namespace: "causeway-system".into(),
            name: "causeway-gateway-controllers".into(),
            identity: identity.into(),
            timings: LeaseTimings::default(),
        },
    );
    let leadership = elector.leadership();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(elector.run(async move {
        let _ = stopped.await;
    }));
    (server, leadership, stop, task)
}

/// The Lease as the API server would store it: `spec` with a resourceVersion.
fn stored(spec: Value, version: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "causeway-gateway-controllers", "namespace": "causeway-system",
                     "resourceVersion": version},
        "spec": spec,
    })
}

fn held_by(holder: &str, version: &str) -> Value {
    stored(
        json!({"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 2,
               "renewTime": "2025-01-01T00:00:00.000000Z"}),
        version,
    )
}

/// Answers a write by storing its body under `version`.
fn accept(write: Exchange, version: &str) {
    let mut body = write.body.clone();
    body["metadata"]["resourceVersion"] = json!(version);
    write.respond(200, &body);
}

/// The next write of the Lease: a renewal comes a renew period (5 s) after the
/// last, as long as [`STEP_TIMEOUT`], so this waits longer.
async fn next_put(server: &mut ApiServer) -> Exchange {
    let put = server
        .next_within(STEP_TIMEOUT * 3)
        .await
        .expect("the Lease is written");
    assert_eq!((&put.method, put.path.as_str()), (&Method::PUT, LEASE));
    put
}

/// A write claims the Lease for `b`, over `version`, after `transitions` changes
/// of holder.
fn assert_claim(write: &Exchange, version: &str, transitions: u64) {
    assert_eq!(write.body["metadata"]["resourceVersion"], version);
    assert_eq!(write.body["spec"]["holderIdentity"], "b");
    assert_eq!(write.body["spec"]["leaseTransitions"], transitions);
}

/// The elector, with no Lease in place, creates it and leads.
async fn lead(server: &mut ApiServer, leadership: &mut Leadership) {
    server.expect(Method::GET, LEASE).await.fail(404);
    let create = server.expect(Method::POST, LEASES).await;
    assert_eq!(create.body["spec"]["holderIdentity"], "b");
    assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);
    accept(create, "1");
    assert!(within(leadership.changed()).await, "leads once created");
}

#[tokio::test(start_paused = true)]
async fn a_free_lease_is_taken_and_renewed_every_renew_period() {
    let (mut server, mut leadership, _stop, _task) = start_elector("b");
    lead(&mut server, &mut leadership).await;
    let led_at = Instant::now();
    // Leading, it renews from what it wrote: no read, the version it got back.
    let renew = next_put(&mut server).await;
    assert!(
        led_at.elapsed() >= Duration::from_secs(5),
        "{:?}",
        led_at.elapsed()
    );
    assert_claim(&renew, "1", 0);
    accept(renew, "2");
    let renew = next_put(&mut server).await;
    assert_eq!(renew.body["metadata"]["resourceVersion"], "2");
    assert!(leadership.is_leader());
}

#[tokio::test(start_paused = true)]
async fn a_lease_held_by_another_replica_is_taken_only_once_it_expires() {
    let (mut server, mut leadership, _stop, _task) = start_elector("b");
    let first_read = Instant::now();
    let take = loop {
        let request = server.next().await;
        if request.method != Method::GET {
            break request;
        }
        assert!(!leadership.is_leader());
        // The holder stopped renewing: the same record every time.
        request.respond(200, &held_by("a", "7"));
    };
    assert_eq!(
        (take.method.clone(), take.path.as_str()),
        (Method::PUT, LEASE)
    );
    assert!(
        first_read.elapsed() >= Duration::from_secs(15),
        "taken {:?} after the first read",
        first_read.elapsed()
    );
    assert_claim(&take, "7", 3);
    accept(take, "8");
    assert!(within(leadership.changed()).await);
}

#[tokio::test(start_paused = true)]
async fn a_conflict_on_the_write_loses_the_race() {
    let (mut server, leadership, _stop, _task) = start_elector("b");
    server.expect(Method::GET, LEASE).await.fail(404);
    server.expect(Method::POST, LEASES).await.fail(409);
    // Another replica created it first: the next round reads its claim and waits.
    server
        .expect(Method::GET, LEASE)
        .await
        .respond(200, &held_by("a", "1"));
    server
        .expect(Method::GET, LEASE)
        .await
        .respond(200, &held_by("a", "1"));
    assert!(!leadership.is_leader());
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_steps_down_before_the_lease_expires() {
    let (mut server, mut leadership, _stop, _task) = start_elector("b");
    lead(&mut server, &mut leadership).await;
    let renewed_at = Instant::now();
    let stepped_down = async {
        loop {
            next_put(&mut server).await.fail(500);
        }
    };
    tokio::select! {
        leading = leadership.changed() => assert!(!leading),
        () = stepped_down => unreachable!(),
    }
    let after = renewed_at.elapsed();
    assert!(
        after >= Duration::from_secs(10) && after < Duration::from_secs(15),
        "stepped down {after:?} after the last renewal"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_leading_then_releases_the_lease() {
    let (mut server, mut leadership, stop, task) = start_elector("b");
    lead(&mut server, &mut leadership).await;
    stop.send(()).expect("the elector runs");
    let release = server.expect(Method::PUT, LEASE).await;
    assert!(
        !leadership.is_leader(),
        "no longer leads before the release is sent"
    );
    assert_eq!(release.body["metadata"]["resourceVersion"], "1");
    assert_eq!(release.body["spec"].get("holderIdentity"), None);
    accept(release, "2");
    within(task).await.expect("the elector ends");
    server.assert_idle();
}

// === The import writer ===

const MIRROR_PATH: &str = "/api/v1/namespaces/demo/services/causeway-web";
const NAMESPACE_PATH: &str = "/api/v1/namespaces/demo";

fn import_view() -> ImportView {
    ImportView {
        namespace: "demo".into(),
        name: "web".into(),
        ports: vec![ImportPort {
            name: Some("http".into()),
            port: 80,
            protocol: Protocol::Tcp,
            listener_port: 40001,
        }],
        clusters: vec!["west".into()],
    }
}

fn mirrored_service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "causeway-web", "namespace": "demo", "resourceVersion": "41",
                     "labels": {"app.kubernetes.io/managed-by": "causeway"}},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.50",
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 40001}]},
    })
}

#[tokio::test(start_paused = true)]
async fn the_import_writer_only_reads_until_it_leads() {
    let (client, mut server) = api_server::start();
    let (leading, leadership) = Leadership::channel(false);
    let writer = ImportWriter::new(client, MirrorConfig::default(), leadership);
    let import = import_view();

    // Not leading, before the leader mirrored the import: one read, no answer.
    let read = tokio::spawn(async move {
        server.expect(Method::GET, MIRROR_PATH).await.fail(404);
        server
    });
    let outcome = within(writer.apply(&import)).await.expect("reads");
    assert_eq!(outcome, ImportOutcome::AwaitingLeader);
    let mut server = within(read).await.expect("script");

    // Not leading, once the leader mirrored it: its cluster IP, still no write.
    let read = tokio::spawn(async move {
        server
            .expect(Method::GET, MIRROR_PATH)
            .await
            .respond(200, &mirrored_service());
        server
    });
    let outcome = within(writer.apply(&import)).await.expect("reads");
    assert_eq!(
        outcome,
        ImportOutcome::Applied {
            service: "causeway-web".into(),
            cluster_ip: "10.96.0.50".into()
        }
    );
    let mut server = within(read).await.expect("script");
    within(writer.remove("demo", "web"))
        .await
        .expect("nothing to do");
    assert_eq!(
        within(writer.resync(&[])).await.expect("nothing to do"),
        Vec::<String>::new()
    );
    server.assert_idle();

    // Leading: the mirror's own sequence, which creates the Service.
    leading.send_replace(true);
    let write = tokio::spawn(async move {
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}});
        server
            .expect(Method::GET, NAMESPACE_PATH)
            .await
            .respond(200, &namespace);
        server.expect(Method::GET, MIRROR_PATH).await.fail(404);
        let create = server
            .expect(Method::POST, "/api/v1/namespaces/demo/services")
            .await;
        assert_eq!(create.body["metadata"]["name"], "causeway-web");
        create.fail(500);
        server
    });
    assert!(
        within(writer.apply(&import)).await.is_err(),
        "the create failed"
    );
    within(write).await.expect("script").assert_idle();
}

fn slice(family: &str, endpoints: Value) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("causeway-gateway-{family}"), "namespace": "causeway-system",
                     "labels": {"kubernetes.io/service-name": "causeway-gateway"}},
        "addressType": family, "endpoints": endpoints,
    })
}

#[tokio::test(start_paused = true)]
async fn every_replica_reads_the_mirrored_ports_and_the_ready_gateway_pods() {
    let (client, mut server) = api_server::start();
    let (_leading, leadership) = Leadership::channel(true);
    let config = MirrorConfig {
        backend: GatewayBackend::Addresses(vec!["10.244.0.1".parse().expect("address")]),
        create_namespaces: false,
    };
    let mut writer = ImportWriter::new(client, config, leadership);

    // The gateway Service's slices: a pod not ready (terminating, or failing its
    // probe) is left out; one without conditions counts as ready; a dual-stack pod
    // is listed in both families.
    let script = tokio::spawn(async move {
        let list = server
            .expect(
                Method::GET,
                "/apis/discovery.k8s.io/v1/namespaces/causeway-system/endpointslices",
            )
            .await;
        assert_eq!(
            list.query("labelSelector").as_deref(),
            Some("kubernetes.io/service-name=causeway-gateway")
        );
        let v4 = slice(
            "IPv4",
            json!([
                {"addresses": ["10.244.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.244.0.3"], "conditions": {"ready": false, "terminating": true}},
                {"addresses": ["10.244.0.2"]},
            ]),
        );
        let v6 = slice(
            "IPv6",
            json!([{"addresses": ["fd00::2"], "conditions": {"ready": true}}]),
        );
        list.respond(
            200,
            &json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": [v4, v6]}),
        );
        server
            .expect(Method::GET, MIRROR_PATH)
            .await
            .respond(200, &mirrored_service());
        server
    });
    let pods = within(writer.ready_pods("causeway-system", "causeway-gateway"))
        .await
        .expect("listed");
    let expected: Vec<std::net::IpAddr> = ["10.244.0.1", "10.244.0.2", "fd00::2"]
        .iter()
        .map(|a| a.parse().expect("address"))
        .collect();
    assert_eq!(pods, expected);
    writer.set_gateway_pods(pods.clone());
    assert_eq!(writer.gateway_pods(), pods.as_slice());

    // The mirrored Service says which pod port carries each service port.
    let mirrored = within(writer.observe(&import_view()))
        .await
        .expect("read")
        .expect("ours");
    assert_eq!(mirrored.listener_ports, BTreeMap::from([(80, 40001)]));
    assert_eq!(mirrored.cluster_ip.as_deref(), Some("10.96.0.50"));
    within(script).await.expect("script").assert_idle();
}
