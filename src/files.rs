//! Files between nodes: a node serves its `public/` and `image/` files (and
//! nothing else) in 1 MiB chunks, each with its SHA-256 in a manifest; a
//! receiver fetches several chunks at once, checks each, writes it in place
//! in a partial file it can resume, checks the whole file's SHA-256 and
//! renames it into place. Nothing is ever held in memory whole.

use std::{
    collections::{BTreeSet, HashMap},
    os::unix::fs::FileExt,
    path::{Component, Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, UNIX_EPOCH},
};

use futures::{stream::FuturesUnordered, StreamExt};
use iris_behaviours::{
    libp2p::PeerId, ControlRequest, ControlResponse, FileEntry, FileManifest, FileVersion,
    CHUNK_SIZE,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::{
    events::{EventKind, Events},
    network::NetworkClient,
};

/// Chunks requested at once by one transfer.
const IN_FLIGHT: usize = 8;
/// Attempts at a chunk whose hash does not match before giving up.
const CHUNK_ATTEMPTS: usize = 3;
/// The receiver saves its progress every this many chunks.
const SAVE_EVERY: usize = 16;

/// Resolves a workspace path given by a peer or a user. Only `public/...`
/// and `image/...` exist here; absolute paths, `..` and links that lead out
/// of the area are refused.
pub fn resolve(workspace: &Path, path: &str) -> Result<PathBuf, String> {
    let relative = Path::new(path);
    if path.is_empty() || path.len() > 4096 {
        return Err("the path is empty or too long".into());
    }
    if relative.is_absolute() {
        return Err(format!(
            "'{path}' is absolute: give a path inside the workspace"
        ));
    }
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            _ => return Err(format!("'{path}' leaves the workspace")),
        }
    }
    let area = parts.first().and_then(|a| a.to_str()).unwrap_or_default();
    if area != "public" && area != "image" {
        return Err(format!(
            "'{path}' is not under public/ or image/: nothing else is served"
        ));
    }
    let area_root = workspace
        .join(area)
        .canonicalize()
        .map_err(|e| format!("workspace area {area}/ is missing: {e}"))?;
    let full = workspace.join(relative);
    // The deepest part that exists must resolve, links and all, inside the area.
    let mut existing = full.clone();
    while !existing.exists() {
        if !existing.pop() {
            break;
        }
    }
    let real = existing
        .canonicalize()
        .map_err(|e| format!("'{path}': {e}"))?;
    if !real.starts_with(&area_root) {
        return Err(format!(
            "'{path}' leads out of the workspace through a link"
        ));
    }
    Ok(full)
}

fn version_of(meta: &std::fs::Metadata) -> FileVersion {
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    FileVersion {
        size: meta.len(),
        modified_ns,
    }
}

/// What a receiver keeps beside a partial file, to resume it.
#[derive(Debug, Serialize, Deserialize)]
struct Progress {
    sha256: String,
    version: FileVersion,
    done: BTreeSet<u64>,
}

/// The result of a transfer.
#[derive(Debug, Clone, Serialize)]
pub struct Transfer {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    /// Chunks fetched in this run, and chunks already here from an earlier one.
    pub fetched_chunks: u64,
    pub resumed_chunks: u64,
    /// Chunks that arrived damaged and were fetched again.
    pub refetched_chunks: u64,
    pub seconds: f64,
}

pub struct Files {
    workspace: PathBuf,
    manifests: Mutex<HashMap<PathBuf, FileManifest>>,
    network: watch::Receiver<Option<NetworkClient>>,
    events: Events,
    /// One transfer into a destination at a time: two would share its
    /// partial file, and one could truncate chunks the other had checked.
    destinations: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    /// Test hook: serve chunk N damaged, once (`IRIS_FAULT_CORRUPT_CHUNK`).
    corrupt_once: Mutex<Option<u64>>,
}

impl Files {
    pub fn new(
        workspace: PathBuf,
        network: watch::Receiver<Option<NetworkClient>>,
        events: Events,
    ) -> Arc<Self> {
        let corrupt_once = std::env::var("IRIS_FAULT_CORRUPT_CHUNK")
            .ok()
            .and_then(|v| v.parse().ok());
        Arc::new(Self {
            workspace,
            manifests: Mutex::new(HashMap::new()),
            network,
            events,
            destinations: Mutex::new(HashMap::new()),
            corrupt_once: Mutex::new(corrupt_once),
        })
    }

    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// Answers a peer's file request.
    pub async fn handle(&self, request: ControlRequest) -> Result<ControlResponse, String> {
        match request {
            ControlRequest::ListFiles => Ok(ControlResponse::Files {
                entries: self.list(),
            }),
            ControlRequest::FileManifest { path } => {
                self.manifest(&path).await.map(ControlResponse::Manifest)
            }
            ControlRequest::FileChunk {
                path,
                version,
                index,
            } => self
                .chunk(&path, version, index)
                .await
                .map(|data| ControlResponse::Chunk { data }),
            other => Err(format!("unexpected request {other:?}")),
        }
    }

    /// Every regular file under public/ and image/ (hidden ones excluded).
    pub fn list(&self) -> Vec<FileEntry> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<FileEntry>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    walk(root, &entry.path(), out);
                } else if meta.is_file() {
                    let Ok(relative) = entry.path().strip_prefix(root).map(Path::to_path_buf)
                    else {
                        continue;
                    };
                    let modified_ms = (version_of(&meta).modified_ns / 1_000_000) as u64;
                    out.push(FileEntry {
                        path: relative.display().to_string(),
                        size: meta.len(),
                        modified_ms,
                    });
                }
            }
        }
        let mut entries = Vec::new();
        for area in ["image", "public"] {
            walk(&self.workspace, &self.workspace.join(area), &mut entries);
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries
    }

    fn served_file(&self, path: &str) -> Result<PathBuf, String> {
        let full = resolve(&self.workspace, path)
            .inspect_err(|e| tracing::warn!("refused to serve: {e}"))?;
        if !full.is_file() {
            return Err(format!("no file '{path}' here"));
        }
        Ok(full)
    }

    /// The manifest of a served file, hashed once per version.
    pub async fn manifest(&self, path: &str) -> Result<FileManifest, String> {
        let full = self.served_file(path)?;
        let meta = std::fs::metadata(&full).map_err(|e| e.to_string())?;
        let version = version_of(&meta);
        if let Some(cached) = self.manifests.lock().expect("lock").get(&full) {
            if cached.version == version {
                return Ok(cached.clone());
            }
        }
        let path_text = path.to_string();
        let file = full.clone();
        let manifest = tokio::task::spawn_blocking(move || hash_file(&file, &path_text, version))
            .await
            .map_err(|e| e.to_string())??;
        self.manifests
            .lock()
            .expect("lock")
            .insert(full, manifest.clone());
        Ok(manifest)
    }

    async fn chunk(&self, path: &str, version: FileVersion, index: u64) -> Result<Vec<u8>, String> {
        let full = self.served_file(path)?;
        let mut data = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
            let file = std::fs::File::open(&full).map_err(|e| e.to_string())?;
            if version_of(&file.metadata().map_err(|e| e.to_string())?) != version {
                return Err("the file changed during the transfer".into());
            }
            let offset = index
                .checked_mul(CHUNK_SIZE)
                .filter(|o| *o < version.size)
                .ok_or("no such chunk")?;
            let len = CHUNK_SIZE.min(version.size - offset) as usize;
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, offset)
                .map_err(|e| e.to_string())?;
            Ok(buf)
        })
        .await
        .map_err(|e| e.to_string())??;
        let mut corrupt = self.corrupt_once.lock().expect("lock");
        if *corrupt == Some(index) && !data.is_empty() {
            data[0] ^= 0xff;
            *corrupt = None;
        }
        Ok(data)
    }

    /// Pulls `path` from `peer` into `dest` (a workspace path). Resumes a
    /// partial file left by an earlier attempt at the same version.
    pub async fn fetch(&self, peer: PeerId, path: &str, dest: &str) -> Result<Transfer, String> {
        let client = self
            .network
            .borrow()
            .clone()
            .ok_or("this node is in no network")?;
        let target = resolve(&self.workspace, dest)?;
        if target.is_dir() {
            return Err(format!("'{dest}' is a directory"));
        }
        let lock = self
            .destinations
            .lock()
            .expect("lock")
            .entry(target.clone())
            .or_default()
            .clone();
        let held = lock.lock_owned().await;
        let result = self.fetch_into(&client, peer, path, dest, &target).await;
        drop(held);
        // Forget destinations nobody waits for any more.
        self.destinations
            .lock()
            .expect("lock")
            .retain(|_, lock| Arc::strong_count(lock) > 1);
        result
    }

    /// [`Files::fetch`] once the destination is ours alone.
    async fn fetch_into(
        &self,
        client: &NetworkClient,
        peer: PeerId,
        path: &str,
        dest: &str,
        target: &Path,
    ) -> Result<Transfer, String> {
        let started = Instant::now();
        let manifest = match client
            .request(
                peer,
                ControlRequest::FileManifest {
                    path: path.to_string(),
                },
            )
            .await
        {
            Ok(ControlResponse::Manifest(m)) => m,
            Ok(other) => return Err(format!("unexpected answer {other:?}")),
            Err(e) => return Err(e.to_string()),
        };
        let expected_chunks = manifest.version.size.div_ceil(manifest.chunk_size.max(1));
        if manifest.chunk_size != CHUNK_SIZE || manifest.chunks.len() as u64 != expected_chunks {
            return Err("the peer sent an inconsistent manifest".into());
        }
        let dir = target.parent().ok_or("bad destination")?.to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let name = target
            .file_name()
            .ok_or("bad destination")?
            .to_string_lossy()
            .into_owned();
        let partial = dir.join(format!(".{name}.partial"));
        let progress_path = dir.join(format!(".{name}.partial.json"));

        let mut progress = std::fs::read(&progress_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Progress>(&b).ok())
            .filter(|p| {
                p.sha256 == manifest.sha256 && p.version == manifest.version && partial.exists()
            })
            .unwrap_or(Progress {
                sha256: manifest.sha256.clone(),
                version: manifest.version,
                done: BTreeSet::new(),
            });
        let resumed = progress.done.len() as u64;
        if resumed > 0 {
            tracing::info!(%path, "resuming: {resumed} of {} chunks already here", manifest.chunks.len());
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(resumed == 0)
            .write(true)
            .read(true)
            .open(&partial)
            .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
        file.set_len(manifest.version.size)
            .map_err(|e| format!("cannot size {}: {e}", partial.display()))?;
        let file = Arc::new(file);

        let todo: Vec<u64> = (0..manifest.chunks.len() as u64)
            .filter(|i| !progress.done.contains(i))
            .collect();
        let mut missing = todo.into_iter();
        let mut in_flight = FuturesUnordered::new();
        let (mut fetched, mut refetched, mut since_save) = (0u64, 0u64, 0usize);
        let mut last_event = Instant::now();
        // A fresh transfer hashes the whole file as it arrives.
        let mut whole = (resumed == 0).then(|| InOrderHash::new(manifest.chunks.len() as u64));
        let request = |index: u64, attempt: usize| {
            let client = client.clone();
            let path = path.to_string();
            let version = manifest.version;
            async move {
                let answer = client
                    .request(
                        peer,
                        ControlRequest::FileChunk {
                            path,
                            version,
                            index,
                        },
                    )
                    .await;
                (index, attempt, answer)
            }
        };
        for index in missing.by_ref().take(IN_FLIGHT) {
            in_flight.push(request(index, 1));
        }
        while let Some((index, attempt, answer)) = in_flight.next().await {
            let data = match answer {
                Ok(ControlResponse::Chunk { data }) => data,
                Ok(other) => return Err(format!("unexpected answer {other:?}")),
                Err(e) => {
                    self.save_progress(&progress_path, &progress);
                    return Err(format!("transfer interrupted (resumable): {e}"));
                }
            };
            let hash: [u8; 32] = Sha256::digest(&data).into();
            if hash[..] != manifest.chunks[index as usize][..] {
                if attempt >= CHUNK_ATTEMPTS {
                    self.save_progress(&progress_path, &progress);
                    return Err(format!("chunk {index} arrived damaged {attempt} times"));
                }
                tracing::warn!(%path, index, "chunk arrived damaged; fetching it again");
                refetched += 1;
                in_flight.push(request(index, attempt + 1));
                continue;
            }
            if let Some(whole) = whole.as_mut() {
                whole.add(index, &data);
            }
            let writer = file.clone();
            tokio::task::spawn_blocking(move || writer.write_all_at(&data, index * CHUNK_SIZE))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
            progress.done.insert(index);
            fetched += 1;
            since_save += 1;
            if since_save >= SAVE_EVERY {
                self.save_progress(&progress_path, &progress);
                since_save = 0;
            }
            if last_event.elapsed() > Duration::from_secs(1) {
                last_event = Instant::now();
                self.events.emit(EventKind::Transfer {
                    path: path.to_string(),
                    bytes: (progress.done.len() as u64 * CHUNK_SIZE).min(manifest.version.size),
                    total: manifest.version.size,
                });
            }
            if let Some(next) = missing.next() {
                in_flight.push(request(next, 1));
            }
        }

        // Every chunk checked; now the whole, before it gets its name: hashed
        // on the way in if the chunks allowed it, else read back from disk.
        let whole = match whole.and_then(InOrderHash::finish) {
            Some(sha) => sha,
            None => {
                let check = partial.clone();
                tokio::task::spawn_blocking(move || hash_whole(&check))
                    .await
                    .map_err(|e| e.to_string())??
            }
        };
        if whole != manifest.sha256 {
            let _ = std::fs::remove_file(&partial);
            let _ = std::fs::remove_file(&progress_path);
            return Err(format!(
                "'{path}' arrived whole but its SHA-256 does not match; discarded"
            ));
        }
        file.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&partial, target)
            .map_err(|e| format!("cannot move into {}: {e}", target.display()))?;
        let _ = std::fs::remove_file(&progress_path);
        self.events.emit(EventKind::Transfer {
            path: path.to_string(),
            bytes: manifest.version.size,
            total: manifest.version.size,
        });
        Ok(Transfer {
            path: dest.to_string(),
            bytes: manifest.version.size,
            sha256: manifest.sha256,
            fetched_chunks: fetched,
            resumed_chunks: resumed,
            refetched_chunks: refetched,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn save_progress(&self, path: &Path, progress: &Progress) {
        let json = serde_json::to_vec(progress).expect("progress serializes");
        if let Err(e) = crate::store::write_private(path, &json) {
            tracing::warn!("cannot save transfer progress: {e}");
        }
    }
}

/// The SHA-256 of a file whose chunks arrive in any order: chunks are fed
/// in order, and the few that arrive early wait. If too many wait (a chunk
/// kept failing), it gives up and the file is read back instead.
struct InOrderHash {
    hasher: Sha256,
    next: u64,
    total: u64,
    waiting: std::collections::BTreeMap<u64, Vec<u8>>,
    gave_up: bool,
}

impl InOrderHash {
    const MAX_WAITING: usize = 4 * IN_FLIGHT;

    fn new(total: u64) -> Self {
        Self {
            hasher: Sha256::new(),
            next: 0,
            total,
            waiting: Default::default(),
            gave_up: false,
        }
    }

    fn add(&mut self, index: u64, data: &[u8]) {
        if self.gave_up {
            return;
        }
        if index != self.next {
            self.waiting.insert(index, data.to_vec());
            if self.waiting.len() > Self::MAX_WAITING {
                self.gave_up = true;
                self.waiting.clear();
            }
            return;
        }
        self.hasher.update(data);
        self.next += 1;
        while let Some(data) = self.waiting.remove(&self.next) {
            self.hasher.update(&data);
            self.next += 1;
        }
    }

    fn finish(self) -> Option<String> {
        (!self.gave_up && self.next == self.total).then(|| hex::encode(self.hasher.finalize()))
    }
}

fn hash_file(path: &Path, name: &str, version: FileVersion) -> Result<FileManifest, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut whole = Sha256::new();
    let mut chunks = Vec::new();
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    let mut offset = 0u64;
    while offset < version.size {
        let len = CHUNK_SIZE.min(version.size - offset) as usize;
        file.read_exact_at(&mut buf[..len], offset)
            .map_err(|e| e.to_string())?;
        whole.update(&buf[..len]);
        chunks.push(serde_bytes::ByteBuf::from(
            Sha256::digest(&buf[..len]).to_vec(),
        ));
        offset += len as u64;
    }
    if version_of(&file.metadata().map_err(|e| e.to_string())?) != version {
        return Err("the file changed while it was being hashed".into());
    }
    Ok(FileManifest {
        path: name.to_string(),
        version,
        chunk_size: CHUNK_SIZE,
        sha256: hex::encode(whole.finalize()),
        chunks,
    })
}

fn hash_whole(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hashed_out_of_order_give_the_whole_file_hash() {
        let chunks: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 1000 + i as usize]).collect();
        let expected = hex::encode(Sha256::digest(chunks.concat()));
        let mut hash = InOrderHash::new(10);
        for i in [1, 0, 3, 2, 5, 4, 9, 6, 7, 8] {
            hash.add(i, &chunks[i as usize]);
        }
        assert_eq!(hash.finish(), Some(expected));
        let mut incomplete = InOrderHash::new(10);
        incomplete.add(0, &chunks[0]);
        assert_eq!(incomplete.finish(), None);
    }

    #[test]
    fn only_public_and_image_paths_inside_the_workspace_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        for area in ["public", "image", "private"] {
            std::fs::create_dir_all(ws.join(area)).unwrap();
        }
        std::fs::write(ws.join("private/secret.csv"), "x").unwrap();
        std::os::unix::fs::symlink(ws.join("private"), ws.join("public/escape")).unwrap();
        std::os::unix::fs::symlink("/etc", ws.join("public/etc")).unwrap();

        assert!(resolve(ws, "public/results/out.csv").is_ok());
        assert!(resolve(ws, "image/worker.tar").is_ok());
        for bad in [
            "private/secret.csv",
            "public/../private/secret.csv",
            "/etc/passwd",
            "public/escape/secret.csv",
            "public/etc/passwd",
            "../outside",
            "",
            "iris.toml",
        ] {
            assert!(resolve(ws, bad).is_err(), "{bad:?} resolved");
        }
    }
}
