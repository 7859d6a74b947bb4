//! Warm workers: a training's container kept running from one round to
//! the next, so that a Python program pays for its start and its imports
//! once, not every round (docs/warm-workers.md).
//!
//! Each round is still a task of its own, admitted, approved, audited and
//! gated like any other; only its container is not new. The container is
//! made as a job's is (the sandbox, its dataset alone, no network), except
//! that `/workspace/in` is a directory of the worker's into which the node
//! copies each round's inputs, and `/workspace/out` one in which each
//! round has a directory of its own. A round is handed over by rewriting
//! `/workspace/in/.iris-round.json` (`{"job", "argv", "out"}`, named by
//! `IRIS_ROUND_FILE`); the program writes the round's files into `out`,
//! then `/workspace/out/<job>.done` holding its exit code. The node takes
//! the round's files from the round's own directory only: whatever the
//! program writes anywhere else, or late for an earlier round, is never
//! any round's output. A program that knows nothing of rounds runs its
//! argv once and exits, and is taken as a job that ran cold.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use bollard::{
    models::{Mount, MountType},
    query_parameters::{
        CreateContainerOptionsBuilder, KillContainerOptionsBuilder, RemoveContainerOptionsBuilder,
    },
    Docker,
};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::{
    create_dirs,
    sandbox::Sandbox,
    task::{copy_logs, exit_end, over_cap, watch_outputs},
    DataMount, ExecutorError, TaskLimits, TaskOutcome, TaskSpec, TaskState, LABEL_JOB,
};
use crate::workspace::outputs_under;

/// The file a round is handed over in, inside the container.
pub const ROUND_FILE: &str = "/workspace/in/.iris-round.json";
/// A worker no round has used for this long is stopped.
pub const WARM_IDLE: Duration = Duration::from_secs(180);
/// How often the node looks for the end of a round.
const POLL: Duration = Duration::from_millis(20);
/// Longest exit code file read.
const MAX_DONE_BYTES: u64 = 64;

/// A worker between rounds.
struct Worker {
    container: String,
    /// `warm/<fingerprint>/` of the workspace, on this node's side.
    dir: PathBuf,
    idle_since: Instant,
}

/// The workers between rounds, by the fingerprint of what they were made
/// of; a worker in a round is out of the map, so no two rounds share one.
#[derive(Default)]
pub struct WarmWorkers(Mutex<HashMap<String, Worker>>);

impl WarmWorkers {
    fn take(&self, fingerprint: &str) -> Option<Worker> {
        self.0.lock().expect("lock").remove(fingerprint)
    }

    fn put_back(&self, fingerprint: String, mut worker: Worker) {
        worker.idle_since = Instant::now();
        self.0.lock().expect("lock").insert(fingerprint, worker);
    }

    /// Stops the workers idle for `idle` or more (every one, with zero).
    pub async fn stop_idle(&self, docker: &Docker, idle: Duration) {
        let stale: Vec<Worker> = {
            let mut workers = self.0.lock().expect("lock");
            let keys: Vec<String> = workers
                .iter()
                .filter(|(_, w)| w.idle_since.elapsed() >= idle)
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| workers.remove(k)).collect()
        };
        for worker in stale {
            tracing::info!(container = %worker.container, "stopping an idle warm worker");
            discard(docker, worker).await;
        }
    }
}

/// One round on a warm worker (see the module's documentation).
pub(super) struct WarmRun<'a> {
    pub docker: &'a Docker,
    pub sandbox: &'a Sandbox,
    pub limits: TaskLimits,
    pub workers: &'a WarmWorkers,
}

/// How a round ended, as the worker told it or the node saw it.
enum RoundEnd {
    /// The program wrote its exit code: the worker waits for the next.
    Done(i64),
    /// The container exited: a program that ran its argv once.
    Exited(i64),
    /// Timed out, cancelled, over the output cap, or the engine failed:
    /// the worker is killed.
    Stopped(TaskState, String),
}

impl WarmRun<'_> {
    /// Runs `spec` as a round on the worker of `owner`'s training (made
    /// anew if there is none, or it died), then keeps the worker for the
    /// next round if the round ended as one.
    pub async fn run(
        &self,
        owner: &str,
        spec: &TaskSpec,
        logs_dir: &Path,
        own_job: bool,
        data: &DataMount,
        mut cancel: tokio::sync::watch::Receiver<bool>,
    ) -> Result<TaskOutcome, ExecutorError> {
        let docker = self.docker;
        let workspace = &self.sandbox.workspace;
        let image_id = super::image_id_of(docker, &spec.image).await?;
        // This node's own label first: nodes may share an engine (the
        // testnet), and a worker is never another node's.
        let owner = format!("{} {owner}", self.sandbox.node_label);
        let fingerprint = fingerprint(&owner, &image_id, spec, data);
        let (out_dir, _) = workspace.output_dirs(&spec.job_id);
        create_dirs(&[&out_dir, logs_dir]).await?;
        let mut worker = match self.workers.take(&fingerprint) {
            Some(worker) if self.is_running(&worker).await => Some(worker),
            Some(dead) => {
                discard(docker, dead).await;
                None
            }
            None => None,
        };
        let dir = match &worker {
            Some(worker) => worker.dir.clone(),
            None => workspace.local.join("warm").join(&fingerprint[..32]),
        };
        let round_out = dir.join("out").join(&spec.job_id);
        create_dirs(&[&dir.join("in"), &round_out]).await?;
        self.sandbox.give_to_job_user(&dir.join("out")).await?;
        self.sandbox.give_to_job_user(&round_out).await?;
        hand_over(workspace, spec, own_job, &dir).await?;
        let started = std::time::SystemTime::now();
        let fresh = worker.is_none();
        if fresh {
            let container = self
                .start(spec, own_job, data, &image_id, &fingerprint)
                .await?;
            worker = Some(Worker {
                container,
                dir: dir.clone(),
                idle_since: Instant::now(),
            });
        }
        let worker = worker.expect("a worker");
        let end = self
            .wait_round(&worker, spec, &round_out, &mut cancel)
            .await;
        let since = started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i32);
        let (name, cap) = (worker.container.clone(), self.limits.max_log_bytes);
        copy_logs(docker.clone(), name, logs_dir.to_owned(), cap, Some(since)).await;
        let (state, exit_code, error) = match end {
            RoundEnd::Done(code) => {
                take_round(&round_out, &out_dir, &dir.join("out"), &spec.job_id, false).await;
                self.workers.put_back(fingerprint, worker);
                exit_end(code)
            }
            // A program that ran its argv once and exited: a cold job, if
            // its container was made for this round; one that served
            // rounds before and died in this one has only this round's.
            RoundEnd::Exited(code) => {
                take_round(&round_out, &out_dir, &dir.join("out"), &spec.job_id, fresh).await;
                discard(docker, worker).await;
                exit_end(code)
            }
            RoundEnd::Stopped(state, why) => {
                discard(docker, worker).await;
                let _ = tokio::fs::remove_dir_all(&out_dir).await;
                let _ = tokio::fs::create_dir_all(&out_dir).await;
                (state, None, Some(why))
            }
        };
        let mut outcome = TaskOutcome::failed(String::new());
        (outcome.end, outcome.exit_code, outcome.error) = (state, exit_code, error);
        outcome.image_id = Some(image_id);
        (outcome.outputs, outcome.unnamed_outputs) = outputs_under(&out_dir);
        Ok(outcome)
    }

    /// Creates and starts the worker's container: a job's sandbox, with the
    /// worker's own `in` and `out` instead of the task's.
    async fn start(
        &self,
        spec: &TaskSpec,
        own_job: bool,
        data: &DataMount,
        image_id: &str,
        fingerprint: &str,
    ) -> Result<String, ExecutorError> {
        let host = self
            .sandbox
            .workspace
            .host
            .join("warm")
            .join(&fingerprint[..32]);
        let job = (LABEL_JOB, spec.job_id.as_str());
        let mut body = self
            .sandbox
            .container_body(spec, &host.join("out"), own_job, data, job)?;
        body.image = Some(image_id.to_string());
        if let Some(config) = body.host_config.as_mut() {
            let mounts = config.mounts.get_or_insert_with(Vec::new);
            mounts.retain(|m| {
                !m.target
                    .as_deref()
                    .is_some_and(|t| t.starts_with("/workspace/in/"))
            });
            mounts.push(Mount {
                target: Some("/workspace/in".into()),
                source: Some(host.join("in").display().to_string()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            });
        }
        body.env
            .get_or_insert_with(Vec::new)
            .push(format!("IRIS_ROUND_FILE={ROUND_FILE}"));
        let name = format!("iris-warm-{}", &fingerprint[..16]);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        // A container of that name left by a crash is this worker's: gone.
        let _ = self
            .docker
            .remove_container(&name, Some(force_remove()))
            .await;
        self.docker.create_container(Some(options), body).await?;
        if let Err(e) = self.docker.start_container(&name, None).await {
            let _ = self
                .docker
                .remove_container(&name, Some(force_remove()))
                .await;
            return Err(e.into());
        }
        Ok(name)
    }

    async fn is_running(&self, worker: &Worker) -> bool {
        let inspected = self.docker.inspect_container(&worker.container, None).await;
        inspected
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.running)
            .unwrap_or(false)
    }

    /// Waits for the round's exit code, the container's end, the
    /// timeout, a cancel or the output cap.
    async fn wait_round(
        &self,
        worker: &Worker,
        spec: &TaskSpec,
        round_out: &Path,
        cancel: &mut tokio::sync::watch::Receiver<bool>,
    ) -> RoundEnd {
        let done = worker.dir.join("out").join(format!("{}.done", spec.job_id));
        let mut wait = self.docker.wait_container(&worker.container, None);
        let cap = self.limits.max_output_bytes;
        tokio::select! {
            code = poll_done(&done) => RoundEnd::Done(code),
            result = wait.next() => match result {
                Some(Ok(response)) => RoundEnd::Exited(response.status_code),
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => RoundEnd::Exited(code),
                Some(Err(e)) => RoundEnd::Stopped(TaskState::Failed, e.to_string()),
                None => RoundEnd::Stopped(TaskState::Failed, "the engine ended the wait without a status".into()),
            },
            _ = tokio::time::sleep(Duration::from_millis(spec.timeout_ms)) => RoundEnd::Stopped(
                TaskState::TimedOut,
                format!("the warm worker was killed after the round's timeout of {} ms", spec.timeout_ms),
            ),
            _ = async { let _ = cancel.wait_for(|c| *c).await; } => {
                RoundEnd::Stopped(TaskState::Cancelled, "cancelled".into())
            }
            size = watch_outputs(round_out.to_owned(), cap) => {
                RoundEnd::Stopped(TaskState::Failed, over_cap(size, cap))
            }
        }
    }
}

/// What makes two rounds fit for one worker: this node, the node that
/// asked and its training, the image by id, and every part of the sandbox (environment,
/// limits, network, data). The argv is the round's own.
fn fingerprint(owner: &str, image_id: &str, spec: &TaskSpec, data: &DataMount) -> String {
    let mut hash = Sha256::new();
    let parts = [
        owner.to_string(),
        spec.warm.clone().unwrap_or_default(),
        image_id.to_string(),
        format!("{:?}", spec.env),
        format!("{:?}", spec.network),
        format!(
            "{} {} {}",
            spec.memory_bytes, spec.nano_cpus, spec.pids_limit
        ),
        format!("{data:?} {}", spec.dry_run),
    ];
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hex::encode(hash.finalize())
}

/// Copies the round's inputs into the worker's `in/` (where the job would
/// have them mounted, `/workspace/in/<input>`), then writes the round file,
/// whole, by a rename: the program never reads half of either.
async fn hand_over(
    workspace: &crate::workspace::Workspace,
    spec: &TaskSpec,
    own_job: bool,
    dir: &Path,
) -> Result<(), ExecutorError> {
    let bad = |input: &str, reason: String| ExecutorError::BadInput {
        input: input.to_string(),
        reason,
    };
    let into = dir.join("in");
    for input in &spec.inputs {
        let source = workspace
            .input_local(input, own_job)
            .map_err(|reason| bad(input, reason))?;
        let (from, to) = (source, into.join(input));
        tokio::task::spawn_blocking(move || copy_tree(&from, &to))
            .await
            .map_err(|e| bad(input, e.to_string()))?
            .map_err(|e| bad(input, format!("cannot hand it to the warm worker: {e}")))?;
    }
    let round = serde_json::json!({
        "job": spec.job_id,
        "argv": spec.argv,
        "out": format!("/workspace/out/{}", spec.job_id),
    });
    let partial = into.join(".iris-round.json.partial");
    let file_error = |e: std::io::Error| ExecutorError::File {
        path: into.join(".iris-round.json"),
        message: e.to_string(),
    };
    tokio::fs::write(&partial, round.to_string())
        .await
        .map_err(file_error)?;
    tokio::fs::rename(&partial, into.join(".iris-round.json"))
        .await
        .map_err(file_error)
}

/// A file or a directory's files, copied; links are not followed.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if meta.is_file() {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from, to).map(|_| ())
    } else {
        Ok(())
    }
}

/// Resolves with the exit code the program wrote for the round.
async fn poll_done(done: &Path) -> i64 {
    loop {
        if let Ok(code) = read_exit_code(done).await {
            return code;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The exit code in a `.done` file: a decimal number (anything else is a
/// failure, 1), read once its line is whole. A file that is there but
/// not yet written (a program's `open` before its `write`) is not an end:
/// read then, it once failed a round that had succeeded.
async fn read_exit_code(done: &Path) -> std::io::Result<i64> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(done).await?;
    let mut bytes = Vec::new();
    file.take(MAX_DONE_BYTES).read_to_end(&mut bytes).await?;
    exit_code_of(&bytes).ok_or_else(|| std::io::ErrorKind::WouldBlock.into())
}

/// The exit code a `.done` file's bytes give, or none while its line is
/// not whole; a line longer than [`MAX_DONE_BYTES`] is a failure.
fn exit_code_of(bytes: &[u8]) -> Option<i64> {
    let whole = bytes.ends_with(b"\n") || bytes.len() as u64 >= MAX_DONE_BYTES;
    let text = std::str::from_utf8(bytes).unwrap_or("");
    whole.then(|| text.trim().parse().unwrap_or(1))
}

/// Moves the round's files to the task's output directory; with `cold`
/// (the program ran its argv once and exited), also what it wrote at the
/// top of `/workspace/out`, where a job writes. Round files of other
/// rounds and exit codes stay behind, and go with the worker.
async fn take_round(round_out: &Path, out_dir: &Path, worker_out: &Path, job: &str, cold: bool) {
    let (round_out, out_dir, worker_out, round) = (
        round_out.to_owned(),
        out_dir.to_owned(),
        worker_out.to_owned(),
        job.to_string(),
    );
    let moved = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut sources = vec![round_out];
        if cold {
            sources.push(worker_out.clone());
        }
        for source in sources {
            for entry in std::fs::read_dir(&source)? {
                let entry = entry?;
                let name = entry.file_name();
                let text = name.to_string_lossy();
                let is_round = source == worker_out && (text == round || text.ends_with(".done"));
                if !is_round {
                    std::fs::rename(entry.path(), out_dir.join(&name))?;
                }
            }
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    if let Err(e) = moved {
        tracing::warn!(job = %job, "cannot take the round's outputs: {e}");
    }
}

fn force_remove() -> bollard::query_parameters::RemoveContainerOptions {
    RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build()
}

/// Kills and removes a worker's container, and its directory with
/// whatever its rounds left there.
async fn discard(docker: &Docker, worker: Worker) {
    let kill = KillContainerOptionsBuilder::default()
        .signal("SIGKILL")
        .build();
    let _ = docker.kill_container(&worker.container, Some(kill)).await;
    if let Err(e) = docker
        .remove_container(&worker.container, Some(force_remove()))
        .await
    {
        tracing::warn!(container = %worker.container, "cannot remove a warm worker: {e}");
    }
    let _ = tokio::fs::remove_dir_all(&worker.dir).await;
}

#[cfg(test)]
mod tests {
    use super::exit_code_of;

    /// A `.done` file is read once its line is whole: one that is there
    /// but empty, or half written, is not yet an end.
    #[test]
    fn an_exit_code_counts_once_its_line_is_whole() {
        assert_eq!(exit_code_of(b""), None);
        assert_eq!(exit_code_of(b"0"), None);
        assert_eq!(exit_code_of(b"0\n"), Some(0));
        assert_eq!(exit_code_of(b" 3 \n"), Some(3));
        assert_eq!(exit_code_of(b"done\n"), Some(1));
        assert_eq!(exit_code_of(&[b'7'; 64]), Some(1), "too long: a failure");
    }
}
