//! One problem found in a configuration or a spec: where, and what is wrong.
//!
//! Every validation in the workspace reports [`Problem`]s: the gateway's TOML, the
//! mirror's settings, CRD specs, policies. Validations collect all of them rather
//! than stopping at the first, so an operator fixes a file in one pass.

use std::fmt;

/// One problem: the key path, the line in the file when known, and the message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub struct Problem {
    /// Key path, e.g. `traffic_policy[0].retries.attempts` or `spec.applyTo[1]`.
    pub path: String,
    /// 1-based line in the file, when the key is in a file.
    pub line: Option<usize>,
    /// What is wrong, for a person.
    pub message: String,
}

impl Problem {
    /// A problem at `path`, with no line.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            line: None,
            message: message.into(),
        }
    }

    /// The same problem with its key path under `prefix` (`prefix.path`; `prefix`
    /// alone when the path is empty).
    pub fn under(mut self, prefix: &str) -> Self {
        self.path = join(prefix, &self.path);
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {line}): {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// `prefix.key`, or either alone when the other is empty.
fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty()) {
        (true, _) => key.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}.{key}"),
    }
}

/// Collects the problems of one validation under a common key prefix.
#[derive(Debug, Default)]
pub struct Problems {
    prefix: String,
    list: Vec<Problem>,
}

impl Problems {
    /// An empty collection whose keys go under `prefix` (may be empty).
    pub fn under(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            list: Vec::new(),
        }
    }

    /// Records a problem at `key` (relative to the prefix).
    pub fn push(&mut self, key: &str, message: impl Into<String>) {
        self.list
            .push(Problem::new(join(&self.prefix, key), message));
    }

    /// The problems, in the order found.
    pub fn into_vec(self) -> Vec<Problem> {
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_and_lines_show() {
        let mut problems = Problems::under("traffic_policy[0]");
        problems.push("retries.attempts", "0 is not in 1..=10");
        let list = problems.into_vec();
        assert_eq!(list[0].path, "traffic_policy[0].retries.attempts");
        assert_eq!(
            Problem::new("weights", "empty").under("p").to_string(),
            "p.weights: empty"
        );
        let located = Problem {
            line: Some(3),
            ..Problem::new("cluster", "missing")
        };
        assert_eq!(located.to_string(), "cluster (line 3): missing");
        assert_eq!(Problem::new("", "x").under("spec").path, "spec");
    }
}
