//! Traffic policies in a running gateway: what this cluster declares, what the
//! catalog holds, and the one policy per imported service the tunnel applies.
//!
//! Inputs: this gateway's `[[traffic_policy]]` (start and reload), the platform's
//! policies (Kubernetes `TrafficPolicy` objects; the file wins for a service both
//! name) and catalog events (traffic policy records of every owner). Outputs: the
//! effective policies, pushed to the tunnel so that new streams follow a change at
//! once; proposals that keep the catalog's records owned by this cluster equal to
//! what it declares; and what `causeway status` shows.
//!
//! The effective policy of a service here is this cluster's own declared policy
//! when it applies to this cluster; else the catalog record of another owner that
//! applies to this cluster and that exports the service itself, the lowest owner
//! name winning when several do. Every record that applies here but is not
//! followed is reported as a conflict, with why.
//!
//! Only an exporter of a service steers other clusters' clients of it: a policy
//! can then do nothing its owner could not already do by serving its own endpoints
//! slowly or not at all, and a cluster that merely imports a service cannot
//! redirect or break everyone else's traffic to it.

mod publish;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use causeway_registry::{CatalogEvent, Change, ServiceKey, TrafficPolicyRecord};

use causeway_policy::{TrafficPolicy, TrafficScope};
use causeway_trust::ClusterName;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::metrics::GatewayMetrics;
use crate::config::{TrafficPolicyConfig, validate_traffic_policies};
use crate::status::{TrafficConflictStatus, TrafficPolicyStatus, TrafficStatus};
use causeway_tunnel::Tunnel;
use causeway_tunnel::traffic::PolicyKey;

pub(crate) use publish::publish;

/// Where an effective policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// This gateway's `[[traffic_policy]]`.
    File,
    /// A Kubernetes `TrafficPolicy` object of this cluster.
    Kubernetes,
    /// A catalog record declared by this cluster (its own, while the platform's
    /// policies are not listed yet) or by another.
    Catalog(ClusterName),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File => f.write_str("file"),
            Source::Kubernetes => f.write_str("kubernetes"),
            Source::Catalog(owner) => write!(f, "catalog:{owner}"),
        }
    }
}

/// One policy this cluster declares.
#[derive(Debug, Clone, PartialEq)]
struct Declared {
    source: Source,
    apply_to: TrafficScope,
    policy: TrafficPolicy,
}

/// The policy a service follows here.
#[derive(Debug, Clone, PartialEq)]
struct Effective {
    source: Source,
    policy: TrafficPolicy,
}

/// A record that applies to this cluster but is not followed.
#[derive(Debug, Clone, PartialEq)]
struct Conflict {
    service: ServiceKey,
    owner: ClusterName,
    /// The source followed instead; `None` when the owner does not export the
    /// service and so may not steer it.
    winner: Option<Source>,
}

/// What the effective set is computed from.
#[derive(Debug, Default)]
struct Inputs {
    file: Vec<TrafficPolicyConfig>,
    /// `None` until the platform first delivers its policies: meanwhile this
    /// cluster's records in the catalog stay in force and are not withdrawn.
    platform: Option<Vec<TrafficPolicyConfig>>,
    catalog: BTreeMap<(ClusterName, ServiceKey), TrafficPolicyRecord>,
    /// The clusters exporting each service, from the catalog.
    exporters: BTreeMap<ServiceKey, BTreeSet<ClusterName>>,
}

/// Everything derived from the inputs.
#[derive(Debug, Default, PartialEq)]
struct Resolved {
    declared: BTreeMap<ServiceKey, Declared>,
    effective: BTreeMap<ServiceKey, Effective>,
    conflicts: Vec<Conflict>,
}

#[derive(Debug, Default)]
struct State {
    inputs: Inputs,
    resolved: Resolved,
    /// The effective set as last handed to the tunnel.
    applied: Option<BTreeMap<ServiceKey, Effective>>,
}

/// The gateway's traffic policy state.
pub(crate) struct TrafficPolicies {
    cluster: ClusterName,
    state: Mutex<State>,
    /// Wakes the publisher after the declared policies changed.
    republish: Notify,
    /// Wakes the task that hands the effective set to the tunnel.
    changed: Notify,
}

impl fmt::Debug for TrafficPolicies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrafficPolicies")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl TrafficPolicies {
    /// The state of a gateway of `cluster` whose file declares `file` (validated).
    pub(crate) fn new(cluster: ClusterName, file: Vec<TrafficPolicyConfig>) -> Self {
        let this = Self {
            cluster,
            state: Mutex::default(),
            republish: Notify::new(),
            changed: Notify::new(),
        };
        this.update(|inputs| {
            inputs.file = file;
            inputs.platform = Some(Vec::new());
        });
        this
    }

    /// Keeps this cluster's catalog records in force until the platform's policies
    /// are first delivered (Kubernetes mode: a restart must not withdraw them).
    pub(crate) fn await_platform_policies(&self) {
        self.update(|inputs| inputs.platform = None);
    }

    /// Replaces the file's policies (start or reload; validated by the caller).
    fn set_file(&self, file: Vec<TrafficPolicyConfig>) {
        self.update(|inputs| inputs.file = file);
    }

    /// Replaces the platform's policies (Kubernetes `TrafficPolicy` objects). An
    /// invalid one is left out with a warning; for a service the file also names,
    /// the file's policy wins. New streams follow the change at once.
    #[allow(
        dead_code,
        reason = "the entry point of the Kubernetes TrafficPolicy controller"
    )]
    pub(crate) fn set_platform_policies(&self, policies: Vec<TrafficPolicyConfig>) {
        let mut kept: Vec<TrafficPolicyConfig> = Vec::with_capacity(policies.len());
        for policy in policies {
            let problems = validate_traffic_policies(std::slice::from_ref(&policy));
            if let Some(problem) = problems.first() {
                warn!(
                    service = %policy.key(),
                    %problem,
                    "platform traffic policy refused"
                );
            } else if kept.iter().any(|k| k.key() == policy.key()) {
                warn!(service = %policy.key(), "second platform traffic policy for one service ignored");
            } else {
                kept.push(policy);
            }
        }
        self.update(|inputs| inputs.platform = Some(kept));
    }

    /// Takes traffic policy records from a catalog event.
    fn observe(&self, event: &CatalogEvent) {
        let records = |changes: &[Change]| {
            changes.iter().any(|c| {
                matches!(
                    c,
                    Change::TrafficPolicyPut(_)
                        | Change::TrafficPolicyDeleted { .. }
                        | Change::ExportPut(_)
                        | Change::ExportDeleted { .. }
                )
            })
        };
        match event {
            CatalogEvent::Snapshot(s) => self.update(|inputs| {
                inputs.catalog = s
                    .traffic_policies
                    .iter()
                    .map(|v| {
                        let r = &v.value;
                        ((r.owner.clone(), r.service.clone()), r.clone())
                    })
                    .collect();
                inputs.exporters.clear();
                for e in &s.exports {
                    inputs
                        .exporters
                        .entry(e.value.service.clone())
                        .or_default()
                        .insert(e.value.cluster.clone());
                }
            }),
            CatalogEvent::Change(c) if records(&c.changes) => self.update(|inputs| {
                for change in &c.changes {
                    match change {
                        Change::TrafficPolicyPut(r) => {
                            inputs
                                .catalog
                                .insert((r.owner.clone(), r.service.clone()), r.clone());
                        }
                        Change::TrafficPolicyDeleted { owner, service } => {
                            inputs.catalog.remove(&(owner.clone(), service.clone()));
                        }
                        Change::ExportPut(e) => {
                            inputs
                                .exporters
                                .entry(e.service.clone())
                                .or_default()
                                .insert(e.cluster.clone());
                        }
                        Change::ExportDeleted { cluster, service } => {
                            if let Some(set) = inputs.exporters.get_mut(service) {
                                set.remove(cluster);
                                if set.is_empty() {
                                    inputs.exporters.remove(service);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }),
            CatalogEvent::Change(_) => {}
        }
    }

    /// Changes the inputs, recomputes, and wakes whoever must follow.
    fn update(&self, change: impl FnOnce(&mut Inputs)) {
        let mut state = self.state.lock().expect("traffic lock");
        change(&mut state.inputs);
        let resolved = resolve(&self.cluster, &state.inputs);
        let declared_changed = resolved.declared != state.resolved.declared;
        state.resolved = resolved;
        let effective_changed = state.applied.as_ref() != Some(&state.resolved.effective);
        drop(state);
        if declared_changed {
            self.republish.notify_one();
        }
        if effective_changed {
            self.changed.notify_one();
        }
    }

    /// The effective set for the tunnel, when it differs from what it has.
    fn take_unapplied(&self) -> Option<Vec<(PolicyKey, TrafficPolicy)>> {
        let mut state = self.state.lock().expect("traffic lock");
        if state.applied.as_ref() == Some(&state.resolved.effective) {
            return None;
        }
        let effective = state.resolved.effective.clone();
        let out = effective
            .iter()
            .map(|(service, e)| {
                (
                    PolicyKey::new(service.namespace(), service.name()),
                    e.policy.clone(),
                )
            })
            .collect();
        state.applied = Some(effective);
        Some(out)
    }

    /// The records this cluster should own in the catalog, and whether records
    /// beyond them may be withdrawn (not while the platform's are unknown).
    fn wanted(&self) -> (BTreeMap<ServiceKey, TrafficPolicyRecord>, bool) {
        let state = self.state.lock().expect("traffic lock");
        let wanted = state
            .resolved
            .declared
            .iter()
            .filter(|(_, d)| d.source != Source::Catalog(self.cluster.clone()))
            .map(|(service, d)| {
                (
                    service.clone(),
                    TrafficPolicyRecord {
                        owner: self.cluster.clone(),
                        service: service.clone(),
                        apply_to: d.apply_to.clone(),
                        policy: d.policy.in_whole_millis(),
                    },
                )
            })
            .collect();
        (wanted, state.inputs.platform.is_some())
    }

    /// How many services have a policy in effect, and how many records are not
    /// followed.
    fn counts(&self) -> (usize, usize) {
        let state = self.state.lock().expect("traffic lock");
        (
            state.resolved.effective.len(),
            state.resolved.conflicts.len(),
        )
    }

    /// What `causeway status` shows about traffic policies.
    pub(crate) fn status(&self) -> TrafficStatus {
        let state = self.state.lock().expect("traffic lock");
        let r = &state.resolved;
        TrafficStatus {
            in_effect: r
                .effective
                .iter()
                .map(|(service, e)| TrafficPolicyStatus {
                    service: service.to_string(),
                    source: e.source.to_string(),
                    routing: summary(&e.policy),
                    apply_to: Vec::new(),
                })
                .collect(),
            declared: r
                .declared
                .iter()
                .map(|(service, d)| TrafficPolicyStatus {
                    service: service.to_string(),
                    source: d.source.to_string(),
                    routing: summary(&d.policy),
                    apply_to: d.apply_to.to_strings(),
                })
                .collect(),
            conflicts: r
                .conflicts
                .iter()
                .map(|c| TrafficConflictStatus {
                    service: c.service.to_string(),
                    owner: c.owner.to_string(),
                    followed: match &c.winner {
                        Some(source) => source.to_string(),
                        None => format!("none: {} does not export {}", c.owner, c.service),
                    },
                })
                .collect(),
        }
    }
}

/// A policy's routing in a few words, e.g. `weighted west=90,east=10`.
fn summary(policy: &TrafficPolicy) -> String {
    let mut out = policy.routing.to_string();
    if let Some(pinned) = &policy.pinned {
        out.push_str(&format!(" {pinned}"));
    }
    if !policy.weights.is_empty() {
        let weights: Vec<String> = policy
            .weights
            .iter()
            .map(|(c, w)| format!("{c}={w}"))
            .collect();
        out.push_str(&format!(" {}", weights.join(",")));
    }
    out
}

/// The declared, effective and conflicting policies of `cluster` (sans-IO).
fn resolve(cluster: &ClusterName, inputs: &Inputs) -> Resolved {
    let declared = declared(cluster, inputs);
    let mut effective: BTreeMap<ServiceKey, Effective> = declared
        .iter()
        .filter(|(_, d)| d.apply_to.includes(cluster))
        .map(|(service, d)| {
            (
                service.clone(),
                Effective {
                    source: d.source.clone(),
                    policy: d.policy.clone(),
                },
            )
        })
        .collect();
    let conflicts = follow_others(cluster, inputs, &mut effective);
    Resolved {
        declared,
        effective,
        conflicts,
    }
}

/// The policies `cluster` declares itself: the file's, then the platform's for
/// services the file leaves alone, or, while the platform's are not listed yet,
/// this cluster's own records in the catalog.
fn declared(cluster: &ClusterName, inputs: &Inputs) -> BTreeMap<ServiceKey, Declared> {
    let mut declared: BTreeMap<ServiceKey, Declared> = BTreeMap::new();
    let configured = inputs.file.iter().map(|p| (Source::File, p)).chain(
        inputs
            .platform
            .iter()
            .flatten()
            .map(|p| (Source::Kubernetes, p)),
    );
    for (source, p) in configured {
        // Validated on the way in; a name that still fails governs nothing.
        let Ok(service) = ServiceKey::new(&p.namespace, &p.name) else {
            continue;
        };
        declared.entry(service).or_insert_with(|| Declared {
            source,
            apply_to: p.scope(cluster),
            policy: p.policy(),
        });
    }
    if inputs.platform.is_none() {
        for ((owner, service), r) in &inputs.catalog {
            if owner == cluster {
                declared.entry(service.clone()).or_insert_with(|| Declared {
                    source: Source::Catalog(owner.clone()),
                    apply_to: r.apply_to.clone(),
                    policy: r.policy.clone(),
                });
            }
        }
    }
    declared
}

/// Fills the services `effective` has no policy for with other owners' records
/// that apply to `cluster`, from exporters of the service only; returns every such
/// record not followed, with what is followed instead.
fn follow_others(
    cluster: &ClusterName,
    inputs: &Inputs,
    effective: &mut BTreeMap<ServiceKey, Effective>,
) -> Vec<Conflict> {
    let mut conflicts = Vec::new();
    // Ordered by owner: the first record to claim a service is the lowest owner's.
    for ((owner, service), r) in &inputs.catalog {
        if owner == cluster || !r.apply_to.includes(cluster) {
            continue;
        }
        let exports = inputs
            .exporters
            .get(service)
            .is_some_and(|e| e.contains(owner));
        if !exports {
            conflicts.push(Conflict {
                service: service.clone(),
                owner: owner.clone(),
                winner: None,
            });
            continue;
        }
        match effective.get(service) {
            Some(winner) => conflicts.push(Conflict {
                service: service.clone(),
                owner: owner.clone(),
                winner: Some(winner.source.clone()),
            }),
            None => {
                effective.insert(
                    service.clone(),
                    Effective {
                        source: Source::Catalog(owner.clone()),
                        policy: r.policy.clone(),
                    },
                );
            }
        }
    }
    conflicts.sort_by(|a, b| (&a.service, &a.owner).cmp(&(&b.service, &b.owner)));
    conflicts
}

// === Hooks for the daemon ===

/// Hands the effective set to the tunnel if it changed since the last time.
pub(crate) fn apply(traffic: &TrafficPolicies, tunnel: &Tunnel, metrics: &GatewayMetrics) {
    let (in_effect, not_followed) = traffic.counts();
    metrics.traffic_policies.set(in_effect as i64);
    metrics
        .traffic_policies_not_followed
        .set(not_followed as i64);
    if let Some(policies) = traffic.take_unapplied() {
        let count = policies.len();
        tunnel.set_traffic_policies(policies);
        debug!(services = count, "effective traffic policies applied");
    }
}

/// Takes traffic policy records from a catalog event; new streams follow a change
/// of the effective set at once.
pub(crate) fn on_event(
    traffic: &TrafficPolicies,
    tunnel: &Tunnel,
    metrics: &GatewayMetrics,
    event: &CatalogEvent,
) {
    traffic.observe(event);
    apply(traffic, tunnel, metrics);
}

/// Applies a new `[[traffic_policy]]` list (reload, or the in-memory API; already
/// validated): new streams follow it at once.
pub(crate) fn set_file(
    traffic: &TrafficPolicies,
    tunnel: &Tunnel,
    metrics: &GatewayMetrics,
    policies: Vec<TrafficPolicyConfig>,
) {
    traffic.set_file(policies);
    apply(traffic, tunnel, metrics);
    info!("traffic policies reloaded");
}

/// Hands changes that arrive without a caller holding the tunnel (platform
/// policies) to the tunnel.
pub(crate) async fn follow_changes(
    traffic: Arc<TrafficPolicies>,
    tunnel: Arc<Tunnel>,
    metrics: GatewayMetrics,
    cancel: CancellationToken,
) {
    loop {
        apply(&traffic, &tunnel, &metrics);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = traffic.changed.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_policy::RoutingMode;

    fn cluster(name: &str) -> ClusterName {
        name.parse().expect("valid cluster name")
    }

    fn web() -> ServiceKey {
        "shop/web".parse().expect("valid key")
    }

    fn pinned(to: &str) -> TrafficPolicy {
        TrafficPolicy {
            routing: RoutingMode::Pinned,
            pinned: Some(cluster(to)),
            ..TrafficPolicy::default()
        }
    }

    fn config(to: &str, apply_to: Option<&[&str]>) -> TrafficPolicyConfig {
        let text = format!(
            "namespace = \"shop\"\nname = \"web\"\nrouting = \"pinned\"\npinned = \"{to}\"\n"
        );
        let mut p: TrafficPolicyConfig = toml::from_str(&text).expect("valid policy");
        p.apply_to = apply_to.map(|a| a.iter().map(|s| (*s).to_owned()).collect());
        p
    }

    fn record(owner: &str, to: &str, apply_to: TrafficScope) -> TrafficPolicyRecord {
        TrafficPolicyRecord {
            owner: cluster(owner),
            service: web(),
            apply_to,
            policy: pinned(to),
        }
    }

    fn catalog(
        records: &[TrafficPolicyRecord],
    ) -> BTreeMap<(ClusterName, ServiceKey), TrafficPolicyRecord> {
        records
            .iter()
            .map(|r| ((r.owner.clone(), r.service.clone()), r.clone()))
            .collect()
    }

    /// `shop/web` exported by `clusters`.
    fn exporters(clusters: &[&str]) -> BTreeMap<ServiceKey, BTreeSet<ClusterName>> {
        BTreeMap::from([(web(), clusters.iter().map(|c| cluster(c)).collect())])
    }

    fn export_change(revision: u64, change: Change) -> CatalogEvent {
        CatalogEvent::Change(causeway_registry::CatalogChange {
            revision: causeway_registry::Revision(revision),
            changes: vec![change],
        })
    }

    #[test]
    fn the_lowest_other_owner_wins_and_the_rest_are_conflicts() {
        let inputs = Inputs {
            platform: Some(Vec::new()),
            catalog: catalog(&[
                record("north", "north", TrafficScope::All),
                record("east", "east", TrafficScope::All),
                record(
                    "south",
                    "south",
                    TrafficScope::Clusters(vec![cluster("other")]),
                ),
            ]),
            exporters: exporters(&["east", "north", "south"]),
            ..Inputs::default()
        };
        let r = resolve(&cluster("west"), &inputs);
        let e = &r.effective[&web()];
        assert_eq!(e.source, Source::Catalog(cluster("east")));
        assert_eq!(e.policy, pinned("east"));
        assert_eq!(
            r.conflicts,
            [Conflict {
                service: web(),
                owner: cluster("north"),
                winner: Some(Source::Catalog(cluster("east"))),
            }]
        );
    }

    #[test]
    fn only_an_exporter_of_the_service_steers_other_clusters() {
        let mut inputs = Inputs {
            platform: Some(Vec::new()),
            catalog: catalog(&[
                record("east", "east", TrafficScope::All),
                record("north", "north", TrafficScope::All),
            ]),
            exporters: exporters(&["north"]),
            ..Inputs::default()
        };
        let r = resolve(&cluster("west"), &inputs);
        assert_eq!(
            r.effective[&web()].source,
            Source::Catalog(cluster("north"))
        );
        assert_eq!(
            r.conflicts,
            [Conflict {
                service: web(),
                owner: cluster("east"),
                winner: None,
            }]
        );
        inputs.exporters.clear();
        assert!(resolve(&cluster("west"), &inputs).effective.is_empty());

        // Export changes move it: north withdraws, east starts exporting.
        let traffic = TrafficPolicies::new(cluster("west"), Vec::new());
        let mut snapshot = causeway_registry::CatalogSnapshot::default();
        for r in [
            record("east", "east", TrafficScope::All),
            record("north", "north", TrafficScope::All),
        ] {
            snapshot
                .traffic_policies
                .push(causeway_registry::Versioned {
                    mod_revision: causeway_registry::Revision(1),
                    value: r,
                });
        }
        traffic.observe(&CatalogEvent::Snapshot(snapshot));
        assert!(traffic.status().in_effect.is_empty());
        let conflicts = traffic.status().conflicts;
        assert_eq!(conflicts[0].followed, "none: east does not export shop/web");
        let export = |from: &str| causeway_registry::Export {
            cluster: cluster(from),
            service: web(),
            ports: Vec::new(),
            endpoints: 1,
            labels: BTreeMap::new(),
            weight: 100,
            slots: None,
        };
        traffic.observe(&export_change(2, Change::ExportPut(export("north"))));
        assert_eq!(traffic.status().in_effect[0].source, "catalog:north");
        traffic.observe(&export_change(3, Change::ExportPut(export("east"))));
        assert_eq!(traffic.status().in_effect[0].source, "catalog:east");
        traffic.observe(&export_change(
            4,
            Change::ExportDeleted {
                cluster: cluster("east"),
                service: web(),
            },
        ));
        assert_eq!(traffic.status().in_effect[0].source, "catalog:north");
    }

    #[test]
    fn the_own_policy_wins_when_it_applies_here() {
        let inputs = Inputs {
            file: vec![config("west", None)],
            platform: Some(vec![config("north", None)]),
            catalog: catalog(&[record("east", "east", TrafficScope::All)]),
            exporters: exporters(&["east"]),
        };
        let r = resolve(&cluster("west"), &inputs);
        assert_eq!(r.effective[&web()].source, Source::File);
        assert_eq!(r.effective[&web()].policy, pinned("west"));
        assert_eq!(r.conflicts.len(), 1);
        assert_eq!(r.conflicts[0].winner, Some(Source::File));
        // A policy declared for others only leaves this cluster to theirs.
        let inputs = Inputs {
            file: vec![config("west", Some(&["north"]))],
            platform: Some(Vec::new()),
            catalog: inputs.catalog,
            exporters: inputs.exporters,
        };
        let r = resolve(&cluster("west"), &inputs);
        assert_eq!(r.effective[&web()].source, Source::Catalog(cluster("east")));
        assert_eq!(r.declared[&web()].apply_to.to_string(), "north");
    }

    #[test]
    fn the_platform_fills_in_where_the_file_is_silent() {
        let traffic = TrafficPolicies::new(cluster("west"), Vec::new());
        traffic.set_platform_policies(vec![config("north", Some(&["*"])), config("east", None)]);
        let status = traffic.status();
        assert_eq!(status.in_effect.len(), 1);
        assert_eq!(status.in_effect[0].source, "kubernetes");
        assert_eq!(status.in_effect[0].routing, "pinned north");
        assert_eq!(status.declared[0].apply_to, ["*"]);
        traffic.set_file(vec![config("west", None)]);
        assert_eq!(traffic.status().in_effect[0].source, "file");
        let (wanted, prune) = traffic.wanted();
        assert!(prune);
        assert_eq!(
            wanted[&web()].apply_to,
            TrafficScope::Clusters(vec![cluster("west")])
        );
    }

    #[test]
    fn own_catalog_records_stay_until_the_platform_is_listed() {
        let traffic = TrafficPolicies::new(cluster("west"), Vec::new());
        traffic.await_platform_policies();
        let mut snapshot = causeway_registry::CatalogSnapshot::default();
        snapshot
            .traffic_policies
            .push(causeway_registry::Versioned {
                mod_revision: causeway_registry::Revision(1),
                value: record("west", "north", TrafficScope::All),
            });
        traffic.observe(&CatalogEvent::Snapshot(snapshot));
        assert_eq!(traffic.status().in_effect[0].source, "catalog:west");
        let (wanted, prune) = traffic.wanted();
        assert!(wanted.is_empty() && !prune);
        traffic.set_platform_policies(Vec::new());
        assert!(traffic.status().in_effect.is_empty());
        assert!(traffic.wanted().1);
    }

    #[test]
    fn catalog_changes_update_the_effective_set_and_tunnel_input() {
        let traffic = TrafficPolicies::new(cluster("west"), Vec::new());
        assert_eq!(traffic.take_unapplied(), Some(Vec::new()));
        assert_eq!(traffic.take_unapplied(), None);
        traffic.update(|inputs| inputs.exporters = exporters(&["east"]));
        assert_eq!(traffic.take_unapplied(), None);
        let put = CatalogEvent::Change(causeway_registry::CatalogChange {
            revision: causeway_registry::Revision(2),
            changes: vec![Change::TrafficPolicyPut(record(
                "east",
                "east",
                TrafficScope::All,
            ))],
        });
        traffic.observe(&put);
        let applied = traffic.take_unapplied().expect("changed");
        assert_eq!(applied, [(PolicyKey::new("shop", "web"), pinned("east"))]);
        let delete = CatalogEvent::Change(causeway_registry::CatalogChange {
            revision: causeway_registry::Revision(3),
            changes: vec![Change::TrafficPolicyDeleted {
                owner: cluster("east"),
                service: web(),
            }],
        });
        traffic.observe(&delete);
        assert_eq!(traffic.take_unapplied(), Some(Vec::new()));
    }
}
