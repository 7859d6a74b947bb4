//! One task's container: created with the sandbox and mounts of its spec,
//! started, waited for (with its timeout and cancel), its logs copied to
//! files, removed, and its outputs listed.

use super::*;
use tokio_util::task::AbortOnDropHandle;

impl Executor {
    /// Runs one task to its end and removes its container. `logs` receives
    /// stdout and stderr; `cancel` stops the task early.
    /// `own_job`: this node asked for the task itself, so its inputs may
    /// come from its `gathered/`. `data`: the private data it sees.
    pub async fn run(
        &self,
        spec: &TaskSpec,
        logs_dir: &Path,
        own_job: bool,
        data: &DataMount,
        cancel: tokio::sync::watch::Receiver<bool>,
    ) -> TaskOutcome {
        match self.run_inner(spec, logs_dir, own_job, data, cancel).await {
            Ok(outcome) => outcome,
            Err(e) => TaskOutcome {
                end: TaskState::Failed,
                exit_code: None,
                outputs: Vec::new(),
                error: Some(e.to_string()),
                image_id: None,
            },
        }
    }

    async fn run_inner(
        &self,
        spec: &TaskSpec,
        logs_dir: &Path,
        own_job: bool,
        data: &DataMount,
        mut cancel: tokio::sync::watch::Receiver<bool>,
    ) -> Result<TaskOutcome, ExecutorError> {
        let docker = self.docker()?;
        let (out_dir, host_out) = self.workspace.output_dirs(&spec.job_id);
        let private = self.workspace.local.join("private");
        create_dirs(&[&out_dir, logs_dir, &private]).await?;
        self.give_to_job_user(&out_dir).await?;
        // The tag is resolved once, and the container made from that id: the
        // report names exactly the image that ran, whatever the tag means later.
        let image_id =
            docker
                .inspect_image(&spec.image)
                .await?
                .id
                .ok_or_else(|| ExecutorError::File {
                    path: PathBuf::from(&spec.image),
                    message: "the engine gave this image no id".into(),
                })?;
        let name = format!("iris-{}-{}", spec.job_id, &crate::store::random_hex(4));
        let mut body =
            self.container_body(spec, &host_out, own_job, data, (LABEL_JOB, &spec.job_id))?;
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
        outcome.outputs = files_under(&out_dir);
        Ok(outcome)
    }

    /// The user a job's container runs as: the workspace's owner, so its
    /// files belong to the node, but never root: a root-owned workspace
    /// gets [`JOB_USER`].
    pub(super) fn job_user(&self) -> String {
        match self.workspace.owner() {
            Some(owner) if !owner.starts_with("0:") => owner,
            _ => JOB_USER.into(),
        }
    }

    /// For [`JOB_USER`], the workspace's group as a supplementary group, so
    /// the job reads `private/` through its group bits (`iris init` makes it
    /// 0750); checked here, so a directory it cannot read is a clear error
    /// rather than a failing program.
    pub(super) fn job_groups(&self) -> Result<Option<Vec<String>>, ExecutorError> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if self.workspace.owner().as_deref() == Some(self.job_user().as_str()) {
            return Ok(None);
        }
        let private = self.workspace.local.join("private");
        let meta = std::fs::metadata(&private).map_err(|e| ExecutorError::File {
            path: private.clone(),
            message: e.to_string(),
        })?;
        if meta.permissions().mode() & 0o050 != 0o050 {
            return Err(ExecutorError::File {
                path: private,
                message: format!(
                    "jobs run as {JOB_USER} with the workspace's group, which cannot read \
                     this directory: make it group-readable (chmod g+rx, and g+r on its files)"
                ),
            });
        }
        Ok(Some(vec![meta.gid().to_string()]))
    }

    /// Makes a directory a container writes into writable for the job's
    /// user (only needed when that is not the workspace's owner).
    pub(super) async fn give_to_job_user(&self, dir: &Path) -> Result<(), ExecutorError> {
        let user = self.job_user();
        if self.workspace.owner().as_deref() == Some(user.as_str()) {
            return Ok(());
        }
        let (uid, gid) = user.split_once(':').unwrap_or((&user, &user));
        let (uid, gid) = (uid.parse().ok(), gid.parse().ok());
        let path = dir.to_owned();
        let changed =
            tokio::task::spawn_blocking(move || std::os::unix::fs::chown(&path, uid, gid))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        changed.map_err(|e| ExecutorError::File {
            path: dir.to_owned(),
            message: format!("cannot hand it to the job's user {user}: {e}"),
        })
    }

    pub(super) fn container_body(
        &self,
        spec: &TaskSpec,
        host_out: &Path,
        own_job: bool,
        data: &DataMount,
        kind: (&str, &str),
    ) -> Result<ContainerCreateBody, ExecutorError> {
        let bind = |source: PathBuf, target: &str, read_only: bool| Mount {
            target: Some(target.to_string()),
            source: Some(source.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(read_only),
            ..Default::default()
        };
        let labels = HashMap::from([
            (LABEL_NODE.to_string(), self.node_label.clone()),
            (kind.0.to_string(), kind.1.to_string()),
        ]);
        let data = match data {
            DataMount::Private => bind(
                self.workspace.host.join("private"),
                "/workspace/private",
                true,
            ),
            DataMount::Dataset(path) => {
                bind(self.workspace.host.join(path), "/workspace/data", true)
            }
        };
        let mut mounts = vec![data, bind(host_out.to_path_buf(), "/workspace/out", false)];
        for input in &spec.inputs {
            let source = self
                .workspace
                .input_source(input, own_job)
                .map_err(|reason| ExecutorError::BadInput {
                    input: input.clone(),
                    reason,
                })?;
            mounts.push(bind(source, &format!("/workspace/in/{input}"), true));
        }
        Ok(ContainerCreateBody {
            image: Some(spec.image.clone()),
            user: Some(self.job_user()),
            // Empty: the image's own command.
            cmd: (!spec.argv.is_empty()).then(|| spec.argv.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            working_dir: Some("/workspace".into()),
            network_disabled: Some(spec.network.is_none()),
            host_config: Some(HostConfig {
                group_add: self.job_groups()?,
                mounts: Some(mounts),
                network_mode: Some(spec.network.clone().unwrap_or_else(|| "none".into())),
                memory: Some(spec.memory_bytes),
                memory_swap: Some(spec.memory_bytes),
                nano_cpus: Some(spec.nano_cpus),
                pids_limit: Some(spec.pids_limit),
                readonly_rootfs: Some(true),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                ..Default::default()
            }),
            ..Default::default()
        })
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
        let logs = AbortOnDropHandle::new(tokio::spawn(copy_logs(
            docker.clone(),
            name.to_string(),
            logs_dir.to_path_buf(),
            self.limits.max_log_bytes,
        )));
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
        let _ = tokio::time::timeout(Duration::from_secs(5), logs).await;
        Ok(TaskOutcome {
            end,
            exit_code,
            outputs: Vec::new(),
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

fn exit_end(code: i64) -> (TaskState, Option<i64>, Option<String>) {
    let end = if code == 0 {
        TaskState::Succeeded
    } else {
        TaskState::Failed
    };
    (end, Some(code), None)
}

/// Follows the container's output into `stdout.log` and `stderr.log`.
/// Copies a container's stdout and stderr to files, each up to `cap`
/// bytes; past that a line says the rest was cut, and the stream is read
/// on (and dropped) so the container never blocks on a full pipe.
async fn copy_logs(docker: Docker, name: String, dir: PathBuf, cap: u64) {
    let open = |file: &str| {
        let path = dir.join(file);
        async move { tokio::fs::File::create(&path).await }
    };
    let (Ok(mut stdout), Ok(mut stderr)) = (open("stdout.log").await, open("stderr.log").await)
    else {
        return tracing::warn!(dir = %dir.display(), "cannot create log files");
    };
    let options = LogsOptionsBuilder::default()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .build();
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
async fn watch_outputs(dir: PathBuf, cap: u64) -> u64 {
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

fn over_cap(size: u64, cap: u64) -> String {
    format!(
        "its outputs took {size} bytes, more than the cap of {cap} (jobs.max_output_bytes); \
         they were deleted"
    )
}
