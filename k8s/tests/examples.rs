//! Every manifest under `examples/kubernetes/` is valid against the schema of its
//! CRD, and the validation is strict enough to refuse a bad one.

mod support;

use causeway_k8s::ClusterLinkSpec;
use causeway_k8s::resources::{AccessPolicySpec, TrafficPolicySpec};

/// The `openAPIV3Schema` of the CRD serving `apiVersion`/`kind`, from the golden
/// CRD file (so the examples are checked against what users apply).
fn schema_for(api_version: &str, kind: &str) -> serde_json::Value {
    let crds = std::fs::read_to_string(support::examples().join("crds.yaml")).expect("crds.yaml");
    let (group, version) = api_version.split_once('/').expect("group/version");
    support::documents(&crds)
        .into_iter()
        .find(|crd| crd["spec"]["group"] == group && crd["spec"]["names"]["kind"] == kind)
        .and_then(|crd| {
            crd["spec"]["versions"]
                .as_array()?
                .iter()
                .find(|v| v["name"] == version)
                .map(|v| v["schema"]["openAPIV3Schema"].clone())
        })
        .unwrap_or_else(|| panic!("no CRD serves {api_version} {kind}"))
}

/// Every schema violation of `object`, as `path: message` lines.
fn violations(object: &serde_json::Value) -> Vec<String> {
    let api_version = object["apiVersion"].as_str().expect("apiVersion");
    let kind = object["kind"].as_str().expect("kind");
    // OpenAPI v3.0 schemas are JSON Schema draft 4 with extensions (which a
    // validator ignores).
    let validator =
        jsonschema::draft4::new(&schema_for(api_version, kind)).expect("the CRD schema compiles");
    validator
        .iter_errors(object)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn every_example_manifest_validates_against_its_crd() {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(support::examples()).expect("examples/kubernetes") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        if path.extension().is_none_or(|e| e != "yaml") || name == "crds.yaml" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        for object in support::documents(&text) {
            let problems = violations(&object);
            assert!(problems.is_empty(), "{name}: {problems:#?}");
            if object["kind"] == "ClusterLink" {
                let spec: ClusterLinkSpec =
                    serde_json::from_value(object["spec"].clone()).expect("a ClusterLink spec");
                assert_eq!(spec.validate(), vec![], "{name}");
            }
            if object["kind"] == "AccessPolicy" {
                let spec: AccessPolicySpec =
                    serde_json::from_value(object["spec"].clone()).expect("an AccessPolicy spec");
                assert_eq!(spec.validate(), vec![], "{name}");
            }
            if object["kind"] == "TrafficPolicy" {
                let spec: TrafficPolicySpec =
                    serde_json::from_value(object["spec"].clone()).expect("a TrafficPolicy spec");
                assert_eq!(spec.validate(), vec![], "{name}");
            }
            checked.push(format!(
                "{name}: {}",
                object["kind"].as_str().unwrap_or("?")
            ));
        }
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "accesspolicy.yaml: AccessPolicy",
            "accesspolicy.yaml: AccessPolicy",
            "clusterlink.yaml: ClusterLink",
            "serviceexport.yaml: ServiceExport",
            "serviceimport.yaml: ServiceImport",
            "trafficpolicy.yaml: TrafficPolicy",
            "trafficpolicy.yaml: TrafficPolicy",
        ]
    );
}

#[test]
fn a_bad_cluster_link_fails_validation() {
    let bad = serde_json::json!({
        "apiVersion": "causeway.dev/v1alpha1",
        "kind": "ClusterLink",
        "metadata": {"name": "west"},
        "spec": {
            "peer": "West_1",
            "registry": [],
            "probe": {"periodSeconds": 0, "timeoutSeconds": "fast"}
        }
    });
    let problems = violations(&bad);
    let joined = problems.join("\n");
    for expected in [
        "/spec/peer",
        "/spec/registry",
        "/spec/probe/periodSeconds",
        "/spec/probe/timeoutSeconds",
        "gateway",
    ] {
        assert!(
            joined.contains(expected),
            "no violation at {expected}:\n{joined}"
        );
    }
}

#[test]
fn a_bad_service_import_fails_validation() {
    let bad = serde_json::json!({
        "apiVersion": "multicluster.x-k8s.io/v1alpha1",
        "kind": "ServiceImport",
        "metadata": {"name": "web", "namespace": "demo"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 70000, "protocol": "HTTP"}]}
    });
    let joined = violations(&bad).join("\n");
    for expected in ["/spec/type", "/spec/ports/0/port", "/spec/ports/0/protocol"] {
        assert!(
            joined.contains(expected),
            "no violation at {expected}:\n{joined}"
        );
    }
}
