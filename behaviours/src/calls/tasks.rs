//! Calls about tasks: the master asks a node to run one, to cancel it, and
//! for its logs; the node reports each new state back to the master.

use serde::{Deserialize, Serialize};

use super::{call, Call};
use crate::{
    codec::SMALL_ANSWER,
    tasks::{TaskReport, TaskSpec, MAX_LOG_CHUNK},
};

/// The calls about tasks, as the wire carries them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TaskCall {
    Run(RunTask),
    Cancel(CancelTask),
    Update(TaskUpdate),
    Logs(FetchLogs),
}

/// "Run this task here"; only the network's master may ask another node.
/// Accepted once queued; progress comes back as [`TaskUpdate`]s.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunTask {
    pub spec: TaskSpec,
}

/// Stop a task this node runs for the caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CancelTask {
    pub job_id: String,
}

impl TaskCall {
    /// The bound of this call's answer.
    pub fn max_answer(&self) -> usize {
        match self {
            Self::Run(call) => call.max_answer(),
            Self::Cancel(call) => call.max_answer(),
            Self::Update(call) => call.max_answer(),
            Self::Logs(call) => call.max_answer(),
        }
    }
}

/// A task's new state, sent by the node running it to the node that asked
/// for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskUpdate {
    pub report: TaskReport,
}

/// The task's output from the given offsets on; only the master asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchLogs {
    pub job_id: String,
    pub stdout_offset: u64,
    pub stderr_offset: u64,
}

/// "Done as asked": the answer of a call that has nothing else to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted;

/// A task's output from the offsets asked for, at most
/// [`crate::tasks::MAX_LOG_CHUNK`] bytes of each stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logs {
    #[serde(with = "serde_bytes")]
    pub stdout: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub stderr: Vec<u8>,
}

/// The bound of an answer carrying two streams of output ([`Logs`], a
/// session's `ExecOutput`): each at most [`MAX_LOG_CHUNK`], and room for
/// the rest.
pub const OUTPUT_ANSWER: usize = 2 * MAX_LOG_CHUNK + SMALL_ANSWER;

call!(RunTask => Accepted, Tasks(TaskCall::Run), repeatable: false, max_answer: SMALL_ANSWER);
call!(CancelTask => Accepted, Tasks(TaskCall::Cancel), repeatable: true, max_answer: SMALL_ANSWER);
call!(TaskUpdate => Accepted, Tasks(TaskCall::Update), repeatable: true, max_answer: SMALL_ANSWER);
call!(FetchLogs => Logs, Tasks(TaskCall::Logs), repeatable: true, max_answer: OUTPUT_ANSWER);
