//! `causeway install`: the trust Secret from a folder, the Deployment's hardening,
//! the Services' ports, and the YAML `kubectl apply` reads.

mod support;

use std::path::Path;

use causeway_k8s::manifests::{
    self, GatewayServiceType, InstallError, InstallOptions, TrustMaterial,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, Secret};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

const KEY_MARKER: &str =
    "-----BEGIN PRIVATE KEY-----\nsecret-key-bytes-7f3a\n-----END PRIVATE KEY-----\n";

fn issuer_folder(dir: &Path, files: &[&str]) {
    for file in files {
        let body = if *file == "issuer.key" {
            KEY_MARKER.to_owned()
        } else {
            format!("-----BEGIN CERTIFICATE-----\n{file}\n-----END CERTIFICATE-----\n")
        };
        std::fs::write(dir.join(file), body).expect("write a trust file");
    }
}

fn options() -> InstallOptions {
    InstallOptions::new("west".parse().expect("a cluster name"))
}

fn pod(bundle: &manifests::InstallBundle) -> &PodSpec {
    bundle
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod template")
}

fn gateway(bundle: &manifests::InstallBundle) -> &Container {
    &pod(bundle).containers[0]
}

#[test]
fn a_trust_folder_missing_any_file_is_refused_naming_it() {
    let all = ["issuer.pem", "issuer.key", "bundle.pem"];
    for missing in all {
        let dir = tempfile::tempdir().expect("a temp dir");
        let present: Vec<&str> = all.iter().copied().filter(|f| *f != missing).collect();
        issuer_folder(dir.path(), &present);
        let err = TrustMaterial::from_dir(dir.path()).expect_err("a file is missing");
        assert!(
            matches!(&err, InstallError::MissingTrustFile { file, .. } if *file == missing),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&format!("missing {missing}")),
            "{err}"
        );
    }
}

#[test]
fn the_issuer_key_appears_only_inside_the_secret() {
    let dir = tempfile::tempdir().expect("a temp dir");
    issuer_folder(dir.path(), &["issuer.pem", "issuer.key", "bundle.pem"]);
    let trust = TrustMaterial::from_dir(dir.path()).expect("a complete folder");
    assert!(
        !format!("{trust:?}").contains("secret-key-bytes"),
        "Debug shows the key"
    );

    let mut o = options();
    o.trust = Some(trust);
    let yaml = manifests::install(&o)
        .expect("renders")
        .to_yaml()
        .expect("serializes");
    assert!(
        !yaml.contains("secret-key-bytes"),
        "the key is printed in clear"
    );

    let secrets: Vec<Secret> = support::documents(&yaml)
        .into_iter()
        .filter(|d| d["kind"] == "Secret")
        .map(|d| serde_json::from_value(d).expect("a Secret"))
        .collect();
    assert_eq!(secrets.len(), 1);
    let data = secrets[0].data.as_ref().expect("data");
    assert_eq!(data["issuer.key"].0, KEY_MARKER.as_bytes());
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        ["bundle.pem", "issuer.key", "issuer.pem"]
    );
    assert_eq!(
        secrets[0].metadata.name.as_deref(),
        Some(manifests::TRUST_SECRET)
    );
    assert_eq!(
        secrets[0].metadata.namespace.as_deref(),
        Some(manifests::NAMESPACE)
    );
}

#[test]
fn the_gateway_runs_unprivileged_with_probes_and_limits() {
    let bundle = manifests::install(&options()).expect("renders");
    let pod_security = pod(&bundle)
        .security_context
        .as_ref()
        .expect("pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));

    let c = gateway(&bundle);
    let security = c
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.run_as_user, Some(65532));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.privileged, None);
    let caps = security.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert_eq!(caps.add, None);

    let admin_port = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("admin"))
        .expect("an admin port")
        .container_port;
    assert_eq!(admin_port, manifests::ADMIN_PORT);
    for (probe, path) in [(&c.liveness_probe, "/live"), (&c.readiness_probe, "/ready")] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("an HTTP probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("admin".into())
        );
    }
    let resources = c.resources.as_ref().expect("resources");
    for set in [&resources.requests, &resources.limits] {
        let set = set.as_ref().expect("requests and limits");
        assert!(
            set.contains_key("cpu") && set.contains_key("memory"),
            "{set:?}"
        );
    }
    // The data volume and /tmp are the only writable paths.
    let writable: Vec<&str> = c
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.read_only != Some(true))
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(writable, ["/var/lib/causeway", "/tmp"]);
}

#[test]
fn services_expose_tunnel_registry_dns_and_admin() {
    let mut o = options();
    o.service_type = GatewayServiceType::NodePort;
    o.node_port_tunnel = Some(30443);
    o.node_port_registry = Some(30444);
    let bundle = manifests::install(&o).expect("renders");
    let ports: Vec<(String, String, String, i32, Option<i32>)> = bundle
        .services
        .iter()
        .flat_map(|s| {
            let spec = s.spec.clone().expect("spec");
            let name = s.metadata.name.clone().expect("named");
            let type_ = spec.type_.clone().expect("typed");
            spec.ports.into_iter().flatten().map(move |p| {
                (
                    name.clone(),
                    type_.clone(),
                    p.protocol.expect("protocol"),
                    p.port,
                    p.node_port,
                )
            })
        })
        .collect();
    let s =
        |n: &str, t: &str, p: &str, port, np| (n.to_owned(), t.to_owned(), p.to_owned(), port, np);
    assert_eq!(
        ports,
        [
            s("causeway-gateway", "NodePort", "UDP", 15443, Some(30443)),
            s("causeway-gateway", "NodePort", "TCP", 15444, Some(30444)),
            s("causeway-dns", "ClusterIP", "UDP", 53, None),
            s("causeway-dns", "ClusterIP", "TCP", 53, None),
            s("causeway-admin", "ClusterIP", "TCP", 15090, None),
        ]
    );
    for service in &bundle.services {
        let spec = service.spec.as_ref().expect("spec");
        assert_eq!(
            spec.publish_not_ready_addresses,
            Some(true),
            "{:?}",
            service.metadata.name
        );
    }
    // DNS listens unprivileged in the pod; the Service maps 53 to it.
    let dns_ports: Vec<i32> = gateway(&bundle)
        .ports
        .iter()
        .flatten()
        .filter(|p| p.name.as_deref().is_some_and(|n| n.starts_with("dns")))
        .map(|p| p.container_port)
        .collect();
    assert_eq!(dns_ports, [5353, 5353]);
}

/// The kinds of the YAML documents `options` render, in order.
fn kinds(options: &InstallOptions) -> Vec<String> {
    let yaml = manifests::install(options)
        .expect("renders")
        .to_yaml()
        .expect("serializes");
    support::documents(&yaml)
        .iter()
        .map(|d| d["kind"].as_str().expect("kind").to_owned())
        .collect()
}

#[test]
fn the_yaml_is_one_document_per_object_in_apply_order() {
    assert_eq!(
        kinds(&options()),
        [
            "Namespace",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "Deployment",
            "Service",
            "Service",
            "Service",
        ]
    );
    let yaml = manifests::install(&options())
        .expect("renders")
        .to_yaml()
        .expect("serializes");
    let mut three = options();
    three.replicas = 3;
    let kinds = kinds(&three);
    let deployment = kinds
        .iter()
        .position(|k| k == "Deployment")
        .expect("a Deployment");
    assert_eq!(
        kinds[deployment + 1],
        "PodDisruptionBudget",
        "after the Deployment"
    );
    assert!(
        yaml.contains("# clusterset.local:53 {\n#     errors\n"),
        "CoreDNS block"
    );
}

// === Replicas ===

fn with_replicas(replicas: u32) -> manifests::InstallBundle {
    let mut o = options();
    o.replicas = replicas;
    manifests::install(&o).expect("renders")
}

#[test]
fn replicas_set_the_count_a_surge_update_and_a_budget_of_all_but_one() {
    for (replicas, budget) in [(1, None), (3, Some(2))] {
        let bundle = with_replicas(replicas);
        let spec = bundle.deployment.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(i32::try_from(replicas).expect("small")));
        // Every pod is its own replica, so an update adds a ready gateway before
        // it removes one, whatever the count.
        let strategy = spec.strategy.as_ref().expect("strategy");
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let rolling = strategy.rolling_update.as_ref().expect("rollingUpdate");
        assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));

        let min_available = bundle.disruption_budget.as_ref().map(|pdb| {
            let spec = pdb.spec.as_ref().expect("spec");
            assert_eq!(
                spec.selector.as_ref().and_then(|s| s.match_labels.as_ref()),
                spec_selector(&bundle),
                "the budget covers the gateway pods"
            );
            assert_eq!(
                pdb.metadata.namespace.as_deref(),
                Some(manifests::NAMESPACE)
            );
            spec.min_available.clone()
        });
        assert_eq!(
            min_available,
            budget.map(|n| Some(IntOrString::Int(n))),
            "{replicas} replicas"
        );
    }
}

fn spec_selector(
    bundle: &manifests::InstallBundle,
) -> Option<&std::collections::BTreeMap<String, String>> {
    bundle
        .deployment
        .spec
        .as_ref()?
        .selector
        .match_labels
        .as_ref()
}

#[test]
fn replicas_prefer_other_nodes_and_spread_over_zones() {
    for replicas in [1, 3] {
        let bundle = with_replicas(replicas);
        let pod = pod(&bundle);
        let terms = pod
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .expect("preferred pod anti-affinity");
        assert_eq!(terms.len(), 1);
        let term = &terms[0].pod_affinity_term;
        assert_eq!(term.topology_key, "kubernetes.io/hostname");
        assert_eq!(
            term.label_selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref()),
            spec_selector(&bundle)
        );
        let required = pod
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            });
        assert!(
            required.is_none(),
            "a surge must schedule on a small cluster"
        );
        let spread = pod.topology_spread_constraints.as_deref().expect("spread");
        assert_eq!(
            spread
                .iter()
                .map(|c| (
                    c.topology_key.as_str(),
                    c.when_unsatisfiable.as_str(),
                    c.max_skew
                ))
                .collect::<Vec<_>>(),
            [("topology.kubernetes.io/zone", "ScheduleAnyway", 1)]
        );
    }
}

#[test]
fn each_pod_is_named_as_its_replica_and_lease_holder() {
    let bundle = with_replicas(3);
    let from_fields: Vec<(String, String)> = gateway(&bundle)
        .env
        .iter()
        .flatten()
        .filter_map(|e| {
            let field = e.value_from.as_ref()?.field_ref.as_ref()?;
            Some((e.name.clone(), field.field_path.clone()))
        })
        .collect();
    let pair = |n: &str, f: &str| (n.to_owned(), f.to_owned());
    assert_eq!(
        from_fields,
        [
            pair("CAUSEWAY_REPLICA", "metadata.name"),
            pair("CAUSEWAY__KUBERNETES__POD_NAME", "metadata.name"),
            pair("CAUSEWAY__KUBERNETES__NAMESPACE", "metadata.namespace"),
            pair("POD_IP", "status.podIP"),
        ]
    );
}

#[test]
fn replicas_outside_the_bounds_are_refused_naming_the_flag() {
    for replicas in [0, 17] {
        let mut o = options();
        o.replicas = replicas;
        let err = manifests::install(&o).expect_err("out of bounds");
        assert!(
            err.to_string()
                .contains(&format!("--replicas {replicas} is outside 1-16")),
            "{err}"
        );
    }
    assert_eq!(manifests::REPLICAS, 1..=16);
}

#[test]
fn three_replicas_pass_the_kubernetes_schemas_strictly() {
    if !causeway_testing::require_tool("kubernetes-validate") {
        return;
    }
    let mut o = options();
    o.replicas = 3;
    let yaml = manifests::install(&o)
        .expect("renders")
        .to_yaml()
        .expect("serializes");
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("install.yaml");
    std::fs::write(&file, yaml).expect("write the manifests");
    // --strict: a field the API does not know (a typo) fails too.
    let out = std::process::Command::new("kubernetes-validate")
        .arg("--strict")
        .arg(&file)
        .output()
        .expect("kubernetes-validate runs");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    for kind in ["deployment", "poddisruptionbudget", "role"] {
        assert!(
            report.contains(&format!("passed for resource {kind}/causeway-gateway")),
            "{report}"
        );
    }
}
