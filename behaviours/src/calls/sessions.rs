//! Calls about sessions: long-lived containers the master starts on a
//! node, runs commands in, and removes. Master only, all of them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{call, tasks::OUTPUT_ANSWER, Call, ANSWER_WITHIN};
use crate::{codec::SMALL_ANSWER, tasks::TaskSpec};

/// The calls about sessions, as the wire carries them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SessionCall {
    Create(CreateSession),
    Exec(ExecInSession),
    Remove(RemoveSession),
}

impl SessionCall {
    /// The bound of this call's answer.
    pub fn max_answer(&self) -> usize {
        match self {
            Self::Create(call) => call.max_answer(),
            Self::Exec(call) => call.max_answer(),
            Self::Remove(call) => call.max_answer(),
        }
    }
}

/// Start a long-lived container named `name`; `spec.argv` must keep
/// running (empty: the image's own command).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateSession {
    pub name: String,
    pub spec: TaskSpec,
}

/// Run a command in a session and answer with its output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecInSession {
    pub name: String,
    pub argv: Vec<String>,
    pub timeout_ms: u64,
}

/// Remove a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveSession {
    pub name: String,
}

/// What a command run in a session said, as far as the owner's release
/// lets it leave: nothing but the exit code under review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    pub exit_code: Option<i64>,
    #[serde(with = "serde_bytes")]
    pub stdout: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub stderr: Vec<u8>,
    pub truncated: bool,
}

call!(CreateSession => super::Accepted, Sessions(SessionCall::Create), repeatable: false,
    max_answer: SMALL_ANSWER,
    /// Pulling nothing, but creating and starting a container.
    fn answer_within(&self) -> Duration {
        4 * ANSWER_WITHIN
    }
);
call!(ExecInSession => ExecOutput, Sessions(SessionCall::Exec), repeatable: false,
    max_answer: OUTPUT_ANSWER,
    /// The command's own timeout, and then the usual wait.
    fn answer_within(&self) -> Duration {
        Duration::from_millis(self.timeout_ms).saturating_add(ANSWER_WITHIN)
    }
);
call!(RemoveSession => super::Accepted, Sessions(SessionCall::Remove), repeatable: false,
    max_answer: SMALL_ANSWER);
