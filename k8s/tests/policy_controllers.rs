//! The `AccessPolicy` and `TrafficPolicy` controllers, running against a scripted API
//! server: what the gateway receives (always the complete set of valid policies), and
//! what each object's status says.

#[allow(dead_code)] // Each test binary uses a different subset.
#[path = "support/api_server.rs"]
mod api_server;

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_server::{ApiServer, Exchange, STEP_TIMEOUT};
use causeway_k8s::controller::policies::{
    self, ACCESS_FINALIZER, PolicyContext, PolicyObject, PolicySink, REASON_ACCEPTED,
    REASON_INVALID_SPEC, Refusal, TRAFFIC_FINALIZER,
};
use causeway_k8s::resources::{AccessPolicy, AccessPolicySpec, TrafficPolicy, TrafficPolicySpec};
use futures::FutureExt;
use futures::channel::oneshot;
use http::Method;
use serde_json::{Value, json};

const ACCESS_PATH: &str = "/apis/causeway.dev/v1alpha1/accesspolicies";
const TRAFFIC_PATH: &str = "/apis/causeway.dev/v1alpha1/trafficpolicies";
const TRAFFIC_NS_PATH: &str = "/apis/causeway.dev/v1alpha1/namespaces/shop/trafficpolicies";

// === A recording sink ===

/// A `PolicySink` that records every set it receives and refuses the objects named
/// in `refuse` with reason `Clash`.
struct RecordingSink<S> {
    sets: Mutex<Vec<Vec<PolicyObject<S>>>>,
    refuse: Vec<String>,
}

impl<S: Clone> RecordingSink<S> {
    fn new() -> Self {
        Self::refusing(&[])
    }

    fn refusing(names: &[&str]) -> Self {
        Self {
            sets: Mutex::default(),
            refuse: names.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    /// The names in the last set received, if any was.
    fn last(&self) -> Option<Vec<String>> {
        let sets = self.sets.lock().expect("not poisoned");
        sets.last()
            .map(|set| set.iter().map(PolicyObject::key).collect())
    }

    fn last_set(&self) -> Vec<PolicyObject<S>> {
        let sets = self.sets.lock().expect("not poisoned");
        sets.last().cloned().unwrap_or_default()
    }
}

impl<S: Clone + Send + Sync + 'static> PolicySink<S> for RecordingSink<S> {
    type Error = io::Error;

    fn replace(
        &self,
        policies: Vec<PolicyObject<S>>,
    ) -> impl Future<Output = Result<Vec<Refusal>, io::Error>> + Send {
        let refusals = policies
            .iter()
            .filter(|p| self.refuse.contains(&p.name))
            .map(|p| Refusal {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                reason: "Clash".into(),
                message: format!("{} is also in the gateway's config file", p.name),
            })
            .collect();
        self.sets.lock().expect("not poisoned").push(policies);
        std::future::ready(Ok(refusals))
    }
}

// === Objects ===

fn access_json(name: &str, from: &[&str], finalized: bool, status: Option<Value>) -> Value {
    let mut object = json!({
        "apiVersion": "causeway.dev/v1alpha1",
        "kind": "AccessPolicy",
        "metadata": {"name": name, "generation": 2, "resourceVersion": "10", "uid": format!("uid-{name}")},
        "spec": {"action": "allow", "from": from, "to": {"namespace": "shop", "service": "web"}},
    });
    if finalized {
        object["metadata"]["finalizers"] = json!([ACCESS_FINALIZER]);
    }
    if let Some(status) = status {
        object["status"] = status;
    }
    object
}

fn traffic_json(name: &str, apply_to: &[&str], finalized: bool) -> Value {
    let mut object = json!({
        "apiVersion": "causeway.dev/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": name, "namespace": "shop", "generation": 1, "resourceVersion": "20", "uid": format!("uid-{name}")},
        "spec": {"service": name, "routing": "local-first", "applyTo": apply_to},
    });
    if finalized {
        object["metadata"]["finalizers"] = json!([TRAFFIC_FINALIZER]);
    }
    object
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "100"}, "items": items})
}

/// The `Accepted` condition in a status patch.
fn accepted(patch: &Value) -> &Value {
    patch["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Accepted"))
        .unwrap_or_else(|| panic!("no Accepted condition in {patch}"))
}

// === Playing the API server ===

/// The API server side of a running controller: answers the list of the watched
/// kind with `items`, keeps watches open, answers patches with the object and
/// records them by path.
struct Script {
    server: ApiServer,
    kind_path: &'static str,
    items: Vec<Value>,
    watches: Vec<Exchange>,
    patches: Vec<(String, Value)>,
}

impl Script {
    fn new(server: ApiServer, kind_path: &'static str, items: Vec<Value>) -> Self {
        Self {
            server,
            kind_path,
            items,
            watches: Vec::new(),
            patches: Vec::new(),
        }
    }

    /// Serves requests until `done` holds (checked after each request and whenever
    /// none came for a moment); fails after [`STEP_TIMEOUT`].
    async fn serve_until(&mut self, mut done: impl FnMut(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the condition did not hold in time; patches: {:#?}",
                self.patches
            );
            let Some(request) = self.server.next_within(Duration::from_millis(50)).await else {
                continue;
            };
            self.answer(request);
        }
    }

    fn answer(&mut self, request: Exchange) {
        match request.method {
            Method::GET if request.path == self.kind_path => {
                if request.query("watch").as_deref() == Some("true") {
                    self.watches.push(request);
                } else {
                    request.respond(200, &list(self.items.clone()));
                }
            }
            Method::PATCH => {
                let body = request.body.clone();
                let name = request
                    .path
                    .trim_end_matches("/status")
                    .rsplit('/')
                    .next()
                    .expect("a name")
                    .to_owned();
                let mut object = self
                    .items
                    .iter()
                    .find(|i| i["metadata"]["name"] == name.as_str())
                    .cloned()
                    .unwrap_or_else(|| panic!("a patch of an unknown object: {}", request.path));
                if let Some(status) = body.get("status") {
                    object["status"] = status.clone();
                }
                self.patches.push((request.path.clone(), body));
                request.respond(200, &object);
            }
            method => panic!("unexpected request {method} {}", request.path),
        }
    }

    fn status_patches(&self) -> Vec<(&str, &Value)> {
        self.patches
            .iter()
            .filter(|(path, _)| path.ends_with("/status"))
            .map(|(path, body)| (path.as_str(), body))
            .collect()
    }

    fn status_of(&self, path: &str) -> &Value {
        self.status_patches()
            .into_iter()
            .rev()
            .find(|(p, _)| *p == format!("{path}/status"))
            .map(|(_, body)| body)
            .unwrap_or_else(|| panic!("no status patch of {path}"))
    }
}

/// Runs the controller of `K` on `ctx` until the returned sender fires.
fn spawn<K, S>(ctx: Arc<PolicyContext<K, S>>) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>)
where
    K: policies::PolicyResource,
    S: PolicySink<K::Spec>,
{
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(policies::run(ctx, stopped.map(|_| ())));
    (stop, running)
}

async fn stop(stop: oneshot::Sender<()>, running: tokio::task::JoinHandle<()>) {
    stop.send(()).expect("the controller is running");
    tokio::time::timeout(STEP_TIMEOUT, running)
        .await
        .expect("the controller stops in time")
        .expect("the controller did not panic");
}

// === AccessPolicy ===

#[tokio::test]
async fn valid_access_policies_are_delivered_as_one_set_and_accepted() {
    let (client, server) = api_server::start();
    let ctx = Arc::new(PolicyContext::<AccessPolicy, _>::new(
        client,
        RecordingSink::<AccessPolicySpec>::new(),
    ));
    let (stopper, running) = spawn(ctx.clone());
    let items = vec![
        access_json("east-web", &["east"], true, None),
        access_json("bad-from", &["East_1"], true, None),
        access_json("all-web", &["*"], true, None),
    ];
    let mut script = Script::new(server, ACCESS_PATH, items);
    script.serve_until(|s| s.status_patches().len() == 3).await;

    assert_eq!(
        ctx.sink().last(),
        Some(vec!["all-web".to_owned(), "east-web".to_owned()]),
        "every valid policy, and only those, sorted by name"
    );
    for name in ["east-web", "all-web"] {
        let status = script.status_of(&format!("{ACCESS_PATH}/{name}"));
        let condition = accepted(status);
        assert_eq!(condition["status"], "True", "{name}: {condition}");
        assert_eq!(condition["reason"], REASON_ACCEPTED);
        assert_eq!(condition["observedGeneration"], 2);
        assert_eq!(status["status"]["observedGeneration"], 2);
    }
    let rejected = accepted(script.status_of(&format!("{ACCESS_PATH}/bad-from")));
    assert_eq!(rejected["status"], "False");
    assert_eq!(rejected["reason"], REASON_INVALID_SPEC);
    let message = rejected["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.from[0]"),
        "names the field: {message}"
    );
    stop(stopper, running).await;
}

#[tokio::test]
async fn a_policy_the_gateway_refuses_says_why_in_its_status() {
    let (client, server) = api_server::start();
    let ctx = Arc::new(PolicyContext::<AccessPolicy, _>::new(
        client,
        RecordingSink::<AccessPolicySpec>::refusing(&["east-web"]),
    ));
    let (stopper, running) = spawn(ctx.clone());
    let mut script = Script::new(
        server,
        ACCESS_PATH,
        vec![access_json("east-web", &["east"], true, None)],
    );
    script.serve_until(|s| s.status_patches().len() == 1).await;
    let condition = accepted(script.status_of(&format!("{ACCESS_PATH}/east-web")));
    assert_eq!(
        (condition["status"].as_str(), condition["reason"].as_str()),
        (Some("False"), Some("Clash"))
    );
    assert!(
        condition["message"]
            .as_str()
            .is_some_and(|m| m.contains("config file")),
        "{condition}"
    );
    stop(stopper, running).await;
}

#[tokio::test]
async fn a_deleted_policy_leaves_the_set_before_its_finalizer_is_released() {
    let (client, server) = api_server::start();
    let ctx = Arc::new(PolicyContext::<AccessPolicy, _>::new(
        client,
        RecordingSink::<AccessPolicySpec>::new(),
    ));
    let (stopper, running) = spawn(ctx.clone());
    let items = vec![
        access_json("east-web", &["east"], true, None),
        access_json("all-web", &["*"], true, None),
    ];
    let mut script = Script::new(server, ACCESS_PATH, items);
    script
        .serve_until(|s| s.status_patches().len() == 2 && !s.watches.is_empty())
        .await;
    assert_eq!(
        ctx.sink().last(),
        Some(vec!["all-web".to_owned(), "east-web".to_owned()])
    );

    // `kubectl delete accesspolicy east-web`: the API server sets the deletion
    // timestamp and keeps the object while the finalizer is on it.
    let mut deleting = access_json("east-web", &["east"], true, None);
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-28T09:00:00Z");
    deleting["metadata"]["resourceVersion"] = json!("11");
    let watch = script.watches.remove(0);
    watch.stream(&[json!({"type": "MODIFIED", "object": deleting})]);
    script
        .serve_until(|s| {
            s.patches
                .iter()
                .any(|(p, _)| p == &format!("{ACCESS_PATH}/east-web"))
        })
        .await;
    assert_eq!(
        ctx.sink().last(),
        Some(vec!["all-web".to_owned()]),
        "the deleted policy is gone from what the gateway enforces"
    );
    let (_, release) = script
        .patches
        .iter()
        .find(|(p, _)| p == &format!("{ACCESS_PATH}/east-web"))
        .expect("the finalizer patch");
    assert_eq!(
        release,
        &json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": ACCESS_FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
    stop(stopper, running).await;
}

#[tokio::test]
async fn an_invalid_edit_changes_nothing_the_gateway_enforces() {
    let (client, server) = api_server::start();
    let ctx = Arc::new(PolicyContext::<AccessPolicy, _>::new(
        client,
        RecordingSink::<AccessPolicySpec>::new(),
    ));
    let (stopper, running) = spawn(ctx.clone());
    let mut script = Script::new(
        server,
        ACCESS_PATH,
        vec![access_json("east-web", &["east"], true, None)],
    );
    script
        .serve_until(|s| s.status_patches().len() == 1 && !s.watches.is_empty())
        .await;

    // `kubectl edit`: a typo in `from`, as generation 3.
    let mut edited = access_json("east-web", &["East_1"], true, None);
    edited["metadata"]["generation"] = json!(3);
    edited["metadata"]["resourceVersion"] = json!("11");
    script.items = vec![edited.clone()];
    let watch = script.watches.remove(0);
    watch.stream(&[json!({"type": "MODIFIED", "object": edited})]);
    script.serve_until(|s| s.status_patches().len() == 2).await;

    let set = ctx.sink().last_set();
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].spec.from, ["east"], "the last valid spec is kept");
    let condition = accepted(script.status_of(&format!("{ACCESS_PATH}/east-web")));
    assert_eq!(
        (condition["status"].as_str(), condition["reason"].as_str()),
        (Some("False"), Some(REASON_INVALID_SPEC))
    );
    assert_eq!(condition["observedGeneration"], 3);
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.from[0]")
            && message.contains("keeps enforcing the last valid spec (generation 2)"),
        "{message}"
    );
    stop(stopper, running).await;
}

#[tokio::test]
async fn a_restarted_controller_delivers_every_policy_again_without_rewriting_status() {
    let accepted_status = json!({
        "observedGeneration": 2,
        "conditions": [{
            "type": "Accepted", "status": "True", "reason": REASON_ACCEPTED,
            "message": "the gateway enforces this policy",
            "lastTransitionTime": "2026-11-28T08:00:00Z", "observedGeneration": 2,
        }],
    });
    let items = vec![
        access_json("east-web", &["east"], true, Some(accepted_status.clone())),
        access_json("all-web", &["*"], true, Some(accepted_status)),
    ];
    // A gateway restart: a new process, so a new context and an empty sink.
    let (client, server) = api_server::start();
    let ctx = Arc::new(PolicyContext::<AccessPolicy, _>::new(
        client,
        RecordingSink::<AccessPolicySpec>::new(),
    ));
    let (stopper, running) = spawn(ctx.clone());
    let mut script = Script::new(server, ACCESS_PATH, items);
    let sink = ctx.clone();
    script
        .serve_until(|s| {
            let delivered = sink.sink().sets.lock().expect("not poisoned").len();
            delivered >= 2 && !s.watches.is_empty()
        })
        .await;
    let set = ctx.sink().last_set();
    assert_eq!(
        set.iter().map(PolicyObject::key).collect::<Vec<_>>(),
        ["all-web", "east-web"]
    );
    let first = ctx.sink().sets.lock().expect("not poisoned")[0].len();
    assert_eq!(first, 2, "the first delivery is already the whole set");
    assert_eq!(
        set[1].spec,
        serde_json::from_value::<AccessPolicySpec>(
            json!({"action": "allow", "from": ["east"], "to": {"namespace": "shop", "service": "web"}})
        )
        .expect("a spec")
    );
    assert!(
        script.patches.is_empty(),
        "an unchanged status is not rewritten: {:?}",
        script.patches
    );
    stop(stopper, running).await;
}

// === TrafficPolicy ===

#[tokio::test]
async fn a_new_traffic_policy_gets_its_finalizer_then_is_delivered_with_apply_to() {
    let (client, server) = api_server::start();
    let ctx = Arc::new(PolicyContext::<TrafficPolicy, _>::new(
        client,
        RecordingSink::<TrafficPolicySpec>::new(),
    ));
    let (stopper, running) = spawn(ctx.clone());
    let items = vec![
        traffic_json("web", &["east", "north"], false),
        traffic_json("db", &["*", "east"], true),
    ];
    let mut script = Script::new(server, TRAFFIC_PATH, items);
    // The finalizer patch comes back as a watch event in a real API server; here
    // the watch stays quiet, so the object is finalized in the list the script
    // serves from then on.
    script
        .serve_until(|s| {
            s.patches
                .iter()
                .any(|(p, _)| p == &format!("{TRAFFIC_NS_PATH}/web"))
                && s.status_patches().len() == 1
        })
        .await;
    let (_, finalize) = script
        .patches
        .iter()
        .find(|(p, _)| p == &format!("{TRAFFIC_NS_PATH}/web"))
        .expect("the finalizer patch");
    assert_eq!(
        finalize,
        &json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [TRAFFIC_FINALIZER]},
        ])
    );
    let rejected = accepted(script.status_of(&format!("{TRAFFIC_NS_PATH}/db")));
    assert_eq!(rejected["reason"], REASON_INVALID_SPEC);
    let message = rejected["message"].as_str().unwrap_or_default();
    assert!(message.contains("spec.applyTo"), "{message}");

    // Once finalized, `web` is delivered (namespaced) and accepted.
    let watch = script.watches.remove(0);
    watch.stream(&[
        json!({"type": "MODIFIED", "object": traffic_json("web", &["east", "north"], true)}),
    ]);
    script.serve_until(|s| s.status_patches().len() == 2).await;
    let set = ctx.sink().last_set();
    assert_eq!(set.len(), 1, "the invalid policy is left out");
    assert_eq!(set[0].key(), "shop/web");
    assert_eq!(set[0].spec.apply_to, ["east", "north"]);
    let condition = accepted(script.status_of(&format!("{TRAFFIC_NS_PATH}/web")));
    assert_eq!(condition["status"], "True");
    stop(stopper, running).await;
}
