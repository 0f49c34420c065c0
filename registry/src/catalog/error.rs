//! Why a command was refused.

use serde::{Deserialize, Serialize};

/// Why a command was refused. Nothing in the catalog changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CommandError {
    /// A field is malformed or out of bounds.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, as a path such as `exports[3].ports[0].port`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The command refers to something the catalog does not hold.
    #[error("{what} does not exist")]
    NotFound {
        /// What was missing, e.g. `cluster west`.
        what: String,
    },
    /// Applying the command would exceed a catalog-wide limit.
    #[error("limit reached: {0}")]
    LimitReached(String),
}

impl CommandError {
    /// An [`CommandError::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CommandError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// At most 64 characters of hostile text, so an error message stays small.
pub(super) fn truncated(text: &str) -> String {
    let mut out: String = text.chars().take(64).collect();
    if out.len() < text.len() {
        out.push_str("...");
    }
    out
}
