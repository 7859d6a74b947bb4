//! One node's part of a job, as the node that submitted the job keeps it
//! (inside its [`super::record::JobRecord`]).

use iris_behaviours::{libp2p::PeerId, TaskState};
use serde::{Deserialize, Serialize};

use crate::api_types;

/// A task's last known state, from the reports of the node that runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    pub node: String,
    pub peer_id: PeerId,
    pub state: TaskState,
    pub exit_code: Option<i64>,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub outputs: Vec<String>,
    /// More files were written than a report carries; `outputs` lists the
    /// first of them.
    #[serde(default)]
    pub outputs_truncated: bool,
    pub error: Option<String>,
    /// The image it ran, as the engine's id (`sha256:...`).
    #[serde(default)]
    pub image_id: Option<String>,
    /// Why its outputs are not listed (held, denied, or aggregate only).
    #[serde(default)]
    pub held: Option<String>,
    /// Output names that are not UTF-8, escaped: never gathered.
    #[serde(default)]
    pub unnamed_outputs: Vec<String>,
}

impl TaskRecord {
    /// A task just handed to `node`.
    pub fn queued(node: String, peer_id: PeerId) -> Self {
        Self {
            node,
            peer_id,
            state: TaskState::Queued,
            exit_code: None,
            started_ms: None,
            finished_ms: None,
            outputs: Vec::new(),
            outputs_truncated: false,
            error: None,
            image_id: None,
            held: None,
            unnamed_outputs: Vec::new(),
        }
    }

    /// The task as the API shows it.
    pub fn view(&self) -> api_types::Task {
        api_types::Task {
            node: self.node.clone(),
            peer_id: self.peer_id,
            state: self.state,
            exit_code: self.exit_code,
            started_ms: self.started_ms,
            finished_ms: self.finished_ms,
            outputs: self.outputs.clone(),
            outputs_truncated: self.outputs_truncated,
            error: self.error.clone(),
            image_id: self.image_id.clone(),
            held: self.held.clone(),
            unnamed_outputs: self.unnamed_outputs.clone(),
        }
    }
}
