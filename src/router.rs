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

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::AsyncWriteExt;
use iris_behaviours::{
    files::{read_chunk_request, write_chunk_refusal},
    libp2p::{PeerId, Stream},
    ControlRequest, ControlResponse, Refusal, RefusalKind,
};
use tokio::{sync::mpsc, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    audit::AuditLog,
    egress::{Egress, Outgoing, Release},
    files::Files,
    jobs::Jobs,
    network::{Busy, Inbound, InboundStream},
    secagg::SecureSums,
    sessions::Sessions,
    workspace::{Area, WorkspacePath},
};

/// Requests one peer may have in the works at once (chunks travel on
/// streams, bounded apart). More are refused as busy, at once.
pub const MAX_REQUESTS_PER_PEER: usize = 32;
/// Requests in the works at once, from every peer together.
pub const MAX_REQUESTS: usize = 256;
/// Chunk streams one peer may have open at once: a transfer opens a few,
/// so this leaves room for several transfers.
pub const MAX_CHUNK_STREAMS_PER_PEER: usize = 16;
/// Chunk streams open at once, from every peer together.
pub const MAX_CHUNK_STREAMS: usize = 128;
/// A chunk stream that asks for nothing this long is closed.
const CHUNK_STREAM_IDLE: Duration = Duration::from_secs(60);

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
        let mut answering = PerPeer::new(MAX_REQUESTS_PER_PEER, MAX_REQUESTS);
        loop {
            tokio::select! {
                request = inbound.recv() => {
                    let Some(Inbound { peer, from_master, request, reply }) = request else {
                        break;
                    };
                    if !answering.has_room(peer) {
                        let busy = Refusal::new(
                            RefusalKind::Busy,
                            "too many requests at once; try again",
                        );
                        let _ = reply.send(busy.into());
                        continue;
                    }
                    let router = self.clone();
                    answering.spawn(peer, async move {
                        let answer = router.answer(peer, from_master, request).await;
                        let _ = reply.send(answer.unwrap_or_else(Into::into));
                    });
                }
                Some(()) = answering.join_next(), if !answering.is_empty() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        answering.shutdown().await;
    }

    /// Serves the chunk streams members open ([`iris_behaviours::files`]),
    /// each in its own task, at most [`MAX_CHUNK_STREAMS_PER_PEER`] per peer
    /// and [`MAX_CHUNK_STREAMS`] in all; past that a stream is dropped,
    /// which resets it.
    pub async fn serve_chunks(
        self: Arc<Self>,
        mut streams: mpsc::Receiver<InboundStream>,
        shutdown: CancellationToken,
    ) {
        let mut serving = PerPeer::new(MAX_CHUNK_STREAMS_PER_PEER, MAX_CHUNK_STREAMS);
        loop {
            tokio::select! {
                inbound = streams.recv() => {
                    let Some(InboundStream { peer, stream }) = inbound else { break };
                    if !serving.has_room(peer) {
                        tracing::warn!(%peer, "too many chunk streams at once; reset one");
                        continue;
                    }
                    serving.spawn(peer, self.clone().serve_stream(peer, stream));
                }
                Some(()) = serving.join_next(), if !serving.is_empty() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        serving.shutdown().await;
    }

    /// One chunk stream: its requests in turn, each checked as a file
    /// request is, until the peer closes it or falls silent.
    async fn serve_stream(self: Arc<Self>, peer: PeerId, mut stream: Busy<Stream>) {
        let mut buf = Vec::new();
        loop {
            let request =
                match tokio::time::timeout(CHUNK_STREAM_IDLE, read_chunk_request(&mut *stream))
                    .await
                {
                    Ok(Ok(Some(request))) => request,
                    Ok(Ok(None)) | Err(_) => break,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "a chunk stream ended: {e}");
                        return;
                    }
                };
            if let Err(refusal) = self.may_send_chunks(peer, &request.path).await {
                let _ = write_chunk_refusal(&mut *stream, &refusal).await;
                return;
            }
            if let Err(e) = self
                .files
                .send_chunks(&mut *stream, &request, &mut buf)
                .await
            {
                tracing::debug!(%peer, "a chunk stream ended: {e}");
                return;
            }
        }
        let _ = stream.close().await;
    }

    /// Chunks of a job's output pass the egress gate, which lets them go
    /// only to a peer its manifest was released to.
    async fn may_send_chunks(&self, peer: PeerId, path: &str) -> Result<(), Refusal> {
        if let Some((job_id, release)) = self.may_read(peer, path).await? {
            let chunk = Outgoing::OutputChunk {
                job_id: &job_id,
                path,
            };
            self.egress.pass(peer, chunk, &release).await?;
        }
        Ok(())
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
            ControlRequest::FileManifest { ref path } => {
                let Some((job_id, release)) = self.may_read(peer, path).await? else {
                    return self.files.handle(peer, request).await;
                };
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
                        blake3: &manifest.blake3,
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
            ControlRequest::AuditProof { sizes } => self.prove(&sizes).await,
            ControlRequest::Join { .. }
            | ControlRequest::Hello { .. }
            | ControlRequest::Leave { .. }
            | ControlRequest::Probe
            | ControlRequest::ProbeFor { .. } => {
                Err(Refusal::invalid("membership requests go to the event loop"))
            }
            // The event loop unwraps these, remembering their answers.
            ControlRequest::AtMostOnce { .. } => Err(Refusal::invalid(
                "an at-most-once request reached the router still wrapped",
            )),
        }
    }
}

impl Router {
    /// Any member's witness may ask for proofs that this node's audit log
    /// only grew: they show hashes, never a line.
    async fn prove(&self, sizes: &[u64]) -> Result<ControlResponse, Refusal> {
        if sizes.len() > iris_behaviours::MAX_PROOF_SIZES {
            return Err(Refusal::invalid(format!(
                "at most {} sizes in one request for audit proofs",
                iris_behaviours::MAX_PROOF_SIZES
            )));
        }
        let (head, proofs) = self.audit.prove(sizes).await.ok_or_else(|| {
            Refusal::new(
                RefusalKind::NotFound,
                "this node's audit log never had one of those sizes",
            )
        })?;
        let proofs = proofs.into_iter().map(serde_bytes::ByteBuf::from).collect();
        Ok(ControlResponse::AuditProof { head, proofs })
    }

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

/// Tasks working for peers, at most so many per peer and in all. Each
/// task's slot is freed when it ends, even by a panic.
struct PerPeer {
    tasks: JoinSet<()>,
    per_peer: usize,
    total: usize,
    counts: HashMap<PeerId, usize>,
    owners: HashMap<tokio::task::Id, PeerId>,
}

impl PerPeer {
    fn new(per_peer: usize, total: usize) -> Self {
        Self {
            tasks: JoinSet::new(),
            per_peer,
            total,
            counts: HashMap::new(),
            owners: HashMap::new(),
        }
    }

    fn has_room(&self, peer: PeerId) -> bool {
        self.counts.get(&peer).copied().unwrap_or(0) < self.per_peer
            && self.tasks.len() < self.total
    }

    fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Starts `work` for `peer` (which [`PerPeer::has_room`]).
    fn spawn(
        &mut self,
        peer: PeerId,
        work: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        *self.counts.entry(peer).or_default() += 1;
        let task = self.tasks.spawn(work);
        self.owners.insert(task.id(), peer);
    }

    /// Waits for a task to end and frees its slot.
    async fn join_next(&mut self) -> Option<()> {
        let id = match self.tasks.join_next_with_id().await? {
            Ok((id, ())) => id,
            Err(error) => {
                tracing::error!("work for a peer failed: {error}");
                error.id()
            }
        };
        if let Some(peer) = self.owners.remove(&id) {
            if let Some(count) = self.counts.get_mut(&peer) {
                *count -= 1;
                if *count == 0 {
                    self.counts.remove(&peer);
                }
            }
        }
        Some(())
    }

    /// Drops what is still in the works: the peer sees the node going.
    async fn shutdown(mut self) {
        self.tasks.shutdown().await;
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
