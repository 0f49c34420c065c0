//! The gateway's side of the policy controllers, against a real gateway: what an
//! `AccessPolicy` object changes in the access check and in the catalog. The
//! controllers' API traffic is tested in `causeway-k8s` against a scripted API
//! server.

use std::time::Duration;

use causeway_k8s::controller::{PolicyObject, PolicySink};
use causeway_k8s::resources::AccessPolicySpec;
use causeway_trust::ClusterName;

use super::access::{self, PlatformAccess};
use crate::daemon::Shared;
use crate::federation::LocalFederation;
use crate::tunnel::{AccessCheck, ServiceTarget};

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
fn in_catalog(shared: &Shared, name: &str) -> bool {
    shared
        .node()
        .read_local(|c| c.policies().any(|p| p.value.name.as_str() == name))
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
    let sink = PlatformAccess::new(shared.clone());
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
    wait_for(
        "the policy is stored in the registry as west-east-reads-web",
        || in_catalog(&shared, "west-east-reads-web"),
    )
    .await;
    assert!(
        in_catalog(&shared, "west-echo-from-all"),
        "the config file's policy stays"
    );

    // The object is deleted: the controller delivers the set without it.
    sink.replace(Vec::new()).await.unwrap();
    let denied = shared.access.check(&east(), &web).unwrap_err();
    assert!(denied.contains("federation default"), "{denied}");
    wait_for("the policy leaves the registry", || {
        !in_catalog(&shared, "west-east-reads-web")
    })
    .await;
    assert!(in_catalog(&shared, "west-echo-from-all"));
    fed.shutdown().await;
}

#[tokio::test]
async fn names_that_clash_with_the_file_or_cannot_be_published_are_refused_with_the_reason() {
    let fed = LocalFederation::start(&["west"]).await.unwrap();
    let shared = fed.gateway(0).unwrap().shared().clone();
    let sink = PlatformAccess::new(shared.clone());
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
    let echo = ServiceTarget::new(
        crate::federation::ECHO_NAMESPACE,
        crate::federation::ECHO_SERVICE,
        80,
    );
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
