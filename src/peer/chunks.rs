//! Chunk streams ([`iris_behaviours::files::CHUNKS_PROTOCOL`]): members
//! open them to fetch a file's chunks after its manifest, and each request
//! on one is checked as a [`iris_behaviours::DescribeFile`] call is.

use std::{sync::Arc, time::Duration};

use futures::AsyncWriteExt;
use iris_behaviours::{
    files::{read_chunk_request, write_chunk_refusal},
    libp2p::{PeerId, Stream},
    Refusal,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{outputs::may_read, per_peer::PerPeer};
use crate::{
    egress::{Egress, Outgoing},
    files::Files,
    jobs::Jobs,
    network::{Busy, InboundStream},
};

/// Chunk streams one peer may have open at once: a transfer opens a few,
/// so this leaves room for several transfers.
pub const MAX_CHUNK_STREAMS_PER_PEER: usize = 16;
/// Chunk streams open at once, from every peer together.
pub const MAX_CHUNK_STREAMS: usize = 128;
/// A chunk stream that asks for nothing this long is closed.
const CHUNK_STREAM_IDLE: Duration = Duration::from_secs(60);

/// Serves the chunk streams members open.
pub(super) struct ChunkServer {
    files: Arc<Files>,
    egress: Arc<Egress>,
    jobs: Arc<Jobs>,
}

impl ChunkServer {
    pub(super) fn new(files: Arc<Files>, egress: Arc<Egress>, jobs: Arc<Jobs>) -> Arc<Self> {
        Arc::new(Self {
            files,
            egress,
            jobs,
        })
    }

    /// Serves streams until `shutdown`, each in its own task, at most
    /// [`MAX_CHUNK_STREAMS_PER_PEER`] per peer and [`MAX_CHUNK_STREAMS`] in
    /// all; past that a stream is dropped, which resets it.
    pub(super) async fn run(
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
                .server()
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
        if let Some((job_id, release)) = may_read(&self.jobs, peer, path).await? {
            let chunk = Outgoing::OutputChunk {
                job_id: &job_id,
                path,
            };
            self.egress.pass(peer, chunk, &release).await?;
        }
        Ok(())
    }
}
