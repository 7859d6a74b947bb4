//! A job as the node that submitted it keeps it: what was asked, when, and
//! every task's last known state. This is the on-disk form
//! ([`super::store`], versioned there) and what the job's code reasons
//! about; the API shows a view made from it ([`JobRecord::view`]), so a
//! change to the REST answer is never a change to the files by accident.

use std::collections::BTreeMap;

use iris_behaviours::TaskState;
use serde::{Deserialize, Serialize};

use super::task_record::TaskRecord;
use crate::api_types::{self, JobRequest};

/// Where a job stands: running until every task has ended, then succeeded
/// if its quorum did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    #[default]
    Running,
    Succeeded,
    Failed,
}

impl From<JobState> for api_types::JobState {
    fn from(state: JobState) -> Self {
        match state {
            JobState::Running => Self::Running,
            JobState::Succeeded => Self::Succeeded,
            JobState::Failed => Self::Failed,
        }
    }
}

/// A job and every task's last known state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    /// Derived from the tasks; kept current by [`JobRecord::with_state`].
    /// Files of format 1 lack it at times.
    #[serde(default)]
    pub state: JobState,
    pub request: JobRequest,
    pub created_ms: u64,
    /// By node name.
    pub tasks: BTreeMap<String, TaskRecord>,
}

impl JobRecord {
    /// The job with its derived `state` filled in.
    pub fn with_state(mut self) -> Self {
        self.state = self.derived_state();
        self
    }

    pub fn finished(&self) -> bool {
        self.tasks.values().all(|t| t.state.is_terminal())
    }

    /// How many tasks must succeed: the request's quorum, or every task.
    pub fn quorum(&self) -> usize {
        self.request
            .quorum
            .map_or(self.tasks.len(), |quorum| quorum as usize)
    }

    fn derived_state(&self) -> JobState {
        let succeeded = self
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Succeeded)
            .count();
        if !self.finished() {
            JobState::Running
        } else if succeeded >= self.quorum() {
            JobState::Succeeded
        } else {
            JobState::Failed
        }
    }

    /// The job as the API shows it.
    pub fn view(&self) -> api_types::Job {
        api_types::Job {
            id: self.id.clone(),
            state: self.state.into(),
            request: self.request.clone(),
            created_ms: self.created_ms,
            tasks: self
                .tasks
                .iter()
                .map(|(name, task)| (name.clone(), task.view()))
                .collect(),
        }
    }
}
