//! The tasks this node was asked to run, as it keeps them: one
//! `DIR/tasks/<job>/task.json` each, beside its logs, written whole, and
//! every change of a task's report sent on its way to the node that asked
//! for it until that node has acknowledged it.

use std::{path::PathBuf, sync::Arc};

use iris_behaviours::{libp2p::PeerId, Refusal, TaskReport, TaskSpec};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::egress::{Egress, Release};

/// A task as this node keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskFile {
    pub origin: PeerId,
    pub spec: TaskSpec,
    pub report: TaskReport,
    /// The origin has acknowledged `report`.
    pub delivered: bool,
    /// Where its outputs stand under the owner's policy.
    #[serde(default)]
    pub release: Release,
    /// The image id approved to run (by the policy or the owner): the
    /// container is made from exactly this, whatever the tag means later.
    #[serde(default)]
    pub image_id: Option<String>,
    /// When the request came, for the approval's deadline.
    #[serde(default)]
    pub requested_ms: u64,
}

/// A report on its way to the node that asked for the task.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub origin: PeerId,
    pub report: TaskReport,
    /// Earlier attempts that failed.
    pub failures: u32,
    /// Not sent before this time (ms since the epoch): a held task's end
    /// is told at the end of its class of time, not when it came.
    pub not_before_ms: u64,
}

/// Every task's file, and the queue of reports to deliver.
pub struct TaskBook {
    dir: PathBuf,
    /// Held across every read-modify-write of a `task.json`: the task's own
    /// updates and the delivery receipts race, and a receipt must never
    /// write back an older state over a newer one. An async lock: the
    /// writes happen on blocking threads while it is held.
    files: tokio::sync::Mutex<()>,
    deliveries: mpsc::UnboundedSender<Delivery>,
    /// The owner's policy, applied to what a report may tell.
    egress: Arc<Egress>,
    /// This node: its own tasks' reports are told whole.
    local: PeerId,
}

impl TaskBook {
    /// `deliveries` receives every report to pass on; the receiver calls
    /// [`TaskBook::delivered`] once the origin has it.
    pub fn new(
        dir: PathBuf,
        deliveries: mpsc::UnboundedSender<Delivery>,
        egress: Arc<Egress>,
        local: PeerId,
    ) -> Self {
        Self {
            dir,
            files: tokio::sync::Mutex::new(()),
            deliveries,
            egress,
            local,
        }
    }

    /// The directory of the task of `job_id`: its `task.json` and logs.
    pub fn task_dir(&self, job_id: &str) -> PathBuf {
        self.dir.join(job_id)
    }

    /// Claims `job_id` by creating its task's directory: of two requests
    /// for one job, however close together, exactly one gets it.
    pub async fn claim(&self, spec: &TaskSpec) -> Result<PathBuf, Refusal> {
        let dir = self.task_dir(&spec.job_id);
        let claim = (self.dir.clone(), dir.clone());
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&claim.0).and_then(|_| std::fs::create_dir(&claim.1))
        })
        .await
        .map_err(|e| Refusal::failed(e.to_string()))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Refusal::invalid(format!(
                "this node already has a task for job {}",
                spec.job_id
            )),
            _ => Refusal::failed(format!("cannot create {}: {e}", dir.display())),
        })?;
        Ok(dir)
    }

    /// Every job id with a task directory.
    pub async fn job_ids(&self) -> Vec<String> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default()
    }

    /// Writes `task.json`, on a blocking thread; the caller holds `files`.
    async fn save(&self, task: &TaskFile) {
        let dir = self.task_dir(&task.spec.job_id);
        let json = serde_json::to_vec_pretty(task).expect("tasks serialize");
        let written = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| e.to_string())
                .and_then(|_| {
                    crate::store::write_private(&dir.join("task.json"), &json)
                        .map_err(|e| e.to_string())
                })
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(e) = written {
            tracing::error!(job = %task.spec.job_id, "cannot save task state: {e}");
        }
    }

    /// Writes `task.json` as it is, without telling anyone.
    pub async fn write(&self, task: &TaskFile) {
        let _files = self.files.lock().await;
        self.save(task).await;
    }

    /// Reads `task.json`, on a blocking thread.
    pub async fn load(&self, job_id: &str) -> Option<TaskFile> {
        let path = self.task_dir(job_id).join("task.json");
        tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(path).ok()?;
            serde_json::from_slice(&bytes).ok()
        })
        .await
        .ok()
        .flatten()
    }

    /// Records a new state, saves it and sends it on its way.
    pub async fn update(&self, task: &mut TaskFile, change: impl FnOnce(&mut TaskReport)) {
        change(&mut task.report);
        task.delivered = false;
        {
            let _files = self.files.lock().await;
            self.save(task).await;
        }
        let _ = self.deliveries.send(self.delivery(task));
    }

    /// Sends a report its origin never acknowledged again.
    pub fn resend(&self, task: &TaskFile) {
        let _ = self.deliveries.send(self.delivery(task));
    }

    /// A task's report on its way to its origin: as it is to this node
    /// itself, as the owner's policy lets it be told to any other.
    fn delivery(&self, task: &TaskFile) -> Delivery {
        let told = if task.origin == self.local {
            super::told::Told {
                report: task.report.clone(),
                not_before_ms: 0,
            }
        } else {
            let held = self
                .egress
                .outputs_may_leave(&task.spec.job_id, &task.release)
                .err();
            super::told::told(&task.report, held, self.egress.policy().node_name())
        };
        Delivery {
            origin: task.origin,
            report: told.report,
            failures: 0,
            not_before_ms: told.not_before_ms,
        }
    }

    /// Marks a report as received by its origin, so a restart does not
    /// send it again.
    pub async fn delivered(&self, report: &TaskReport) {
        let _files = self.files.lock().await;
        if let Some(mut task) = self.load(&report.job_id).await {
            if task.report == *report || self.delivery(&task).report == *report {
                task.delivered = true;
                self.save(&task).await;
            }
        }
    }

    /// Every task of this node that matches `keep`.
    pub async fn tasks_where(&self, keep: impl Fn(&TaskFile) -> bool) -> Vec<TaskFile> {
        let mut tasks = Vec::new();
        for id in self.job_ids().await {
            if let Some(task) = self.load(&id).await.filter(|t| keep(t)) {
                tasks.push(task);
            }
        }
        tasks.sort_by_key(|t| t.requested_ms);
        tasks
    }
}
