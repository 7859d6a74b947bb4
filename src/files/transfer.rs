//! Pulling a file from a peer: the manifest (checked: its chunk hashes
//! combine to its file hash), then the chunks on a few streams at once,
//! each checked as it arrives and written in place in a partial file that a
//! later attempt resumes, then the file renamed into place. Checking and
//! writing run on blocking threads, never on a connection's task, with
//! one buffer per stream, reused.

use std::{
    collections::{BTreeSet, VecDeque},
    os::unix::fs::FileExt,
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use futures::AsyncWriteExt;
use iris_behaviours::{
    files::{read_chunk, write_chunk_request, ChunkRequest},
    libp2p::{PeerId, Stream},
    DescribeFile, FileManifest, FileVersion, Refusal, CHUNK_SIZE,
};
use serde::{Deserialize, Serialize};
use tokio::time::timeout;

use super::FileError;
use crate::{
    api_types::Transfer,
    events::{EventKind, Events},
    metrics::Metrics,
    network::{Busy, NetworkClient, NetworkError},
    safe_fs::Dir,
    workspace::{Workspace, WorkspacePath},
};

/// Chunk streams one transfer opens to its sender.
const STREAMS: usize = 4;
/// Chunks asked for in one request on a stream.
const CHUNKS_PER_REQUEST: usize = 8;
/// Attempts at a chunk whose hash does not match before giving up.
const CHUNK_ATTEMPTS: usize = 3;
/// What a transfer leaves free on the receiver's disk at the least: a
/// size a peer declares never fills the disk that the audit log and the
/// node's state live on.
pub const DISK_MARGIN: u64 = 64 << 20;
/// The receiver saves its progress every this many chunks.
const SAVE_EVERY: usize = 16;
/// Breaks of one stream in a row, with no chunk in between, that end a
/// transfer; the wait before reopening grows by this step each time.
const STREAM_ATTEMPTS: usize = 4;
const STREAM_RETRY: Duration = Duration::from_millis(250);
/// How long a stream may take to open, to take a request or to bring the
/// next chunk before it counts as broken (and is opened anew). A stream
/// whose connection closes under it is not always woken to hear so: in the
/// NAT lab a transfer opened its first stream on a relayed connection 1.4
/// ms before a hole punch replaced that connection, and without a limit
/// its read waited for ever (a transfer still waiting after 15 minutes).
/// Long enough for a 1 MiB chunk over a slow line.
const STALL: Duration = Duration::from_secs(60);

fn stalled(what: &str) -> String {
    format!("{what} in {} s", STALL.as_secs())
}

/// What a receiver keeps beside a partial file, to resume it. Saved only
/// after the chunks it names were synced to disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Progress {
    blake3: String,
    version: FileVersion,
    done: BTreeSet<u64>,
}

/// The chunks here, and when they were last saved and reported.
struct Tally {
    progress: Progress,
    unsaved: usize,
    last_event: Instant,
}

/// One transfer's shared state, which its streams take work from and
/// report to.
struct Work<'a> {
    peer: PeerId,
    manifest: Arc<FileManifest>,
    file: Arc<std::fs::File>,
    /// Chunks still to fetch, with the attempt each is on.
    todo: Mutex<VecDeque<(u64, usize)>>,
    progress: Mutex<Tally>,
    refetched: AtomicU64,
    dir: &'a Dir,
    progress_name: &'a str,
}

/// What pulls files into this node's workspace.
pub(super) struct Puller {
    pub workspace: Workspace,
    pub events: Events,
    /// Chunks received, for `/metrics`.
    pub metrics: Metrics,
}

impl Puller {
    /// [`super::Files::fetch`] once the destination is ours alone.
    pub(super) async fn fetch_into(
        &self,
        client: &NetworkClient,
        peer: PeerId,
        path: &str,
        dest: &WorkspacePath,
    ) -> Result<Transfer, FileError> {
        let started = Instant::now();
        let describe = DescribeFile {
            path: path.to_string(),
        };
        let manifest = client
            .call(peer, describe)
            .await
            .map_err(FileError::Network)?;
        manifest
            .check()
            .map_err(|e| FileError::Transfer(format!("the peer sent a bad manifest: {e}")))?;
        // The partial file and its progress sit beside the destination, in
        // a directory no container writes, created and opened without
        // following links.
        let bad_destination = || FileError::Invalid(format!("'{dest}' is not a file path"));
        let name = dest
            .relative
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(bad_destination)?
            .to_string();
        let parent = dest
            .relative
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf();
        let local = |e: std::io::Error| FileError::Local(format!("cannot write {dest}: {e}"));
        let dir = self
            .workspace
            .area(dest.area)
            .and_then(|area| area.subdir(&parent, true))
            .map_err(local)?;
        let partial = format!(".{name}.partial");
        let progress_name = format!(".{name}.partial.json");

        let saved = dir
            .open_file(Path::new(&progress_name))
            .ok()
            .and_then(|f| serde_json::from_reader::<_, Progress>(std::io::BufReader::new(f)).ok());
        let progress = saved
            .filter(|p| {
                p.blake3 == manifest.blake3
                    && p.version == manifest.version
                    && dir.open_file(Path::new(&partial)).is_ok()
            })
            .unwrap_or(Progress {
                blake3: manifest.blake3.clone(),
                version: manifest.version,
                done: BTreeSet::new(),
            });
        let here = match progress.done.is_empty() {
            true => 0,
            false => dir
                .open_file(Path::new(&partial))
                .and_then(|f| f.metadata())
                .map_or(0, |m| std::os::unix::fs::MetadataExt::blocks(&m) * 512),
        };
        let free = dir.free_bytes().map_err(local)?;
        let to_come = manifest.version.size.saturating_sub(here);
        if to_come.saturating_add(DISK_MARGIN) > free {
            return Err(FileError::NoRoom(format!(
                "no room for {path} here: {to_come} bytes of it are still to come, {free} bytes \
                 are free, and this node keeps {DISK_MARGIN} bytes of its disk free"
            )));
        }
        if progress.done.is_empty() {
            dir.remove(&partial).map_err(local)?;
        }
        // A fresh partial file is made with O_EXCL: whatever was there is gone.
        let file = dir
            .write_file(&partial, progress.done.is_empty())
            .map_err(local)?;
        file.set_len(manifest.version.size).map_err(local)?;
        let (file, manifest) = (Arc::new(file), Arc::new(manifest));
        let saved = progress.done.len();
        let progress = recheck(file.clone(), manifest.clone(), progress)
            .await
            .map_err(local)?;
        let resumed = progress.done.len() as u64;
        let lost = saved as u64 - resumed;
        if resumed > 0 {
            tracing::info!(%path, "resuming: {resumed} of {} chunks already here", manifest.chunks.len());
        }
        if lost > 0 {
            tracing::warn!(%path, "{lost} chunks saved as here no longer match: fetching them again");
        }

        let todo = (0..manifest.chunks.len() as u64)
            .filter(|i| !progress.done.contains(i))
            .map(|i| (i, 1))
            .collect();
        let work = Work {
            peer,
            manifest,
            file,
            todo: Mutex::new(todo),
            progress: Mutex::new(Tally {
                progress,
                unsaved: 0,
                last_event: Instant::now(),
            }),
            refetched: AtomicU64::new(lost),
            dir: &dir,
            progress_name: &progress_name,
        };
        let streams = (0..STREAMS).map(|_| self.pull(client, path, &work));
        if let Err(e) = futures::future::try_join_all(streams).await {
            let progress = work.progress.lock().expect("lock").progress.clone();
            work.save(progress).await;
            return Err(e);
        }

        let done = work.progress.lock().expect("lock").progress.done.len() as u64;
        let manifest = work.manifest.clone();
        let synced = work.file.clone();
        tokio::task::spawn_blocking(move || synced.sync_all())
            .await
            .map_err(|e| FileError::Local(e.to_string()))?
            .map_err(local)?;
        dir.rename(&partial, &name).map_err(local)?;
        let _ = dir.remove(&progress_name);
        self.events.emit(EventKind::Transfer {
            path: path.to_string(),
            bytes: manifest.version.size,
            total: manifest.version.size,
        });
        Ok(Transfer {
            path: dest.to_string(),
            bytes: manifest.version.size,
            blake3: manifest.blake3.clone(),
            fetched_chunks: done - resumed,
            resumed_chunks: resumed,
            refetched_chunks: work.refetched.load(Ordering::Relaxed),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// One stream of a transfer: takes a few chunks at a time from the
    /// work, asks for them, checks and writes each, until none is left. A
    /// stream that breaks (its connection replaced, say) is opened anew,
    /// its unfinished chunks back in the work; [`STREAM_ATTEMPTS`] breaks
    /// in a row without a chunk in between end the transfer (resumably).
    async fn pull(
        &self,
        client: &NetworkClient,
        path: &str,
        work: &Work<'_>,
    ) -> Result<(), FileError> {
        let mut stream: Option<Busy<Stream>> = None;
        let mut buf = Vec::with_capacity(CHUNK_SIZE as usize);
        let mut breaks = 0;
        loop {
            let batch: Vec<(u64, usize)> = {
                let mut todo = work.todo.lock().expect("lock");
                let n = todo.len().min(CHUNKS_PER_REQUEST);
                todo.drain(..n).collect()
            };
            if batch.is_empty() {
                break;
            }
            let broken = match &mut stream {
                Some(open) => self.pull_batch(open, path, work, &mut buf, &batch).await?,
                None => match timeout(STALL, client.open_chunk_stream(work.peer)).await {
                    Ok(Ok(open)) => {
                        let open = stream.insert(open);
                        self.pull_batch(open, path, work, &mut buf, &batch).await?
                    }
                    Ok(Err(e)) => Some((0, e.to_string())),
                    Err(_) => Some((0, stalled("no stream opened"))),
                },
            };
            let Some((done, why)) = broken else {
                breaks = 0;
                continue;
            };
            stream = None;
            work.todo
                .lock()
                .expect("lock")
                .extend(batch[done..].iter().copied());
            breaks = if done > 0 { 1 } else { breaks + 1 };
            if breaks >= STREAM_ATTEMPTS {
                return Err(FileError::Transfer(format!(
                    "transfer interrupted (resumable): {why}"
                )));
            }
            tracing::debug!(%path, "a chunk stream broke ({why}); opening another");
            tokio::time::sleep(STREAM_RETRY * breaks as u32).await;
        }
        if let Some(mut stream) = stream {
            let _ = stream.close().await;
        }
        Ok(())
    }

    /// Asks for `batch` on `stream` and takes each chunk in: `None` once
    /// all came, or how many came before the stream broke, and why.
    async fn pull_batch(
        &self,
        stream: &mut Stream,
        path: &str,
        work: &Work<'_>,
        buf: &mut Vec<u8>,
        batch: &[(u64, usize)],
    ) -> Result<Option<(usize, String)>, FileError> {
        let request = ChunkRequest {
            path: path.to_string(),
            version: work.manifest.version,
            indices: batch.iter().map(|(index, _)| *index).collect(),
        };
        match timeout(STALL, write_chunk_request(stream, &request)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Ok(Some((0, e.to_string()))),
            Err(_) => return Ok(Some((0, stalled("the request not taken")))),
        }
        for (done, &(index, attempt)) in batch.iter().enumerate() {
            let len = work.manifest.version.chunk_len(index).unwrap_or(0);
            match timeout(STALL, read_chunk(stream, buf, len)).await {
                Ok(Ok(Ok(()))) => self.metrics.traffic.chunks.received(buf.len()),
                Ok(Ok(Err(refusal))) => return Err(refused(work.peer, refusal)),
                Ok(Err(e)) => return Ok(Some((done, e.to_string()))),
                Err(_) => return Ok(Some((done, stalled("no chunk came")))),
            }
            let (manifest, file, data) = (
                work.manifest.clone(),
                work.file.clone(),
                std::mem::take(buf),
            );
            let (data, good) = tokio::task::spawn_blocking(move || {
                let good = manifest.chunk_matches(index, &data);
                if good {
                    file.write_all_at(&data, index * CHUNK_SIZE)?;
                }
                Ok::<_, std::io::Error>((data, good))
            })
            .await
            .map_err(|e| FileError::Local(e.to_string()))?
            .map_err(|e| FileError::Local(format!("cannot write {path}: {e}")))?;
            *buf = data;
            if good {
                if let Some(progress) = self.chunk_done(work, path, index) {
                    work.save(progress).await;
                }
                continue;
            }
            if attempt >= CHUNK_ATTEMPTS {
                return Err(FileError::Transfer(format!(
                    "chunk {index} arrived damaged {attempt} times"
                )));
            }
            tracing::warn!(%path, index, "chunk arrived damaged; fetching it again");
            work.refetched.fetch_add(1, Ordering::Relaxed);
            work.todo
                .lock()
                .expect("lock")
                .push_back((index, attempt + 1));
        }
        Ok(None)
    }

    /// Records a chunk as here, with an event at most every second; the
    /// progress to save when it is time to save it.
    fn chunk_done(&self, work: &Work<'_>, path: &str, index: u64) -> Option<Progress> {
        let mut tally = work.progress.lock().expect("lock");
        tally.progress.done.insert(index);
        tally.unsaved += 1;
        let due = (tally.unsaved >= SAVE_EVERY).then(|| {
            tally.unsaved = 0;
            tally.progress.clone()
        });
        if tally.last_event.elapsed() > Duration::from_secs(1) {
            tally.last_event = Instant::now();
            let done = tally.progress.done.len() as u64;
            let total = work.manifest.version.size;
            self.events.emit(EventKind::Transfer {
                path: path.to_string(),
                bytes: (done * CHUNK_SIZE).min(total),
                total,
            });
        }
        due
    }
}

impl Work<'_> {
    /// Saves `progress` once the chunks it names are on disk: synced
    /// first, so that after a power loss no chunk is said to be here that
    /// is not. Saves from several streams may land out of order; an older
    /// one names fewer chunks, all of them synced too.
    async fn save(&self, progress: Progress) {
        let file = self.file.clone();
        match tokio::task::spawn_blocking(move || file.sync_data()).await {
            Ok(Ok(())) => save_progress(self.dir, self.progress_name, &progress),
            Ok(Err(e)) => tracing::warn!("cannot sync a partial file, progress not saved: {e}"),
            Err(e) => tracing::warn!("progress not saved: {e}"),
        }
    }
}

/// The chunks `progress` names that are still whole in `file`: each is
/// read back and checked against the manifest, so that a partial file
/// whose data a power loss took (zeros, a shorter file) is fetched again,
/// never completed as if it were verified.
async fn recheck(
    file: Arc<std::fs::File>,
    manifest: Arc<FileManifest>,
    mut progress: Progress,
) -> std::io::Result<Progress> {
    use std::os::unix::fs::FileExt;
    if progress.done.is_empty() {
        return Ok(progress);
    }
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; CHUNK_SIZE as usize];
        progress.done.retain(|&index| {
            let Some(len) = manifest.version.chunk_len(index) else {
                return false;
            };
            let data = &mut buf[..len];
            file.read_exact_at(data, index * CHUNK_SIZE).is_ok()
                && manifest.chunk_matches(index, data)
        });
        progress
    })
    .await
    .map_err(std::io::Error::other)
}

/// A sender's refusal of chunks, as the same error a refused request is
/// (so the API answers with the same status).
fn refused(peer: PeerId, refusal: Refusal) -> FileError {
    FileError::Network(NetworkError::PeerRefused {
        peer,
        kind: refusal.kind,
        reason: refusal.reason,
    })
}

/// Saves a transfer's progress beside its partial file: written whole
/// under a new name, then renamed.
fn save_progress(dir: &Dir, name: &str, progress: &Progress) {
    use std::io::Write;
    let json = serde_json::to_vec(progress).expect("progress serializes");
    let temporary = format!("{name}.new");
    let saved = dir
        .remove(&temporary)
        .and_then(|_| dir.write_file(&temporary, true))
        .and_then(|mut f| f.write_all(&json))
        .and_then(|_| dir.rename(&temporary, name));
    if let Err(e) = saved {
        tracing::warn!("cannot save transfer progress: {e}");
    }
}
