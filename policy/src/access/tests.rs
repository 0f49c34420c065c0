use std::collections::BTreeMap;

use crate::PolicyAction;
use causeway_trust::ClusterName;
use proptest::prelude::*;

use super::{DecidedBy, PolicySet, Rule, Target};

fn cluster(name: &str) -> ClusterName {
    name.parse().expect("valid cluster name")
}

fn rule(name: &str, action: PolicyAction) -> Rule {
    Rule {
        name: name.into(),
        action,
        from_clusters: Vec::new(),
        to_cluster: None,
        to_namespace: None,
        to_service: None,
        to_labels: BTreeMap::new(),
        ports: Vec::new(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn web<'a>(west: &'a ClusterName, labels: &'a BTreeMap<String, String>, port: u16) -> Target<'a> {
    Target {
        cluster: west,
        namespace: "shop",
        service: "web",
        labels,
        port,
    }
}

#[test]
fn no_rule_falls_to_the_default() {
    let (east, west, none) = (cluster("east"), cluster("west"), BTreeMap::new());
    let deny = PolicySet::default().decide(&east, &web(&west, &none, 80));
    assert!(!deny.allowed());
    assert_eq!(deny.by, DecidedBy::Default);
    let allow =
        PolicySet::new(Vec::new(), PolicyAction::Allow).decide(&east, &web(&west, &none, 80));
    assert!(allow.allowed());
    assert_eq!(allow.by, DecidedBy::Default);
}

#[test]
fn an_allow_rule_names_itself() {
    let (east, west, none) = (cluster("east"), cluster("west"), BTreeMap::new());
    let mut allow = rule("east-to-shop", PolicyAction::Allow);
    allow.from_clusters = vec![east.clone()];
    allow.to_namespace = Some("shop".into());
    let set = PolicySet::new(vec![allow], PolicyAction::Deny);
    let d = set.decide(&east, &web(&west, &none, 80));
    assert!(d.allowed());
    assert_eq!(d.by, DecidedBy::Rule("east-to-shop".into()));
    assert_eq!(d.to_string(), "allowed by policy east-to-shop");
    // Another caller is not named by the rule.
    assert!(
        !set.decide(&cluster("north"), &web(&west, &none, 80))
            .allowed()
    );
}

#[test]
fn deny_wins_over_allow_whatever_the_names() {
    let (east, west, none) = (cluster("east"), cluster("west"), BTreeMap::new());
    for (allow_name, deny_name) in [("a", "z"), ("z", "a")] {
        let set = PolicySet::new(
            vec![
                rule(allow_name, PolicyAction::Allow),
                rule(deny_name, PolicyAction::Deny),
            ],
            PolicyAction::Allow,
        );
        let d = set.decide(&east, &web(&west, &none, 80));
        assert!(!d.allowed());
        assert_eq!(d.by, DecidedBy::Rule(deny_name.into()));
    }
}

#[test]
fn label_selectors_need_every_label() {
    let (east, west) = (cluster("east"), cluster("west"));
    let mut allow = rule("public", PolicyAction::Allow);
    allow.to_labels = labels(&[("tier", "public"), ("team", "shop")]);
    let set = PolicySet::new(vec![allow], PolicyAction::Deny);
    let both = labels(&[("tier", "public"), ("team", "shop"), ("extra", "x")]);
    let one = labels(&[("tier", "public")]);
    let wrong = labels(&[("tier", "internal"), ("team", "shop")]);
    assert!(set.decide(&east, &web(&west, &both, 80)).allowed());
    assert!(!set.decide(&east, &web(&west, &one, 80)).allowed());
    assert!(!set.decide(&east, &web(&west, &wrong, 80)).allowed());
}

#[test]
fn ports_limit_a_rule() {
    let (east, west, none) = (cluster("east"), cluster("west"), BTreeMap::new());
    let mut allow = rule("http-only", PolicyAction::Allow);
    allow.ports = vec![80, 8080];
    let set = PolicySet::new(vec![allow], PolicyAction::Deny);
    assert!(set.decide(&east, &web(&west, &none, 8080)).allowed());
    assert!(!set.decide(&east, &web(&west, &none, 9090)).allowed());
}

#[test]
fn exporting_cluster_service_and_namespace_limit_a_rule() {
    let (east, west, north, none) = (
        cluster("east"),
        cluster("west"),
        cluster("north"),
        BTreeMap::new(),
    );
    let mut allow = rule("west-shop-web", PolicyAction::Allow);
    allow.to_cluster = Some(west.clone());
    allow.to_namespace = Some("shop".into());
    allow.to_service = Some("web".into());
    let set = PolicySet::new(vec![allow], PolicyAction::Deny);
    assert!(set.decide(&east, &web(&west, &none, 80)).allowed());
    assert!(!set.decide(&east, &web(&north, &none, 80)).allowed());
    let api = Target {
        service: "api",
        ..web(&west, &none, 80)
    };
    assert!(!set.decide(&east, &api).allowed());
    let other_ns = Target {
        namespace: "bank",
        ..web(&west, &none, 80)
    };
    assert!(!set.decide(&east, &other_ns).allowed());
}

// === Property: deny always wins ===

const CLUSTERS: [&str; 3] = ["east", "west", "north"];
const NAMESPACES: [&str; 2] = ["shop", "bank"];
const SERVICES: [&str; 2] = ["web", "db"];
const PORTS: [u16; 3] = [80, 443, 5432];

fn arb_rule() -> impl Strategy<Value = Rule> {
    (
        "[a-z]{1,4}",
        prop::bool::ANY,
        prop::collection::vec(0..CLUSTERS.len(), 0..3),
        prop::option::of(0..CLUSTERS.len()),
        prop::option::of(0..NAMESPACES.len()),
        prop::option::of(0..SERVICES.len()),
        prop::option::of(prop::bool::ANY),
        prop::collection::vec(0..PORTS.len(), 0..3),
    )
        .prop_map(|(name, deny, from, to, ns, svc, tier, ports)| Rule {
            name,
            action: if deny {
                PolicyAction::Deny
            } else {
                PolicyAction::Allow
            },
            from_clusters: from.into_iter().map(|i| cluster(CLUSTERS[i])).collect(),
            to_cluster: to.map(|i| cluster(CLUSTERS[i])),
            to_namespace: ns.map(|i| NAMESPACES[i].to_owned()),
            to_service: svc.map(|i| SERVICES[i].to_owned()),
            to_labels: match tier {
                None => BTreeMap::new(),
                Some(public) => labels(&[("tier", if public { "public" } else { "internal" })]),
            },
            ports: ports.into_iter().map(|i| PORTS[i]).collect(),
        })
}

proptest! {
    #[test]
    fn deny_always_wins(
        rules in prop::collection::vec(arb_rule(), 0..8),
        default_allow in prop::bool::ANY,
        caller in 0..CLUSTERS.len(),
        to in 0..CLUSTERS.len(),
        ns in 0..NAMESPACES.len(),
        svc in 0..SERVICES.len(),
        public in prop::bool::ANY,
        port in 0..PORTS.len(),
        rotate in 0usize..8,
    ) {
        let default = if default_allow { PolicyAction::Allow } else { PolicyAction::Deny };
        let caller = cluster(CLUSTERS[caller]);
        let exporter = cluster(CLUSTERS[to]);
        let target_labels = labels(&[("tier", if public { "public" } else { "internal" })]);
        let target = Target {
            cluster: &exporter,
            namespace: NAMESPACES[ns],
            service: SERVICES[svc],
            labels: &target_labels,
            port: PORTS[port],
        };
        let decision = PolicySet::new(rules.clone(), default).decide(&caller, &target);
        let matching: Vec<&Rule> = rules.iter().filter(|r| r.matches(&caller, &target)).collect();
        let any_deny = matching.iter().any(|r| r.action == PolicyAction::Deny);
        let any_allow = matching.iter().any(|r| r.action == PolicyAction::Allow);
        if any_deny {
            prop_assert!(!decision.allowed(), "a matching deny rule must deny: {decision}");
            prop_assert!(matches!(&decision.by, DecidedBy::Rule(n) if matching.iter().any(|r| &r.name == n && r.action == PolicyAction::Deny)));
        } else if any_allow {
            prop_assert!(decision.allowed());
        } else {
            prop_assert_eq!(decision.action, default);
            prop_assert_eq!(decision.by.clone(), DecidedBy::Default);
        }
        // The order rules arrive in never changes the decision.
        let mut rotated = rules.clone();
        if !rotated.is_empty() {
            let k = rotate % rotated.len();
            rotated.rotate_left(k);
        }
        prop_assert_eq!(PolicySet::new(rotated, default).decide(&caller, &target), decision);
    }
}
