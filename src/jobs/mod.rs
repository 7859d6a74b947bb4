//! Jobs: a container image run on a set of nodes.
//!
//! The node that submits a job keeps its record ([`store`]) and sends each
//! target a `RunTask`; every node runs what it is given in its [`runner`]
//! and reports each change of state back with `TaskUpdate` ([`deliver`]).
//! Only the network's master may give tasks to other nodes: the router
//! checks that against the authenticated peer id before a request gets here.

mod approvals;
mod deadlines;
pub mod deliver;
mod hand_out;
mod hourly_cap;
mod record;
mod results;
pub mod runner;
pub mod store;
mod task_book;
mod task_record;
pub use record::{JobRecord, JobState};
pub use task_book::TaskFile;
pub use task_record::TaskRecord;
mod told;

use std::{sync::Arc, time::Duration};

use iris_behaviours::{
    libp2p::PeerId, CancelTask, FetchLogs, Liveness, MapEntry, TaskReport, TaskSpec, TaskState,
};

use crate::{
    api_types::{
        Gathered, JobRequest, LogsQuery, PendingApproval, PendingRelease, RoundId, TaskLogs,
    },
    events::{EventKind, Events, SHUT_DOWN},
    files::{FileError, Files},
    images::ImageLibrary,
    membership::{Membership, MembershipError},
    network::NetworkError,
    policy::PolicyError,
    workspace::WorkspacePath,
};
use deadlines::{deadline_of, ends_at, Deadlines};
use hand_out::{HandOut, Handed};
use runner::TaskRunner;
use store::JobStore;

/// Why a job operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no job {0} on this node")]
    NotFound(String),
    #[error("job {id} has no task on node '{node}'")]
    NoTask { id: String, node: String },
    #[error("no alive node shares a mock sample of dataset '{0}' (its owner can add one: iris datasets add --mock-rows N)")]
    NoMockSample(String),
    #[error("{0}")]
    Invalid(String),
    /// A valid quorum that the job's targets, as the network stands,
    /// cannot meet.
    #[error("quorum: {quorum} tasks must succeed, but the job has {targets} target(s)")]
    QuorumOverTargets { quorum: u32, targets: usize },
    /// A training's round runs once: the job that has it is named.
    #[error("{round} is job {job} already")]
    RoundTaken { round: String, job: String },
    #[error(transparent)]
    Membership(#[from] MembershipError),
    #[error("cannot fetch logs from {node}: {source}")]
    Logs {
        node: String,
        source: Box<MembershipError>,
    },
    #[error("cannot gather {file} from {node}: {source}")]
    Gather {
        file: String,
        node: String,
        source: Box<FileError>,
    },
}

fn round_taken(round: Option<RoundId>, job: String) -> JobError {
    let round = round.map(|r| r.to_string()).unwrap_or_default();
    JobError::RoundTaken { round, job }
}

pub struct Jobs {
    store: JobStore,
    /// When the jobs with a deadline end.
    deadlines: Deadlines,
    pub runner: Arc<TaskRunner>,
    membership: Arc<Membership>,
    files: Arc<Files>,
    hand_out: HandOut,
    events: Events,
}

impl Jobs {
    pub fn new(
        store: JobStore,
        runner: Arc<TaskRunner>,
        membership: Arc<Membership>,
        files: Arc<Files>,
        images: Arc<ImageLibrary>,
        events: Events,
    ) -> Arc<Self> {
        Arc::new(Self {
            deadlines: Deadlines::of(&store.list()),
            store,
            runner,
            hand_out: HandOut::new(membership.clone(), images),
            membership,
            files,
            events,
        })
    }

    fn local(&self) -> PeerId {
        self.membership.local_peer()
    }

    /// Records a job and hands each target its task; returns the job as it
    /// stands once every target has accepted or refused. A target that
    /// lacks the image gets this node's tar of it first.
    pub async fn submit(&self, request: JobRequest) -> Result<JobRecord, JobError> {
        // A round already run is named before anything else is checked:
        // a driver resuming learns which job has it.
        let round = request.round.clone();
        if let Some(holder) = round.as_ref().and_then(|r| self.store.round_holder(r)) {
            return Err(round_taken(round, holder));
        }
        let map = self.membership.map().await?;
        let targets = if request.dry_run {
            self.fetch_mock(&request.on, &map).await?;
            vec![(self.local(), self.membership.name().to_string())]
        } else {
            super::membership::resolve_targets(
                &request.on,
                request.any,
                &map,
                &self.store.load_by_peer(),
            )
            .map_err(MembershipError::from)?
        };
        if let Some(quorum) = request.quorum.filter(|q| *q as usize > targets.len()) {
            let targets = targets.len();
            return Err(JobError::QuorumOverTargets { quorum, targets });
        }
        let ends_at = ends_at(&request).map_err(JobError::Invalid)?;
        let id = format!("job-{}", crate::store::random_hex(6));
        let spec = request.task_spec(&id).map_err(JobError::Invalid)?;
        spec.validate().map_err(JobError::Invalid)?;
        let tasks = targets
            .iter()
            .map(|(peer, name)| (name.clone(), TaskRecord::queued(name.clone(), *peer)))
            .collect();
        let created_ms = crate::now_ms();
        let job = JobRecord {
            id: id.clone(),
            state: Default::default(),
            request,
            created_ms,
            tasks,
        };
        if let Err(holder) = self.store.insert(job.with_state()).await {
            return Err(round_taken(round, holder));
        }
        if let Some(after) = ends_at {
            self.deadlines.add(&id, created_ms + after);
        }
        let peers: Vec<PeerId> = targets.into_iter().map(|(peer, _)| peer).collect();
        self.hand_out(&id, &peers, &spec, &map).await;
        self.job(&id)
    }

    /// Hands `peers` their tasks of job `id`; a task that could not be
    /// handed out failed, unless this node is shutting down.
    async fn hand_out(&self, id: &str, peers: &[PeerId], spec: &TaskSpec, map: &[MapEntry]) {
        for (peer, handed) in self.hand_out.to_all(peers, spec, map).await {
            match handed {
                Handed::Taken => {}
                Handed::Failed(error) => self.fail_task(id, peer, error).await,
                Handed::Interrupted => tracing::info!(
                    job = %id,
                    "the task for {peer} stays queued: this node is shutting down, and hands it out when it starts again"
                ),
            }
        }
    }

    /// After a start: the tasks of unfinished jobs that no report has
    /// moved past queued are handed out again. A target that took its task
    /// before the restart acknowledges it again and runs it once.
    pub async fn hand_out_queued(&self) {
        let Ok(map) = self.membership.map().await else {
            return;
        };
        let now = crate::now_ms();
        // A job whose deadline passed meanwhile is ended, not handed out.
        let before_its_deadline = |job: &JobRecord| deadline_of(job).is_none_or(|at| at > now);
        let unfinished = self.store.list().into_iter().filter(|j| !j.finished());
        for job in unfinished.filter(before_its_deadline) {
            let peers: Vec<PeerId> = job
                .tasks
                .values()
                .filter(|t| t.state == TaskState::Queued)
                .map(|t| t.peer_id)
                .collect();
            if peers.is_empty() {
                continue;
            }
            let spec = match job.request.task_spec(&job.id) {
                Ok(spec) => spec,
                Err(e) => {
                    tracing::warn!(job = %job.id, "cannot hand out its queued tasks again: {e}");
                    continue;
                }
            };
            tracing::info!(job = %job.id, tasks = peers.len(), "handing out queued tasks again after a restart");
            self.hand_out(&job.id, &peers, &spec, &map).await;
        }
    }

    /// For a dry run on `dataset:NAME`: fetches the mock sample of NAME from
    /// an alive node that shares one, into `gathered/mock/NAME/`, where this
    /// node's own task reads it as its dataset.
    async fn fetch_mock(&self, on: &str, map: &[MapEntry]) -> Result<(), JobError> {
        let Some(name) = on.strip_prefix("dataset:") else {
            return Err(JobError::Invalid(format!(
                "a dry run is on a dataset's mock sample: give --on dataset:NAME, not --on {on}"
            )));
        };
        // Another node's sample first: this node's own is copied, not fetched.
        let local = self.local();
        let mut holders: Vec<(PeerId, String)> = map
            .iter()
            .filter(|e| e.state == Liveness::Alive)
            .filter_map(|e| {
                let card = e.record.datasets.iter().find(|d| d.name == name)?;
                Some((e.record.peer_id, card.mock.clone()?))
            })
            .collect();
        holders.sort_by_key(|(peer, _)| *peer == local);
        let holder = holders.into_iter().next();
        let Some((peer, mock)) = holder else {
            return Err(JobError::NoMockSample(name.to_string()));
        };
        let file = mock.rsplit('/').next().unwrap_or("mock.csv");
        let dest = WorkspacePath::parse(&format!("gathered/mock/{name}/{file}"))
            .map_err(JobError::Invalid)?;
        let fetched = if peer == local {
            self.files.copy_local(&mock, &dest).await
        } else {
            self.files.fetch(peer, &mock, &dest).await.map(|_| ())
        };
        fetched.map_err(|source| JobError::Gather {
            file: mock,
            node: name.to_string(),
            source: Box::new(source),
        })
    }

    async fn fail_task(&self, id: &str, peer: PeerId, error: String) {
        let job = self
            .store
            .update_task(id, peer, |task| {
                task.state = TaskState::Failed;
                task.finished_ms = Some(crate::now_ms());
                task.error = Some(error);
                true
            })
            .await;
        self.announce_if_finished(job);
    }

    fn announce_if_finished(&self, job: Option<JobRecord>) {
        if let Some(job) = job.filter(JobRecord::finished) {
            self.events.emit(EventKind::JobFinished {
                job: job.id.clone(),
                state: crate::api_types::JobState::from(job.state).to_string(),
            });
        }
    }

    pub fn jobs(&self) -> Vec<JobRecord> {
        self.store.list()
    }

    pub fn job(&self, id: &str) -> Result<JobRecord, JobError> {
        self.store
            .get(id)
            .ok_or_else(|| JobError::NotFound(id.to_string()))
    }

    /// Gathers the job's released outputs into `gathered/<id>/<node>/`
    /// ([`results::gather`]). Outputs released after the job ended are
    /// gathered by calling this again.
    pub async fn gather(&self, id: &str) -> Result<Gathered, JobError> {
        results::gather(&self.job(id)?, self.local(), &self.files).await
    }

    /// The job once it has finished, or as it stands after `wait`.
    pub async fn wait(&self, id: &str, wait: Duration) -> Result<JobRecord, JobError> {
        // Subscribe before looking, so the finish cannot slip in between.
        let mut events = self.events.subscribe();
        let job = self.job(id)?;
        if job.finished() || wait.is_zero() {
            return Ok(job);
        }
        let finished = async {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if matches!(&event.kind, EventKind::JobFinished { job, .. } if job == id) {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if self.job(id).is_ok_and(|j| j.finished()) {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        };
        let _ = tokio::time::timeout(wait, finished).await;
        self.job(id)
    }

    /// Takes a task's report from the node that ran it (or from this
    /// node's own runner): the job's record follows it.
    pub async fn take_report(&self, peer: PeerId, report: TaskReport) {
        let awaiting = report.state == TaskState::AwaitingApproval;
        let job = self.store.apply(peer, report).await;
        if let Some(job) = job.as_ref().filter(|_| awaiting) {
            if let Some(task) = job.tasks.values().find(|t| t.peer_id == peer) {
                self.events.emit(EventKind::AwaitingApproval {
                    job: job.id.clone(),
                    node: task.node.clone(),
                });
            }
        }
        self.announce_if_finished(job);
    }

    /// Marks a departed node's unfinished tasks lost.
    pub async fn node_gone(&self, peer: PeerId, reason: &str) {
        for job in self.store.node_lost(peer, reason).await {
            self.announce_if_finished(Some(job));
        }
    }

    /// Tasks on a node that is gone (by timeout) or left will never report
    /// again. A node that announced its shutdown reports for itself when it
    /// is back: queued tasks then run, interrupted ones come back as lost.
    pub async fn watch_departures(self: Arc<Self>) {
        let mut events = self.events.subscribe();
        loop {
            match events.recv().await {
                Ok(event) => match event.kind {
                    EventKind::Gone {
                        peer_id, reason, ..
                    } if reason != SHUT_DOWN => {
                        self.node_gone(peer_id, &format!("node gone: {reason}"))
                            .await
                    }
                    EventKind::Left { peer_id, .. } => {
                        self.node_gone(peer_id, "node left the network").await
                    }
                    EventKind::Removed { peer_id, .. } => {
                        self.node_gone(peer_id, "node removed from the network")
                            .await
                    }
                    _ => {}
                },
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Ends each job whose deadline has passed ([`Jobs::end_late`]),
    /// looking once a second.
    pub async fn watch_deadlines(self: Arc<Self>) {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            for id in self.deadlines.due(crate::now_ms()) {
                self.end_late(&id).await;
            }
        }
    }

    /// The job's deadline has passed: its tasks still going are recorded
    /// as late first (so that nothing they report from now on counts),
    /// then their nodes are told to cancel them.
    async fn end_late(&self, id: &str) {
        let Ok(job) = self.job(id) else { return };
        let late: Vec<TaskRecord> = job
            .tasks
            .into_values()
            .filter(|t| !t.state.is_terminal())
            .collect();
        for task in &late {
            let job = self
                .store
                .update_task(id, task.peer_id, |t| {
                    t.state = TaskState::Late;
                    t.finished_ms = Some(crate::now_ms());
                    t.error = Some(
                        "late: the job's deadline passed before it ended; cancelled, and \
                         nothing it says later counts"
                            .into(),
                    );
                    true
                })
                .await;
            self.announce_if_finished(job);
        }
        let cancels = late.iter().map(|task| async move {
            let cancel = CancelTask {
                job_id: id.to_string(),
            };
            if let Err(e) = self.membership.call(task.peer_id, cancel).await {
                tracing::warn!(job = %id, node = %task.node, "a late task's cancel was not delivered: {e}");
            }
        });
        futures::future::join_all(cancels).await;
    }

    pub async fn cancel(&self, id: &str) -> Result<JobRecord, JobError> {
        let job = self.job(id)?;
        for task in job.tasks.values().filter(|t| !t.state.is_terminal()) {
            let request = CancelTask {
                job_id: id.to_string(),
            };
            let result = self
                .membership
                .call(task.peer_id, request)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            if let Err(e) = result {
                // The node cannot be told; the job should not wait on it.
                tracing::warn!(job = %id, node = %task.node, "cancel not delivered: {e}");
                self.store
                    .update_task(id, task.peer_id, |t| {
                        t.state = TaskState::Cancelled;
                        t.finished_ms = Some(crate::now_ms());
                        t.error = Some(format!("cancelled here; the node could not be told: {e}"));
                        true
                    })
                    .await;
            }
        }
        self.job(id)
    }

    /// Each task's output from the offsets on.
    pub async fn logs(&self, id: &str, query: &LogsQuery) -> Result<Vec<TaskLogs>, JobError> {
        // The document says int64, and no log grows past it.
        if query.stdout_offset.max(query.stderr_offset) > i64::MAX as u64 {
            return Err(JobError::Invalid(format!(
                "an offset is at most {} bytes",
                i64::MAX
            )));
        }
        let job = self.job(id)?;
        let node = query.node.as_deref();
        if let Some(node) = node {
            if !job.tasks.contains_key(node) {
                return Err(JobError::NoTask {
                    id: id.to_string(),
                    node: node.to_string(),
                });
            }
        }
        let offsets = (query.stdout_offset, query.stderr_offset);
        let mut all = Vec::new();
        for task in job
            .tasks
            .values()
            .filter(|t| node.is_none_or(|n| n == t.node))
        {
            let (stdout, stderr) = {
                let request = FetchLogs {
                    job_id: id.to_string(),
                    stdout_offset: offsets.0,
                    stderr_offset: offsets.1,
                };
                let logs_error = |source| JobError::Logs {
                    node: task.node.clone(),
                    source: Box::new(source),
                };
                match self.membership.call(task.peer_id, request).await {
                    Ok(logs) => (logs.stdout, logs.stderr),
                    // The node's owner keeps its logs: say so, for that node.
                    Err(MembershipError::Network(NetworkError::PeerRefused {
                        kind: iris_behaviours::RefusalKind::Forbidden,
                        reason,
                        ..
                    })) => {
                        all.push(TaskLogs {
                            node: task.node.clone(),
                            state: task.state,
                            stdout_offset: offsets.0,
                            stderr_offset: offsets.1,
                            stdout: String::new(),
                            stderr: String::new(),
                            withheld: Some(reason),
                        });
                        continue;
                    }
                    Err(e) => return Err(logs_error(e)),
                }
            };
            all.push(TaskLogs {
                node: task.node.clone(),
                state: task.state,
                stdout_offset: offsets.0 + stdout.len() as u64,
                stderr_offset: offsets.1 + stderr.len() as u64,
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
                withheld: None,
            });
        }
        Ok(all)
    }

    /// The map's name of `peer`, if it has one.
    async fn name_of(&self, peer: PeerId) -> Option<String> {
        let map = self.membership.map().await.ok()?;
        map.into_iter()
            .find(|e| e.record.peer_id == peer)
            .map(|e| e.record.name)
    }

    /// Tasks from other nodes waiting for this node's owner to approve them.
    pub async fn approvals(&self) -> Vec<PendingApproval> {
        let mut pending = self.runner.approvals.pending().await;
        for approval in &mut pending {
            approval.requester_name = self.name_of(approval.requester).await;
        }
        pending
    }

    /// Outputs of tasks run here waiting for this node's owner to release them.
    pub async fn releases(&self) -> Vec<PendingRelease> {
        let mut pending = self.runner.approvals.releases().await;
        for release in &mut pending {
            release.requester_name = self.name_of(release.requester).await;
        }
        pending
    }

    pub async fn decide(
        &self,
        id: &str,
        approve: bool,
        always: bool,
        reason: Option<String>,
    ) -> Result<String, PolicyError> {
        self.runner
            .approvals
            .decide(id, approve, always, reason)
            .await
    }

    pub async fn decide_release(
        &self,
        id: &str,
        release: bool,
        reason: Option<String>,
    ) -> Result<Vec<String>, PolicyError> {
        self.runner
            .approvals
            .decide_release(id, release, reason)
            .await
    }
}
