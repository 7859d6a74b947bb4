//! The jobs this node submitted, with every task's last known state, saved
//! one file per job in `DIR/jobs/<id>.json` so they survive a restart.

use std::{collections::BTreeMap, path::PathBuf, sync::Mutex};

use iris_behaviours::{libp2p::PeerId, TaskReport, TaskState};

pub use crate::api_types::{Job, JobRequest, JobState, Task};

pub struct JobStore {
    dir: PathBuf,
    jobs: Mutex<BTreeMap<String, Job>>,
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
                .and_then(|b| serde_json::from_slice::<Job>(&b).map_err(|e| e.to_string()))
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
        })
    }

    fn save(&self, job: &Job) {
        let json = serde_json::to_vec_pretty(job).expect("jobs serialize");
        if let Err(e) =
            crate::store::write_private(&self.dir.join(format!("{}.json", job.id)), &json)
        {
            tracing::error!(job = %job.id, "cannot save job: {e}");
        }
    }

    pub fn insert(&self, job: Job) {
        self.save(&job);
        self.jobs.lock().expect("lock").insert(job.id.clone(), job);
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        self.jobs
            .lock()
            .expect("lock")
            .get(id)
            .cloned()
            .map(Job::with_state)
    }

    pub fn list(&self) -> Vec<Job> {
        let mut jobs: Vec<Job> = self
            .jobs
            .lock()
            .expect("lock")
            .values()
            .cloned()
            .map(Job::with_state)
            .collect();
        jobs.sort_by_key(|j| j.created_ms);
        jobs
    }

    /// Changes one task with `change`, unless it has ended already (an end
    /// is final) or `change` declines (returns false). Returns the job if
    /// the task changed.
    pub fn update_task(
        &self,
        id: &str,
        peer: PeerId,
        change: impl FnOnce(&mut Task) -> bool,
    ) -> Option<Job> {
        let mut jobs = self.jobs.lock().expect("lock");
        let job = jobs.get_mut(id)?;
        let task = job.tasks.values_mut().find(|t| t.peer_id == peer)?;
        if task.state.is_terminal() || !change(task) {
            return None;
        }
        let job = job.clone().with_state();
        // Saved under the lock: two updates of one job must reach the disk
        // in the order they were made.
        self.save(&job);
        drop(jobs);
        Some(job)
    }

    /// Applies a report from the node that runs the task. Reports travel
    /// independently and may arrive out of order: a task never goes back
    /// from running to queued.
    pub fn apply(&self, peer: PeerId, report: TaskReport) -> Option<Job> {
        self.update_task(&report.job_id, peer, |task| {
            if task.state == TaskState::Running && report.state == TaskState::Queued {
                return false;
            }
            task.state = report.state;
            task.exit_code = report.exit_code;
            task.started_ms = report.started_ms.or(task.started_ms);
            task.finished_ms = report.finished_ms;
            task.outputs = report.outputs;
            task.outputs_truncated = report.outputs_truncated;
            task.error = report.error;
            true
        })
    }

    /// Every unfinished task on `peer` becomes lost (its node is gone).
    pub fn node_lost(&self, peer: PeerId, reason: &str) -> Vec<Job> {
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
        ids.iter()
            .filter_map(|id| {
                self.update_task(id, peer, |task| {
                    task.state = TaskState::Lost;
                    task.finished_ms = Some(crate::now_ms());
                    task.error = Some(reason.to_string());
                    true
                })
            })
            .collect()
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
