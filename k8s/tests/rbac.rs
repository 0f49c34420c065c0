//! The gateway's permissions are exactly what its controllers need: the verbs per
//! resource are listed here, and anything more (a wildcard, an extra verb, Secrets
//! cluster-wide) fails.

use std::collections::{BTreeMap, BTreeSet};

use causeway_k8s::manifests::{self, InstallOptions};
use k8s_openapi::api::rbac::v1::PolicyRule;

type Grants = BTreeMap<(String, String), BTreeSet<String>>;

/// `(apiGroup, resource) -> verbs`, failing on wildcards anywhere.
fn grants(rules: &[PolicyRule]) -> Grants {
    let mut out = Grants::new();
    for rule in rules {
        let groups = rule.api_groups.clone().unwrap_or_default();
        let resources = rule.resources.clone().unwrap_or_default();
        assert!(
            rule.non_resource_urls.is_none(),
            "non-resource URLs granted: {rule:?}"
        );
        for word in groups.iter().chain(&resources).chain(&rule.verbs) {
            assert!(!word.contains('*'), "wildcard in {rule:?}");
        }
        for group in &groups {
            for resource in &resources {
                out.entry((group.clone(), resource.clone()))
                    .or_default()
                    .extend(rule.verbs.iter().cloned());
            }
        }
    }
    out
}

fn expected(table: &[(&str, &str, &[&str])]) -> Grants {
    table
        .iter()
        .map(|(group, resource, verbs)| {
            (
                ((*group).to_owned(), (*resource).to_owned()),
                verbs.iter().map(|v| (*v).to_owned()).collect(),
            )
        })
        .collect()
}

fn bundle() -> manifests::InstallBundle {
    manifests::install(&InstallOptions::new(
        "west".parse().expect("a cluster name"),
    ))
    .expect("renders")
}

const READ: &[&str] = &["get", "list", "watch"];
const CRUD: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const STATUS: &[&str] = &["get", "patch", "update"];

#[test]
fn cluster_role_grants_exactly_the_controllers_needs() {
    let role = bundle().cluster_role;
    let actual = grants(role.rules.as_deref().expect("rules"));
    let want = expected(&[
        (
            "causeway.dev",
            "clusterlinks",
            &["get", "list", "patch", "update", "watch"],
        ),
        ("causeway.dev", "clusterlinks/status", STATUS),
        ("causeway.dev", "clusterlinks/finalizers", &["update"]),
        (
            "causeway.dev",
            "accesspolicies",
            &["list", "patch", "watch"],
        ),
        ("causeway.dev", "accesspolicies/status", &["patch"]),
        (
            "causeway.dev",
            "trafficpolicies",
            &["list", "patch", "watch"],
        ),
        ("causeway.dev", "trafficpolicies/status", &["patch"]),
        (
            "multicluster.x-k8s.io",
            "serviceexports",
            &["get", "list", "patch", "update", "watch"],
        ),
        ("multicluster.x-k8s.io", "serviceexports/status", STATUS),
        (
            "multicluster.x-k8s.io",
            "serviceexports/finalizers",
            &["update"],
        ),
        ("multicluster.x-k8s.io", "serviceimports", CRUD),
        ("multicluster.x-k8s.io", "serviceimports/status", STATUS),
        ("", "services", CRUD),
        ("", "namespaces", READ),
        (
            "discovery.k8s.io",
            "endpointslices",
            &["create", "get", "list", "update", "watch"],
        ),
        ("events.k8s.io", "events", &["create", "patch"]),
    ]);
    assert_eq!(actual, want);
    assert!(
        !actual.keys().any(|(_, r)| r == "secrets"),
        "Secrets must never be readable cluster-wide"
    );
    assert!(
        role.aggregation_rule.is_none(),
        "an aggregated role can grow later"
    );
}

#[test]
fn role_reads_only_the_named_secrets_and_lease_in_its_namespace() {
    let role = bundle().role;
    assert_eq!(
        role.metadata.namespace.as_deref(),
        Some(manifests::NAMESPACE)
    );
    let rules = role.rules.as_deref().expect("rules");
    let actual = grants(rules);
    assert_eq!(
        actual,
        expected(&[
            ("", "secrets", &["get", "watch"]),
            (
                "coordination.k8s.io",
                "leases",
                &["create", "get", "update"]
            ),
        ])
    );
    for rule in rules {
        let names = rule.resource_names.clone().unwrap_or_default();
        let resources = rule.resources.clone().unwrap_or_default();
        if resources == ["secrets"] {
            assert_eq!(
                names,
                [manifests::TRUST_SECRET, manifests::JOIN_TOKEN_SECRET],
                "Secrets only by name"
            );
        } else if rule.verbs != ["create"] {
            // `create` cannot be limited by name; reading and renewing can.
            assert_eq!(names, [manifests::CONTROLLER_LEASE], "{rule:?}");
        }
    }
}

#[test]
fn bindings_grant_the_roles_to_the_gateway_service_account_only() {
    let b = bundle();
    let sa = (
        b.service_account.metadata.name.clone().expect("named"),
        b.service_account
            .metadata
            .namespace
            .clone()
            .expect("namespaced"),
    );
    for (role_ref, subjects) in [
        (
            &b.cluster_role_binding.role_ref,
            &b.cluster_role_binding.subjects,
        ),
        (&b.role_binding.role_ref, &b.role_binding.subjects),
    ] {
        assert_eq!(role_ref.name, manifests::GATEWAY);
        let subjects = subjects.as_deref().expect("subjects");
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].kind, "ServiceAccount");
        assert_eq!(
            (
                subjects[0].name.clone(),
                subjects[0].namespace.clone().expect("namespace")
            ),
            sa
        );
    }
    assert_eq!(b.cluster_role_binding.role_ref.kind, "ClusterRole");
    assert_eq!(b.role_binding.role_ref.kind, "Role");
    assert_eq!(
        b.deployment
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|p| p.service_account_name),
        Some(sa.0)
    );
}
