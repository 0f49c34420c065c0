//! The controllers against a scripted API server: each test plays the API server's
//! side request by request, checking what the controller asks for (method, path,
//! query, body) and answering with canned objects, and checks what the controller
//! told the gateway through its traits.

#[allow(dead_code)] // Each test binary uses a different subset.
#[path = "support/api_server.rs"]
mod api_server;

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_server::{ApiServer, STEP_TIMEOUT};
use causeway_k8s::controller::{
    ExportContext, ExportPort, ExportSink, ExportSpec, GatewayBackend, ImportOutcome, ImportPort,
    ImportView, LinkContext, LinkDriver, LinkReport, MirrorConfig, PortConflict, PublishOutcome,
    Verdict, exports, imports, links,
};
use causeway_k8s::leader::Leadership;
use causeway_k8s::resources::Protocol;
use causeway_k8s::{ClusterLink, ServiceExport};
use futures::FutureExt;
use http::Method;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

/// Awaits `future`, failing the test if it takes longer than [`STEP_TIMEOUT`].
async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(STEP_TIMEOUT, future)
        .await
        .expect("the step finished in time")
}

/// Runs `script` as the API server while `client_side` runs, and returns what
/// `client_side` returned once both are done and no request is left unanswered.
async fn scripted<S, C>(
    server: ApiServer,
    script: impl FnOnce(ApiServer) -> S,
    client_side: C,
) -> C::Output
where
    S: Future<Output = ApiServer> + Send + 'static,
    C: Future,
{
    let script = tokio::spawn(script(server));
    let output = within(client_side).await;
    let mut server = within(script).await.expect("the API server script passed");
    server.assert_idle();
    output
}

/// The condition of type `type_` in a status patch.
fn condition<'a>(patch: &'a Value, type_: &str) -> &'a Value {
    patch["status"]["conditions"]
        .as_array()
        .expect("the patch has conditions")
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {patch}"))
}

fn assert_condition(patch: &Value, type_: &str, status: &str, reason: &str) {
    let c = condition(patch, type_);
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some(status), Some(reason)),
        "{type_}: {c}"
    );
}

const MERGE_PATCH: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";

// === ServiceExport ===

const EXPORT_PATH: &str = "/apis/multicluster.x-k8s.io/v1alpha1/namespaces/demo/serviceexports/web";
const SERVICE_PATH: &str = "/api/v1/namespaces/demo/services/web";
const SLICES_PATH: &str = "/apis/discovery.k8s.io/v1/namespaces/demo/endpointslices";

#[derive(Debug, Clone, PartialEq)]
enum SinkCall {
    Publish(ExportSpec),
    Withdraw(String, String),
}

/// An `ExportSink` that records its calls and answers every publication with
/// `outcome`.
#[derive(Default)]
struct RecordingSink {
    calls: Mutex<Vec<SinkCall>>,
    outcome: PublishOutcome,
}

impl RecordingSink {
    fn committing() -> Self {
        Self {
            calls: Mutex::default(),
            outcome: PublishOutcome {
                committed: true,
                conflicts: vec![],
            },
        }
    }

    fn calls(&self) -> Vec<SinkCall> {
        self.calls.lock().expect("not poisoned").clone()
    }
}

impl ExportSink for RecordingSink {
    type Error = io::Error;

    fn publish(
        &self,
        spec: ExportSpec,
    ) -> impl Future<Output = Result<PublishOutcome, io::Error>> + Send {
        self.calls
            .lock()
            .expect("not poisoned")
            .push(SinkCall::Publish(spec));
        std::future::ready(Ok(self.outcome.clone()))
    }

    fn withdraw(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), io::Error>> + Send {
        self.calls
            .lock()
            .expect("not poisoned")
            .push(SinkCall::Withdraw(namespace.into(), name.into()));
        std::future::ready(Ok(()))
    }
}

fn export_json(finalized: bool, deleting: bool, status: Option<Value>) -> Value {
    let mut metadata = json!({
        "name": "web", "namespace": "demo", "generation": 3,
        "resourceVersion": "100", "uid": "0b7d2f5e-export",
    });
    if finalized {
        metadata["finalizers"] = json!([exports::FINALIZER]);
    }
    if deleting {
        metadata["deletionTimestamp"] = json!("2026-11-28T09:00:00Z");
    }
    let mut export = json!({
        "apiVersion": "multicluster.x-k8s.io/v1alpha1",
        "kind": "ServiceExport",
        "metadata": metadata,
    });
    if let Some(status) = status {
        export["status"] = status;
    }
    export
}

fn export(finalized: bool, deleting: bool, status: Option<Value>) -> Arc<ServiceExport> {
    Arc::new(
        serde_json::from_value(export_json(finalized, deleting, status)).expect("a ServiceExport"),
    )
}

fn service_json(type_: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "demo", "labels": {"app": "web", "tier": "front"}},
        "spec": {
            "type": type_,
            "clusterIP": "10.96.1.10",
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353},
            ],
        },
    })
}

/// Three Pods behind `web`: web-1 ready (listed in both address families' slices),
/// web-2 not ready, web-3 without conditions (ready by the API's definition).
fn endpoint_slices() -> Value {
    let slice = |name: &str, family: &str, endpoints: Value| {
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "demo", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": family,
            "endpoints": endpoints,
        })
    };
    let pod = |name: &str| json!({"kind": "Pod", "namespace": "demo", "name": name, "uid": format!("uid-{name}")});
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
        "metadata": {"resourceVersion": "7"},
        "items": [
            slice("web-v4", "IPv4", json!([
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "targetRef": pod("web-1")},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}, "targetRef": pod("web-2")},
                {"addresses": ["10.0.0.3"], "targetRef": pod("web-3")},
            ])),
            slice("web-v6", "IPv6", json!([
                {"addresses": ["fd00::1"], "conditions": {"ready": true}, "targetRef": pod("web-1")},
            ])),
        ],
    })
}

/// Serves the reads of an export's apply: the Service, then its EndpointSlices.
async fn serve_service_and_slices(server: &mut ApiServer) {
    server
        .expect(Method::GET, SERVICE_PATH)
        .await
        .respond(200, &service_json("ClusterIP"));
    let list = server.expect(Method::GET, SLICES_PATH).await;
    assert_eq!(
        list.query("labelSelector").as_deref(),
        Some("kubernetes.io/service-name=web")
    );
    list.respond(200, &endpoint_slices());
}

/// Takes the status patch of `web` and answers with the patched object.
async fn take_export_status(server: &mut ApiServer) -> Value {
    let patch = server
        .expect(Method::PATCH, &format!("{EXPORT_PATH}/status"))
        .await;
    assert_eq!(patch.content_type.as_deref(), Some(MERGE_PATCH));
    let body = patch.body.clone();
    patch.respond(200, &export_json(true, false, Some(body["status"].clone())));
    body
}

#[tokio::test]
async fn a_new_export_gets_its_finalizer_before_anything_is_published() {
    let (client, server) = api_server::start();
    let ctx = Arc::new(ExportContext::new(client, RecordingSink::committing()));
    let action = scripted(
        server,
        |mut server| async move {
            let patch = server.expect(Method::PATCH, EXPORT_PATH).await;
            assert_eq!(patch.content_type.as_deref(), Some(JSON_PATCH));
            assert_eq!(
                patch.body,
                json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata/finalizers", "value": [exports::FINALIZER]},
                ])
            );
            patch.respond(200, &export_json(true, false, None));
            server
        },
        exports::reconcile(export(false, false, None), ctx.clone()),
    )
    .await
    .expect("reconciles");
    assert_eq!(
        action,
        Action::await_change(),
        "the finalizer patch triggers the next reconciliation"
    );
    assert_eq!(ctx.sink().calls(), []);
}

#[tokio::test]
async fn a_ready_export_is_published_with_its_ports_and_ready_endpoints() {
    let (client, server) = api_server::start();
    let ctx = Arc::new(ExportContext::new(client, RecordingSink::committing()));
    let action = scripted(
        server,
        |mut server| async move {
            serve_service_and_slices(&mut server).await;
            let status = take_export_status(&mut server).await;
            assert_condition(&status, "Valid", "True", "Valid");
            assert_condition(&status, "Ready", "True", "Exported");
            assert_condition(&status, "Conflict", "False", "NoConflicts");
            server
        },
        exports::reconcile(export(true, false, None), ctx.clone()),
    )
    .await
    .expect("reconciles");
    assert_eq!(action, Action::requeue(exports::RESYNC_PERIOD));
    assert_eq!(
        ctx.sink().calls(),
        [SinkCall::Publish(ExportSpec {
            namespace: "demo".into(),
            name: "web".into(),
            ports: vec![
                ExportPort {
                    name: Some("http".into()),
                    port: 80,
                    protocol: Protocol::Tcp
                },
                ExportPort {
                    name: Some("dns".into()),
                    port: 53,
                    protocol: Protocol::Udp
                },
            ],
            ready_endpoints: 2,
            labels: BTreeMap::from([
                ("app".into(), "web".into()),
                ("tier".into(), "front".into())
            ]),
            cluster_ip: Some("10.96.1.10".parse().unwrap()),
        })]
    );
}

#[tokio::test]
async fn conditions_keep_their_transition_time_and_an_unchanged_status_is_not_rewritten() {
    // First pass: the export was Valid since 08:00 but not yet Ready.
    let before = json!({"conditions": [
        {"type": "Valid", "status": "True", "reason": "Valid", "message": "old",
         "lastTransitionTime": "2026-11-28T08:00:00Z", "observedGeneration": 2},
        {"type": "Ready", "status": "False", "reason": "Pending", "message": "old",
         "lastTransitionTime": "2026-11-28T08:00:00Z", "observedGeneration": 2},
    ]});
    let (client, server) = api_server::start();
    let ctx = Arc::new(ExportContext::new(client, RecordingSink::committing()));
    let written = Arc::new(Mutex::new(Value::Null));
    let keep = written.clone();
    scripted(
        server,
        |mut server| async move {
            serve_service_and_slices(&mut server).await;
            let status = take_export_status(&mut server).await;
            let valid = condition(&status, "Valid");
            assert_eq!(
                valid["lastTransitionTime"], "2026-11-28T08:00:00Z",
                "Valid stayed True"
            );
            assert_eq!(valid["observedGeneration"], 3);
            let ready = condition(&status, "Ready");
            assert_ne!(
                ready["lastTransitionTime"], "2026-11-28T08:00:00Z",
                "Ready became True"
            );
            *keep.lock().expect("not poisoned") = status["status"].clone();
            server
        },
        exports::reconcile(export(true, false, Some(before)), ctx.clone()),
    )
    .await
    .expect("reconciles");

    // Second pass, on the status just written: the same reads, and no status write
    // (which would be a watch event, and a reconciliation, forever).
    let now = written.lock().expect("not poisoned").clone();
    let (client, server) = api_server::start();
    let ctx = Arc::new(ExportContext::new(client, RecordingSink::committing()));
    scripted(
        server,
        |mut server| async move {
            serve_service_and_slices(&mut server).await;
            server
        },
        exports::reconcile(export(true, false, Some(now)), ctx),
    )
    .await
    .expect("reconciles");
}

#[tokio::test]
async fn an_export_without_a_service_is_withdrawn_and_reported_invalid() {
    let (client, server) = api_server::start();
    let ctx = Arc::new(ExportContext::new(client, RecordingSink::committing()));
    scripted(
        server,
        |mut server| async move {
            server.expect(Method::GET, SERVICE_PATH).await.fail(404);
            let status = take_export_status(&mut server).await;
            assert_condition(&status, "Valid", "False", "NoService");
            assert_condition(&status, "Ready", "False", "Invalid");
            let message = condition(&status, "Valid")["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                message.contains("no Service web in namespace demo"),
                "{message}"
            );
            server
        },
        exports::reconcile(export(true, false, None), ctx.clone()),
    )
    .await
    .expect("reconciles");
    assert_eq!(
        ctx.sink().calls(),
        [SinkCall::Withdraw("demo".into(), "web".into())]
    );
}

#[tokio::test]
async fn an_external_name_service_is_not_exported() {
    let (client, server) = api_server::start();
    let ctx = Arc::new(ExportContext::new(client, RecordingSink::committing()));
    scripted(
        server,
        |mut server| async move {
            server
                .expect(Method::GET, SERVICE_PATH)
                .await
                .respond(200, &service_json("ExternalName"));
            let status = take_export_status(&mut server).await;
            assert_condition(&status, "Valid", "False", "InvalidServiceType");
            server
        },
        exports::reconcile(export(true, false, None), ctx.clone()),
    )
    .await
    .expect("reconciles");
    assert_eq!(
        ctx.sink().calls(),
        [SinkCall::Withdraw("demo".into(), "web".into())]
    );
}

#[tokio::test]
async fn a_port_conflict_is_reported_with_the_port_and_the_winning_cluster() {
    let (client, server) = api_server::start();
    let sink = RecordingSink {
        calls: Mutex::default(),
        outcome: PublishOutcome {
            committed: true,
            conflicts: vec![PortConflict {
                port: 53,
                winner: "east".into(),
                protocol: Protocol::Tcp,
            }],
        },
    };
    let ctx = Arc::new(ExportContext::new(client, sink));
    scripted(
        server,
        |mut server| async move {
            serve_service_and_slices(&mut server).await;
            let status = take_export_status(&mut server).await;
            assert_condition(&status, "Valid", "True", "Valid");
            assert_condition(&status, "Conflict", "True", "PortConflict");
            assert_condition(&status, "Ready", "False", "Conflict");
            let message = condition(&status, "Conflict")["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                message.contains("port 53")
                    && message.contains("cluster east")
                    && message.contains("TCP"),
                "{message}"
            );
            server
        },
        exports::reconcile(export(true, false, None), ctx.clone()),
    )
    .await
    .expect("reconciles");
}

#[tokio::test]
async fn deleting_an_export_withdraws_it_then_releases_the_finalizer() {
    let (client, server) = api_server::start();
    let ctx = Arc::new(ExportContext::new(client, RecordingSink::committing()));
    let action = scripted(
        server,
        |mut server| async move {
            let patch = server.expect(Method::PATCH, EXPORT_PATH).await;
            assert_eq!(patch.content_type.as_deref(), Some(JSON_PATCH));
            assert_eq!(
                patch.body,
                json!([
                    {"op": "test", "path": "/metadata/finalizers/0", "value": exports::FINALIZER},
                    {"op": "remove", "path": "/metadata/finalizers/0"},
                ])
            );
            patch.respond(200, &export_json(false, true, None));
            server
        },
        exports::reconcile(export(true, true, None), ctx.clone()),
    )
    .await
    .expect("reconciles");
    assert_eq!(action, Action::await_change());
    assert_eq!(
        ctx.sink().calls(),
        [SinkCall::Withdraw("demo".into(), "web".into())]
    );
}

#[tokio::test]
async fn failures_back_off_per_export() {
    let (client, server) = api_server::start();
    let ctx = Arc::new(ExportContext::new(client, RecordingSink::committing()));
    let error = scripted(
        server,
        |mut server| async move {
            server.expect(Method::GET, SERVICE_PATH).await.fail(500);
            server
        },
        exports::reconcile(export(true, false, None), ctx.clone()),
    )
    .await
    .expect_err("a server error fails the reconciliation");
    assert!(error.to_string().contains("demo/web"), "{error}");
    let delays: Vec<Action> = (0..3)
        .map(|_| exports::error_policy(export(true, false, None), &error, ctx.clone()))
        .collect();
    assert_eq!(
        delays,
        [1, 2, 4].map(|s| Action::requeue(Duration::from_secs(s)))
    );
}

// === Import mirror ===

const NAMESPACE_PATH: &str = "/api/v1/namespaces/demo";
const SERVICES_PATH: &str = "/api/v1/namespaces/demo/services";
const MIRROR_PATH: &str = "/api/v1/namespaces/demo/services/causeway-web";
const IMPORTS_PATH: &str = "/apis/multicluster.x-k8s.io/v1alpha1/namespaces/demo/serviceimports";
const IMPORT_PATH: &str = "/apis/multicluster.x-k8s.io/v1alpha1/namespaces/demo/serviceimports/web";

fn import_view(clusters: &[&str]) -> ImportView {
    ImportView {
        namespace: "demo".into(),
        name: "web".into(),
        ports: vec![
            ImportPort {
                name: Some("http".into()),
                port: 80,
                protocol: Protocol::Tcp,
                listener_port: 40001,
            },
            ImportPort {
                name: Some("dns".into()),
                port: 53,
                protocol: Protocol::Udp,
                listener_port: 40002,
            },
        ],
        clusters: clusters.iter().map(|c| (*c).to_owned()).collect(),
    }
}

fn managed_labels() -> Value {
    json!({
        "app.kubernetes.io/managed-by": "causeway",
        "multicluster.kubernetes.io/service-name": "web",
        "multicluster.kubernetes.io/source-cluster": "west",
    })
}

fn namespace_json() -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
}

/// The mirrored Service as the API server stores it.
fn mirror_service_json(target_ports: [u16; 2], labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "causeway-web", "namespace": "demo", "labels": labels,
                     "resourceVersion": "41", "uid": "uid-mirror"},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": "causeway", "app.kubernetes.io/component": "gateway"},
            "clusterIP": "10.96.0.50",
            "clusterIPs": ["10.96.0.50"],
            "sessionAffinity": "None",
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": target_ports[0]},
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": target_ports[1]},
            ],
        },
    })
}

fn service_import_json(labels: Value) -> Value {
    json!({
        "apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
        "metadata": {"name": "web", "namespace": "demo", "labels": labels,
                     "resourceVersion": "42", "uid": "uid-import"},
        "spec": {
            "type": "ClusterSetIP",
            "ips": ["10.96.0.50"],
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80},
                {"name": "dns", "protocol": "UDP", "port": 53},
            ],
        },
        "status": {"clusters": [{"cluster": "west"}]},
    })
}

#[tokio::test]
async fn an_import_becomes_a_gateway_service_and_a_service_import_with_its_address() {
    let (client, server) = api_server::start();
    let outcome = scripted(
        server,
        |mut server| async move {
            server.expect(Method::GET, NAMESPACE_PATH).await.respond(200, &namespace_json());
            server.expect(Method::GET, MIRROR_PATH).await.fail(404);

            let create = server.expect(Method::POST, SERVICES_PATH).await;
            let service = &create.body;
            assert_eq!(service["metadata"]["name"], "causeway-web");
            assert_eq!(service["metadata"]["labels"], managed_labels());
            assert_eq!(service["spec"]["type"], "ClusterIP");
            assert_eq!(
                service["spec"]["selector"],
                json!({"app.kubernetes.io/name": "causeway", "app.kubernetes.io/component": "gateway"})
            );
            assert_eq!(
                service["spec"]["ports"],
                json!([
                    {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 40001},
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 40002},
                ])
            );
            create.respond(201, &mirror_service_json([40001, 40002], managed_labels()));

            server.expect(Method::GET, IMPORT_PATH).await.fail(404);
            let create = server.expect(Method::POST, IMPORTS_PATH).await;
            let import = &create.body;
            assert_eq!(import["metadata"]["name"], "web");
            assert_eq!(import["metadata"]["labels"], managed_labels());
            assert_eq!(import["spec"]["type"], "ClusterSetIP");
            assert_eq!(import["spec"]["ips"], json!(["10.96.0.50"]));
            assert_eq!(
                import["spec"]["ports"],
                json!([
                    {"name": "http", "protocol": "TCP", "port": 80},
                    {"name": "dns", "protocol": "UDP", "port": 53},
                ])
            );
            let mut created = service_import_json(managed_labels());
            created["status"] = Value::Null;
            create.respond(201, &created);

            let status = server.expect(Method::PATCH, &format!("{IMPORT_PATH}/status")).await;
            assert_eq!(status.content_type.as_deref(), Some(MERGE_PATCH));
            assert_eq!(status.body, json!({"status": {"clusters": [{"cluster": "west"}]}}));
            status.respond(200, &service_import_json(managed_labels()));
            server
        },
        imports::apply_import(&client, &import_view(&["west"]), &MirrorConfig::default()),
    )
    .await
    .expect("mirrors the import");
    assert_eq!(
        outcome,
        ImportOutcome::Applied {
            service: "causeway-web".into(),
            cluster_ip: "10.96.0.50".into()
        }
    );
}

#[tokio::test]
async fn with_gateway_addresses_the_service_has_no_selector_and_owns_endpoint_slices() {
    let config = MirrorConfig {
        backend: GatewayBackend::Addresses(vec![
            "10.244.1.7".parse().expect("an IPv4 address"),
            "10.244.2.9".parse().expect("an IPv4 address"),
        ]),
        create_namespaces: false,
    };
    let (client, server) = api_server::start();
    scripted(
        server,
        |mut server| async move {
            server
                .expect(Method::GET, NAMESPACE_PATH)
                .await
                .respond(200, &namespace_json());
            server.expect(Method::GET, MIRROR_PATH).await.fail(404);
            let create = server.expect(Method::POST, SERVICES_PATH).await;
            assert_eq!(
                create.body["spec"].get("selector"),
                None,
                "the slices say where the gateway is"
            );
            let mut created = mirror_service_json([40001, 40002], managed_labels());
            created["spec"]
                .as_object_mut()
                .expect("an object")
                .remove("selector");
            create.respond(201, &created);

            for (family, addresses) in [
                ("ipv4", json!(["10.244.1.7", "10.244.2.9"])),
                ("ipv6", json!([])),
            ] {
                let path = format!("{SLICES_PATH}/causeway-web-{family}");
                server.expect(Method::GET, &path).await.fail(404);
                let create = server.expect(Method::POST, SLICES_PATH).await;
                let slice = &create.body;
                assert_eq!(slice["metadata"]["name"], format!("causeway-web-{family}"));
                let labels = &slice["metadata"]["labels"];
                assert_eq!(labels["kubernetes.io/service-name"], "causeway-web");
                assert_eq!(
                    labels["endpointslice.kubernetes.io/managed-by"],
                    "causeway.dev/mirror"
                );
                assert_eq!(labels["app.kubernetes.io/managed-by"], "causeway");
                let owner = &slice["metadata"]["ownerReferences"][0];
                assert_eq!(
                    (owner["kind"].as_str(), owner["uid"].as_str()),
                    (Some("Service"), Some("uid-mirror"))
                );
                let listed: Vec<&Value> = slice["endpoints"]
                    .as_array()
                    .expect("endpoints")
                    .iter()
                    .map(|e| &e["addresses"][0])
                    .collect();
                assert_eq!(json!(listed), addresses);
                assert_eq!(
                    slice["ports"],
                    json!([
                        {"name": "http", "port": 40001, "protocol": "TCP"},
                        {"name": "dns", "port": 40002, "protocol": "UDP"},
                    ]),
                    "listener ports, under the Service's port names"
                );
                let body = create.body.clone();
                create.respond(201, &body);
            }

            server
                .expect(Method::GET, IMPORT_PATH)
                .await
                .respond(200, &service_import_json(managed_labels()));
            server
        },
        imports::apply_import(&client, &import_view(&["west"]), &config),
    )
    .await
    .expect("mirrors the import");
}

#[tokio::test]
async fn a_service_created_meanwhile_is_read_and_updated_when_ours() {
    let (client, server) = api_server::start();
    scripted(
        server,
        |mut server| async move {
            server
                .expect(Method::GET, NAMESPACE_PATH)
                .await
                .respond(200, &namespace_json());
            server.expect(Method::GET, MIRROR_PATH).await.fail(404);
            server.expect(Method::POST, SERVICES_PATH).await.fail(409);
            // Ours, but with a listener port from before the gateway restarted, and
            // a label someone else added.
            let mut labels = managed_labels();
            labels["team"] = json!("payments");
            server
                .expect(Method::GET, MIRROR_PATH)
                .await
                .respond(200, &mirror_service_json([39999, 40002], labels.clone()));
            let update = server.expect(Method::PUT, MIRROR_PATH).await;
            assert_eq!(update.body["metadata"]["resourceVersion"], "41");
            assert_eq!(
                update.body["metadata"]["labels"], labels,
                "foreign labels are kept"
            );
            assert_eq!(
                update.body["spec"]["clusterIP"], "10.96.0.50",
                "the allocated IP is kept"
            );
            assert_eq!(update.body["spec"]["ports"][0]["targetPort"], 40001);
            update.respond(200, &mirror_service_json([40001, 40002], managed_labels()));
            // The ServiceImport is already as desired: no write.
            server
                .expect(Method::GET, IMPORT_PATH)
                .await
                .respond(200, &service_import_json(managed_labels()));
            server
        },
        imports::apply_import(&client, &import_view(&["west"]), &MirrorConfig::default()),
    )
    .await
    .expect("mirrors the import");
}

#[tokio::test]
async fn an_import_from_several_clusters_lists_them_in_status_not_in_a_label() {
    let (client, server) = api_server::start();
    scripted(
        server,
        |mut server| async move {
            let labels = json!({
                "app.kubernetes.io/managed-by": "causeway",
                "multicluster.kubernetes.io/service-name": "web",
            });
            server
                .expect(Method::GET, NAMESPACE_PATH)
                .await
                .respond(200, &namespace_json());
            // The mirror exists from when only west exported: its source-cluster
            // label goes.
            server
                .expect(Method::GET, MIRROR_PATH)
                .await
                .respond(200, &mirror_service_json([40001, 40002], managed_labels()));
            let update = server.expect(Method::PUT, MIRROR_PATH).await;
            assert_eq!(update.body["metadata"]["labels"], labels);
            update.respond(200, &mirror_service_json([40001, 40002], labels.clone()));
            server
                .expect(Method::GET, IMPORT_PATH)
                .await
                .respond(200, &service_import_json(managed_labels()));
            let update = server.expect(Method::PUT, IMPORT_PATH).await;
            assert_eq!(update.body["metadata"]["labels"], labels);
            update.respond(200, &service_import_json(labels));
            let status = server
                .expect(Method::PATCH, &format!("{IMPORT_PATH}/status"))
                .await;
            assert_eq!(
                status.body,
                json!({"status": {"clusters": [{"cluster": "west"}, {"cluster": "east"}]}})
            );
            status.respond(200, &service_import_json(managed_labels()));
            server
        },
        imports::apply_import(
            &client,
            &import_view(&["west", "east"]),
            &MirrorConfig::default(),
        ),
    )
    .await
    .expect("mirrors the import");
}

#[tokio::test]
async fn an_unmanaged_object_of_the_same_name_is_left_untouched() {
    let (client, server) = api_server::start();
    let error = scripted(
        server,
        |mut server| async move {
            server
                .expect(Method::GET, NAMESPACE_PATH)
                .await
                .respond(200, &namespace_json());
            server.expect(Method::GET, MIRROR_PATH).await.respond(
                200,
                &mirror_service_json([8080, 5353], json!({"app": "someone-else"})),
            );
            server
        },
        imports::apply_import(&client, &import_view(&["west"]), &MirrorConfig::default()),
    )
    .await
    .expect_err("refuses to take over the Service");
    let message = error.to_string();
    assert!(
        message.contains("Service demo/causeway-web") && message.contains("not managed"),
        "{message}"
    );

    // Removing the import does not delete someone else's ServiceImport either.
    let (client, server) = api_server::start();
    let error = scripted(
        server,
        |mut server| async move {
            server
                .expect(Method::GET, IMPORT_PATH)
                .await
                .respond(200, &service_import_json(json!({"team": "payments"})));
            server
        },
        imports::remove_import(&client, "demo", "web"),
    )
    .await
    .expect_err("refuses to delete the ServiceImport");
    assert!(
        error.to_string().contains("ServiceImport demo/web"),
        "{error}"
    );
}

#[tokio::test]
async fn nothing_is_created_in_a_missing_namespace() {
    let (client, server) = api_server::start();
    let outcome = scripted(
        server,
        |mut server| async move {
            server.expect(Method::GET, NAMESPACE_PATH).await.fail(404);
            server
        },
        imports::apply_import(&client, &import_view(&["west"]), &MirrorConfig::default()),
    )
    .await
    .expect("a missing namespace is an outcome, not an error");
    assert_eq!(
        outcome,
        ImportOutcome::NamespaceMissing {
            namespace: "demo".into()
        }
    );
}

#[tokio::test]
async fn a_missing_namespace_is_created_when_allowed() {
    let config = MirrorConfig {
        create_namespaces: true,
        ..MirrorConfig::default()
    };
    let (client, server) = api_server::start();
    scripted(
        server,
        |mut server| async move {
            server.expect(Method::GET, NAMESPACE_PATH).await.fail(404);
            let create = server.expect(Method::POST, "/api/v1/namespaces").await;
            assert_eq!(create.body["metadata"]["name"], "demo");
            assert_eq!(
                create.body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                "causeway"
            );
            create.respond(201, &namespace_json());
            server
                .expect(Method::GET, MIRROR_PATH)
                .await
                .respond(200, &mirror_service_json([40001, 40002], managed_labels()));
            server
                .expect(Method::GET, IMPORT_PATH)
                .await
                .respond(200, &service_import_json(managed_labels()));
            server
        },
        imports::apply_import(&client, &import_view(&["west"]), &config),
    )
    .await
    .expect("mirrors the import");
}

#[tokio::test]
async fn removing_an_import_tolerates_objects_already_gone() {
    let (client, server) = api_server::start();
    scripted(
        server,
        |mut server| async move {
            server
                .expect(Method::GET, IMPORT_PATH)
                .await
                .respond(200, &service_import_json(managed_labels()));
            let delete = server.expect(Method::DELETE, IMPORT_PATH).await;
            assert_eq!(
                delete.body["preconditions"]["uid"], "uid-import",
                "deletes only what it read"
            );
            // Deleted by someone else in between.
            delete.fail(404);
            server.expect(Method::GET, MIRROR_PATH).await.fail(404);
            server
        },
        imports::remove_import(&client, "demo", "web"),
    )
    .await
    .expect("already gone is removed");
}

#[tokio::test]
async fn resync_deletes_only_mirrored_objects_no_longer_imported() {
    let (client, server) = api_server::start();
    let removed = scripted(
        server,
        |mut server| async move {
            let selector =
                "app.kubernetes.io/managed-by=causeway,multicluster.kubernetes.io/service-name";
            let list = server
                .expect(
                    Method::GET,
                    "/apis/multicluster.x-k8s.io/v1alpha1/serviceimports",
                )
                .await;
            assert_eq!(list.query("labelSelector").as_deref(), Some(selector));
            let mut stale = service_import_json(managed_labels());
            stale["metadata"]["name"] = json!("old");
            stale["metadata"]["uid"] = json!("uid-old-import");
            list.respond(
                200,
                &json!({
                    "apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImportList",
                    "metadata": {}, "items": [service_import_json(managed_labels()), stale],
                }),
            );
            let delete = server
                .expect(Method::DELETE, &format!("{IMPORTS_PATH}/old"))
                .await;
            assert_eq!(delete.body["preconditions"]["uid"], "uid-old-import");
            delete.deleted();

            let list = server.expect(Method::GET, "/api/v1/services").await;
            assert_eq!(list.query("labelSelector").as_deref(), Some(selector));
            let mut stale = mirror_service_json([40001, 40002], managed_labels());
            stale["metadata"]["name"] = json!("causeway-old");
            stale["metadata"]["uid"] = json!("uid-old-service");
            list.respond(
                200,
                &json!({
                    "apiVersion": "v1", "kind": "ServiceList", "metadata": {},
                    "items": [mirror_service_json([40001, 40002], managed_labels()), stale],
                }),
            );
            let delete = server
                .expect(Method::DELETE, &format!("{SERVICES_PATH}/causeway-old"))
                .await;
            assert_eq!(delete.body["preconditions"]["uid"], "uid-old-service");
            delete.deleted();
            server
        },
        imports::resync(&client, &[import_view(&["west"])]),
    )
    .await
    .expect("resyncs");
    assert_eq!(
        removed,
        ["ServiceImport demo/old", "Service demo/causeway-old"]
    );
}

// === ClusterLink ===

const LINK_PATH: &str = "/apis/causeway.dev/v1alpha1/clusterlinks/west";

/// A `LinkDriver` that records its calls and answers probes with `report`.
struct RecordingDriver {
    calls: Mutex<Vec<String>>,
    report: LinkReport,
    refuse_join: bool,
}

impl RecordingDriver {
    fn reporting(report: LinkReport) -> Self {
        Self {
            calls: Mutex::default(),
            report,
            refuse_join: false,
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("not poisoned").clone()
    }

    fn record(&self, call: String) {
        self.calls.lock().expect("not poisoned").push(call);
    }
}

impl LinkDriver for RecordingDriver {
    type Error = io::Error;

    fn join(
        &self,
        peer: &str,
        registry: &[String],
    ) -> impl Future<Output = Result<(), io::Error>> + Send {
        self.record(format!("join {peer} via {}", registry.join(",")));
        let result = if self.refuse_join {
            Err(io::Error::other(
                "registry 172.18.0.2:30444 refused the join token: expired",
            ))
        } else {
            Ok(())
        };
        std::future::ready(result)
    }

    fn probe(&self, peer: &str) -> impl Future<Output = Result<LinkReport, io::Error>> + Send {
        self.record(format!("probe {peer}"));
        std::future::ready(Ok(self.report.clone()))
    }

    fn unlink(&self, peer: &str) -> impl Future<Output = Result<(), io::Error>> + Send {
        self.record(format!("unlink {peer}"));
        std::future::ready(Ok(()))
    }
}

fn healthy() -> LinkReport {
    LinkReport {
        joined: Verdict::Passed,
        reachable: Verdict::Passed,
        trust_verified: Verdict::Passed,
        rtt_millis: Some(0.4213),
        imported_services: 3,
    }
}

fn link_json(finalized: bool, deleting: bool, gateway: &str) -> Value {
    let mut metadata =
        json!({"name": "west", "generation": 2, "resourceVersion": "5", "uid": "uid-link"});
    if finalized {
        metadata["finalizers"] = json!([links::FINALIZER]);
    }
    if deleting {
        metadata["deletionTimestamp"] = json!("2026-11-28T09:00:00Z");
    }
    json!({
        "apiVersion": "causeway.dev/v1alpha1", "kind": "ClusterLink",
        "metadata": metadata,
        "spec": {"peer": "west", "registry": ["172.18.0.2:30444"], "gateway": gateway},
    })
}

fn link(finalized: bool, deleting: bool, gateway: &str) -> Arc<ClusterLink> {
    Arc::new(
        serde_json::from_value(link_json(finalized, deleting, gateway)).expect("a ClusterLink"),
    )
}

/// Takes the status patch of `west` and answers with the patched object.
async fn take_link_status(server: &mut ApiServer) -> Value {
    let patch = server
        .expect(Method::PATCH, &format!("{LINK_PATH}/status"))
        .await;
    assert_eq!(patch.content_type.as_deref(), Some(MERGE_PATCH));
    let body = patch.body.clone();
    let mut object = link_json(true, false, "172.18.0.2:30443");
    object["status"] = body["status"].clone();
    patch.respond(200, &object);
    body
}

#[tokio::test]
async fn a_new_link_gets_its_finalizer_first() {
    let (client, server) = api_server::start();
    let ctx = Arc::new(LinkContext::new(
        client,
        RecordingDriver::reporting(healthy()),
    ));
    let action = scripted(
        server,
        |mut server| async move {
            let patch = server.expect(Method::PATCH, LINK_PATH).await;
            assert_eq!(patch.content_type.as_deref(), Some(JSON_PATCH));
            assert_eq!(
                patch.body[1],
                json!({"op": "add", "path": "/metadata/finalizers", "value": [links::FINALIZER]})
            );
            patch.respond(200, &link_json(true, false, "172.18.0.2:30443"));
            server
        },
        links::reconcile(link(false, false, "172.18.0.2:30443"), ctx.clone()),
    )
    .await
    .expect("reconciles");
    assert_eq!(action, Action::await_change());
    assert!(
        ctx.driver().calls().is_empty(),
        "nothing is joined before the finalizer is in place"
    );
}

#[tokio::test]
async fn a_healthy_link_reports_joined_reachable_verified_with_its_rtt() {
    let (client, server) = api_server::start();
    let ctx = Arc::new(LinkContext::new(
        client,
        RecordingDriver::reporting(healthy()),
    ));
    let action = scripted(
        server,
        |mut server| async move {
            let status = take_link_status(&mut server).await;
            assert_condition(&status, "Joined", "True", links::REASON_JOINED);
            assert_condition(&status, "GatewayReachable", "True", links::REASON_REACHABLE);
            assert_condition(&status, "TrustVerified", "True", links::REASON_VERIFIED);
            assert_eq!(condition(&status, "Joined")["observedGeneration"], 2);
            assert_eq!(status["status"]["rttMillis"], 0.42);
            assert_eq!(status["status"]["importedServices"], 3);
            assert_eq!(status["status"]["observedGeneration"], 2);
            server
        },
        links::reconcile(link(true, false, "172.18.0.2:30443"), ctx.clone()),
    )
    .await
    .expect("reconciles");
    assert_eq!(
        action,
        Action::requeue(links::DEFAULT_REFRESH_PERIOD),
        "status is refreshed"
    );
    assert_eq!(
        ctx.driver().calls(),
        ["join west via 172.18.0.2:30444", "probe west"]
    );

    // The status write comes back as a watch event: it must not probe again before
    // the refresh period is over.
    let (_, server) = api_server::start();
    let action = scripted(
        server,
        |server| async move { server },
        links::reconcile(link(true, false, "172.18.0.2:30443"), ctx.clone()),
    )
    .await
    .expect("reconciles");
    assert_ne!(action, Action::await_change());
    assert_eq!(ctx.driver().calls().len(), 2, "no second join or probe");
}

#[tokio::test]
async fn a_failed_probe_reports_why_and_clears_the_rtt() {
    let report = LinkReport {
        joined: Verdict::Passed,
        reachable: Verdict::failed("ProbeTimeout", "no answer from 172.18.0.2:30443 within 1s"),
        trust_verified: Verdict::failed(
            "UnknownIssuer",
            "west's certificate does not chain to the trust bundle",
        ),
        rtt_millis: None,
        imported_services: 0,
    };
    let (client, server) = api_server::start();
    let ctx = Arc::new(LinkContext::new(client, RecordingDriver::reporting(report)));
    scripted(
        server,
        |mut server| async move {
            let status = take_link_status(&mut server).await;
            assert_condition(&status, "Joined", "True", links::REASON_JOINED);
            assert_condition(&status, "GatewayReachable", "False", "ProbeTimeout");
            assert_condition(&status, "TrustVerified", "False", "UnknownIssuer");
            assert_eq!(
                condition(&status, "GatewayReachable")["message"],
                "no answer from 172.18.0.2:30443 within 1s"
            );
            assert_eq!(
                status["status"]["rttMillis"],
                Value::Null,
                "the last RTT is cleared"
            );
            assert_eq!(status["status"]["importedServices"], 0);
            server
        },
        links::reconcile(link(true, false, "172.18.0.2:30443"), ctx.clone()),
    )
    .await
    .expect("reconciles");
}

#[tokio::test]
async fn an_invalid_link_is_reported_and_not_joined() {
    let (client, server) = api_server::start();
    let ctx = Arc::new(LinkContext::new(
        client,
        RecordingDriver::reporting(healthy()),
    ));
    let action = scripted(
        server,
        |mut server| async move {
            let status = take_link_status(&mut server).await;
            assert_condition(&status, "Joined", "False", links::REASON_INVALID_SPEC);
            assert_condition(
                &status,
                "GatewayReachable",
                "Unknown",
                links::REASON_INVALID_SPEC,
            );
            let message = condition(&status, "Joined")["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(message.contains("spec.gateway"), "{message}");
            server
        },
        links::reconcile(link(true, false, "no-port"), ctx.clone()),
    )
    .await
    .expect("an invalid spec is a status, not an error");
    assert_eq!(action, Action::await_change(), "only an edit can fix it");
    assert!(ctx.driver().calls().is_empty());
}

#[tokio::test]
async fn a_refused_join_is_reported_and_retried() {
    let (client, server) = api_server::start();
    let driver = RecordingDriver {
        refuse_join: true,
        ..RecordingDriver::reporting(healthy())
    };
    let ctx = Arc::new(LinkContext::new(client, driver));
    let error = scripted(
        server,
        |mut server| async move {
            let status = take_link_status(&mut server).await;
            assert_condition(&status, "Joined", "False", links::REASON_JOIN_FAILED);
            let message = condition(&status, "Joined")["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(message.contains("expired"), "{message}");
            server
        },
        links::reconcile(link(true, false, "172.18.0.2:30443"), ctx.clone()),
    )
    .await
    .expect_err("a refused join is retried with backoff");
    assert!(error.to_string().contains("joining peer west"), "{error}");
    assert_eq!(ctx.driver().calls(), ["join west via 172.18.0.2:30444"]);
    assert_eq!(
        links::error_policy(link(true, false, "172.18.0.2:30443"), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
}

#[tokio::test]
async fn deleting_a_link_unlinks_the_peer_then_releases_the_finalizer() {
    let (client, server) = api_server::start();
    let ctx = Arc::new(LinkContext::new(
        client,
        RecordingDriver::reporting(healthy()),
    ));
    scripted(
        server,
        |mut server| async move {
            let patch = server.expect(Method::PATCH, LINK_PATH).await;
            assert_eq!(
                patch.body,
                json!([
                    {"op": "test", "path": "/metadata/finalizers/0", "value": links::FINALIZER},
                    {"op": "remove", "path": "/metadata/finalizers/0"},
                ])
            );
            patch.respond(200, &link_json(false, true, "172.18.0.2:30443"));
            server
        },
        links::reconcile(link(true, true, "172.18.0.2:30443"), ctx.clone()),
    )
    .await
    .expect("reconciles");
    assert_eq!(ctx.driver().calls(), ["unlink west"]);
}

// === Running ===

const WATCHED: [&str; 4] = [
    "/api/v1/services",
    "/apis/causeway.dev/v1alpha1/clusterlinks",
    "/apis/discovery.k8s.io/v1/endpointslices",
    "/apis/multicluster.x-k8s.io/v1alpha1/serviceexports",
];

/// Both controllers running on `client` until `stop` fires.
fn run_both(
    client: kube::Client,
) -> (
    futures::channel::oneshot::Sender<()>,
    tokio::task::JoinHandle<((), ())>,
) {
    let exports_ctx = Arc::new(ExportContext::new(
        client.clone(),
        RecordingSink::committing(),
    ));
    let links_ctx = Arc::new(LinkContext::new(
        client,
        RecordingDriver::reporting(healthy()),
    ));
    let (stop, stopped) = futures::channel::oneshot::channel::<()>();
    let shutdown = stopped.map(|_| ()).shared();
    let running = tokio::spawn(futures::future::join(
        exports::run(exports_ctx, shutdown.clone()),
        links::run(links_ctx, shutdown),
    ));
    (stop, running)
}

#[tokio::test]
async fn the_controllers_list_then_watch_their_resources_and_stop_on_shutdown() {
    let (client, mut server) = api_server::start();
    let (stop, running) = run_both(client);

    // Each watcher lists what it watches, then watches from the list's version.
    let (mut listed, mut watching) = (Vec::new(), Vec::new());
    while watching.len() < WATCHED.len() {
        let request = server.next().await;
        assert_eq!(request.method, Method::GET);
        if request.path.ends_with("/endpointslices") {
            assert_eq!(
                request.query("labelSelector").as_deref(),
                Some(exports::ENDPOINT_SLICE_SERVICE_LABEL),
                "only slices that belong to a Service"
            );
        }
        if request.query("watch").as_deref() == Some("true") {
            assert_eq!(request.query("resourceVersion").as_deref(), Some("1"));
            watching.push(request);
        } else {
            listed.push(request.path.clone());
            request.respond(
                200,
                &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": []}),
            );
        }
    }
    listed.sort();
    assert_eq!(listed, WATCHED);
    let mut watched: Vec<&str> = watching.iter().map(|w| w.path.as_str()).collect();
    watched.sort_unstable();
    assert_eq!(watched, WATCHED);

    stop.send(()).expect("the controllers are running");
    within(running).await.expect("both controllers stop");
}

#[tokio::test]
async fn the_controllers_stop_even_before_their_first_list_is_answered() {
    let (client, mut server) = api_server::start();
    let (stop, running) = run_both(client);
    // The lists are taken and never answered: an API server that hangs.
    let mut pending = Vec::new();
    for _ in 0..WATCHED.len() {
        pending.push(server.next().await);
    }
    stop.send(()).expect("the controllers are running");
    within(running).await.expect("both controllers stop");
}

// === Replicas that do not lead ===

#[tokio::test]
async fn a_replica_that_does_not_lead_publishes_and_withdraws_but_writes_nothing() {
    let (client, server) = api_server::start();
    let (leading, leadership) = Leadership::channel(false);
    let ctx = Arc::new(
        ExportContext::new(client, RecordingSink::committing()).with_leadership(leadership),
    );

    // Before the leader put the finalizer on: nothing is read, published or written.
    let action = scripted(
        server,
        |server| async move { server },
        exports::reconcile(export(false, false, None), ctx.clone()),
    )
    .await
    .expect("reconciles");
    assert_eq!(action, Action::await_change());
    assert_eq!(ctx.sink().calls(), []);

    // Finalized: published like on the leader, but the status is the leader's to write.
    let (client, server) = api_server::start();
    let (_, leadership) = Leadership::channel(false);
    let ctx = Arc::new(
        ExportContext::new(client, RecordingSink::committing()).with_leadership(leadership),
    );
    scripted(
        server,
        |mut server| async move {
            serve_service_and_slices(&mut server).await;
            server
        },
        exports::reconcile(export(true, false, None), ctx.clone()),
    )
    .await
    .expect("reconciles");
    assert!(matches!(ctx.sink().calls()[..], [SinkCall::Publish(_)]));

    // Deleted: withdrawn here too; the leader removes the finalizer.
    let (_, server) = api_server::start();
    scripted(
        server,
        |server| async move { server },
        exports::reconcile(export(true, true, None), ctx.clone()),
    )
    .await
    .expect("reconciles");
    assert_eq!(
        ctx.sink().calls()[1..],
        [SinkCall::Withdraw("demo".into(), "web".into())]
    );
    drop(leading);
}

#[tokio::test]
async fn a_link_status_is_written_by_the_leader_only() {
    let (client, mut server) = api_server::start();
    let (leading, leadership) = Leadership::channel(false);
    // Probed on every reconciliation, so that the second one probes again.
    let ctx = Arc::new(
        LinkContext::new(client, RecordingDriver::reporting(healthy()))
            .with_refresh_period(Duration::ZERO)
            .with_leadership(leadership),
    );
    let link = || link(true, false, "172.18.0.2:30443");
    // Not leading: joins and probes (this replica needs the peer too), writes nothing.
    within(links::reconcile(link(), ctx.clone()))
        .await
        .expect("reconciles");
    server.assert_idle();
    assert_eq!(ctx.driver().calls().len(), 2, "joined and probed");

    // Once it holds the Lease, its probe's status is written.
    leading.send_replace(true);
    let action = scripted(
        server,
        |mut server| async move {
            let status = take_link_status(&mut server).await;
            assert_eq!(status["status"]["rttMillis"], 0.42);
            server
        },
        links::reconcile(link(), ctx.clone()),
    )
    .await
    .expect("reconciles");
    assert_eq!(action, Action::requeue(Duration::ZERO));
    assert_eq!(ctx.driver().calls().len(), 4, "joined and probed again");
}
