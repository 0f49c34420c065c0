//! Checks the JSON lines of `causeway registry watch`: revisions in order, without
//! gaps; a snapshot only as the first event after a (re)connect.

use anyhow::{Result, bail};

/// What one watch stream saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchSummary {
    /// Change events.
    pub changes: u64,
    /// Snapshot events.
    pub snapshots: u64,
    /// Reconnects after a broken stream.
    pub reconnects: u64,
    /// The last revision seen.
    pub last: u64,
}

/// Checks the watch output `log` (other lines are ignored) started from revision 0.
pub fn check_watch(log: &str) -> Result<WatchSummary> {
    let mut summary = WatchSummary::default();
    let mut fresh = true;
    for (n, line) in log.lines().enumerate() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let revision = event["revision"].as_u64();
        match (event["kind"].as_str(), revision) {
            (Some("reconnect"), _) => {
                summary.reconnects += 1;
                fresh = true;
                continue;
            }
            (Some("change"), Some(r)) => {
                if r != summary.last + 1 {
                    bail!(
                        "line {}: change to revision {r} after revision {}",
                        n + 1,
                        summary.last
                    );
                }
                summary.changes += 1;
                summary.last = r;
            }
            (Some("snapshot"), Some(r)) => {
                if !fresh {
                    bail!("line {}: snapshot at {r} in the middle of a stream", n + 1);
                }
                if r < summary.last {
                    bail!(
                        "line {}: snapshot at {r} goes back from revision {}",
                        n + 1,
                        summary.last
                    );
                }
                summary.snapshots += 1;
                summary.last = r;
            }
            _ => continue,
        }
        fresh = false;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_changes_and_a_snapshot_after_reconnect_pass() {
        let log = r#"{"revision":1,"kind":"change"}
{"revision":2,"kind":"change"}
a log line
{"kind":"reconnect","from":2,"error":"gone"}
{"revision":7,"kind":"snapshot"}
{"revision":8,"kind":"change"}
"#;
        let s = check_watch(log).unwrap();
        assert_eq!(
            s,
            WatchSummary {
                changes: 3,
                snapshots: 1,
                reconnects: 1,
                last: 8
            }
        );
    }

    #[test]
    fn gaps_repeats_and_stray_snapshots_fail() {
        let gap = "{\"revision\":1,\"kind\":\"change\"}\n{\"revision\":3,\"kind\":\"change\"}\n";
        assert!(check_watch(gap).is_err());
        let repeat = "{\"revision\":1,\"kind\":\"change\"}\n{\"revision\":1,\"kind\":\"change\"}\n";
        assert!(check_watch(repeat).is_err());
        let stray =
            "{\"revision\":1,\"kind\":\"change\"}\n{\"revision\":5,\"kind\":\"snapshot\"}\n";
        assert!(check_watch(stray).is_err());
        let back = "{\"revision\":4,\"kind\":\"snapshot\"}\n{\"kind\":\"reconnect\",\"from\":4}\n{\"revision\":2,\"kind\":\"snapshot\"}\n";
        assert!(check_watch(back).is_err());
    }
}
