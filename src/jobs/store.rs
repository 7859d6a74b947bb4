//! The jobs this node submitted, with every task's last known state, saved
//! one file per job in `DIR/jobs/<id>.json` so they survive a restart.
//!
//! Each file names its format ([`JOB_FORMAT`]); a file without one was
//! written before formats were numbered (format 1) and is read as such. A
//! file from a newer Iris is left as it is, and named in the log, rather
//! than read wrongly or written over.

use std::{collections::BTreeMap, path::PathBuf, sync::Mutex};

use iris_behaviours::{libp2p::PeerId, TaskReport, TaskState};

pub use super::{
    record::{JobRecord, JobState},
    task_record::TaskRecord,
};
pub use crate::api_types::{JobRequest, RoundId};

/// The format of the job files this version writes.
pub const JOB_FORMAT: u32 = 2;

/// A job file as written: its format, then the job's fields.
#[derive(serde::Serialize)]
struct JobFileOut<'a> {
    format: u32,
    #[serde(flatten)]
    job: &'a JobRecord,
}

fn first_format() -> u32 {
    1
}

/// Reads a job file of any format this version knows, as a job of today's
/// shape.
fn read_job_file(bytes: &[u8]) -> Result<JobRecord, String> {
    // The format first, so a newer file is named as newer rather than as
    // broken, whatever its fields became.
    #[derive(serde::Deserialize)]
    struct Format {
        #[serde(default = "first_format")]
        format: u32,
    }
    let Format { format } = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if format > JOB_FORMAT {
        return Err(format!(
            "it is in format {format}, from a newer Iris; this one reads formats 1 to {JOB_FORMAT}"
        ));
    }
    // Formats 1 and 2 differ only in the number, which a job ignores:
    // format 1 lacks the job's state at times, and it is derived anew from
    // the tasks either way.
    let job: JobRecord = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(job.with_state())
}

/// The jobs in memory, each saved after every change. The map's lock is
/// never held across I/O: a save takes `writes` (an async lock), then
/// writes the job as it stands at that moment, on a blocking thread. So the
/// last save of a job always writes its latest state, whatever the order
/// in which concurrent saves run.
pub struct JobStore {
    dir: PathBuf,
    jobs: Mutex<BTreeMap<String, JobRecord>>,
    writes: tokio::sync::Mutex<()>,
}

impl JobStore {
    /// Loads every saved job; a file that cannot be read is reported and
    /// left where it is.
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut jobs = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| read_job_file(&bytes))
            {
                Ok(job) => {
                    jobs.insert(job.id.clone(), job);
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), "ignoring an unreadable job record: {e}")
                }
            }
        }
        Ok(Self {
            dir,
            jobs: Mutex::new(jobs),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    /// Writes job `id` as it stands now.
    async fn save(&self, id: &str) {
        let _writing = self.writes.lock().await;
        let Some(job) = self.jobs.lock().expect("lock").get(id).cloned() else {
            return;
        };
        let path = self.dir.join(format!("{id}.json"));
        let written = tokio::task::spawn_blocking(move || {
            let file = JobFileOut {
                format: JOB_FORMAT,
                job: &job.with_state(),
            };
            let json = serde_json::to_vec_pretty(&file).expect("jobs serialize");
            crate::store::write_private(&path, &json).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(e) = written {
            tracing::error!(job = %id, "cannot save job: {e}");
        }
    }

    /// Keeps a new job, unless it names a round that another job already
    /// has: then nothing is kept, and the error is that job's id. (Checked
    /// and kept under one lock, so two submissions of a round at once
    /// cannot both win.)
    pub async fn insert(&self, job: JobRecord) -> Result<(), String> {
        let id = job.id.clone();
        {
            let mut jobs = self.jobs.lock().expect("lock");
            if let Some(holder) = job.request.round.as_ref().and_then(|r| holder_of(&jobs, r)) {
                return Err(holder);
            }
            jobs.insert(id.clone(), job);
        }
        self.save(&id).await;
        Ok(())
    }

    /// The job that is `round`, if one is.
    pub fn round_holder(&self, round: &RoundId) -> Option<String> {
        holder_of(&self.jobs.lock().expect("lock"), round)
    }

    pub fn get(&self, id: &str) -> Option<JobRecord> {
        self.jobs
            .lock()
            .expect("lock")
            .get(id)
            .cloned()
            .map(JobRecord::with_state)
    }

    pub fn list(&self) -> Vec<JobRecord> {
        let mut jobs: Vec<JobRecord> = self
            .jobs
            .lock()
            .expect("lock")
            .values()
            .cloned()
            .map(JobRecord::with_state)
            .collect();
        jobs.sort_by_key(|j| j.created_ms);
        jobs
    }

    /// Changes one task with `change`, unless it has ended already (an end
    /// is final) or `change` declines (returns false). Returns the job if
    /// the task changed.
    pub async fn update_task(
        &self,
        id: &str,
        peer: PeerId,
        change: impl FnOnce(&mut TaskRecord) -> bool,
    ) -> Option<JobRecord> {
        let job = {
            let mut jobs = self.jobs.lock().expect("lock");
            let job = jobs.get_mut(id)?;
            let task = job.tasks.values_mut().find(|t| t.peer_id == peer)?;
            if task.state.is_terminal() || !change(task) {
                return None;
            }
            job.clone().with_state()
        };
        self.save(id).await;
        Some(job)
    }

    /// Applies a report from the node that runs the task. Reports travel
    /// independently and may arrive out of order: a task never goes back
    /// from running to queued.
    pub async fn apply(&self, peer: PeerId, report: TaskReport) -> Option<JobRecord> {
        let id = report.job_id.clone();
        if report.state.is_terminal() && self.ended_as(&id, peer) == Some(report.state) {
            return self.apply_release(peer, report).await;
        }
        self.update_task(&id, peer, |task| {
            if task.state == TaskState::Running && report.state == TaskState::Queued {
                return false;
            }
            task.state = report.state;
            task.exit_code = report.exit_code;
            task.started_ms = report.started_ms.or(task.started_ms);
            task.finished_ms = report.finished_ms;
            task.outputs = report.outputs;
            task.outputs_truncated = report.outputs_truncated;
            // Within bounds: checked on receipt (`TaskReport::validate`).
            task.unnamed_outputs = report.unnamed_outputs;
            task.error = report.error;
            task.image_id = report.image_id.or(task.image_id.take());
            task.held = report.held;
            true
        })
        .await
    }

    /// How a task ended, if it has.
    fn ended_as(&self, id: &str, peer: PeerId) -> Option<TaskState> {
        let jobs = self.jobs.lock().expect("lock");
        let task = jobs.get(id)?.tasks.values().find(|t| t.peer_id == peer)?;
        task.state.is_terminal().then_some(task.state)
    }

    /// A report on a task that has ended already can change only what was
    /// released of its outputs: its node's owner released or denied them.
    /// The job ended before: returns None, so nobody announces it again.
    async fn apply_release(&self, peer: PeerId, report: TaskReport) -> Option<JobRecord> {
        let id = report.job_id.clone();
        {
            let mut jobs = self.jobs.lock().expect("lock");
            let job = jobs.get_mut(&id)?;
            let task = job.tasks.values_mut().find(|t| t.peer_id == peer)?;
            if task.outputs == report.outputs
                && task.unnamed_outputs == report.unnamed_outputs
                && task.held == report.held
            {
                return None;
            }
            task.outputs = report.outputs;
            task.outputs_truncated = report.outputs_truncated;
            task.unnamed_outputs = report.unnamed_outputs;
            task.held = report.held;
        };
        self.save(&id).await;
        None
    }

    /// Every unfinished task on `peer` becomes lost (its node is gone).
    pub async fn node_lost(&self, peer: PeerId, reason: &str) -> Vec<JobRecord> {
        let ids: Vec<String> = self
            .jobs
            .lock()
            .expect("lock")
            .values()
            .filter(|j| {
                j.tasks
                    .values()
                    .any(|t| t.peer_id == peer && !t.state.is_terminal())
            })
            .map(|j| j.id.clone())
            .collect();
        let mut lost = Vec::new();
        for id in ids {
            let changed = self
                .update_task(&id, peer, |task| {
                    task.state = TaskState::Lost;
                    task.finished_ms = Some(crate::now_ms());
                    task.error = Some(reason.to_string());
                    true
                })
                .await;
            lost.extend(changed);
        }
        lost
    }

    /// Unfinished tasks per node, for `--any` placement.
    pub fn load_by_peer(&self) -> BTreeMap<PeerId, usize> {
        let mut load = BTreeMap::new();
        for job in self.jobs.lock().expect("lock").values() {
            for task in job.tasks.values().filter(|t| !t.state.is_terminal()) {
                *load.entry(task.peer_id).or_default() += 1;
            }
        }
        load
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

fn holder_of(jobs: &BTreeMap<String, JobRecord>, round: &RoundId) -> Option<String> {
    jobs.values()
        .find(|j| j.request.round.as_ref() == Some(round))
        .map(|j| j.id.clone())
}
