//! The one door for what peers ask. Every request a peer sends about jobs,
//! sessions or files arrives here with the sender's peer id, which the
//! connection's handshake authenticated, and whether it is the master. The
//! router checks who may ask what, then hands the request to the service
//! that owns it. A data owner's policy will be checked here too.
//!
//! Membership messages (join, hello, leave) are answered by the event loop,
//! which owns the map they change.

use std::sync::Arc;

use iris_behaviours::{libp2p::PeerId, ControlRequest, ControlResponse, Refusal};
use tokio::{sync::mpsc, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{files::Files, jobs::Jobs, network::Inbound, sessions::Sessions};

pub struct Router {
    jobs: Arc<Jobs>,
    sessions: Arc<Sessions>,
    files: Arc<Files>,
}

impl Router {
    pub fn new(jobs: Arc<Jobs>, sessions: Arc<Sessions>, files: Arc<Files>) -> Arc<Self> {
        Arc::new(Self {
            jobs,
            sessions,
            files,
        })
    }

    /// Answers requests until `shutdown`, each in its own task so a slow
    /// one (a Docker call, a transfer) holds up no other. Answers still in
    /// the works at shutdown are dropped: the peer sees the node going.
    pub async fn run(
        self: Arc<Self>,
        mut inbound: mpsc::Receiver<Inbound>,
        shutdown: CancellationToken,
    ) {
        let mut answering = JoinSet::new();
        loop {
            tokio::select! {
                request = inbound.recv() => {
                    let Some(Inbound { peer, from_master, request, reply }) = request else {
                        break;
                    };
                    let router = self.clone();
                    answering.spawn(async move {
                        let answer = router.answer(peer, from_master, request).await;
                        let _ = reply.send(answer.unwrap_or_else(Into::into));
                    });
                }
                // Reap finished answers so the set does not grow.
                Some(_) = answering.join_next(), if !answering.is_empty() => {}
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
            | ControlRequest::ContainerRemove { .. } => self.sessions.handle(request).await,
            ControlRequest::ListFiles
            | ControlRequest::FileManifest { .. }
            | ControlRequest::FileChunk { .. }
            | ControlRequest::FetchFile { .. } => self.files.handle(peer, request).await,
            ControlRequest::Join { .. }
            | ControlRequest::Hello { .. }
            | ControlRequest::Leave { .. } => {
                Err(Refusal::invalid("membership requests go to the event loop"))
            }
        }
    }
}

/// What only the master may ask of another node, as a verb for the refusal.
fn master_only(request: &ControlRequest) -> Option<&'static str> {
    match request {
        ControlRequest::RunTask { .. } => Some("run jobs on"),
        ControlRequest::CancelTask { .. } => Some("cancel jobs on"),
        ControlRequest::FetchLogs { .. } => Some("read job logs of"),
        ControlRequest::FetchFile { .. } => Some("push files to"),
        ControlRequest::ContainerCreate { .. }
        | ControlRequest::ContainerExec { .. }
        | ControlRequest::ContainerRemove { .. } => Some("manage containers on"),
        _ => None,
    }
}
