//! Status conditions as the API conventions want them: one per type, and a
//! `lastTransitionTime` that moves only when the status does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::chrono::Utc;

/// A condition's status value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Status {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// A condition the controller wants to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub(crate) type_: &'static str,
    pub(crate) status: Status,
    pub(crate) reason: String,
    pub(crate) message: String,
}

impl Wanted {
    pub(crate) fn new(
        type_: &'static str,
        status: impl Into<Status>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The conditions to write: exactly `wanted`, in that order, each keeping the
/// `lastTransitionTime` of the `old` condition of its type when the status did not
/// change. Conditions of other types are dropped: they described a state the object
/// is no longer in.
pub(crate) fn merge(
    old: &[Condition],
    wanted: Vec<Wanted>,
    generation: Option<i64>,
) -> Vec<Condition> {
    let now = Time(Utc::now());
    wanted
        .into_iter()
        .map(|w| {
            let status = w.status.as_str();
            let last_transition_time = old
                .iter()
                .find(|c| c.type_ == w.type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: w.type_.to_owned(),
                status: status.to_owned(),
                reason: w.reason,
                message: w.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::chrono::{TimeZone, Utc};

    fn at(secs: i64) -> Time {
        Time(
            Utc.timestamp_opt(secs, 0)
                .single()
                .expect("a valid timestamp"),
        )
    }

    fn condition(type_: &str, status: &str, time: Time) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "Before".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: time,
        }
    }

    #[test]
    fn unchanged_status_keeps_its_transition_time() {
        let old = [condition("Ready", "True", at(1000))];
        let new = merge(
            &old,
            vec![Wanted::new("Ready", true, "Exported", "ok")],
            Some(2),
        );
        assert_eq!(new[0].last_transition_time, at(1000));
        assert_eq!(new[0].reason, "Exported");
        assert_eq!(new[0].observed_generation, Some(2));
    }

    #[test]
    fn changed_status_gets_a_new_transition_time() {
        let old = [condition("Ready", "True", at(1000))];
        let new = merge(
            &old,
            vec![Wanted::new("Ready", false, "Pending", "")],
            Some(1),
        );
        assert_eq!(new[0].status, "False");
        assert!(new[0].last_transition_time.0 > at(1000).0);
    }

    #[test]
    fn only_wanted_types_remain_in_order() {
        let old = [
            condition("Conflict", "False", at(5)),
            condition("Valid", "True", at(5)),
        ];
        let new = merge(
            &old,
            vec![
                Wanted::new("Valid", false, "NoService", ""),
                Wanted::new("Ready", Status::Unknown, "Invalid", ""),
            ],
            None,
        );
        let types: Vec<&str> = new.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Valid", "Ready"]);
        assert_eq!(new[1].status, "Unknown");
    }
}
