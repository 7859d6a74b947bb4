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

/// The longest reason a refusal gives, in bytes: what a person reads, not
/// a place for data. Longer reasons are cut at a character's boundary.
pub const MAX_REASON_BYTES: usize = 2048;

/// A refusal: its kind and a reason for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub reason: String,
}

impl Refusal {
    /// A refusal of `kind`, its reason cut to [`MAX_REASON_BYTES`], so
    /// that it fits in the answer of any call.
    pub fn new(kind: RefusalKind, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.len() > MAX_REASON_BYTES {
            const CUT: &str = " [cut]";
            let mut end = MAX_REASON_BYTES - CUT.len();
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push_str(CUT);
        }
        Self { kind, reason }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_reason_is_cut_at_a_character_boundary() {
        let short = Refusal::failed("no such task");
        assert_eq!(short.reason, "no such task");
        let long = Refusal::failed("é".repeat(MAX_REASON_BYTES));
        assert!(
            long.reason.len() <= MAX_REASON_BYTES,
            "{}",
            long.reason.len()
        );
        assert!(long.reason.ends_with(" [cut]"));
        assert!(long.reason.starts_with("éé"));
    }
}
