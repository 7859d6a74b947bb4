//! Runs the tasks other nodes (or this one) ask this node to run: a queue
//! bounded by `jobs.max_concurrent`, each task's state kept on disk in
//! `DIR/tasks/<job>/task.json` beside its logs, and every change reported
//! back to the node that asked, until that node has acknowledged it.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use iris_behaviours::{
    libp2p::PeerId, Refusal, RefusalKind, TaskReport, TaskSpec, TaskState, MAX_LOG_CHUNK,
};
use tokio::sync::{mpsc, watch, Semaphore};

pub use super::task_book::Delivery;
use super::{
    approvals::Approvals,
    task_book::{TaskBook, TaskFile},
};
use crate::{
    audit::{AuditEvent, AuditLog},
    crew::Crew,
    datasets::Datasets,
    egress::{Egress, Outgoing, Release},
    events::Events,
    executor::{DataMount, Executor, WARM_IDLE},
    metrics::Metrics,
};

pub struct TaskRunner {
    executor: Arc<Executor>,
    /// Every task asked of this node and how it ended, recorded before it
    /// happens.
    audit: Arc<AuditLog>,
    /// The owner's policy, applied to what leaves (reports, logs).
    egress: Arc<Egress>,
    events: Events,
    /// Task durations, for `/metrics`.
    metrics: Metrics,
    /// Where the datasets that tasks may target are.
    datasets: Arc<Datasets>,
    /// This node: a task it asked of itself may read its `gathered/`, and
    /// needs no approval.
    local: PeerId,
    /// Every task's file, and the reports on their way.
    book: Arc<TaskBook>,
    /// The owner's say: what may run, what waits, what is released.
    pub approvals: Approvals,
    permits: Arc<Semaphore>,
    cancels: Mutex<HashMap<String, (PeerId, watch::Sender<bool>)>>,
    /// Every task's life, from queue to report; stopped when the node
    /// shuts down (a container still running is found again at the next
    /// start, [`TaskRunner::recover`]).
    crew: Crew,
}

impl TaskRunner {
    /// `deliveries` receives every report to pass on; the receiver calls
    /// [`TaskRunner::delivered`] once the origin has it. Tasks are kept in
    /// `dir` ([`TaskBook`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        executor: Arc<Executor>,
        egress: Arc<Egress>,
        events: Events,
        metrics: Metrics,
        datasets: Arc<Datasets>,
        local: PeerId,
        dir: PathBuf,
        max_concurrent: usize,
        deliveries: mpsc::UnboundedSender<Delivery>,
    ) -> Arc<Self> {
        let book = Arc::new(TaskBook::new(dir, deliveries, egress.clone(), local));
        Arc::new(Self {
            approvals: Approvals::new(book.clone(), executor.clone(), egress.clone(), local),
            book,
            executor,
            audit: egress.audit().clone(),
            egress,
            events,
            metrics,
            datasets,
            local,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            cancels: Mutex::new(HashMap::new()),
            crew: Crew::default(),
        })
    }

    /// Stops every task's life where it stands, and waits for them; then
    /// the warm workers, which no round uses any more.
    pub async fn stop(&self) {
        self.crew.stop().await;
        self.executor.stop_warm(Duration::ZERO).await;
    }

    /// Stops the warm workers of trainings that have not run a round for
    /// [`WARM_IDLE`], every minute, until the node stops.
    pub async fn watch_warm_workers(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            self.executor.stop_warm(WARM_IDLE).await;
        }
    }

    /// What private data a task sees: its dataset alone, or all of
    /// `private/`. A dataset withdrawn since the task came fails it.
    fn data_of(&self, spec: &TaskSpec) -> Result<DataMount, String> {
        match &spec.dataset {
            None => Ok(DataMount::Private),
            Some(name) if spec.dry_run => Ok(DataMount::Dataset(format!("gathered/mock/{name}"))),
            Some(name) => self
                .datasets
                .path_of(name)
                .map(DataMount::Dataset)
                .map_err(|e| e.to_string()),
        }
    }

    /// Marks a report as received by its origin, so a restart does not
    /// send it again.
    pub async fn delivered(&self, report: &TaskReport) {
        self.book.delivered(report).await;
    }

    /// Takes a task for `origin`: it runs, awaits the owner's approval, or
    /// is refused by the policy. Returns at once.
    pub async fn submit(self: &Arc<Self>, origin: PeerId, spec: TaskSpec) -> Result<(), Refusal> {
        spec.validate().map_err(Refusal::invalid)?;
        if spec.dry_run && origin != self.local {
            return Err(Refusal::invalid(
                "a dry run runs on its own node's mock sample; another node cannot ask for one",
            ));
        }
        if let Some(dataset) = spec.dataset.as_ref().filter(|_| !spec.dry_run) {
            self.datasets
                .path_of(dataset)
                .map_err(|e| Refusal::new(RefusalKind::NotFound, e.to_string()))?;
        }
        let dir = match self.book.claim(&spec).await {
            Ok(dir) => dir,
            // The same task from the same node again (a master that
            // restarted while handing it out asks again): it runs once,
            // and is acknowledged again. Anything else is refused.
            Err(refusal) => {
                return match self.book.load(&spec.job_id).await {
                    Some(held) if held.origin == origin && held.spec == spec => Ok(()),
                    _ => Err(refusal),
                };
            }
        };
        let admitted = self.approvals.admit(origin, &spec).await;
        let admitted = match admitted {
            Ok(admitted) => admitted,
            Err(refusal) => {
                let _ = tokio::fs::remove_dir(&dir).await;
                return Err(refusal);
            }
        };
        let mut report = TaskReport::queued(spec.job_id.clone());
        if admitted.is_none() {
            report.state = TaskState::AwaitingApproval;
        }
        let mut task = TaskFile {
            origin,
            spec,
            report,
            delivered: false,
            release: Release::Pending,
            image_id: admitted.flatten(),
            requested_ms: crate::now_ms(),
        };
        self.book.update(&mut task, |_| {}).await;
        if task.report.state == TaskState::AwaitingApproval {
            self.events
                .emit(crate::events::EventKind::ApprovalRequested {
                    job: task.spec.job_id.clone(),
                    from: origin,
                    image: task.spec.image.clone(),
                });
        }
        self.start(task);
        Ok(())
    }

    fn start(self: &Arc<Self>, mut task: TaskFile) {
        let (cancel, cancelled) = watch::channel(false);
        self.cancels
            .lock()
            .expect("lock")
            .insert(task.spec.job_id.clone(), (task.origin, cancel));
        let runner = self.clone();
        self.crew.spawn(async move {
            let mut queue_cancel = cancelled.clone();
            if task.report.state == TaskState::AwaitingApproval
                && !runner
                    .approvals
                    .await_approval(&mut task, cancelled.clone())
                    .await
            {
                runner.forget(&task.spec.job_id);
                return;
            }
            let permit = tokio::select! {
                permit = runner.permits.clone().acquire_owned() => permit.ok(),
                _ = async { let _ = queue_cancel.wait_for(|c| *c).await; } => None,
            };
            if permit.is_none() {
                runner
                    .book
                    .update(&mut task, |r| {
                        r.state = TaskState::Cancelled;
                        r.finished_ms = Some(crate::now_ms());
                        r.error = Some("cancelled while queued".into());
                    })
                    .await;
            } else {
                runner
                    .book
                    .update(&mut task, |r| {
                        r.state = TaskState::Running;
                        r.started_ms = Some(crate::now_ms());
                    })
                    .await;
                let own_job = task.origin == runner.local;
                let logs = runner.book.task_dir(&task.spec.job_id);
                let started = match runner.approvals.record_start(&task).await {
                    Ok(spec) => runner.data_of(&spec).map(|data| (spec, data)),
                    Err(error) => Err(error),
                };
                let (executor, origin) = (&runner.executor, task.origin.to_string());
                let outcome = match started {
                    Ok((spec, data)) => {
                        let warm_for = Some(origin.as_str());
                        executor
                            .run(&spec, &logs, own_job, &data, cancelled, warm_for)
                            .await
                    }
                    Err(error) => crate::executor::TaskOutcome::failed(error),
                };
                task.release = runner.approvals.release_at_end(&task);
                let (outputs, unnamed, held) = runner.egress.report_outputs(
                    &task.spec.job_id,
                    &task.release,
                    outcome.outputs,
                    outcome.unnamed_outputs,
                );
                let hold = held.is_some() && task.release == Release::Held;
                runner
                    .book
                    .update(&mut task, |r| {
                        r.state = outcome.end;
                        r.exit_code = outcome.exit_code;
                        r.set_outputs(outputs);
                        r.set_unnamed_outputs(unnamed);
                        r.held = held;
                        r.set_error(outcome.error);
                        r.image_id = outcome.image_id;
                        r.finished_ms = Some(crate::now_ms());
                    })
                    .await;
                if let (Some(start), Some(end)) = (task.report.started_ms, task.report.finished_ms)
                {
                    runner
                        .metrics
                        .task_ended(end.saturating_sub(start) as f64 / 1000.0);
                }
                if hold {
                    runner.events.emit(crate::events::EventKind::ReleaseHeld {
                        job: task.spec.job_id.clone(),
                    });
                }
                let ended = AuditEvent::TaskEnded {
                    job_id: task.spec.job_id.clone(),
                    state: task.report.state,
                    exit_code: task.report.exit_code,
                    image_id: task.report.image_id.clone(),
                };
                if let Err(e) = runner.audit.append(ended).await {
                    tracing::error!(job = %task.spec.job_id, "cannot record the task's end: {e}");
                }
            }
            runner.forget(&task.spec.job_id);
            drop(permit);
        });
    }

    /// The task is no longer queued or running: nothing can cancel it.
    fn forget(&self, job_id: &str) {
        self.cancels.lock().expect("lock").remove(job_id);
    }

    /// Stops a queued or running task, if `origin` is the one that asked for it.
    pub fn cancel(&self, job_id: &str, origin: PeerId) -> Result<(), Refusal> {
        let cancels = self.cancels.lock().expect("lock");
        match cancels.get(job_id) {
            Some((owner, cancel)) if *owner == origin => {
                cancel.send_replace(true);
                Ok(())
            }
            Some(_) => Err(Refusal::forbidden(format!(
                "forbidden: job {job_id} is not yours"
            ))),
            None => Ok(()), // finished already, or never here: nothing to stop
        }
    }

    /// The node that asked for this node's task of `job_id`, if there is
    /// one (the only peer its outputs are served to), and where the
    /// release of its outputs stands.
    pub async fn origin(&self, job_id: &str) -> Option<(PeerId, Release)> {
        iris_behaviours::validate_job_id(job_id).ok()?;
        self.book
            .load(job_id)
            .await
            .map(|task| (task.origin, task.release))
    }

    /// This node's task of `job_id` as it is recorded: who asked for it,
    /// how it stands, what it read and where the release of its outputs
    /// stands.
    pub async fn task_of(&self, job_id: &str) -> Option<TaskFile> {
        iris_behaviours::validate_job_id(job_id).ok()?;
        self.book.load(job_id).await
    }

    /// Up to [`MAX_LOG_CHUNK`] bytes of each stream from the given offsets.
    pub async fn logs(
        &self,
        job_id: &str,
        origin: PeerId,
        offsets: (u64, u64),
    ) -> Result<(Vec<u8>, Vec<u8>), Refusal> {
        iris_behaviours::validate_job_id(job_id).map_err(Refusal::invalid)?;
        let task =
            self.book.load(job_id).await.ok_or_else(|| {
                Refusal::not_found(format!("no task for job {job_id} on this node"))
            })?;
        if task.origin != origin {
            return Err(Refusal::forbidden(format!(
                "forbidden: job {job_id} is not yours"
            )));
        }
        let dir = self.book.task_dir(job_id);
        let read = move |name: &str, offset: u64| -> Vec<u8> {
            use std::io::{Read, Seek, SeekFrom};
            let Ok(mut file) = std::fs::File::open(dir.join(name)) else {
                return Vec::new();
            };
            let mut buf = Vec::new();
            if file.seek(SeekFrom::Start(offset)).is_ok() {
                let _ = file.take(MAX_LOG_CHUNK as u64).read_to_end(&mut buf);
            }
            buf
        };
        let (mut stdout, mut stderr) = tokio::task::spawn_blocking(move || {
            (read("stdout.log", offsets.0), read("stderr.log", offsets.1))
        })
        .await
        .map_err(|e| Refusal::failed(e.to_string()))?;
        if origin != self.local {
            let logs = Outgoing::Logs {
                job_id,
                offsets,
                stdout: &mut stdout,
                stderr: &mut stderr,
            };
            self.egress.pass(origin, logs, &task.release).await?;
        }
        Ok((stdout, stderr))
    }

    /// After a restart: tasks that were running lost their container (the
    /// executor removed it), so they are reported lost; queued ones run;
    /// reports the origin never acknowledged are sent again.
    pub async fn recover(self: &Arc<Self>) {
        for job_id in self.book.job_ids().await {
            let Some(mut task) = self.book.load(&job_id).await else {
                tracing::warn!(job = %job_id, "ignoring a task directory without a readable task.json");
                continue;
            };
            // The hour's cap counts the tasks from before the restart.
            self.approvals.count_past(&task);
            // A task that ended before this node had a policy: its outputs
            // wait for the owner rather than leave on old terms.
            if task.report.state.is_terminal()
                && task.release == Release::Pending
                && task.origin != self.local
            {
                task.release = Release::Held;
                self.book.write(&task).await;
            }
            match task.report.state {
                TaskState::Running => {
                    self.book
                        .update(&mut task, |r| {
                            r.state = TaskState::Lost;
                            r.finished_ms = Some(crate::now_ms());
                            r.error = Some("interrupted by a restart of the node".into());
                        })
                        .await
                }
                TaskState::Queued | TaskState::AwaitingApproval => self.start(task),
                _ if !task.delivered => self.book.resend(&task),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
