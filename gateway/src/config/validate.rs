//! The semantic checks of a whole gateway configuration, one function per section.

use std::collections::HashSet;
use std::time::Duration;

use causeway_policy::Problem;
use causeway_trust::validate_label;

use super::{ExportConfig, GatewayConfig, MAX_ENDPOINTS, MAX_EXPORTS, PortConfig, traffic};

impl GatewayConfig {
    /// Every semantic problem, each with its key path.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = self.timers();
        problems.extend(self.addresses());
        for component in [
            self.tunnel.validate().err().map(|e| e.problems),
            self.dns.validate().err().map(|e| e.problems),
            self.imports.validate().err().map(|e| e.problems),
        ] {
            problems.extend(component.into_iter().flatten());
        }
        problems.extend(self.exports_problems());
        problems.extend(self.access.validate(&self.cluster));
        problems.extend(self.kubernetes.validate());
        problems.extend(traffic::validate(&self.traffic_policies));
        problems
    }

    /// `[trust]` and `[registry]` timers.
    fn timers(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.trust.leaf_lifetime < Duration::from_secs(60) {
            problems.push(Problem::new(
                "trust.leaf_lifetime",
                "must be at least 1m: renewal needs time to happen",
            ));
        }
        if self.registry.election_timeout < Duration::from_millis(100) {
            problems.push(Problem::new(
                "registry.election_timeout",
                "must be at least 100ms or elections thrash",
            ));
        }
        let seat_lost = self.registry.election_timeout * 10;
        if self.registry.replica_grace < seat_lost {
            problems.push(Problem::new(
                "registry.replica_grace",
                format!(
                    "{} is shorter than 10 election timeouts ({}): a replica would leave the list before its registry seat is handed over",
                    humantime::format_duration(self.registry.replica_grace),
                    humantime::format_duration(seat_lost)
                ),
            ));
        }
        problems
    }

    /// Listen and advertised addresses: a wildcard listener needs an address to
    /// advertise, and two listeners cannot share one address.
    fn addresses(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let wildcards = [
            ("registry", self.advertise.registry, self.registry.listen),
            ("tunnel", self.advertise.tunnel, self.tunnel.listen),
        ];
        for (what, advertised, listen) in wildcards {
            if advertised.is_none() && listen.ip().is_unspecified() {
                problems.push(Problem::new(
                    format!("advertise.{what}"),
                    format!("required because {what}.listen {listen} is a wildcard address"),
                ));
            }
        }
        let (registry, admin) = (self.registry.listen, self.admin.listen);
        if registry == admin && registry.port() != 0 {
            problems.push(Problem::new(
                "admin.listen",
                format!("{admin} is also registry.listen"),
            ));
        }
        problems
    }

    /// The `[[export]]` list: its size, each export, no service twice.
    fn exports_problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.exports.len() > MAX_EXPORTS {
            let message = format!("{} exports; at most {MAX_EXPORTS}", self.exports.len());
            problems.push(Problem::new("export", message));
        }
        let mut seen = HashSet::new();
        for (i, export) in self.exports.iter().enumerate() {
            let at = format!("export[{i}]");
            if !seen.insert((&export.namespace, &export.name)) {
                let message = format!("{}/{} is exported twice", export.namespace, export.name);
                problems.push(Problem::new(format!("{at}.name"), message));
            }
            problems.extend(export.validate().into_iter().map(|p| p.under(&at)));
        }
        problems
    }
}

impl ExportConfig {
    /// Every problem of one export, at paths relative to it.
    pub(crate) fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (key, what, value) in [
            ("namespace", "namespace", &self.namespace),
            ("name", "service name", &self.name),
        ] {
            if let Err(e) = validate_label(what, value) {
                problems.push(Problem::new(key, e.to_string()));
            }
        }
        if self.ports.is_empty() {
            problems.push(Problem::new("ports", "an export needs at least one port"));
        }
        if self.endpoints.len() > MAX_ENDPOINTS {
            let message = format!(
                "{} endpoints; at most {MAX_ENDPOINTS}",
                self.endpoints.len()
            );
            problems.push(Problem::new("endpoints", message));
        }
        if self.weight == 0 || self.weight > 10_000 {
            let message = format!("{} is not in 1..=10000", self.weight);
            problems.push(Problem::new("weight", message));
        }
        let mut numbers = HashSet::new();
        for (j, port) in self.ports.iter().enumerate() {
            let named = self.ports.len() == 1 || port.name.is_some();
            let of_port = port.validate(&mut numbers, named);
            problems.extend(of_port.into_iter().map(|p| p.under(&format!("ports[{j}]"))));
        }
        for (k, v) in &self.labels {
            if k.is_empty() || k.len() > 63 || v.len() > 63 {
                problems.push(Problem::new(
                    format!("labels.{k}"),
                    "label keys must be 1-63 and values 0-63 characters",
                ));
            }
        }
        problems
    }
}

impl PortConfig {
    /// Every problem of one port of an export; `numbers` holds the export's port
    /// numbers seen so far, and `named` says whether its name requirement is met.
    fn validate(&self, numbers: &mut HashSet<u64>, named: bool) -> Vec<Problem> {
        let mut problems = Vec::new();
        if !(1..=65535).contains(&self.port) {
            problems.push(Problem::new("port", format!("{} is not a port", self.port)));
        } else if !numbers.insert(self.port) {
            let message = format!("port {} is listed twice", self.port);
            problems.push(Problem::new("port", message));
        }
        if let Some(t) = self.target_port
            && !(1..=65535).contains(&t)
        {
            problems.push(Problem::new("target_port", format!("{t} is not a port")));
        }
        if self.protocol != "tcp" {
            let message = format!(
                "{:?} is not supported; the tunnel carries \"tcp\"",
                self.protocol
            );
            problems.push(Problem::new("protocol", message));
        }
        if let Some(name) = &self.name
            && let Err(e) = validate_label("port name", name)
        {
            problems.push(Problem::new("name", e.to_string()));
        }
        if !named {
            let message = "required when an export has more than one port";
            problems.push(Problem::new("name", message));
        }
        problems
    }
}
