//! The one door for what peers ask. Every request a peer sends about jobs,
//! sessions or files arrives here with the sender's peer id, which the
//! connection's handshake authenticated, and whether it is the master. The
//! router checks who may ask what, then hands the request to the service
//! that owns it. What leaves derived from a job (a task's output files)
//! passes the owner's egress gate ([`crate::egress`]) here; the runner and
//! the sessions service apply the policy to what they are asked to run.
//!
//! Membership messages (join, hello, leave) are answered by the event loop,
//! which owns the map they change.

use std::{collections::HashMap, sync::Arc};

use iris_behaviours::{libp2p::PeerId, ControlRequest, ControlResponse, Refusal, RefusalKind};
use tokio::{sync::mpsc, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    egress::{Egress, Outgoing, Release},
    files::Files,
    jobs::Jobs,
    network::Inbound,
    secagg::SecureSums,
    sessions::Sessions,
    workspace::{Area, WorkspacePath},
};

/// Requests one peer may have in the works at once: a transfer keeps 8
/// chunks in flight, so this leaves room for a few at a time and the rest
/// of what a member asks. More are refused as busy, at once.
pub const MAX_REQUESTS_PER_PEER: usize = 32;
/// Requests in the works at once, from every peer together.
pub const MAX_REQUESTS: usize = 256;

pub struct Router {
    egress: Arc<Egress>,
    sums: Arc<SecureSums>,
    jobs: Arc<Jobs>,
    sessions: Arc<Sessions>,
    files: Arc<Files>,
}

impl Router {
    pub fn new(
        jobs: Arc<Jobs>,
        sessions: Arc<Sessions>,
        files: Arc<Files>,
        egress: Arc<Egress>,
        sums: Arc<SecureSums>,
    ) -> Arc<Self> {
        Arc::new(Self {
            egress,
            sums,
            jobs,
            sessions,
            files,
        })
    }

    /// Answers requests until `shutdown`, each in its own task so a slow
    /// one (a Docker call, a transfer) holds up no other, at most
    /// [`MAX_REQUESTS_PER_PEER`] per peer and [`MAX_REQUESTS`] in all; the
    /// rest are refused as busy. Answers still in the works at shutdown are
    /// dropped: the peer sees the node going.
    pub async fn run(
        self: Arc<Self>,
        mut inbound: mpsc::Receiver<Inbound>,
        shutdown: CancellationToken,
    ) {
        let mut answering = JoinSet::new();
        let mut in_flight: HashMap<PeerId, usize> = HashMap::new();
        // Whose each answer is, so even one that panicked frees its slot.
        let mut owners: HashMap<tokio::task::Id, PeerId> = HashMap::new();
        loop {
            tokio::select! {
                request = inbound.recv() => {
                    let Some(Inbound { peer, from_master, request, reply }) = request else {
                        break;
                    };
                    let mine = in_flight.entry(peer).or_default();
                    if *mine >= MAX_REQUESTS_PER_PEER || answering.len() >= MAX_REQUESTS {
                        let busy = Refusal::new(
                            RefusalKind::Busy,
                            "too many requests at once; try again",
                        );
                        let _ = reply.send(busy.into());
                        continue;
                    }
                    *mine += 1;
                    let router = self.clone();
                    let task = answering.spawn(async move {
                        let answer = router.answer(peer, from_master, request).await;
                        let _ = reply.send(answer.unwrap_or_else(Into::into));
                    });
                    owners.insert(task.id(), peer);
                }
                Some(done) = answering.join_next_with_id(), if !answering.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(error) => {
                            tracing::error!("answering a request failed: {error}");
                            error.id()
                        }
                    };
                    let Some(peer) = owners.remove(&id) else { continue };
                    if let Some(count) = in_flight.get_mut(&peer) {
                        *count -= 1;
                        if *count == 0 {
                            in_flight.remove(&peer);
                        }
                    }
                }
                _ = shutdown.cancelled() => break,
            }
        }
        answering.shutdown().await;
    }

    async fn answer(
        &self,
        peer: PeerId,
        from_master: bool,
        request: ControlRequest,
    ) -> Result<ControlResponse, Refusal> {
        if let Some(what) = master_only(&request).filter(|_| !from_master) {
            tracing::warn!(%peer, "refused a request from a node that is not the master");
            return Err(Refusal::forbidden(format!(
                "forbidden: only the master can {what} other nodes"
            )));
        }
        match request {
            ControlRequest::RunTask { .. }
            | ControlRequest::CancelTask { .. }
            | ControlRequest::FetchLogs { .. }
            | ControlRequest::TaskUpdate { .. } => self.jobs.handle(peer, request).await,
            ControlRequest::ContainerCreate { .. }
            | ControlRequest::ContainerExec { .. }
            | ControlRequest::ContainerRemove { .. } => self.sessions.handle(peer, request).await,
            ControlRequest::FileManifest { ref path }
            | ControlRequest::FileChunk { ref path, .. } => {
                let Some((job_id, release)) = self.may_read(peer, path).await? else {
                    return self.files.handle(peer, request).await;
                };
                if let ControlRequest::FileChunk { path, .. } = &request {
                    let chunk = Outgoing::OutputChunk {
                        job_id: &job_id,
                        path,
                    };
                    self.egress.pass(peer, chunk, &release).await?;
                    return self.files.handle(peer, request).await;
                }
                self.egress
                    .outputs_may_leave(&job_id, &release)
                    .map_err(Refusal::forbidden)?;
                let answer = self.files.handle(peer, request).await?;
                // A job's output leaves with its manifest: through the
                // gate, which records it before it goes.
                if let ControlResponse::Manifest(manifest) = &answer {
                    let file = Outgoing::OutputFile {
                        job_id: &job_id,
                        path: &manifest.path,
                        bytes: manifest.version.size,
                        sha256: &manifest.sha256,
                    };
                    self.egress.pass(peer, file, &release).await?;
                }
                Ok(answer)
            }
            ControlRequest::ListFiles
            | ControlRequest::FetchFile { .. }
            | ControlRequest::FetchStatus { .. } => self.files.handle(peer, request).await,
            // The site checks each step's sender itself: the master's
            // steps, and shares from the session's other sites.
            ControlRequest::SecureSum { body } => self.sums.handle(peer, from_master, &body).await,
            ControlRequest::Join { .. }
            | ControlRequest::Hello { .. }
            | ControlRequest::Leave { .. } => {
                Err(Refusal::invalid("membership requests go to the event loop"))
            }
        }
    }
}

impl Router {
    /// A job's outputs are read only by the node that asked for the job;
    /// `public/` and `image/` by any member. The files service refuses
    /// every other area itself. Returns the job and where the release of
    /// its outputs stands, for a job's output.
    async fn may_read(
        &self,
        peer: PeerId,
        path: &str,
    ) -> Result<Option<(String, Release)>, Refusal> {
        let Ok(place) = WorkspacePath::parse(path) else {
            return Ok(None); // the files service says what is wrong with it
        };
        if place.area != Area::Outputs {
            return Ok(None);
        }
        let job = place.job().unwrap_or_default();
        if let Some((origin, release)) = self.jobs.runner.origin(&job).await {
            if origin == peer {
                return Ok(Some((job, release)));
            }
        }
        tracing::warn!(%peer, "refused to serve {path}: the job is not theirs");
        Err(Refusal::forbidden(format!(
            "forbidden: the outputs of job {job} are only for the node that asked for it"
        )))
    }
}

/// What only the master may ask of another node, as a verb for the refusal.
fn master_only(request: &ControlRequest) -> Option<&'static str> {
    match request {
        ControlRequest::RunTask { .. } => Some("run jobs on"),
        ControlRequest::CancelTask { .. } => Some("cancel jobs on"),
        ControlRequest::FetchLogs { .. } => Some("read job logs of"),
        ControlRequest::FetchFile { .. } | ControlRequest::FetchStatus { .. } => {
            Some("push files to")
        }
        ControlRequest::ContainerCreate { .. }
        | ControlRequest::ContainerExec { .. }
        | ControlRequest::ContainerRemove { .. } => Some("manage containers on"),
        _ => None,
    }
}
