//! The sending side of a transfer: a served file's manifest, hashed once
//! per version of the file, and its chunks on a chunk stream.

use std::os::unix::fs::FileExt;

use futures::{AsyncWrite, AsyncWriteExt};
use iris_behaviours::{
    files::{chunk_hash, root_of, write_chunk, write_chunk_refusal, ChunkRequest},
    FileManifest, FileVersion, Refusal, CHUNK_SIZE,
};

use std::{collections::HashMap, sync::Mutex};

use super::SERVED;
use crate::metrics::Metrics;
use crate::workspace::{version_of, Workspace, WorkspacePath};

/// Whole-file hashes computed at once; more wait their turn.
const HASHES_AT_ONCE: usize = 2;

/// Manifests kept for files asked for again: each may be megabytes (32
/// bytes a chunk), and peers choose which files they ask for.
const MANIFESTS_KEPT: usize = 64;

/// What this node serves (the router decides to whom): manifests, hashed
/// once per version of a file, and chunks.
pub struct FileServer {
    workspace: Workspace,
    manifests: Mutex<HashMap<String, FileManifest>>,
    /// Whole-file hashes at once: each takes a core, and peers may ask for
    /// many (the router bounds the requests; this bounds the cores).
    hashing: tokio::sync::Semaphore,
    /// Chunks sent, for `/metrics`.
    metrics: Metrics,
    /// Test hook: serve chunk N damaged, once (`IRIS_FAULT_CORRUPT_CHUNK`).
    corrupt_once: Mutex<Option<u64>>,
}

impl FileServer {
    pub(super) fn new(workspace: Workspace, metrics: Metrics) -> Self {
        // Debug builds only (crate::faults).
        let corrupt_once = crate::faults::fault("IRIS_FAULT_CORRUPT_CHUNK");
        Self {
            workspace,
            manifests: Mutex::new(HashMap::new()),
            hashing: tokio::sync::Semaphore::new(HASHES_AT_ONCE),
            metrics,
            corrupt_once: Mutex::new(corrupt_once),
        }
    }

    /// Opens a file this node serves, through its area's handle: a link
    /// anywhere on the way is refused, and the handle opened is the one
    /// read. Blocking.
    pub(super) fn open_served(
        workspace: &Workspace,
        path: &str,
    ) -> Result<(std::fs::File, FileVersion), Refusal> {
        let place = WorkspacePath::parse(path)
            .and_then(|p| p.require(&SERVED, "a served file"))
            .map_err(|e| {
                tracing::warn!("refused to serve: {e}");
                Refusal::invalid(e)
            })?;
        let area = workspace
            .area(place.area)
            .map_err(|e| Refusal::failed(e.to_string()))?;
        let file = area
            .open_file(&place.relative)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Refusal::not_found(format!("no file '{path}' here"))
                }
                _ => {
                    tracing::warn!("refused to serve {path}: {e}");
                    Refusal::invalid(format!("'{path}': {e}"))
                }
            })?;
        let meta = file
            .metadata()
            .map_err(|e| Refusal::failed(e.to_string()))?;
        Ok((file, version_of(&meta)))
    }

    /// The manifest of a served file, hashed once per version (size,
    /// modification time and inode) and kept.
    pub async fn manifest(&self, path: &str) -> Result<FileManifest, Refusal> {
        let workspace = self.workspace.clone();
        let name = path.to_string();
        let (file, version) =
            tokio::task::spawn_blocking(move || Self::open_served(&workspace, &name))
                .await
                .map_err(|e| Refusal::failed(e.to_string()))??;
        if let Some(cached) = self.manifests.lock().expect("lock").get(path) {
            if cached.version == version {
                return Ok(cached.clone());
            }
        }
        let name = path.to_string();
        let _turn = self.hashing.acquire().await.expect("never closed");
        let manifest = tokio::task::spawn_blocking(move || hash_file(&file, &name, version))
            .await
            .map_err(|e| Refusal::failed(e.to_string()))?
            .map_err(Refusal::failed)?;
        let mut kept = self.manifests.lock().expect("lock");
        if kept.len() >= MANIFESTS_KEPT && !kept.contains_key(path) {
            // Any one goes: a file asked for again is hashed again.
            if let Some(forgotten) = kept.keys().next().cloned() {
                kept.remove(&forgotten);
            }
        }
        kept.insert(path.to_string(), manifest.clone());
        Ok(manifest)
    }

    /// Answers one request of a chunk stream (the router checked who
    /// asks): the chunks in the order asked, read from the disk a chunk at
    /// a time into `buf` (the stream's one buffer, kept across its
    /// requests), or a refusal that ends the stream.
    pub async fn send_chunks<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        request: &ChunkRequest,
        buf: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let workspace = self.workspace.clone();
        let name = request.path.clone();
        let opened = tokio::task::spawn_blocking(move || Self::open_served(&workspace, &name))
            .await
            .map_err(std::io::Error::other)?;
        let file = match opened {
            Ok((_, now)) if now != request.version => {
                let changed = Refusal::failed("the file changed during the transfer");
                return write_chunk_refusal(stream, &changed).await;
            }
            Ok((file, _)) => std::sync::Arc::new(file),
            Err(refusal) => return write_chunk_refusal(stream, &refusal).await,
        };
        for &index in &request.indices {
            let Some(len) = request.version.chunk_len(index) else {
                return write_chunk_refusal(stream, &Refusal::invalid("no such chunk")).await;
            };
            let (reader, mut data) = (file.clone(), std::mem::take(buf));
            *buf = tokio::task::spawn_blocking(move || {
                data.resize(len, 0);
                reader
                    .read_exact_at(&mut data, index * CHUNK_SIZE)
                    .map(|()| data)
            })
            .await
            .map_err(std::io::Error::other)??;
            self.damage_once(index, buf);
            write_chunk(stream, buf).await?;
            self.metrics.traffic.chunks.sent(buf.len());
        }
        stream.flush().await
    }

    /// Test hook: chunk N leaves damaged, once (`IRIS_FAULT_CORRUPT_CHUNK`).
    fn damage_once(&self, index: u64, data: &mut [u8]) {
        let mut corrupt = self.corrupt_once.lock().expect("lock");
        if *corrupt == Some(index) && !data.is_empty() {
            data[0] ^= 0xff;
            *corrupt = None;
        }
    }
}

/// A file's manifest: one pass over it, each chunk hashed as a subtree of
/// BLAKE3's tree, the file's hash combined from them.
pub(super) fn hash_file(
    file: &std::fs::File,
    name: &str,
    version: FileVersion,
) -> Result<FileManifest, String> {
    let count = version.chunks();
    let mut chunks = Vec::with_capacity(count as usize);
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    for index in 0..count {
        let len = version.chunk_len(index).expect("within the file");
        file.read_exact_at(&mut buf[..len], index * CHUNK_SIZE)
            .map_err(|e| e.to_string())?;
        chunks.push(chunk_hash(index, &buf[..len], count));
    }
    if version_of(&file.metadata().map_err(|e| e.to_string())?) != version {
        return Err("the file changed while it was being hashed".into());
    }
    Ok(FileManifest {
        path: name.to_string(),
        version,
        chunk_size: CHUNK_SIZE,
        blake3: root_of(&chunks, version.size).to_hex().to_string(),
        chunks: chunks.iter().map(|h| h.to_vec().into()).collect(),
    })
}
