//! Sessions: long-lived containers in the job sandbox, created, used and
//! removed on several nodes at once. They are not jobs: they have no tasks
//! or reports, and a command run in one answers with its output.
//!
//! That output goes straight back to the requester, so the owner's policy
//! refuses sessions from other nodes unless `sessions = "allow"`; then only
//! approved images run, and the output passes the egress gate.

use std::{sync::Arc, time::Duration};

use iris_behaviours::{
    libp2p::PeerId, Accepted, Call, CreateSession, ExecInSession, ExecOutput, Refusal,
    RemoveSession, TaskSpec,
};

use crate::{
    api_types::{CreateContainers, ExecContainers, JobRequest, NodeAnswer},
    audit::{AuditEvent, DecidedBy, Verdict},
    egress::{Egress, Outgoing, Release},
    executor::{Executor, ExecutorError},
    membership::{Membership, MembershipError},
    policy::{Allowance, ImagePolicy},
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
    egress: Arc<Egress>,
}

impl Sessions {
    pub fn new(
        executor: Arc<Executor>,
        membership: Arc<Membership>,
        egress: Arc<Egress>,
    ) -> Arc<Self> {
        Arc::new(Self {
            executor,
            membership,
            egress,
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
            dry_run: false,
            quorum: None,
            deadline_secs: None,
            round: None,
            warm: false,
        };
        let spec = request
            .task_spec(&session_job_id(&body.name))
            .map_err(SessionError::Invalid)?;
        let request = CreateSession {
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
        let request = ExecInSession {
            name: name.to_string(),
            argv: body.argv,
            timeout_ms: (body.timeout_secs * 1000.0) as u64,
        };
        self.on_targets(&body.on, request).await
    }

    pub async fn remove(&self, name: &str, on: &str) -> Result<Vec<NodeAnswer>, SessionError> {
        validate_name(name)?;
        let request = RemoveSession {
            name: name.to_string(),
        };
        self.on_targets(on, request).await
    }

    /// Sends a session call to every target (this node included, through
    /// its own router as any other) and gathers each node's answer.
    async fn on_targets<C>(&self, on: &str, call: C) -> Result<Vec<NodeAnswer>, SessionError>
    where
        C: Call,
        C::Answer: SessionAnswer,
    {
        let targets = self
            .membership
            .targets(on, false, &Default::default())
            .await?;
        let calls = targets.into_iter().map(|(peer, node)| {
            let call = call.clone();
            async move {
                let answer = self.membership.call(peer, call).await;
                let answer = answer.map(SessionAnswer::output).map_err(|e| e.to_string());
                NodeAnswer::from_answer(node, answer)
            }
        });
        Ok(futures::future::join_all(calls).await)
    }

    /// Creates a session for `from`, a peer (authority already checked by
    /// the router; the owner's policy checked here) or this node itself.
    pub async fn create_for(
        &self,
        from: PeerId,
        CreateSession { name, mut spec }: CreateSession,
    ) -> Result<Accepted, Refusal> {
        if from != self.membership.local_peer() {
            // Made from the image id approved, not from a tag.
            if let Some(id) = self.admit(from, &name, &spec).await? {
                spec.image = id;
            }
        }
        self.create_here(&name, spec).await?;
        Ok(Accepted)
    }

    /// Runs a command in a session for `from`. Another node's command is
    /// recorded, refused before it runs if its output could not leave or
    /// the owner did not approve it, and its output passes the egress gate.
    pub async fn exec_for(
        &self,
        from: PeerId,
        ExecInSession {
            name,
            argv,
            timeout_ms,
        }: ExecInSession,
    ) -> Result<ExecOutput, Refusal> {
        if from == self.membership.local_peer() {
            return self.exec_here(&name, argv, timeout_ms).await;
        }
        validate_name(&name).map_err(refusal)?;
        let requested = AuditEvent::ExecRequested {
            name: name.clone(),
            from,
            argv: argv.clone(),
        };
        self.record(requested).await?;
        self.egress.exec_allowed()?;
        self.command_approved(&name, &argv).await?;
        let answer = self.exec_here(&name, argv, timeout_ms).await?;
        let output = Outgoing::Exec {
            name: &name,
            stdout: &answer.stdout,
            stderr: &answer.stderr,
        };
        self.egress.pass(from, output, &Release::Pending).await?;
        Ok(answer)
    }

    /// Removes a session.
    pub async fn remove_for(
        &self,
        RemoveSession { name }: RemoveSession,
    ) -> Result<Accepted, Refusal> {
        validate_name(&name).map_err(refusal)?;
        self.executor
            .remove_session(&name)
            .await
            .map_err(executor_refusal)?;
        Ok(Accepted)
    }

    async fn record(&self, event: AuditEvent) -> Result<(), Refusal> {
        self.egress.audit().append(event).await.map_err(|e| {
            Refusal::failed(format!("cannot record the request in the audit log: {e}"))
        })
    }

    /// Records another node's request for a session and decides it under
    /// the owner's policy: sessions allowed, no network unless allowed, and
    /// an approved image. Sessions do not wait for an approval: the owner
    /// approves their image ahead of time.
    async fn admit(
        &self,
        from: PeerId,
        name: &str,
        spec: &TaskSpec,
    ) -> Result<Option<String>, Refusal> {
        validate_name(name).map_err(refusal)?;
        let image_id = self.executor.image_id(&spec.image).await.ok();
        self.record(AuditEvent::SessionRequested {
            name: name.to_string(),
            from,
            image: spec.image.clone(),
            image_id: image_id.clone(),
            argv: spec.argv.clone(),
            network: spec.network.clone(),
        })
        .await?;
        let policy = self.egress.policy().get();
        let node = self.egress.policy().node_name().to_string();
        let refused = if policy.sessions == Allowance::Deny {
            Some(format!(
                "sessions from other nodes are refused by {node}'s policy (sessions = deny)"
            ))
        } else if spec.network.is_some() && policy.network == Allowance::Deny {
            Some(format!(
                "refused by {node}'s policy: sessions from other nodes get no network here (network = deny)"
            ))
        } else if policy.images == ImagePolicy::Approve
            && image_id
                .as_deref()
                .and_then(|id| policy.approved_for(id, None, &spec.argv))
                .is_none()
        {
            Some(format!(
                "refused by {node}'s policy: image {} with this command is not approved here, \
                 and a session runs only an image and command approved ahead of time \
                 (iris policy allow-image)",
                spec.image
            ))
        } else {
            None
        };
        let decision = AuditEvent::Decision {
            subject: format!("session {name}"),
            from,
            image_id: image_id.clone(),
            verdict: if refused.is_some() {
                Verdict::Denied
            } else {
                Verdict::Approved
            },
            by: DecidedBy::Policy,
            reason: refused.clone().unwrap_or_else(|| "sessions = allow".into()),
        };
        self.record(decision).await?;
        match refused {
            Some(reason) => Err(Refusal::forbidden(reason)),
            None => Ok(image_id),
        }
    }

    /// Whether the owner approved `argv` for the image the session `name`
    /// runs: an approval of the image is one of its commands, not all.
    async fn command_approved(&self, name: &str, argv: &[String]) -> Result<(), Refusal> {
        let policy = self.egress.policy().get();
        if policy.images != ImagePolicy::Approve {
            return Ok(());
        }
        let image_id = self
            .executor
            .session_image(name)
            .await
            .map_err(executor_refusal)?;
        if policy.approved_for(&image_id, None, argv).is_some() {
            return Ok(());
        }
        let node = self.egress.policy().node_name();
        Err(Refusal::forbidden(format!(
            "refused by {node}'s policy: this command is not approved for the session's image \
             (iris policy allow-image)"
        )))
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
    ) -> Result<ExecOutput, Refusal> {
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
        Ok(ExecOutput {
            exit_code: out.exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
            truncated: out.truncated,
        })
    }
}

/// What a session call answers, as a node's answer shows it: the output
/// of a command, or nothing but that it was done.
trait SessionAnswer {
    fn output(self) -> Option<ExecOutput>;
}

impl SessionAnswer for Accepted {
    fn output(self) -> Option<ExecOutput> {
        None
    }
}

impl SessionAnswer for ExecOutput {
    fn output(self) -> Option<ExecOutput> {
        Some(self)
    }
}

/// The id a session's spec carries where a job's id goes: `session-` and
/// its name, in the characters and length a job id may have (a name may
/// hold `.` and `_`, and be 64 bytes long).
fn session_job_id(name: &str) -> String {
    let plain = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' });
    format!("session-{}", plain.collect::<String>())
        .chars()
        .take(64)
        .collect()
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_sessions_spec_id_is_a_job_id_whatever_its_name() {
        for name in ["trainer", "0.RY1mr", "a_b", &"x".repeat(64)] {
            let id = super::session_job_id(name);
            assert!(
                iris_behaviours::validate_job_id(&id).is_ok(),
                "{name}: {id}"
            );
        }
    }
}
