//! The checks every written form of an access rule gets (`[[access.policy]]`, the
//! `AccessPolicy` CRD), with the bounds in one place.

use std::collections::BTreeMap;

use causeway_trust::{ClusterName, validate_label};

use crate::Problem;

/// Most calling clusters one rule names: more than a federation is designed for
/// (about 100), and `["*"]` names them all.
pub const MAX_POLICY_SOURCES: usize = 256;
/// Most labels one rule's selector requires: selectors name a few well-known
/// labels; every one is compared on every new stream.
pub const MAX_POLICY_LABELS: usize = 16;
/// Longest selector label key or value: a Kubernetes label name segment or value.
pub const MAX_POLICY_LABEL_LEN: usize = 63;
/// Most service ports one rule names: as many as one export may have.
pub const MAX_POLICY_PORTS: usize = 64;

/// An access rule as written, before it becomes an [`super::AccessPolicy`]: the
/// calling clusters (names or `*`) and what it applies to.
#[derive(Debug, Clone, Copy)]
pub struct RuleText<'a> {
    /// Calling clusters: cluster names, or `*` for every cluster.
    pub from: &'a [String],
    /// Namespace it applies to.
    pub namespace: Option<&'a str>,
    /// Service it applies to.
    pub service: Option<&'a str>,
    /// Labels the export must carry.
    pub labels: &'a BTreeMap<String, String>,
    /// Service ports.
    pub ports: &'a [u16],
}

/// Where each part of a [`RuleText`] is written, relative to the rule, for the
/// problems' paths.
#[derive(Debug, Clone, Copy)]
pub struct RuleFields {
    /// Key of the calling clusters, e.g. `from`.
    pub from: &'static str,
    /// Key of the namespace, e.g. `to.namespace`.
    pub namespace: &'static str,
    /// Key of the service.
    pub service: &'static str,
    /// Key of the label selector.
    pub labels: &'static str,
    /// Key of the ports.
    pub ports: &'static str,
}

impl RuleText<'_> {
    /// Every problem of the rule written at `prefix`, each at its field's path.
    pub fn validate(&self, prefix: &str, fields: &RuleFields) -> Vec<Problem> {
        let mut problems = Vec::new();
        self.sources(fields.from, &mut problems);
        for (key, value, what) in [
            (fields.namespace, self.namespace, "namespace"),
            (fields.service, self.service, "service name"),
        ] {
            if let Some(value) = value
                && let Err(e) = validate_label(what, value)
            {
                problems.push(Problem::new(key, e.to_string()));
            }
        }
        self.selector(fields, &mut problems);
        problems.into_iter().map(|p| p.under(prefix)).collect()
    }

    fn sources(&self, path: &str, problems: &mut Vec<Problem>) {
        if self.from.is_empty() {
            let message = "name the calling clusters, or [\"*\"] for every cluster";
            problems.push(Problem::new(path, message));
        }
        if self.from.len() > MAX_POLICY_SOURCES {
            let message = format!("{} clusters; at most {MAX_POLICY_SOURCES}", self.from.len());
            problems.push(Problem::new(path, message));
        }
        for (i, from) in self.from.iter().enumerate() {
            if from != "*"
                && let Err(e) = from.parse::<ClusterName>()
            {
                problems.push(Problem::new(format!("{path}[{i}]"), e.to_string()));
            }
        }
    }

    fn selector(&self, at: &RuleFields, problems: &mut Vec<Problem>) {
        selector(self.labels, self.ports, at, problems);
    }
}

/// Checks a label selector and a port list: their sizes, each label's key and
/// value, each port.
fn selector(
    labels: &BTreeMap<String, String>,
    ports: &[u16],
    at: &RuleFields,
    problems: &mut Vec<Problem>,
) {
    if labels.len() > MAX_POLICY_LABELS {
        let message = format!("{} labels; at most {MAX_POLICY_LABELS}", labels.len());
        problems.push(Problem::new(at.labels, message));
    }
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.len() <= MAX_POLICY_LABEL_LEN
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
        let value_ok =
            v.len() <= MAX_POLICY_LABEL_LEN && v.bytes().all(|b| (0x20..0x7f).contains(&b));
        if !(key_ok && value_ok) {
            // The key names the entry, cut short: the problem stays small whatever
            // was sent.
            let key: String = k.chars().take(MAX_POLICY_LABEL_LEN).collect();
            problems.push(Problem::new(
                format!("{}.{key}", at.labels),
                "label keys must be 1-63 letters, digits, '-', '_', '.', '/', and values 0-63 printable ASCII characters",
            ));
        }
    }
    if ports.len() > MAX_POLICY_PORTS {
        let message = format!("{} ports; at most {MAX_POLICY_PORTS}", ports.len());
        problems.push(Problem::new(at.ports, message));
    }
    if ports.contains(&0) {
        problems.push(Problem::new(at.ports, "0 is not a port"));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = ports.iter().find(|p| !seen.insert(**p)) {
        problems.push(Problem::new(at.ports, format!("{twice} is listed twice")));
    }
}

/// Where each part of a policy record is, for the problems' paths.
const RECORD_FIELDS: RuleFields = RuleFields {
    from: "from_clusters",
    namespace: "to_namespace",
    service: "to_service",
    labels: "to_labels",
    ports: "ports",
};

impl super::AccessPolicy {
    /// Every problem of a policy record, the form the catalog stores (an empty
    /// `from_clusters` means every cluster), with the same bounds as a written
    /// rule; each at its field's path.
    pub fn validate(&self) -> Vec<Problem> {
        let at = &RECORD_FIELDS;
        let mut problems = Vec::new();
        if self.from_clusters.len() > MAX_POLICY_SOURCES {
            let n = self.from_clusters.len();
            let message = format!("{n} clusters; at most {MAX_POLICY_SOURCES}");
            problems.push(Problem::new(at.from, message));
        }
        for (key, value, what) in [
            (at.namespace, &self.to_namespace, "namespace"),
            (at.service, &self.to_service, "service name"),
        ] {
            if let Some(value) = value
                && let Err(e) = validate_label(what, value)
            {
                problems.push(Problem::new(key, e.to_string()));
            }
        }
        selector(&self.to_labels, &self.ports, at, &mut problems);
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: RuleFields = RuleFields {
        from: "from",
        namespace: "to.namespace",
        service: "to.service",
        labels: "to.labels",
        ports: "to.ports",
    };

    #[test]
    fn every_bad_part_is_named_at_its_path() {
        let from: Vec<String> = vec!["*".into(), "Not_A_Label".into()];
        let labels = BTreeMap::from([(String::new(), "x".into())]);
        let rule = RuleText {
            from: &from,
            namespace: Some("a b"),
            service: Some("web"),
            labels: &labels,
            ports: &[0],
        };
        let paths: Vec<String> = rule
            .validate("spec", &FIELDS)
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(
            paths,
            [
                "spec.from[1]",
                "spec.to.namespace",
                "spec.to.labels.",
                "spec.to.ports"
            ]
        );
        let many: Vec<String> = (0..=MAX_POLICY_SOURCES).map(|i| format!("c{i}")).collect();
        let none = BTreeMap::new();
        let wide = RuleText {
            from: &many,
            namespace: None,
            service: None,
            labels: &none,
            ports: &[],
        };
        let problems = wide.validate("", &FIELDS);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].to_string(), "from: 257 clusters; at most 256");
        let empty = RuleText { from: &[], ..wide };
        assert_eq!(empty.validate("p", &FIELDS)[0].path, "p.from");
    }

    #[test]
    fn a_record_gets_the_bounds_of_a_written_rule() {
        let mut record = crate::AccessPolicy {
            name: "p".parse().unwrap(),
            action: crate::PolicyAction::Allow,
            from_clusters: Vec::new(),
            to_cluster: None,
            to_namespace: Some("shop".into()),
            to_service: None,
            to_labels: BTreeMap::from([("tier".into(), "front".into())]),
            ports: vec![80, 443],
        };
        assert_eq!(record.validate(), []);
        record.ports = vec![80, 80];
        record.to_labels = (0..=MAX_POLICY_LABELS)
            .map(|i| (format!("k{i}"), "v\n".into()))
            .collect();
        record.to_namespace = Some("Shop".into());
        let problems: Vec<String> = record.validate().iter().map(ToString::to_string).collect();
        assert!(problems[0].starts_with("to_namespace: "), "{problems:?}");
        assert!(
            problems[1].starts_with("to_labels: 17 labels"),
            "{problems:?}"
        );
        assert!(problems[2].starts_with("to_labels.k0: "), "{problems:?}");
        assert_eq!(problems.last().unwrap(), "ports: 80 is listed twice");
    }
}
