//! The one door for peers' calls ([`iris_behaviours::calls`]). Every call
//! arrives here with the sender's peer id, which the connection's handshake
//! authenticated, and whether it is the master; a node's calls to itself
//! arrive the same way. Each call has its own file below, holding who may
//! make it ([`Authority`]) and what it does, egress checks included, as
//! mini-redis's `cmd/` does. Chunk streams are served by [`chunks`].
//!
//! Membership requests (join, hello, leave, probes) are answered by the
//! event loop, which owns the map they change.

mod cancel_task;
mod chunks;
mod create_session;
mod describe_file;
mod exec_in_session;
mod fetch_file;
mod fetch_logs;
mod fetch_status;
mod list_files;
mod outputs;
mod per_peer;
mod prove_audit;
mod remove_session;
mod run_task;
mod secure_sum_step;
mod task_update;

use std::{future::Future, sync::Arc};

use iris_behaviours::{
    libp2p::PeerId, AnswerFrame, AuditCall, Call, FileCall, PeerRequest, Refusal, RefusalKind,
    SessionCall, SumCall, TaskCall,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    audit::AuditLog,
    egress::Egress,
    files::Files,
    jobs::Jobs,
    network::{Inbound, InboundStream},
    secagg::SecureSums,
    sessions::Sessions,
};
use chunks::ChunkServer;
use per_peer::PerPeer;

/// Calls one peer may have in the works at once (chunks travel on
/// streams, bounded apart). More are refused as busy, at once.
pub const MAX_REQUESTS_PER_PEER: usize = 32;
/// Calls in the works at once, from every peer together.
pub const MAX_REQUESTS: usize = 256;

/// Who may make a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Authority {
    /// Any current member (the event loop turned everyone else away).
    Member,
    /// Only the network's master, when it asks another node; the verb
    /// names what it may do, for the refusal.
    Master(&'static str),
}

/// What this node does when a peer makes the call `Self`.
pub(crate) trait Handler: Call {
    /// Who may make it.
    const AUTHORITY: Authority;

    /// Carries it out for `peer`; `from_master` says whether `peer` is the
    /// network's master (or this node itself).
    fn handle(
        self,
        node: &Router,
        peer: PeerId,
        from_master: bool,
    ) -> impl Future<Output = Result<Self::Answer, Refusal>> + Send;
}

/// The services calls reach.
pub struct Router {
    audit: Arc<AuditLog>,
    egress: Arc<Egress>,
    sums: Arc<SecureSums>,
    jobs: Arc<Jobs>,
    sessions: Arc<Sessions>,
    files: Arc<Files>,
}

impl Router {
    pub fn new(
        audit: Arc<AuditLog>,
        jobs: Arc<Jobs>,
        sessions: Arc<Sessions>,
        files: Arc<Files>,
        egress: Arc<Egress>,
        sums: Arc<SecureSums>,
    ) -> Arc<Self> {
        Arc::new(Self {
            audit,
            egress,
            sums,
            jobs,
            sessions,
            files,
        })
    }

    /// Answers calls until `shutdown`, each in its own task so a slow one
    /// (a Docker call, a transfer) holds up no other, at most
    /// [`MAX_REQUESTS_PER_PEER`] per peer and [`MAX_REQUESTS`] in all; the
    /// rest are refused as busy. Answers still in the works at shutdown are
    /// dropped: the peer sees the node going.
    pub async fn run(
        self: Arc<Self>,
        mut inbound: mpsc::Receiver<Inbound>,
        shutdown: CancellationToken,
    ) {
        let mut answering = PerPeer::new(MAX_REQUESTS_PER_PEER, MAX_REQUESTS);
        loop {
            tokio::select! {
                call = inbound.recv() => {
                    let Some(Inbound { peer, from_master, request, reply }) = call else {
                        break;
                    };
                    if !answering.has_room(peer) {
                        let busy = Refusal::new(
                            RefusalKind::Busy,
                            "too many requests at once; try again",
                        );
                        let _ = reply.send(AnswerFrame::refused(busy));
                        continue;
                    }
                    let router = self.clone();
                    answering.spawn(peer, async move {
                        let _ = reply.send(router.answer(peer, from_master, request).await);
                    });
                }
                Some(()) = answering.join_next(), if !answering.is_empty() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        answering.shutdown().await;
    }

    /// Serves the chunk streams members open, until `shutdown`.
    pub async fn serve_chunks(
        self: Arc<Self>,
        streams: mpsc::Receiver<InboundStream>,
        shutdown: CancellationToken,
    ) {
        let server = ChunkServer::new(self.files.clone(), self.egress.clone(), self.jobs.clone());
        server.run(streams, shutdown).await
    }

    /// Dispatches a call to its handler.
    async fn answer(&self, peer: PeerId, from_master: bool, request: PeerRequest) -> AnswerFrame {
        match request {
            PeerRequest::Tasks(TaskCall::Run(call)) => self.serve(peer, from_master, call).await,
            PeerRequest::Tasks(TaskCall::Cancel(call)) => self.serve(peer, from_master, call).await,
            PeerRequest::Tasks(TaskCall::Update(call)) => self.serve(peer, from_master, call).await,
            PeerRequest::Tasks(TaskCall::Logs(call)) => self.serve(peer, from_master, call).await,
            PeerRequest::Sessions(SessionCall::Create(call)) => {
                self.serve(peer, from_master, call).await
            }
            PeerRequest::Sessions(SessionCall::Exec(call)) => {
                self.serve(peer, from_master, call).await
            }
            PeerRequest::Sessions(SessionCall::Remove(call)) => {
                self.serve(peer, from_master, call).await
            }
            PeerRequest::Files(FileCall::List(call)) => self.serve(peer, from_master, call).await,
            PeerRequest::Files(FileCall::Describe(call)) => {
                self.serve(peer, from_master, call).await
            }
            PeerRequest::Files(FileCall::Fetch(call)) => self.serve(peer, from_master, call).await,
            PeerRequest::Files(FileCall::Status(call)) => self.serve(peer, from_master, call).await,
            PeerRequest::Sums(SumCall::Step(call)) => self.serve(peer, from_master, call).await,
            PeerRequest::Audit(AuditCall::Prove(call)) => self.serve(peer, from_master, call).await,
        }
    }

    /// Checks who is calling, then carries the call out.
    async fn serve<C: Handler>(&self, peer: PeerId, from_master: bool, call: C) -> AnswerFrame {
        if let Authority::Master(what) = C::AUTHORITY {
            if !from_master {
                tracing::warn!(%peer, "refused a call from a node that is not the master");
                let refusal = Refusal::forbidden(format!(
                    "forbidden: only the master can {what} other nodes"
                ));
                return AnswerFrame::refused(refusal);
            }
        }
        let max_answer = call.max_answer();
        let answer = call.handle(self, peer, from_master).await;
        AnswerFrame::seal(answer, max_answer)
    }
}
