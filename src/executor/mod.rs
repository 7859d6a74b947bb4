//! Runs containers on the local Docker engine, the way a job must run:
//! private data read-only, a fresh writable output directory, no network
//! unless asked, memory/CPU/pid limits, no capabilities, no new privileges,
//! a timeout, and argv passed as an array (no shell anywhere).
//!
//! The node keeps working when Docker is unreachable: the executor then
//! reports itself unavailable and every task fails with that reason. It
//! asks again every few seconds ([`Executor::check`]), so an engine that
//! starts after the node, or stops and starts again, is noticed without a
//! restart.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use bollard::{
    query_parameters::{
        CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptions,
        RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder,
    },
    Docker,
};
use futures::StreamExt;
pub use iris_behaviours::{TaskSpec, TaskState};
use serde::{Deserialize, Serialize};

mod sandbox;
mod task;
mod warm;
pub use crate::workspace::Workspace;
use sandbox::Sandbox;
use task::TaskRun;
pub use warm::{WarmWorkers, ROUND_FILE, WARM_IDLE};

/// Every container Iris creates carries this label (value: the node's peer
/// id), so a restarted node finds its own containers and nobody else's.
pub const LABEL_NODE: &str = "iris.node";
/// The job a container belongs to.
pub const LABEL_JOB: &str = "iris.job";
/// The name of a long-lived container (a session).
pub const LABEL_SESSION: &str = "iris.session";

/// The user job containers run as when root owns the workspace: never
/// root itself (`nobody:nogroup`).
pub const JOB_USER: &str = "65534:65534";

/// Caps on what one task may leave on the node's disk.
#[derive(Debug, Clone, Copy)]
pub struct TaskLimits {
    /// Each of stdout and stderr; the rest is dropped.
    pub max_log_bytes: u64,
    /// All of a task's outputs together; past it the task is killed.
    pub max_output_bytes: u64,
}

impl Default for TaskLimits {
    fn default() -> Self {
        Self {
            max_log_bytes: 64 << 20,
            max_output_bytes: 64 << 20,
        }
    }
}

/// What a command run in a session printed, and how it ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecOutput {
    pub exit_code: Option<i64>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output beyond the limit was dropped.
    pub truncated: bool,
}

/// Why the executor could not do something.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("executor: unavailable ({0})")]
    Unavailable(String),
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("the command did not finish within {0:?}; the session was restarted to stop it")]
    Timeout(Duration),
    #[error("image {path} could not be loaded: {message}")]
    BadImage { path: PathBuf, message: String },
    #[error("input '{input}': {reason}")]
    BadInput { input: String, reason: String },
}

impl ExecutorError {
    /// The engine answered that there is no such image or container: the
    /// thing is not here, the engine itself is fine.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ExecutorError::Docker(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            })
        )
    }
}

/// An image the engine has, as the map shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub id: String,
    pub tags: Vec<String>,
}

/// The private data a task's container sees, read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataMount {
    /// The whole private area, at `/workspace/private`.
    Private,
    /// One directory of the workspace (a declared dataset, or the mock
    /// sample of a dry run), at `/workspace/data`; nothing else private.
    Dataset(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskOutcome {
    pub end: TaskState,
    pub exit_code: Option<i64>,
    /// Files the task wrote, relative to its output directory.
    pub outputs: Vec<String>,
    /// Files it wrote whose names are not UTF-8, escaped: refused.
    pub unnamed_outputs: Vec<String>,
    /// Why it failed before or outside the container's own exit code.
    pub error: Option<String>,
    /// The id of the image it ran (`sha256:...`), once it was resolved.
    pub image_id: Option<String>,
}

impl TaskOutcome {
    /// A task that failed before its container could run, for `error`.
    pub fn failed(error: String) -> Self {
        Self {
            end: TaskState::Failed,
            exit_code: None,
            outputs: Vec::new(),
            unnamed_outputs: Vec::new(),
            error: Some(error),
            image_id: None,
        }
    }
}

/// The engine's id of `image`: a task's container is made from the id,
/// so its report names exactly the image that ran, whatever the tag
/// means later.
async fn image_id_of(docker: &Docker, image: &str) -> Result<String, ExecutorError> {
    docker
        .inspect_image(image)
        .await?
        .id
        .ok_or_else(|| ExecutorError::File {
            path: PathBuf::from(image),
            message: "the engine gave this image no id".into(),
        })
}

async fn create_dirs(dirs: &[&Path]) -> Result<(), ExecutorError> {
    for dir in dirs {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| ExecutorError::File {
                path: dir.to_path_buf(),
                message: e.to_string(),
            })?;
    }
    Ok(())
}

pub struct Executor {
    /// The engine's client once it answered, or why it did not.
    docker: std::sync::RwLock<Result<Docker, String>>,
    /// Where the engine is: a `unix://` path, or `DOCKER_HOST` or the
    /// default socket when none.
    docker_host: Option<String>,
    sandbox: Sandbox,
    limits: TaskLimits,
    /// Trainings' containers between their rounds.
    warm: WarmWorkers,
}

/// How long the engine has to answer a ping before it counts as away.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the engine and agrees on an API version, or says why not.
async fn connect_engine(docker_host: Option<&str>) -> Result<Docker, String> {
    let client = match docker_host {
        Some(host) => {
            let path = host.strip_prefix("unix://").unwrap_or(host);
            Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
        }
        None => Docker::connect_with_local_defaults(),
    }
    .map_err(|e| e.to_string())?;
    let docker = tokio::time::timeout(PING_TIMEOUT, client.negotiate_version())
        .await
        .map_err(|_| "the engine did not answer".to_string())?
        .map_err(|e| e.to_string())?;
    ping(&docker).await?;
    Ok(docker)
}

async fn ping(docker: &Docker) -> Result<(), String> {
    match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the engine did not answer".into()),
    }
}

impl Executor {
    /// Connects to `docker_host` (a `unix://` path), or else `DOCKER_HOST` or
    /// the default socket, and agrees on an API version. Never fails: an
    /// unreachable engine is recorded and reported.
    pub async fn connect(
        node_label: String,
        workspace: Workspace,
        docker_host: Option<&str>,
    ) -> Self {
        let docker = connect_engine(docker_host).await;
        if let Err(reason) = &docker {
            tracing::warn!("executor: unavailable ({reason})");
        }
        Self {
            docker: std::sync::RwLock::new(docker),
            docker_host: docker_host.map(str::to_string),
            sandbox: Sandbox {
                node_label,
                workspace,
            },
            limits: TaskLimits::default(),
            warm: WarmWorkers::default(),
        }
    }

    /// Asks the engine whether it is there (connecting anew if it was
    /// not), records the answer, and returns it.
    pub async fn check(&self) -> Result<(), String> {
        let current = self.docker.read().expect("lock").clone();
        let next = match &current {
            Ok(docker) => ping(docker).await.map(|()| docker.clone()),
            Err(_) => connect_engine(self.docker_host.as_deref()).await,
        };
        match (&current, &next) {
            (Err(_), Ok(_)) => tracing::info!("executor: the Docker engine is available"),
            (Ok(_), Err(reason)) => tracing::warn!("executor: unavailable ({reason})"),
            _ => {}
        }
        let state = next.as_ref().map(|_| ()).map_err(Clone::clone);
        *self.docker.write().expect("lock") = next;
        state
    }

    /// The same executor with other caps on what a task may leave.
    pub fn with_limits(mut self, limits: TaskLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The engine's state at the last check.
    pub fn availability(&self) -> Result<(), String> {
        let docker = self.docker.read().expect("lock");
        docker.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    /// The engine's client (a handle, cheap to clone), or why there is none.
    fn docker(&self) -> Result<Docker, ExecutorError> {
        let docker = self.docker.read().expect("lock");
        docker.clone().map_err(ExecutorError::Unavailable)
    }

    pub fn workspace(&self) -> &Workspace {
        &self.sandbox.workspace
    }

    /// Runs one task to its end and removes its container. `logs_dir`
    /// receives stdout and stderr; `cancel` stops the task early.
    /// `own_job`: this node asked for the task itself, so its inputs may
    /// come from its `gathered/`. `data`: the private data it sees.
    /// `warm_for`: the node that asked, when the task is a round of a
    /// training ([`TaskSpec::warm`]): it runs on that training's warm
    /// worker, started if there is none, which stays for the next round.
    pub async fn run(
        &self,
        spec: &TaskSpec,
        logs_dir: &Path,
        own_job: bool,
        data: &DataMount,
        cancel: tokio::sync::watch::Receiver<bool>,
        warm_for: Option<&str>,
    ) -> TaskOutcome {
        let run = async {
            let (docker, sandbox, limits) = (self.docker()?, &self.sandbox, self.limits);
            match warm_for.filter(|_| spec.warm.is_some()) {
                Some(owner) => {
                    let workers = &self.warm;
                    let round = warm::WarmRun {
                        docker: &docker,
                        sandbox,
                        limits,
                        workers,
                    };
                    round
                        .run(owner, spec, logs_dir, own_job, data, cancel)
                        .await
                }
                None => {
                    let task = TaskRun {
                        docker: &docker,
                        sandbox,
                        limits,
                    };
                    task.run(spec, logs_dir, own_job, data, cancel).await
                }
            }
        };
        run.await
            .unwrap_or_else(|e| TaskOutcome::failed(e.to_string()))
    }

    /// Stops the warm workers no round has used for `idle` (all of them,
    /// with zero: at shutdown, no training's container outlives its node).
    pub async fn stop_warm(&self, idle: Duration) {
        if let Ok(docker) = self.docker() {
            self.warm.stop_idle(&docker, idle).await;
        }
    }

    /// The engine's id (`sha256:...`) of `image`, a name or an id: what
    /// an owner approves, since a tag can be moved and an id cannot.
    pub async fn image_id(&self, image: &str) -> Result<String, ExecutorError> {
        image_id_of(&self.docker()?, image).await
    }

    /// Tagged images the engine has.
    pub async fn images(&self) -> Result<Vec<ImageInfo>, ExecutorError> {
        let summaries = self
            .docker()?
            .list_images(None::<ListImagesOptions>)
            .await?;
        let mut images: Vec<ImageInfo> = summaries
            .into_iter()
            .filter(|s| s.repo_tags.iter().any(|t| t != "<none>:<none>"))
            .map(|s| ImageInfo {
                id: s.id,
                tags: s.repo_tags,
            })
            .collect();
        images.sort_by(|a, b| a.tags.cmp(&b.tags));
        Ok(images)
    }

    /// `docker load` of a `docker save` tar, streamed from disk. Returns what
    /// the engine reported loading.
    pub async fn load_image(&self, tar: &Path) -> Result<Vec<String>, ExecutorError> {
        let docker = self.docker()?;
        // Test hook (debug builds only): a slow engine, to show that loads
        // never overlap.
        if let Some(ms) = crate::faults::fault("IRIS_FAULT_SLOW_IMAGE_LOAD_MS") {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let bad = |message: String| ExecutorError::BadImage {
            path: tar.to_owned(),
            message,
        };
        let file = tokio::fs::File::open(tar)
            .await
            .map_err(|e| bad(e.to_string()))?;
        let body = tokio_util::io::ReaderStream::new(file);
        let mut progress = docker.import_image_stream(
            bollard::query_parameters::ImportImageOptions {
                quiet: true,
                ..Default::default()
            },
            body,
            None,
        );
        let mut loaded = Vec::new();
        while let Some(item) = progress.next().await {
            // What the engine says of the tar is about the tar; a lost
            // connection is about the engine.
            let info = item.map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError { message, .. }
                | bollard::errors::Error::DockerStreamError { error: message } => bad(message),
                other => ExecutorError::Docker(other),
            })?;
            if let Some(stream) = info.stream {
                let line = stream.trim();
                if let Some(name) = line
                    .strip_prefix("Loaded image: ")
                    .or(line.strip_prefix("Loaded image ID: "))
                {
                    loaded.push(name.to_string());
                }
            }
        }
        if loaded.is_empty() {
            return Err(bad(
                "the engine loaded nothing from it (not a docker-save tar?)".into(),
            ));
        }
        Ok(loaded)
    }

    /// Nodes may share one engine (a testnet on one machine), so the
    /// container name carries the node as well as the session.
    fn session_container(&self, name: &str) -> String {
        let node: String = self
            .sandbox
            .node_label
            .chars()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("iris-session-{name}-{node}")
    }

    /// Starts a long-lived container in the job sandbox; its output
    /// directory is `workspace/sessions/<name>/`. The command must
    /// keep running (`/iris-worker sleep inf` for the worker image).
    pub async fn create_session(&self, name: &str, spec: &TaskSpec) -> Result<(), ExecutorError> {
        let docker = self.docker()?;
        let (out, host_out) = self.sandbox.workspace.session_dirs(name);
        create_dirs(&[&out]).await?;
        self.sandbox.give_to_job_user(&out).await?;
        let body = self.sandbox.container_body(
            spec,
            &host_out,
            false,
            &DataMount::Private,
            (LABEL_SESSION, name),
        )?;
        let container = self.session_container(name);
        let options = CreateContainerOptionsBuilder::default()
            .name(&container)
            .build();
        docker.create_container(Some(options), body).await?;
        if let Err(e) = docker.start_container(&container, None).await {
            let remove = RemoveContainerOptionsBuilder::default().force(true).build();
            let _ = docker.remove_container(&container, Some(remove)).await;
            return Err(e.into());
        }
        Ok(())
    }

    /// The image id a session's container was made from.
    pub async fn session_image(&self, name: &str) -> Result<String, ExecutorError> {
        let docker = self.docker()?;
        let container = docker
            .inspect_container(&self.session_container(name), None)
            .await?;
        Ok(container.image.unwrap_or_default())
    }

    /// Runs `argv` in a session (as an array, no shell) and collects up to
    /// `limit` bytes of each stream.
    pub async fn exec(
        &self,
        name: &str,
        argv: &[String],
        timeout: Duration,
        limit: usize,
    ) -> Result<ExecOutput, ExecutorError> {
        let docker = self.docker()?;
        let container = self.session_container(name);
        let config = bollard::models::ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(argv.to_vec()),
            ..Default::default()
        };
        let exec = docker.create_exec(&container, config).await?;
        let mut result = ExecOutput {
            exit_code: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            truncated: false,
        };
        let started = docker.start_exec(&exec.id, None).await?;
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = started {
            let collect = async {
                while let Some(Ok(chunk)) = output.next().await {
                    let (buf, bytes) = match chunk {
                        bollard::container::LogOutput::StdErr { message } => {
                            (&mut result.stderr, message)
                        }
                        other => (
                            &mut result.stdout,
                            bytes::Bytes::copy_from_slice(other.as_ref()),
                        ),
                    };
                    let room = limit.saturating_sub(buf.len());
                    result.truncated |= bytes.len() > room;
                    buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
            };
            if tokio::time::timeout(timeout, collect).await.is_err() {
                // The engine cannot stop one exec: it has no call for that,
                // and its process lives on after we stop reading. Restarting
                // the session ends every command in it; the session itself
                // comes back with its own command and the same mounts.
                let restart = RestartContainerOptionsBuilder::default()
                    .signal("SIGKILL")
                    .t(0)
                    .build();
                docker.restart_container(&container, Some(restart)).await?;
                return Err(ExecutorError::Timeout(timeout));
            }
        }
        result.exit_code = docker.inspect_exec(&exec.id).await?.exit_code;
        Ok(result)
    }

    pub async fn remove_session(&self, name: &str) -> Result<(), ExecutorError> {
        let remove = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        self.docker()?
            .remove_container(&self.session_container(name), Some(remove))
            .await?;
        Ok(())
    }

    /// Removes containers this node made that are still there (after a
    /// crash or restart); returns their job ids.
    pub async fn remove_orphans(&self) -> Result<Vec<String>, ExecutorError> {
        let docker = self.docker()?;
        // Only job containers: sessions are meant to outlive the node process.
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{LABEL_NODE}={}", self.sandbox.node_label),
                LABEL_JOB.to_string(),
            ],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let mut jobs = Vec::new();
        for container in docker.list_containers(Some(options)).await? {
            let Some(id) = container.id else { continue };
            let remove = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            docker.remove_container(&id, Some(remove)).await?;
            if let Some(job) = container.labels.and_then(|mut l| l.remove(LABEL_JOB)) {
                jobs.push(job);
            }
        }
        // Warm workers' directories: their containers are gone.
        let warm = self.sandbox.workspace.local.join("warm");
        if let Err(e) = tokio::fs::remove_dir_all(&warm).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %warm.display(), "cannot clear warm workers' files: {e}");
            }
        }
        Ok(jobs)
    }
}
