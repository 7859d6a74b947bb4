//! One task's container: created with the sandbox and mounts of its spec,
//! started, waited for (with its timeout and cancel), its logs copied to
//! files, removed, and its outputs listed.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use bollard::{
    query_parameters::{
        CreateContainerOptionsBuilder, KillContainerOptionsBuilder, LogsOptionsBuilder,
        RemoveContainerOptionsBuilder,
    },
    Docker,
};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{
    create_dirs, sandbox::Sandbox, DataMount, ExecutorError, TaskLimits, TaskOutcome, TaskSpec,
    TaskState, LABEL_JOB,
};
use crate::workspace::outputs_under;

/// One task's run on an engine that answers.
pub(super) struct TaskRun<'a> {
    pub docker: &'a Docker,
    pub sandbox: &'a Sandbox,
    pub limits: TaskLimits,
}

impl TaskRun<'_> {
    /// Runs the task to its end and removes its container (see
    /// [`super::Executor::run`]).
    pub async fn run(
        &self,
        spec: &TaskSpec,
        logs_dir: &Path,
        own_job: bool,
        data: &DataMount,
        mut cancel: tokio::sync::watch::Receiver<bool>,
    ) -> Result<TaskOutcome, ExecutorError> {
        let docker = self.docker;
        let workspace = &self.sandbox.workspace;
        let (out_dir, host_out) = workspace.output_dirs(&spec.job_id);
        let private = workspace.local.join("private");
        create_dirs(&[&out_dir, logs_dir, &private]).await?;
        self.sandbox.give_to_job_user(&out_dir).await?;
        // The tag is resolved once, and the container made from that id: the
        // report names exactly the image that ran, whatever the tag means later.
        let image_id = super::image_id_of(docker, &spec.image).await?;
        let name = format!("iris-{}-{}", spec.job_id, &crate::store::random_hex(4));
        let job = (LABEL_JOB, spec.job_id.as_str());
        let mut body = self
            .sandbox
            .container_body(spec, &host_out, own_job, data, job)?;
        body.image = Some(image_id.clone());
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        docker.create_container(Some(options), body).await?;
        let outcome = self
            .start_and_wait(docker, &name, spec, logs_dir, &out_dir, &mut cancel)
            .await;
        let remove = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        if let Err(e) = docker.remove_container(&name, Some(remove)).await {
            tracing::warn!(container = %name, "cannot remove container: {e}");
        }
        let mut outcome = outcome?;
        outcome.image_id = Some(image_id);
        // A task that ended before the watch saw it pass the cap.
        let dir = out_dir.clone();
        let size = tokio::task::spawn_blocking(move || crate::workspace::bytes_under(&dir))
            .await
            .unwrap_or(0);
        if size > self.limits.max_output_bytes {
            let _ = tokio::fs::remove_dir_all(&out_dir).await;
            outcome.end = TaskState::Failed;
            outcome.error = Some(over_cap(size, self.limits.max_output_bytes));
            return Ok(outcome);
        }
        (outcome.outputs, outcome.unnamed_outputs) = outputs_under(&out_dir);
        Ok(outcome)
    }

    async fn start_and_wait(
        &self,
        docker: &Docker,
        name: &str,
        spec: &TaskSpec,
        logs_dir: &Path,
        out_dir: &Path,
        cancel: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<TaskOutcome, ExecutorError> {
        docker.start_container(name, None).await?;
        // Aborted when dropped: the copy never outlives this task's run.
        let mut logs = tokio::task::JoinSet::new();
        logs.spawn(copy_logs(
            docker.clone(),
            name.to_string(),
            logs_dir.to_path_buf(),
            self.limits.max_log_bytes,
            None,
        ));
        let overflowing = watch_outputs(out_dir.to_owned(), self.limits.max_output_bytes);
        let mut wait = docker.wait_container(name, None);
        let timeout = tokio::time::sleep(Duration::from_millis(spec.timeout_ms));
        let (end, exit_code, error) = tokio::select! {
            result = wait.next() => match result {
                Some(Ok(response)) => exit_end(response.status_code),
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => exit_end(code),
                Some(Err(e)) => (TaskState::Failed, None, Some(e.to_string())),
                None => (TaskState::Failed, None, Some("the engine ended the wait without a status".into())),
            },
            _ = timeout => {
                self.kill(docker, name).await;
                (TaskState::TimedOut, None, Some(format!("killed after the timeout of {} ms", spec.timeout_ms)))
            }
            // The guard wait_for returns must not live across the kill.
            _ = async { let _ = cancel.wait_for(|c| *c).await; } => {
                self.kill(docker, name).await;
                (TaskState::Cancelled, None, Some("cancelled".into()))
            }
            size = overflowing => {
                self.kill(docker, name).await;
                (TaskState::Failed, None, Some(over_cap(size, self.limits.max_output_bytes)))
            }
        };
        // The log stream ends with the container; give it a moment.
        let _ = tokio::time::timeout(Duration::from_secs(5), logs.join_next()).await;
        Ok(TaskOutcome {
            end,
            exit_code,
            outputs: Vec::new(),
            unnamed_outputs: Vec::new(),
            error,
            image_id: None,
        })
    }

    async fn kill(&self, docker: &Docker, name: &str) {
        let options = KillContainerOptionsBuilder::default()
            .signal("SIGKILL")
            .build();
        if let Err(e) = docker.kill_container(name, Some(options)).await {
            tracing::debug!(container = %name, "kill: {e}");
        }
    }
}

pub(super) fn exit_end(code: i64) -> (TaskState, Option<i64>, Option<String>) {
    let end = if code == 0 {
        TaskState::Succeeded
    } else {
        TaskState::Failed
    };
    (end, Some(code), None)
}

/// Copies a container's stdout and stderr to `stdout.log` and
/// `stderr.log` in `dir`, each up to `cap` bytes; past that a line says
/// the rest was cut, and the stream is read on (and dropped) so the
/// container never blocks on a full pipe. Without `since`, follows the
/// container to its end; with it (seconds since the epoch), copies what
/// it wrote from then on, as it stands (a warm worker's round).
pub(super) async fn copy_logs(
    docker: Docker,
    name: String,
    dir: PathBuf,
    cap: u64,
    since: Option<i32>,
) {
    let open = |file: &str| {
        let path = dir.join(file);
        async move { tokio::fs::File::create(&path).await }
    };
    let (Ok(mut stdout), Ok(mut stderr)) = (open("stdout.log").await, open("stderr.log").await)
    else {
        return tracing::warn!(dir = %dir.display(), "cannot create log files");
    };
    let mut options = LogsOptionsBuilder::default()
        .follow(since.is_none())
        .stdout(true)
        .stderr(true);
    if let Some(since) = since {
        options = options.since(since);
    }
    let options = options.build();
    let mut stream = docker.logs(&name, Some(options));
    let mut written = [0u64; 2];
    while let Some(Ok(output)) = stream.next().await {
        let (file, count, bytes) = match &output {
            bollard::container::LogOutput::StdErr { message } => {
                (&mut stderr, &mut written[1], message.as_ref())
            }
            other => (&mut stdout, &mut written[0], other.as_ref()),
        };
        if *count >= cap {
            continue;
        }
        let room = (cap - *count).min(bytes.len() as u64) as usize;
        let mut result = file.write_all(&bytes[..room]).await;
        *count += room as u64;
        if *count >= cap && result.is_ok() {
            let note = format!("\n[iris: log cut at {cap} bytes (jobs.max_log_bytes)]\n");
            result = file.write_all(note.as_bytes()).await;
        }
        if result.is_err() {
            break;
        }
    }
    let _ = stdout.flush().await;
    let _ = stderr.flush().await;
}

/// Resolves with the outputs' size once they take more than `cap` bytes;
/// checked every second while the task runs (a task's outputs are few).
pub(super) async fn watch_outputs(dir: PathBuf, cap: u64) -> u64 {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let dir = dir.clone();
        let size = tokio::task::spawn_blocking(move || crate::workspace::bytes_under(&dir))
            .await
            .unwrap_or(0);
        if size > cap {
            return size;
        }
    }
}

pub(super) fn over_cap(size: u64, cap: u64) -> String {
    format!(
        "its outputs took {size} bytes, more than the cap of {cap} (jobs.max_output_bytes); \
         they were deleted"
    )
}
