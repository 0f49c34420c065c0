//! The gateway's permissions: what its controllers read and write, and nothing else.
//!
//! Cluster-wide: ClusterLinks (and their status and finalizers), AccessPolicies and
//! TrafficPolicies (watched; their finalizer and status patched), ServiceExports
//! (read, finalizers, status), ServiceImports and Services (created by the mirror in
//! application namespaces), EndpointSlices (read; created and updated for mirrored
//! Services), Namespaces (read), Events (create).
//! In `causeway-system` only: the trust Secret and the join-token Secret, by name,
//! and the controllers' Lease: the gateway replicas elect with it the one that
//! writes shared objects (`causeway_k8s::leader`).

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::{CONTROLLER_LEASE, GATEWAY, JOIN_TOKEN_SECRET, NAMESPACE, TRUST_SECRET, meta};

const READ: &[&str] = &["get", "list", "watch"];
const STATUS: &[&str] = &["get", "patch", "update"];
const FINALIZERS: &[&str] = &["update"];
const CRUD: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(resources.iter().map(|r| (*r).into()).collect()),
        verbs: verbs.iter().map(|v| (*v).into()).collect(),
        ..PolicyRule::default()
    }
}

/// Cluster-wide rules.
pub(crate) fn cluster_role() -> ClusterRole {
    let rules = vec![
        rule(
            "causeway.dev",
            &["clusterlinks"],
            &["get", "list", "watch", "update", "patch"],
        ),
        rule("causeway.dev", &["clusterlinks/status"], STATUS),
        rule("causeway.dev", &["clusterlinks/finalizers"], FINALIZERS),
        // Access and traffic policies are written by operators. The gateway watches
        // them, patches its finalizer onto each (a JSON patch) and patches the
        // `Accepted` condition into their status; it never gets, updates or deletes
        // them.
        rule(
            "causeway.dev",
            &["accesspolicies", "trafficpolicies"],
            &["list", "watch", "patch"],
        ),
        rule(
            "causeway.dev",
            &["accesspolicies/status", "trafficpolicies/status"],
            &["patch"],
        ),
        rule(
            "multicluster.x-k8s.io",
            &["serviceexports"],
            &["get", "list", "watch", "update", "patch"],
        ),
        rule("multicluster.x-k8s.io", &["serviceexports/status"], STATUS),
        rule(
            "multicluster.x-k8s.io",
            &["serviceexports/finalizers"],
            FINALIZERS,
        ),
        rule("multicluster.x-k8s.io", &["serviceimports"], CRUD),
        rule("multicluster.x-k8s.io", &["serviceimports/status"], STATUS),
        rule("", &["services"], CRUD),
        rule("", &["namespaces"], READ),
        // Read: an export's endpoints. Create and update: the import mirror's
        // address backend keeps EndpointSlices listing the gateway pods for
        // selector-less mirrored Services (a selector reaches only pods of the
        // Service's own namespace); they are deleted with their Service by the
        // garbage collector, so no delete.
        rule(
            "discovery.k8s.io",
            &["endpointslices"],
            &["get", "list", "watch", "create", "update"],
        ),
        // kube-runtime's event recorder creates an event, then patches its count.
        rule("events.k8s.io", &["events"], &["create", "patch"]),
    ];
    ClusterRole {
        metadata: meta(GATEWAY, None),
        rules: Some(rules),
        ..ClusterRole::default()
    }
}

/// Rules in `causeway-system`: two Secrets and one Lease, by name. `list` is not
/// granted because it cannot be limited by name; nor can `create`, which the
/// first replica needs to make the Lease.
pub(crate) fn role() -> Role {
    let mut trust = rule("", &["secrets"], &["get", "watch"]);
    trust.resource_names = Some(vec![TRUST_SECRET.into(), JOIN_TOKEN_SECRET.into()]);
    // The elector reads and renews the Lease with get and update (a release is an
    // update clearing the holder); it polls, so it needs no watch.
    let mut lease = rule("coordination.k8s.io", &["leases"], &["get", "update"]);
    lease.resource_names = Some(vec![CONTROLLER_LEASE.into()]);
    let create_lease = rule("coordination.k8s.io", &["leases"], &["create"]);
    Role {
        metadata: meta(GATEWAY, Some(NAMESPACE)),
        rules: Some(vec![trust, lease, create_lease]),
    }
}

fn subject() -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: GATEWAY.into(),
        namespace: Some(NAMESPACE.into()),
        ..Subject::default()
    }
}

/// Grants the ClusterRole to the gateway's ServiceAccount.
pub(crate) fn cluster_role_binding() -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(GATEWAY, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: GATEWAY.into(),
        },
        subjects: Some(vec![subject()]),
    }
}

/// Grants the Role to the gateway's ServiceAccount.
pub(crate) fn role_binding() -> RoleBinding {
    RoleBinding {
        metadata: meta(GATEWAY, Some(NAMESPACE)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: GATEWAY.into(),
        },
        subjects: Some(vec![subject()]),
    }
}
