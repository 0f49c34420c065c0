//! Access policy in a running gateway: the live [`PolicySet`] the tunnel checks
//! every new stream against, the catalog's view of it, the imports it hides, and the
//! issuer denylist.
//!
//! Inputs: this gateway's `[access]` section (start and reload), the platform's
//! policies (Kubernetes `AccessPolicy` objects, merged with the section's; the file
//! wins on a name clash) and catalog events (policies, the federation default,
//! denied issuers). Outputs: the access check
//! (exporting side), catalog events with the exports this cluster may not use taken
//! out before the mirror sees them (importing side: no DNS name, no listener), the
//! identity's issuer denylist, and proposals that publish this gateway's own policies
//! and, for a new federation, its default.

mod publish;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use causeway_policy::PolicyAction;
use causeway_registry::{
    CatalogChange, CatalogEvent, CatalogSnapshot, Change, Command, Export, ServiceKey,
};
use causeway_trust::{ClusterName, IssuerFingerprint};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::Shared;
use super::members::Membership;
use crate::config::{AccessSection, Enforce, ExportConfig, PolicyConfig};
use crate::status::{AccessStatus, HiddenImport};
use causeway_policy::{PolicySet, Rule, Target};
use causeway_tunnel::{AccessCheck, ServiceTarget, Tunnel};

pub(crate) use publish::publish;

/// What the policy set is built from.
#[derive(Debug)]
struct Inputs {
    config: AccessSection,
    /// Policies in the catalog, by name.
    catalog: BTreeMap<String, Rule>,
    /// The federation default recorded in the catalog, once set.
    catalog_default: Option<PolicyAction>,
    /// Denied issuer fingerprints in the catalog (lowercase hex).
    denied_issuers: BTreeSet<String>,
    /// Labels of this cluster's exports as published in the catalog: the source for
    /// exports that are not in the config (Kubernetes `ServiceExport`s).
    published_labels: BTreeMap<ServiceKey, BTreeMap<String, String>>,
    /// This cluster's policies from the platform (Kubernetes `AccessPolicy`
    /// objects), enforced and published like the config's. `None` until the
    /// platform first delivers them: meanwhile the catalog's copies of this
    /// gateway's policies stay in force and in the catalog, so a restart does not
    /// withdraw them for the moment it takes to list the objects again.
    platform: Option<Vec<PolicyConfig>>,
    /// Whether the platform has delivered its policies at least once.
    platform_delivered: bool,
}

/// The gateway's access policy state; the tunnel's [`AccessCheck`].
pub(crate) struct AccessPolicies {
    cluster: ClusterName,
    /// This cluster's exports, for the labels policies select on.
    exports: Arc<Mutex<Vec<ExportConfig>>>,
    inputs: Mutex<Inputs>,
    /// Catalog and own policies with the effective default: what inbound streams
    /// are checked against.
    current: ArcSwap<PolicySet>,
    /// Imports hidden from this cluster, by service and exporting cluster, with why.
    hidden: Mutex<BTreeMap<(ServiceKey, ClusterName), String>>,
    /// Wakes the publisher after the config changed.
    pub(crate) republish: Notify,
}

impl std::fmt::Debug for AccessPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessPolicies")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl AccessPolicies {
    pub(crate) fn new(
        cluster: ClusterName,
        config: AccessSection,
        exports: Arc<Mutex<Vec<ExportConfig>>>,
    ) -> Self {
        let this = Self {
            cluster,
            exports,
            inputs: Mutex::new(Inputs {
                config,
                catalog: BTreeMap::new(),
                catalog_default: None,
                denied_issuers: BTreeSet::new(),
                published_labels: BTreeMap::new(),
                platform: Some(Vec::new()),
                platform_delivered: false,
            }),
            current: ArcSwap::from_pointee(PolicySet::default()),
            hidden: Mutex::default(),
            republish: Notify::new(),
        };
        this.rebuild(&this.inputs.lock().expect("policy lock"));
        this
    }

    /// Whether a catalog policy is this gateway's own config policy as published:
    /// the config, not the catalog's possibly older copy, is what counts here.
    fn is_own(&self, rule: &Rule) -> bool {
        rule.to_cluster.as_ref() == Some(&self.cluster)
            && rule
                .name
                .strip_prefix(self.cluster.as_str())
                .is_some_and(|rest| rest.starts_with('-'))
    }

    fn rebuild(&self, inputs: &Inputs) {
        let awaiting_platform = inputs.platform.is_none();
        let mut rules: BTreeMap<String, Rule> = inputs
            .catalog
            .iter()
            .filter(|(_, rule)| awaiting_platform || !self.is_own(rule))
            .map(|(name, rule)| (name.clone(), rule.clone()))
            .collect();
        for policy in inputs.platform.iter().flatten() {
            let rule = policy.rule(&self.cluster);
            rules.insert(rule.name.clone(), rule);
        }
        for rule in inputs.config.rules(&self.cluster) {
            rules.insert(rule.name.clone(), rule);
        }
        let default = inputs.catalog_default.unwrap_or(inputs.config.default);
        self.current.store(Arc::new(PolicySet::new(
            rules.into_values().collect(),
            default,
        )));
    }

    /// The rules and default the importing side evaluates: the catalog's (this
    /// gateway's own rules only ever name this cluster as the exporter).
    fn catalog_set(&self) -> PolicySet {
        let inputs = self.inputs.lock().expect("policy lock");
        PolicySet::new(
            inputs.catalog.values().cloned().collect(),
            inputs.catalog_default.unwrap_or(inputs.config.default),
        )
    }

    /// Whether open streams are re-checked after a change.
    pub(crate) fn enforce(&self) -> Enforce {
        self.inputs.lock().expect("policy lock").config.enforce
    }

    /// Replaces this gateway's `[access]` section (start or reload).
    pub(crate) fn set_config(&self, config: AccessSection) -> bool {
        let mut inputs = self.inputs.lock().expect("policy lock");
        if inputs.config == config {
            return false;
        }
        inputs.config = config;
        self.rebuild(&inputs);
        drop(inputs);
        self.republish.notify_one();
        true
    }

    /// Says that the platform will deliver policies (Kubernetes mode): until it
    /// first does, this gateway's policies in the catalog are kept, in force and
    /// published.
    pub(crate) fn await_platform_policies(&self) {
        let mut inputs = self.inputs.lock().expect("policy lock");
        if !inputs.platform_delivered {
            inputs.platform = None;
            self.rebuild(&inputs);
        }
    }

    /// Replaces the platform's policies (all of them). Returns whether anything
    /// changed, and the names the config file also uses: the file's policy wins.
    pub(crate) fn set_platform_policies(&self, policies: Vec<PolicyConfig>) -> (bool, Vec<String>) {
        let mut inputs = self.inputs.lock().expect("policy lock");
        let clashes: Vec<String> = policies
            .iter()
            .filter(|p| inputs.config.policies.iter().any(|c| c.name == p.name))
            .map(|p| p.name.clone())
            .collect();
        if inputs.platform.as_ref() == Some(&policies) {
            inputs.platform_delivered = true;
            return (false, clashes);
        }
        if !clashes.is_empty() {
            warn!(
                policies = ?clashes,
                "access policies named both in the config file and on the platform; the file's are enforced"
            );
        }
        inputs.platform = Some(policies);
        inputs.platform_delivered = true;
        self.rebuild(&inputs);
        drop(inputs);
        self.republish.notify_one();
        (true, clashes)
    }

    /// Takes policies, the default and denied issuers from a catalog event. Returns
    /// what changed.
    fn observe(&self, event: &CatalogEvent) -> Observed {
        let mut inputs = self.inputs.lock().expect("policy lock");
        let mut seen = Observed::default();
        match event {
            CatalogEvent::Snapshot(s) => {
                inputs.catalog = s
                    .policies
                    .iter()
                    .map(|p| (p.value.name.to_string(), Rule::from(&p.value)))
                    .collect();
                inputs.catalog_default = s.default_access.as_ref().map(|d| d.value);
                let denied: BTreeSet<String> = s
                    .denied_issuers
                    .iter()
                    .map(|d| d.fingerprint.clone())
                    .collect();
                seen.issuers = denied != inputs.denied_issuers;
                inputs.denied_issuers = denied;
                inputs.published_labels = s
                    .exports
                    .iter()
                    .filter(|e| e.value.cluster == self.cluster)
                    .map(|e| (e.value.service.clone(), e.value.labels.clone()))
                    .collect();
                seen.policies = true;
            }
            CatalogEvent::Change(c) => {
                for change in &c.changes {
                    match change {
                        Change::PolicyPut(p) => {
                            inputs.catalog.insert(p.name.to_string(), Rule::from(p));
                            seen.policies = true;
                        }
                        Change::PolicyDeleted { name } => {
                            inputs.catalog.remove(name.as_str());
                            seen.policies = true;
                        }
                        Change::DefaultAccessSet { action } => {
                            inputs.catalog_default = Some(*action);
                            seen.policies = true;
                        }
                        Change::IssuerDenied(d) => {
                            seen.issuers |= inputs.denied_issuers.insert(d.fingerprint.clone());
                        }
                        Change::ExportPut(e) if e.cluster == self.cluster => {
                            inputs
                                .published_labels
                                .insert(e.service.clone(), e.labels.clone());
                        }
                        Change::ExportDeleted { cluster, service } if *cluster == self.cluster => {
                            inputs.published_labels.remove(service);
                        }
                        _ => {}
                    }
                }
            }
        }
        if seen.policies {
            self.rebuild(&inputs);
        }
        seen
    }

    fn denied_issuers(&self) -> Vec<IssuerFingerprint> {
        let inputs = self.inputs.lock().expect("policy lock");
        inputs
            .denied_issuers
            .iter()
            .filter_map(|f| f.parse().ok())
            .collect()
    }

    /// `export` as this cluster may use it: the ports policy allows us, or `Err` with
    /// the reason when it allows none.
    fn visible(&self, set: &PolicySet, export: &Export) -> Result<Export, String> {
        let mut allowed = export.clone();
        let mut reasons = Vec::new();
        allowed.ports.retain(|p| {
            let target = Target {
                cluster: &export.cluster,
                namespace: export.service.namespace(),
                service: export.service.name(),
                labels: &export.labels,
                port: p.port,
            };
            let decision = set.decide(&self.cluster, &target);
            if !decision.allowed() {
                reasons.push(format!("port {}: {decision}", p.port));
            }
            decision.allowed()
        });
        if allowed.ports.is_empty() {
            Err(reasons.join("; "))
        } else {
            Ok(allowed)
        }
    }

    fn filter_snapshot(&self, snapshot: &CatalogSnapshot) -> CatalogSnapshot {
        let set = self.catalog_set();
        let mut hidden = BTreeMap::new();
        let mut out = snapshot.clone();
        out.exports.retain_mut(|v| {
            if v.value.cluster == self.cluster {
                return true;
            }
            match self.visible(&set, &v.value) {
                Ok(export) => {
                    v.value = export;
                    true
                }
                Err(reason) => {
                    hidden.insert((v.value.service.clone(), v.value.cluster.clone()), reason);
                    false
                }
            }
        });
        *self.hidden.lock().expect("hidden lock") = hidden;
        out
    }

    /// The change with exports this cluster may not use taken out (a put of one
    /// becomes a delete, in case it was visible before), or `None` when nothing in it
    /// is hidden.
    fn filter_change(&self, change: &CatalogChange) -> Option<CatalogChange> {
        let set = self.catalog_set();
        let mut hidden = self.hidden.lock().expect("hidden lock");
        let mut out = change.clone();
        let mut altered = false;
        for c in &mut out.changes {
            match c {
                Change::ExportPut(export) if export.cluster != self.cluster => {
                    let key = (export.service.clone(), export.cluster.clone());
                    match self.visible(&set, export) {
                        Ok(visible) => {
                            hidden.remove(&key);
                            if visible != *export {
                                *export = visible;
                                altered = true;
                            }
                        }
                        Err(reason) => {
                            hidden.insert(key, reason);
                            *c = Change::ExportDeleted {
                                cluster: export.cluster.clone(),
                                service: export.service.clone(),
                            };
                            altered = true;
                        }
                    }
                }
                Change::ExportDeleted { cluster, service } => {
                    hidden.remove(&(service.clone(), cluster.clone()));
                }
                Change::ClusterDeleted { cluster } => {
                    hidden.retain(|(_, c), _| c != &*cluster);
                }
                _ => {}
            }
        }
        altered.then_some(out)
    }

    /// What `causeway status` shows about access.
    pub(crate) fn status(&self) -> AccessStatus {
        // Never two of this handle's locks at once: see `on_event`.
        let hidden_imports = self.hidden_imports();
        let inputs = self.inputs.lock().expect("policy lock");
        let default = inputs.catalog_default.unwrap_or(inputs.config.default);
        let default_source = if inputs.catalog_default.is_some() {
            "federation"
        } else {
            "config (not yet recorded in the catalog)"
        };
        let mut policies: BTreeSet<String> = inputs.catalog.keys().cloned().collect();
        policies.extend(
            inputs
                .config
                .rules(&self.cluster)
                .into_iter()
                .map(|r| r.name),
        );
        let platform = inputs.platform.iter().flatten();
        policies.extend(platform.map(|p| p.catalog_name(&self.cluster)));
        AccessStatus {
            default: default.to_string(),
            default_source: default_source.into(),
            enforce: match inputs.config.enforce {
                Enforce::New => "new".into(),
                Enforce::All => "all".into(),
            },
            policies: policies.into_iter().collect(),
            denied_issuers: inputs.denied_issuers.iter().cloned().collect(),
            hidden_imports,
        }
    }

    /// The imports access policy hides here, with why.
    fn hidden_imports(&self) -> Vec<HiddenImport> {
        self.hidden
            .lock()
            .expect("hidden lock")
            .iter()
            .map(|((service, cluster), reason)| HiddenImport {
                namespace: service.namespace().to_owned(),
                name: service.name().to_owned(),
                cluster: cluster.to_string(),
                reason: reason.clone(),
            })
            .collect()
    }
}

/// What one catalog event changed about access.
#[derive(Debug, Default, Clone, Copy)]
struct Observed {
    policies: bool,
    issuers: bool,
}

impl AccessCheck for AccessPolicies {
    fn check(&self, peer: &ClusterName, target: &ServiceTarget) -> Result<(), String> {
        // The config's labels count at once; exports from elsewhere (Kubernetes) are
        // known by what this gateway published.
        let configured = self
            .exports
            .lock()
            .expect("exports lock")
            .iter()
            .find(|e| e.namespace == target.namespace && e.name == target.service)
            .map(|e| e.labels.clone());
        let labels = configured
            .or_else(|| {
                let key = ServiceKey::new(&target.namespace, &target.service).ok()?;
                let inputs = self.inputs.lock().expect("policy lock");
                inputs.published_labels.get(&key).cloned()
            })
            .unwrap_or_default();
        let decision = self.current.load().decide(
            peer,
            &Target {
                cluster: &self.cluster,
                namespace: &target.namespace,
                service: &target.service,
                labels: &labels,
                port: target.port,
            },
        );
        if decision.allowed() {
            Ok(())
        } else {
            Err(decision.to_string())
        }
    }
}

// === Hooks for the daemon ===

/// Takes access state from a catalog event and returns the event the mirror should
/// apply instead, when policy hides some of it. Re-checks open streams and
/// connections when policies or the denylist changed.
pub(crate) fn on_event(shared: &Shared, event: &CatalogEvent) -> Option<CatalogEvent> {
    let access = &shared.access;
    let seen = access.observe(event);
    if seen.issuers {
        let denied = access.denied_issuers();
        let denylist = shared.local.identity.denylist();
        denylist.replace(denied);
        let closed = shared
            .tunnel
            .close_inbound_where(|_, chain| denylist.denied_in_chain(chain).is_some());
        info!(issuers = denylist.len(), closed, "issuer denylist updated");
    }
    if seen.policies {
        after_policy_change(access, &shared.tunnel);
    }
    let filtered = filter(access, &shared.membership, event, seen);
    // One lock at a time: `status` takes `inputs` then `hidden`, and a guard held
    // across both here (a tuple's temporaries live to the end of its statement)
    // deadlocked the two.
    let hidden = access.hidden.lock().expect("hidden lock").len();
    let denied = access
        .inputs
        .lock()
        .expect("policy lock")
        .denied_issuers
        .len();
    let metrics = &shared.telemetry.metrics;
    metrics.access_hidden_imports.set(hidden as i64);
    metrics.access_denied_issuers.set(denied as i64);
    filtered
}

fn filter(
    access: &AccessPolicies,
    membership: &Membership,
    event: &CatalogEvent,
    seen: Observed,
) -> Option<CatalogEvent> {
    match event {
        CatalogEvent::Snapshot(s) => Some(CatalogEvent::Snapshot(access.filter_snapshot(s))),
        CatalogEvent::Change(_) if seen.policies => {
            // What this cluster may import changed: re-evaluate every export, from
            // the catalog as this member holds it now.
            let snapshot = membership.node().read_local(|c| c.snapshot());
            Some(CatalogEvent::Snapshot(access.filter_snapshot(&snapshot)))
        }
        CatalogEvent::Change(c) => access.filter_change(c).map(CatalogEvent::Change),
    }
}

fn after_policy_change(access: &AccessPolicies, tunnel: &Tunnel) {
    if access.enforce() == Enforce::All {
        let closed = tunnel.revoke_denied_streams();
        if closed > 0 {
            info!(closed, "open streams closed after a policy change");
        }
    }
}

/// Applies the platform's complete set of access policies: new streams see it at
/// once, and the publisher stores it in the catalog. Returns the names the config
/// file also uses (the file's policy wins).
pub(crate) fn set_platform_access_policies(
    access: &AccessPolicies,
    tunnel: &Tunnel,
    policies: Vec<PolicyConfig>,
) -> Vec<String> {
    let (changed, clashes) = access.set_platform_policies(policies);
    if changed {
        info!("platform access policies applied");
        after_policy_change(access, tunnel);
    }
    clashes
}

/// Applies a new `[access]` section (reload): new streams see it at once.
pub(crate) fn set_config(access: &AccessPolicies, tunnel: &Tunnel, config: AccessSection) {
    if access.set_config(config) {
        info!("access policy reloaded");
        after_policy_change(access, tunnel);
    }
}

/// The command `causeway unlink CLUSTER` proposes: deny the cluster's issuer
/// (`issuer`, the fingerprint the catalog holds for it; this also removes the
/// cluster) when the catalog knows it, else only remove it.
pub(crate) fn unlink_command(cluster: &ClusterName, issuer: Option<String>) -> Command {
    match issuer {
        Some(fingerprint) => Command::DenyIssuer {
            cluster: cluster.clone(),
            fingerprint,
        },
        None => Command::RemoveCluster {
            cluster: cluster.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PolicyConfig;
    use causeway_policy::AccessPolicy;
    use causeway_registry::{Protocol, Revision, ServicePort};

    fn cluster(name: &str) -> ClusterName {
        name.parse().expect("valid cluster name")
    }

    fn export(from: &str, ports: &[u16], labels: &[(&str, &str)]) -> Export {
        Export {
            cluster: cluster(from),
            service: "shop/web".parse().expect("valid key"),
            ports: ports
                .iter()
                .map(|p| ServicePort {
                    name: format!("p{p}"),
                    protocol: Protocol::Tcp,
                    port: *p,
                })
                .collect(),
            endpoints: 1,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            weight: 100,
            slots: None,
        }
    }

    fn east() -> AccessPolicies {
        AccessPolicies::new(cluster("east"), AccessSection::default(), Arc::default())
    }

    fn put_policy(name: &str, ports: Vec<u16>) -> Change {
        Change::PolicyPut(AccessPolicy {
            name: name.parse().expect("valid name"),
            action: PolicyAction::Allow,
            from_clusters: vec![cluster("east")],
            to_cluster: Some(cluster("west")),
            to_namespace: Some("shop".into()),
            to_service: None,
            to_labels: BTreeMap::new(),
            ports,
        })
    }

    fn change(revision: u64, changes: Vec<Change>) -> CatalogChange {
        CatalogChange {
            revision: Revision(revision),
            changes,
        }
    }

    #[test]
    fn an_export_no_policy_allows_becomes_a_delete_with_a_reason() {
        let access = east();
        let put = change(1, vec![Change::ExportPut(export("west", &[80], &[]))]);
        let filtered = access.filter_change(&put).expect("hidden");
        assert!(matches!(
            &filtered.changes[0],
            Change::ExportDeleted { cluster, .. } if cluster.as_str() == "west"
        ));
        let status = access.status();
        assert_eq!(status.hidden_imports.len(), 1);
        assert!(
            status.hidden_imports[0]
                .reason
                .contains("denied by the federation default"),
            "{:?}",
            status.hidden_imports
        );
        // The export leaving the catalog clears the reason.
        let gone = change(
            2,
            vec![Change::ExportDeleted {
                cluster: cluster("west"),
                service: "shop/web".parse().expect("valid key"),
            }],
        );
        assert!(access.filter_change(&gone).is_none());
        assert!(access.status().hidden_imports.is_empty());
    }

    #[test]
    fn only_the_allowed_ports_are_imported() {
        let access = east();
        access.observe(&CatalogEvent::Change(change(
            1,
            vec![put_policy("east-http", vec![80])],
        )));
        let put = change(2, vec![Change::ExportPut(export("west", &[80, 443], &[]))]);
        let filtered = access.filter_change(&put).expect("port 443 hidden");
        let Change::ExportPut(visible) = &filtered.changes[0] else {
            panic!("still a put: {filtered:?}");
        };
        assert_eq!(visible.ports.len(), 1);
        assert_eq!(visible.ports[0].port, 80);
    }

    #[test]
    fn the_exporting_side_checks_labels_of_its_own_exports() {
        let exports = Arc::new(Mutex::new(vec![ExportConfig {
            namespace: "shop".into(),
            name: "web".into(),
            ports: Vec::new(),
            endpoints: Vec::new(),
            weight: 100,
            labels: [("tier".to_owned(), "public".to_owned())].into(),
        }]));
        let config = AccessSection {
            policies: vec![PolicyConfig {
                name: "public".into(),
                action: PolicyAction::Allow,
                from: vec!["*".into()],
                namespace: None,
                service: None,
                labels: [("tier".to_owned(), "public".to_owned())].into(),
                ports: Vec::new(),
            }],
            ..AccessSection::default()
        };
        let access = AccessPolicies::new(cluster("west"), config, exports);
        let web = ServiceTarget::new("shop", "web", 80);
        let api = ServiceTarget::new("shop", "api", 80);
        assert_eq!(access.check(&cluster("east"), &web), Ok(()));
        let denied = access.check(&cluster("east"), &api).unwrap_err();
        assert!(denied.contains("federation default"), "{denied}");
    }

    #[test]
    fn exports_outside_the_config_are_checked_with_their_published_labels() {
        let config = AccessSection {
            policies: vec![PolicyConfig {
                name: "public".into(),
                action: PolicyAction::Allow,
                from: vec!["*".into()],
                namespace: None,
                service: None,
                labels: [("tier".to_owned(), "public".to_owned())].into(),
                ports: Vec::new(),
            }],
            ..AccessSection::default()
        };
        let access = AccessPolicies::new(cluster("west"), config, Arc::default());
        let web = ServiceTarget::new("shop", "web", 80);
        assert!(access.check(&cluster("east"), &web).is_err());
        let published = export("west", &[80], &[("tier", "public")]);
        access.observe(&CatalogEvent::Change(change(
            1,
            vec![Change::ExportPut(published)],
        )));
        assert_eq!(access.check(&cluster("east"), &web), Ok(()));
    }

    #[test]
    fn own_catalog_policies_stay_in_force_until_the_platform_first_delivers() {
        let access = AccessPolicies::new(cluster("west"), AccessSection::default(), Arc::default());
        access.await_platform_policies();
        // Published from an `AccessPolicy` object before a restart.
        let published = put_policy("west-east-web", Vec::new());
        access.observe(&CatalogEvent::Change(change(1, vec![published])));
        let web = ServiceTarget::new("shop", "web", 80);
        assert_eq!(access.check(&cluster("east"), &web), Ok(()));

        // The object was deleted while the gateway was down.
        let (changed, clashes) = access.set_platform_policies(Vec::new());
        assert!(changed && clashes.is_empty());
        assert!(access.check(&cluster("east"), &web).is_err());
        access.await_platform_policies();
        assert!(
            access.check(&cluster("east"), &web).is_err(),
            "once delivered, the platform's set is what counts"
        );
    }

    #[test]
    fn the_config_wins_over_the_catalogs_copy_of_its_own_policies() {
        let access = AccessPolicies::new(cluster("west"), AccessSection::default(), Arc::default());
        // The catalog still holds a policy this gateway published before a reload
        // removed it.
        let mut stale = put_policy("west-old", Vec::new());
        if let Change::PolicyPut(p) = &mut stale {
            p.from_clusters.clear();
        }
        access.observe(&CatalogEvent::Change(change(1, vec![stale])));
        let web = ServiceTarget::new("shop", "web", 80);
        assert!(access.check(&cluster("east"), &web).is_err());
    }
}
