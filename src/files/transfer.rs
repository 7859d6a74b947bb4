//! Pulling a file from a peer: the manifest, several chunks in flight, each
//! checked as it arrives and written in place in a partial file that a
//! later attempt resumes, then the whole file checked and renamed into place.

use std::{
    collections::BTreeSet,
    os::unix::fs::FileExt,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{stream::FuturesUnordered, StreamExt};
use iris_behaviours::{
    libp2p::PeerId, ControlRequest, ControlResponse, FileManifest, FileVersion, CHUNK_SIZE,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{FileError, Files};
use crate::{
    api_types::Transfer,
    events::EventKind,
    network::NetworkClient,
    safe_fs::Dir,
    workspace::{version_of, WorkspacePath},
};

/// Chunks requested at once by one transfer.
const IN_FLIGHT: usize = 8;
/// Attempts at a chunk whose hash does not match before giving up.
const CHUNK_ATTEMPTS: usize = 3;
/// The receiver saves its progress every this many chunks.
const SAVE_EVERY: usize = 16;

/// What a receiver keeps beside a partial file, to resume it.
#[derive(Debug, Serialize, Deserialize)]
struct Progress {
    sha256: String,
    version: FileVersion,
    done: BTreeSet<u64>,
}

impl Files {
    /// [`Files::fetch`] once the destination is ours alone.
    pub(super) async fn fetch_into(
        &self,
        client: &NetworkClient,
        peer: PeerId,
        path: &str,
        dest: &WorkspacePath,
    ) -> Result<Transfer, FileError> {
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
            Ok(other) => return Err(FileError::Transfer(format!("unexpected answer {other:?}"))),
            Err(e) => return Err(FileError::Network(e)),
        };
        let expected_chunks = manifest.version.size.div_ceil(manifest.chunk_size.max(1));
        if manifest.chunk_size != CHUNK_SIZE || manifest.chunks.len() as u64 != expected_chunks {
            return Err(FileError::Transfer(
                "the peer sent an inconsistent manifest".into(),
            ));
        }
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
        let mut progress = saved
            .filter(|p| {
                p.sha256 == manifest.sha256
                    && p.version == manifest.version
                    && dir.open_file(Path::new(&partial)).is_ok()
            })
            .unwrap_or(Progress {
                sha256: manifest.sha256.clone(),
                version: manifest.version,
                done: BTreeSet::new(),
            });
        let resumed = progress.done.len() as u64;
        if resumed > 0 {
            tracing::info!(%path, "resuming: {resumed} of {} chunks already here", manifest.chunks.len());
        } else {
            dir.remove(&partial).map_err(local)?;
        }
        // A fresh partial file is made with O_EXCL: whatever was there is gone.
        let file = dir.write_file(&partial, resumed == 0).map_err(local)?;
        file.set_len(manifest.version.size).map_err(local)?;
        let file = Arc::new(file);
        let save = |progress: &Progress| save_progress(&dir, &progress_name, progress);

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
                Ok(other) => {
                    return Err(FileError::Transfer(format!("unexpected answer {other:?}")))
                }
                Err(e) => {
                    save(&progress);
                    return Err(FileError::Transfer(format!(
                        "transfer interrupted (resumable): {e}"
                    )));
                }
            };
            let hash: [u8; 32] = Sha256::digest(&data).into();
            if hash[..] != manifest.chunks[index as usize][..] {
                if attempt >= CHUNK_ATTEMPTS {
                    save(&progress);
                    return Err(FileError::Transfer(format!(
                        "chunk {index} arrived damaged {attempt} times"
                    )));
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
                .map_err(|e| FileError::Local(e.to_string()))?
                .map_err(local)?;
            progress.done.insert(index);
            fetched += 1;
            since_save += 1;
            if since_save >= SAVE_EVERY {
                save(&progress);
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
                let check = file.clone();
                tokio::task::spawn_blocking(move || hash_whole(&check))
                    .await
                    .map_err(|e| FileError::Local(e.to_string()))?
                    .map_err(FileError::Local)?
            }
        };
        if whole != manifest.sha256 {
            let _ = dir.remove(&partial);
            let _ = dir.remove(&progress_name);
            return Err(FileError::Transfer(format!(
                "'{path}' arrived whole but its SHA-256 does not match; discarded"
            )));
        }
        file.sync_all()
            .map_err(|e| FileError::Local(e.to_string()))?;
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
            sha256: manifest.sha256,
            fetched_chunks: fetched,
            resumed_chunks: resumed,
            refetched_chunks: refetched,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
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

pub(super) fn hash_file(
    file: &std::fs::File,
    name: &str,
    version: FileVersion,
) -> Result<FileManifest, String> {
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

fn hash_whole(file: &std::fs::File) -> Result<String, String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0;
    loop {
        let n = file.read_at(&mut buf, offset).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
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
}
