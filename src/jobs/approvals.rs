//! The owner's say over tasks other nodes ask this node to run: whether a
//! task may run (its image digest approved, no network unless allowed), the
//! owner's approvals and denials of tasks that wait, and the release of
//! outputs held for review. Every decision is in the audit log before it
//! takes effect.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use iris_behaviours::{libp2p::PeerId, Refusal, TaskSpec, TaskState};
use tokio::sync::oneshot;

use super::{
    hourly_cap::HourlyCap,
    task_book::{TaskBook, TaskFile},
};
use crate::{
    api_types::{PendingApproval, PendingRelease},
    audit::{AuditEvent, AuditLog, DecidedBy, Verdict as Decided},
    egress::{Egress, Release},
    executor::Executor,
    policy::{Allowance, ApprovedImage, CommandRule, ImagePolicy, PolicyError, ReleasePolicy},
};

/// The owner's answer to a task awaiting approval: the image id approved,
/// or the reason for the refusal.
type Verdict = Result<String, String>;

/// The owner's say over the tasks of this node.
pub struct Approvals {
    book: Arc<TaskBook>,
    executor: Arc<Executor>,
    /// Every request and decision, recorded before it takes effect.
    audit: Arc<AuditLog>,
    egress: Arc<Egress>,
    /// This node: its own tasks need no approval.
    local: PeerId,
    /// Tasks awaiting the owner's approval, each with where to send it.
    verdicts: Mutex<HashMap<String, oneshot::Sender<Verdict>>>,
    /// Tasks from other nodes per dataset in the last hour, for the
    /// owner's `max_tasks_per_hour`.
    hourly: HourlyCap,
}

impl Approvals {
    pub fn new(
        book: Arc<TaskBook>,
        executor: Arc<Executor>,
        egress: Arc<Egress>,
        local: PeerId,
    ) -> Self {
        Self {
            book,
            executor,
            audit: egress.audit().clone(),
            egress,
            local,
            verdicts: Mutex::new(HashMap::new()),
            hourly: HourlyCap::default(),
        }
    }

    /// Counts a task from before a restart against the hour's cap.
    pub(super) fn count_past(&self, task: &TaskFile) {
        if task.origin != self.local {
            let dataset = task.spec.dataset.as_deref().unwrap_or("private/");
            self.hourly.count(dataset, task.requested_ms);
        }
    }

    fn name(&self) -> String {
        self.egress.policy().node_name().to_string()
    }

    async fn record(&self, event: AuditEvent) -> Result<(), Refusal> {
        self.audit
            .append(event)
            .await
            .map_err(|e| Refusal::failed(format!("cannot record the task in the audit log: {e}")))
    }

    /// Records the request and decides it under the policy: `Ok(Some(id))`
    /// runs image `id` now (`Ok(Some)` with no id only for this node's own
    /// tasks, or when any image may run), `Ok(None)` waits for the owner,
    /// and a refusal says whose policy refused what.
    pub(super) async fn admit(
        &self,
        origin: PeerId,
        spec: &TaskSpec,
    ) -> Result<Option<Option<String>>, Refusal> {
        let looked_up = self.executor.image_id(&spec.image).await;
        // An engine that does not answer is not an image that is not here.
        let engine_away = looked_up.as_ref().is_err_and(|e| !e.is_not_found());
        let image_id = looked_up.ok();
        self.record(AuditEvent::TaskRequested {
            job_id: spec.job_id.clone(),
            from: origin,
            image: spec.image.clone(),
            argv: spec.argv.clone(),
            network: spec.network.clone(),
            memory_bytes: spec.memory_bytes,
            nano_cpus: spec.nano_cpus,
            inputs: spec.inputs.clone(),
            image_id: image_id.clone(),
            dataset: spec.dataset.clone(),
        })
        .await?;
        if origin == self.local {
            return Ok(Some(image_id));
        }
        let policy = self.egress.policy().get();
        let name = self.name();
        if engine_away && policy.images != ImagePolicy::Any {
            return Err(Refusal::failed(format!(
                "{name}'s Docker engine is unavailable; try again later"
            )));
        }
        let decide = |verdict, reason: String| AuditEvent::Decision {
            subject: spec.job_id.clone(),
            from: origin,
            image_id: image_id.clone(),
            verdict,
            by: DecidedBy::Policy,
            reason,
        };
        if spec.network.is_some() && policy.network == Allowance::Deny {
            let reason = format!("refused by {name}'s policy: jobs from other nodes get no network here (network = deny)");
            self.record(decide(Decided::Denied, reason.clone())).await?;
            return Err(Refusal::forbidden(reason));
        }
        if policy.release != ReleasePolicy::Auto {
            let dataset = spec.dataset.as_deref().unwrap_or("private/");
            let cap = policy.max_tasks_per_hour;
            if let Err(next) = self.hourly.take(dataset, cap, crate::now_ms()) {
                let reason = format!(
                    "refused by {name}'s policy: at most {cap} tasks an hour from other nodes on \
                     {dataset} (max_tasks_per_hour); the next may start in {} s",
                    next.saturating_sub(crate::now_ms()).div_ceil(1000)
                );
                self.record(decide(Decided::Denied, reason.clone())).await?;
                return Err(Refusal::new(iris_behaviours::RefusalKind::Busy, reason));
            }
        }
        if policy.images == ImagePolicy::Any {
            self.record(decide(Decided::Approved, "images = any".into()))
                .await?;
            return Ok(Some(image_id));
        }
        let Some(id) = image_id.clone() else {
            let reason = format!(
                "refused by {name}'s policy: there is no image {} here to approve",
                spec.image
            );
            self.record(decide(Decided::Denied, reason.clone())).await?;
            return Err(Refusal::forbidden(reason));
        };
        if let Some(approved) = policy.approved_for(&id, spec.dataset.as_deref(), &spec.argv) {
            let reason = format!("approved ahead of time: {approved}");
            self.record(decide(Decided::Approved, reason)).await?;
            return Ok(Some(Some(id)));
        }
        let reason = format!("image {} ({id}) is not approved here", spec.image);
        self.record(decide(Decided::AwaitingApproval, reason))
            .await?;
        Ok(None)
    }

    /// Waits for the owner's verdict on `task`, at most until the task's
    /// own timeout after its request; true if it may run.
    pub(super) async fn await_approval(
        &self,
        task: &mut TaskFile,
        mut cancelled: tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        let job_id = task.spec.job_id.clone();
        let (tell, mut verdict) = tokio::sync::oneshot::channel::<Verdict>();
        self.verdicts
            .lock()
            .expect("lock")
            .insert(job_id.clone(), tell);
        let deadline = task.requested_ms.saturating_add(task.spec.timeout_ms);
        let left = Duration::from_millis(deadline.saturating_sub(crate::now_ms()));
        let waited = tokio::select! {
            verdict = &mut verdict => verdict.ok(),
            _ = cancelled.wait_for(|c| *c) => None,
            _ = tokio::time::sleep(left) => None,
        };
        // A verdict the owner gave just as the wait ended is still taken:
        // the owner holds the sender only once it is out of the map.
        let verdict = match waited {
            Some(verdict) => Some(verdict),
            None if self
                .verdicts
                .lock()
                .expect("lock")
                .remove(&job_id)
                .is_some() =>
            {
                None
            }
            None => verdict.await.ok(),
        };
        let name = self.name();
        match verdict {
            Some(Ok(image_id)) => {
                task.image_id = Some(image_id);
                self.book
                    .update(task, |r| r.state = TaskState::Queued)
                    .await;
                true
            }
            Some(Err(reason)) => {
                let error = format!("denied by {name}: {reason}");
                self.end_unrun(task, TaskState::Failed, error).await;
                false
            }
            None if *cancelled.borrow() => {
                let error = "cancelled while awaiting approval".to_string();
                self.end_unrun(task, TaskState::Cancelled, error).await;
                false
            }
            None => {
                let error = format!(
                    "not approved by {name}'s owner within the job's timeout ({} s)",
                    task.spec.timeout_ms / 1000
                );
                let _ = self
                    .record(AuditEvent::Decision {
                        subject: job_id,
                        from: task.origin,
                        image_id: None,
                        verdict: Decided::Denied,
                        by: DecidedBy::Policy,
                        reason: error.clone(),
                    })
                    .await;
                self.end_unrun(task, TaskState::TimedOut, error).await;
                false
            }
        }
    }

    async fn end_unrun(&self, task: &mut TaskFile, state: TaskState, error: String) {
        self.book
            .update(task, |r| {
                r.state = state;
                r.finished_ms = Some(crate::now_ms());
                r.set_error(Some(error));
            })
            .await;
        let ended = AuditEvent::TaskEnded {
            job_id: task.spec.job_id.clone(),
            state,
            exit_code: None,
            image_id: None,
        };
        if let Err(e) = self.audit.append(ended).await {
            tracing::error!(job = %task.spec.job_id, "cannot record the task's end: {e}");
        }
    }

    /// Records the start, and gives the spec to run: with the approved
    /// image id in place of its name, so the container is made from it.
    pub(super) async fn record_start(&self, task: &TaskFile) -> Result<TaskSpec, String> {
        let mut spec = task.spec.clone();
        let image_id = match &task.image_id {
            Some(id) => id.clone(),
            None => match self.executor.image_id(&spec.image).await {
                Ok(id) => id,
                // The executor says why, at once.
                Err(_) => return Ok(spec),
            },
        };
        self.audit
            .append(AuditEvent::TaskStarted {
                job_id: spec.job_id.clone(),
                image_id: image_id.clone(),
            })
            .await
            .map_err(|e| format!("cannot record the start in the audit log: {e}"))?;
        if task.image_id.is_some() {
            spec.image = image_id;
        }
        Ok(spec)
    }

    /// Where a task's outputs stand when it ends, under the policy then.
    pub(super) fn release_at_end(&self, task: &TaskFile) -> Release {
        if task.origin == self.local {
            return Release::Own;
        }
        match self.egress.policy().get().release {
            ReleasePolicy::Auto => Release::Released {
                by: DecidedBy::Policy,
            },
            ReleasePolicy::Review => Release::Held,
            ReleasePolicy::Aggregate => Release::AggregateOnly,
        }
    }

    /// The tasks waiting for the owner's approval.
    pub async fn pending(&self) -> Vec<PendingApproval> {
        let tasks = self
            .book
            .tasks_where(|t| t.report.state == TaskState::AwaitingApproval)
            .await;
        let mut pending = Vec::new();
        for t in tasks {
            pending.push(PendingApproval {
                id: t.spec.job_id.clone(),
                requester: t.origin,
                requester_name: None,
                image_id: self.executor.image_id(&t.spec.image).await.ok(),
                image: t.spec.image,
                argv: t.spec.argv,
                network: t.spec.network,
                memory_mb: (t.spec.memory_bytes >> 20) as u64,
                cpus: t.spec.nano_cpus as f64 / 1e9,
                timeout_secs: t.spec.timeout_ms as f64 / 1000.0,
                inputs: t.spec.inputs,
                requested_ms: t.requested_ms,
            });
        }
        pending
    }

    /// The owner approves (with `always`, also the image's digest for
    /// later jobs) or denies a task that awaits approval.
    pub async fn decide(
        &self,
        job_id: &str,
        approve: bool,
        always: bool,
        reason: Option<String>,
    ) -> Result<String, PolicyError> {
        let missing = || PolicyError::NotFound(format!("no request {job_id} awaits approval"));
        iris_behaviours::validate_job_id(job_id).map_err(PolicyError::Invalid)?;
        let task = self.book.load(job_id).await.ok_or_else(missing)?;
        if task.report.state != TaskState::AwaitingApproval {
            return Err(missing());
        }
        // The digest is taken now: what the owner approves is what runs.
        let image_id = match self.executor.image_id(&task.spec.image).await {
            Ok(id) => id,
            Err(e) if approve => {
                return Err(PolicyError::Invalid(format!(
                    "cannot approve: {} is not here ({e})",
                    task.spec.image
                )))
            }
            Err(_) => String::new(),
        };
        let tell = self
            .verdicts
            .lock()
            .expect("lock")
            .remove(job_id)
            .ok_or_else(missing)?;
        if approve && always {
            // Exactly what the owner was shown: this digest, this command,
            // and for a task that read one dataset, that dataset only.
            let approved = ApprovedImage {
                digest: image_id.clone(),
                name: task.spec.image.clone(),
                dataset: task.spec.dataset.clone(),
                command: CommandRule::Exact {
                    argv: task.spec.argv.clone(),
                },
            };
            let change = format!("approved image {approved}");
            let added = self
                .egress
                .policy()
                .change(change, |p| {
                    if !p.approved.contains(&approved) {
                        p.approved.push(approved);
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = added {
                self.verdicts
                    .lock()
                    .expect("lock")
                    .insert(job_id.into(), tell);
                return Err(e);
            }
        }
        let reason = reason.unwrap_or_else(|| "no reason given".into());
        let decided = AuditEvent::Decision {
            subject: job_id.to_string(),
            from: task.origin,
            image_id: Some(image_id.clone()).filter(|id| !id.is_empty()),
            verdict: if approve {
                Decided::Approved
            } else {
                Decided::Denied
            },
            by: DecidedBy::Owner,
            reason: if approve {
                "approved by the owner".into()
            } else {
                reason.clone()
            },
        };
        if let Err(e) = self.audit.append(decided).await {
            self.verdicts
                .lock()
                .expect("lock")
                .insert(job_id.into(), tell);
            return Err(PolicyError::Local(format!(
                "cannot record the decision: {e}"
            )));
        }
        let _ = tell.send(if approve { Ok(image_id) } else { Err(reason) });
        Ok(job_id.to_string())
    }

    /// The tasks whose outputs wait for the owner's release.
    pub async fn releases(&self) -> Vec<PendingRelease> {
        let tasks = self.book.tasks_where(|t| t.release == Release::Held).await;
        let mut pending = Vec::new();
        for task in tasks {
            let ((files, unnamed), bytes) = self.output_files(&task.spec.job_id).await;
            if files.is_empty() && unnamed.is_empty() {
                continue;
            }
            pending.push(PendingRelease {
                job_id: task.spec.job_id.clone(),
                requester: task.origin,
                requester_name: None,
                image: task.spec.image.clone(),
                argv: task.spec.argv.clone(),
                state: task.report.state,
                finished_ms: task.report.finished_ms,
                files,
                unnamed,
                bytes,
            });
        }
        pending
    }

    /// A task's outputs: the names that are UTF-8 and those that are not
    /// (escaped), and their bytes.
    async fn output_files(&self, job_id: &str) -> ((Vec<String>, Vec<String>), u64) {
        let (dir, _) = self.executor.workspace().output_dirs(job_id);
        tokio::task::spawn_blocking(move || {
            (
                crate::workspace::outputs_under(&dir),
                crate::workspace::bytes_under(&dir),
            )
        })
        .await
        .unwrap_or_default()
    }

    /// The owner releases a task's held outputs to the node that asked
    /// for them, or refuses to; the node hears of it in a new report.
    pub async fn decide_release(
        &self,
        job_id: &str,
        release: bool,
        reason: Option<String>,
    ) -> Result<Vec<String>, PolicyError> {
        iris_behaviours::validate_job_id(job_id).map_err(PolicyError::Invalid)?;
        let mut task = self
            .book
            .load(job_id)
            .await
            .filter(|t| t.release == Release::Held)
            .ok_or_else(|| {
                PolicyError::NotFound(format!("job {job_id} has no outputs held for review"))
            })?;
        self.audit
            .append(AuditEvent::ReleaseDecided {
                job_id: job_id.to_string(),
                released: release,
                reason: reason.clone(),
            })
            .await
            .map_err(|e| PolicyError::Local(format!("cannot record the decision: {e}")))?;
        task.release = if release {
            Release::Released {
                by: DecidedBy::Owner,
            }
        } else {
            Release::Denied {
                reason: reason.unwrap_or_else(|| "no reason given".into()),
            }
        };
        let ((files, unnamed), _) = self.output_files(job_id).await;
        let (listed, unnamed, held) =
            self.egress
                .report_outputs(job_id, &task.release, files.clone(), unnamed);
        self.book
            .update(&mut task, |r| {
                r.set_outputs(listed);
                r.set_unnamed_outputs(unnamed);
                r.held = held;
            })
            .await;
        Ok(files)
    }
}
