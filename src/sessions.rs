//! Sessions: long-lived containers in the job sandbox, created, used and
//! removed on several nodes at once. They are not jobs: they have no tasks
//! or reports, and a command run in one answers with its output.

use std::{sync::Arc, time::Duration};

use iris_behaviours::{ControlRequest, ControlResponse, Refusal, TaskSpec};

use crate::{
    api_types::{CreateContainers, ExecContainers, JobRequest, NodeAnswer},
    executor::{Executor, ExecutorError},
    jobs::Jobs,
    membership::{Membership, MembershipError},
};

/// Why a session command could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Membership(#[from] MembershipError),
}

/// The longest an exec may be given, and a session's lifetime.
const MAX_EXEC: Duration = Duration::from_secs(24 * 3600);
const SESSION_LIFETIME_SECS: f64 = 7.0 * 24.0 * 3600.0;

pub struct Sessions {
    executor: Arc<Executor>,
    membership: Arc<Membership>,
}

impl Sessions {
    pub fn new(executor: Arc<Executor>, membership: Arc<Membership>) -> Arc<Self> {
        Arc::new(Self {
            executor,
            membership,
        })
    }

    /// Starts a long-lived container named `body.name` on every target.
    pub async fn create(&self, body: CreateContainers) -> Result<Vec<NodeAnswer>, SessionError> {
        validate_name(&body.name)?;
        let request = JobRequest {
            image: body.image,
            argv: body.argv,
            env: body.env,
            on: body.on.clone(),
            any: false,
            network: body.network,
            memory_mb: body.memory_mb,
            cpus: body.cpus,
            // A session lives until it is removed; the limit is never reached.
            timeout_secs: SESSION_LIFETIME_SECS,
            inputs: Vec::new(),
        };
        let spec = Jobs::task_spec(&format!("session-{}", body.name), &request)
            .map_err(SessionError::Invalid)?;
        let request = ControlRequest::ContainerCreate {
            name: body.name,
            spec,
        };
        self.on_targets(&body.on, request).await
    }

    /// Runs a command in the session on every target.
    pub async fn exec(
        &self,
        name: &str,
        body: ExecContainers,
    ) -> Result<Vec<NodeAnswer>, SessionError> {
        validate_name(name)?;
        if !(body.timeout_secs > 0.0 && body.timeout_secs <= MAX_EXEC.as_secs_f64()) {
            return Err(SessionError::Invalid(format!(
                "timeout_secs must be in (0, {}]",
                MAX_EXEC.as_secs()
            )));
        }
        if body.argv.is_empty() {
            return Err(SessionError::Invalid(
                "the command is empty: give it after `--`".into(),
            ));
        }
        let request = ControlRequest::ContainerExec {
            name: name.to_string(),
            argv: body.argv,
            timeout_ms: (body.timeout_secs * 1000.0) as u64,
        };
        self.on_targets(&body.on, request).await
    }

    pub async fn remove(&self, name: &str, on: &str) -> Result<Vec<NodeAnswer>, SessionError> {
        validate_name(name)?;
        let request = ControlRequest::ContainerRemove {
            name: name.to_string(),
        };
        self.on_targets(on, request).await
    }

    /// Sends a session request to every target (this node included) and
    /// gathers each node's answer.
    async fn on_targets(
        &self,
        on: &str,
        request: ControlRequest,
    ) -> Result<Vec<NodeAnswer>, SessionError> {
        let targets = self
            .membership
            .targets(on, false, &Default::default())
            .await?;
        let local = self.membership.local_peer();
        let calls = targets.into_iter().map(|(peer, node)| {
            let request = request.clone();
            async move {
                let answer = if peer == local {
                    Ok(self.handle(request).await.unwrap_or_else(Into::into))
                } else {
                    self.membership
                        .request(peer, request)
                        .await
                        .map_err(|e| e.to_string())
                };
                NodeAnswer::from_answer(node, answer)
            }
        });
        Ok(futures::future::join_all(calls).await)
    }

    /// Answers a session request, from a peer (authority already checked
    /// by the router) or from this node.
    pub async fn handle(&self, request: ControlRequest) -> Result<ControlResponse, Refusal> {
        match request {
            ControlRequest::ContainerCreate { name, spec } => {
                self.create_here(&name, spec).await?;
                Ok(ControlResponse::Ack)
            }
            ControlRequest::ContainerExec {
                name,
                argv,
                timeout_ms,
            } => self.exec_here(&name, argv, timeout_ms).await,
            ControlRequest::ContainerRemove { name } => {
                validate_name(&name).map_err(refusal)?;
                self.executor
                    .remove_session(&name)
                    .await
                    .map_err(executor_refusal)?;
                Ok(ControlResponse::Ack)
            }
            other => Err(Refusal::invalid(format!(
                "not a session request: {other:?}"
            ))),
        }
    }

    async fn create_here(&self, name: &str, spec: TaskSpec) -> Result<(), Refusal> {
        validate_name(name).map_err(refusal)?;
        spec.validate_allowing_image_command()
            .map_err(Refusal::invalid)?;
        self.executor
            .create_session(name, &spec)
            .await
            .map_err(executor_refusal)
    }

    async fn exec_here(
        &self,
        name: &str,
        argv: Vec<String>,
        timeout_ms: u64,
    ) -> Result<ControlResponse, Refusal> {
        validate_name(name).map_err(refusal)?;
        if argv.is_empty() {
            return Err(Refusal::invalid("the command is empty: give it after `--`"));
        }
        let timeout = Duration::from_millis(timeout_ms).clamp(Duration::from_millis(1), MAX_EXEC);
        let out = self
            .executor
            .exec(name, &argv, timeout, iris_behaviours::MAX_LOG_CHUNK)
            .await
            .map_err(executor_refusal)?;
        Ok(ControlResponse::Exec {
            exit_code: out.exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
            truncated: out.truncated,
        })
    }
}

fn validate_name(name: &str) -> Result<(), SessionError> {
    iris_behaviours::validate_name("container name", name).map_err(SessionError::Invalid)
}

fn refusal(error: SessionError) -> Refusal {
    Refusal::invalid(error.to_string())
}

/// An engine error as the asker sees it: a missing session is not found,
/// anything else failed here.
fn executor_refusal(error: ExecutorError) -> Refusal {
    match &error {
        ExecutorError::Docker(bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }) => Refusal::not_found(error.to_string()),
        _ => Refusal::failed(error.to_string()),
    }
}
