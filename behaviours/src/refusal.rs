//! Why a node refused a request: a kind the asker acts on, and a reason
//! for people. Answers to calls and to membership requests, and chunk
//! streams, all carry refusals.

use serde::{Deserialize, Serialize};

/// Why a node refused a request, so the asker can act on the cause (and
/// the REST API answer with the right status) without reading the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// The asker may not ask this (not the master, not its job).
    Forbidden,
    /// Too much is going on; try again later.
    Busy,
    /// The request itself is wrong.
    Invalid,
    /// What it names does not exist here.
    NotFound,
    /// The request was fine, but carrying it out failed here.
    Failed,
}

/// A refusal: its kind and a reason for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub reason: String,
}

impl Refusal {
    pub fn new(kind: RefusalKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }

    pub fn invalid(reason: impl Into<String>) -> Self {
        Self::new(RefusalKind::Invalid, reason)
    }

    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(RefusalKind::Forbidden, reason)
    }

    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(RefusalKind::NotFound, reason)
    }

    pub fn failed(reason: impl Into<String>) -> Self {
        Self::new(RefusalKind::Failed, reason)
    }
}
