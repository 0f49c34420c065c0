//! The gateway's side of the policy controllers, against a real gateway: what an
//! `AccessPolicy` object changes in the access check and in the catalog. The
//! controllers' API traffic is tested in `causeway-k8s` against a scripted API
//! server.

use std::time::Duration;

use causeway_k8s::controller::{PolicyObject, PolicySink};
use causeway_k8s::resources::{AccessPolicySpec, TrafficPolicySpec};
use causeway_trust::ClusterName;

use super::access::{self, PlatformAccess};
use super::traffic::{self, PlatformTraffic};
use crate::daemon::Shared;
use crate::daemon::members::Membership;
use crate::federation::{ECHO_NAMESPACE, ECHO_SERVICE, LocalFederation};
use causeway_tunnel::{AccessCheck, ServiceTarget};

fn object(name: &str, spec: serde_json::Value) -> PolicyObject<AccessPolicySpec> {
    PolicyObject {
        namespace: None,
        name: name.into(),
        spec: serde_json::from_value(spec).expect("an AccessPolicy spec"),
    }
}

fn east_reads_web() -> PolicyObject<AccessPolicySpec> {
    object(
        "east-reads-web",
        serde_json::json!({"action": "allow", "from": ["east"], "to": {"namespace": "shop", "service": "web"}}),
    )
}

fn east() -> ClusterName {
    "east".parse().expect("a cluster name")
}

/// Whether the local catalog holds a policy named `name`.
fn in_catalog(membership: &Membership, name: &str) -> bool {
    membership
        .node()
        .read_local(|c| c.policies().any(|p| p.value.name.as_str() == name))
}

/// The `AccessPolicy` sink of the gateway `shared` holds the handles of.
fn platform_access(shared: &Shared) -> PlatformAccess {
    PlatformAccess::new(
        shared.local.cluster.clone(),
        shared.access.clone(),
        shared.tunnel.clone(),
    )
}

/// Waits up to 10 s for `check` to hold.
async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_access_policy_object_allows_a_service_until_it_is_deleted() {
    let fed = LocalFederation::start(&["west"]).await.unwrap();
    fed.wait_converged(Duration::from_secs(20)).await.unwrap();
    let shared = fed.gateway(0).unwrap().shared().clone();
    let sink = platform_access(&shared);
    let web = ServiceTarget::new("shop", "web", 8080);
    let denied = shared.access.check(&east(), &web).unwrap_err();
    assert!(denied.contains("federation default"), "{denied}");

    let refused = sink.replace(vec![east_reads_web()]).await.unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(
        shared.access.check(&east(), &web),
        Ok(()),
        "new streams see the policy at once"
    );
    assert!(
        shared
            .access
            .check(&"north".parse().unwrap(), &web)
            .is_err(),
        "only the clusters it names"
    );
    // Published next to the config file's own policy (proposed in name order, so
    // wait for both).
    wait_for(
        "the policy is stored in the registry as west-east-reads-web, next to the file's",
        || {
            in_catalog(&shared.membership, "west-east-reads-web")
                && in_catalog(&shared.membership, "west-echo-from-all")
        },
    )
    .await;

    // The object is deleted: the controller delivers the set without it.
    sink.replace(Vec::new()).await.unwrap();
    let denied = shared.access.check(&east(), &web).unwrap_err();
    assert!(denied.contains("federation default"), "{denied}");
    wait_for("the policy leaves the registry", || {
        !in_catalog(&shared.membership, "west-east-reads-web")
    })
    .await;
    assert!(in_catalog(&shared.membership, "west-echo-from-all"));
    fed.shutdown().await;
}

#[tokio::test]
async fn names_that_clash_with_the_file_or_cannot_be_published_are_refused_with_the_reason() {
    let fed = LocalFederation::start(&["west"]).await.unwrap();
    let shared = fed.gateway(0).unwrap().shared().clone();
    let sink = platform_access(&shared);
    let deny_all = serde_json::json!({"action": "deny", "from": ["*"]});
    let refused = sink
        .replace(vec![
            // The config file has a policy of this name: the file's wins.
            object("echo-from-all", deny_all.clone()),
            // A valid object name, but not a DNS label, so no catalog name.
            object("team.shop", deny_all.clone()),
            east_reads_web(),
        ])
        .await
        .unwrap();
    let reasons: Vec<(&str, &str)> = refused
        .iter()
        .map(|r| (r.name.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("team.shop", access::REASON_UNPUBLISHABLE),
            ("echo-from-all", access::REASON_OVERRIDDEN),
        ]
    );
    assert!(
        refused[0].message.starts_with("metadata.name"),
        "{refused:?}"
    );
    let echo = ServiceTarget::new(ECHO_NAMESPACE, ECHO_SERVICE, 80);
    assert_eq!(
        shared.access.check(&east(), &echo),
        Ok(()),
        "the file's allow is enforced, not the object's deny"
    );
    assert_eq!(
        shared
            .access
            .check(&east(), &ServiceTarget::new("shop", "web", 8080)),
        Ok(()),
        "the other objects are enforced"
    );
    fed.shutdown().await;
}

#[test]
fn the_spec_maps_field_for_field_onto_an_access_policy_entry() {
    let spec: AccessPolicySpec = serde_json::from_value(serde_json::json!({
        "action": "deny",
        "from": ["north", "south"],
        "to": {"namespace": "admin", "service": "panel", "matchLabels": {"tier": "internal"}, "ports": [443, 8443]},
    }))
    .unwrap();
    let config = access::policy_config("no-admin", &spec);
    let toml_entry: crate::config::PolicyConfig = toml::from_str(
        r#"
name = "no-admin"
action = "deny"
from = ["north", "south"]
namespace = "admin"
service = "panel"
labels = { tier = "internal" }
ports = [443, 8443]
"#,
    )
    .unwrap();
    assert_eq!(config, toml_entry);
}

// === TrafficPolicy ===

fn traffic_object(name: &str, spec: serde_json::Value) -> PolicyObject<TrafficPolicySpec> {
    PolicyObject {
        namespace: Some(ECHO_NAMESPACE.into()),
        name: name.into(),
        spec: serde_json::from_value(spec).expect("a TrafficPolicy spec"),
    }
}

/// A `TrafficPolicy` for the echo service pinning it to `cluster`.
fn pin_echo(cluster: &str, apply_to: &[&str]) -> PolicyObject<TrafficPolicySpec> {
    traffic_object(
        "echo-pinned",
        serde_json::json!({"service": ECHO_SERVICE, "routing": "pinned", "pinned": cluster, "applyTo": apply_to}),
    )
}

/// Waits until requests from member `from` to the echo service reach `cluster`.
async fn served_by(fed: &LocalFederation, from: usize, cluster: &str) {
    let name = LocalFederation::service_name();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body = fed.request(from, &name).await.unwrap_or_default();
        if body.contains(&format!("hello from {cluster}")) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "requests from member {from} never reached {cluster} (last: {body:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traffic_policy_object_reaches_the_tunnel_and_its_apply_to_reaches_other_clusters() {
    let _one_at_a_time = super::tests::MANY_CLUSTERS.lock().await;
    let fed = LocalFederation::start(&["west", "east", "north"])
        .await
        .unwrap();
    fed.wait_converged(Duration::from_secs(60)).await.unwrap();
    let west = fed.gateway(0).unwrap().shared().clone();
    let sink = PlatformTraffic::new(west.traffic.clone());

    // No applyTo: west's own clients follow it, at once.
    for cluster in ["east", "north", "east"] {
        let refused = sink.replace(vec![pin_echo(cluster, &[])]).await.unwrap();
        assert!(refused.is_empty(), "{refused:?}");
        served_by(&fed, 0, cluster).await;
    }
    let status = west.traffic.status();
    assert_eq!(status.in_effect.len(), 1, "{status:?}");
    assert_eq!(status.in_effect[0].source, "kubernetes");

    // applyTo east: west publishes it and east's clients follow it; west's own
    // clients have no policy any more.
    for cluster in ["north", "west"] {
        sink.replace(vec![pin_echo(cluster, &["east"])])
            .await
            .unwrap();
        served_by(&fed, 1, cluster).await;
    }
    assert!(west.traffic.status().in_effect.is_empty());

    // The config file names the service too: the file's policy wins, and the
    // object says so.
    let file = traffic::policy_config(ECHO_NAMESPACE, &pin_echo("east", &[]).spec).unwrap();
    fed.gateway(0)
        .unwrap()
        .set_traffic_policies(&[file])
        .unwrap();
    let refused = sink.replace(vec![pin_echo("north", &[])]).await.unwrap();
    let reasons: Vec<&str> = refused.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons, [traffic::REASON_OVERRIDDEN]);
    served_by(&fed, 0, "east").await;

    // The object is deleted; the file's policy stays.
    sink.replace(Vec::new()).await.unwrap();
    let declared = west.traffic.status().declared;
    let sources: Vec<&str> = declared.iter().map(|d| d.source.as_str()).collect();
    assert_eq!(sources, ["file"]);
    fed.shutdown().await;
}
