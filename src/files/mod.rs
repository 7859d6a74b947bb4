//! Files between nodes: a node serves its `public/` and `image/` files (and
//! nothing else) in 1 MiB chunks, each with its SHA-256 in a manifest; a
//! receiver fetches several chunks at once, checks each, writes it in place
//! in a partial file it can resume, checks the whole file's SHA-256 and
//! renames it into place ([`transfer`]). Nothing is held in memory whole.

mod transfer;

use std::{
    collections::HashMap,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Instant,
};

use iris_behaviours::{
    libp2p::PeerId, ControlRequest, ControlResponse, FileEntry, FileManifest, FileVersion, Refusal,
    CHUNK_SIZE,
};

use crate::{
    api_types::{GetFile, NodeAnswer, PutFile, Transfer},
    events::Events,
    images::ImageLibrary,
    membership::{Membership, MembershipError},
    network::NetworkError,
    workspace::{copy_into_place, require_regular_file, resolve, user_path, version_of, Workspace},
};

/// Why a file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A path or file the caller named is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The peer could not be asked, or refused.
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// What arrived was damaged, or the peer's answers did not fit together.
    #[error("{0}")]
    Transfer(String),
    /// This node could not read or write its own disk.
    #[error("{0}")]
    Local(String),
}

pub struct Files {
    workspace: PathBuf,
    membership: Arc<Membership>,
    images: Arc<ImageLibrary>,
    manifests: Mutex<HashMap<PathBuf, FileManifest>>,
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
        membership: Arc<Membership>,
        images: Arc<ImageLibrary>,
        events: Events,
    ) -> Arc<Self> {
        let corrupt_once = std::env::var("IRIS_FAULT_CORRUPT_CHUNK")
            .ok()
            .and_then(|v| v.parse().ok());
        Arc::new(Self {
            workspace,
            membership,
            images,
            manifests: Mutex::new(HashMap::new()),
            events,
            destinations: Mutex::new(HashMap::new()),
            corrupt_once: Mutex::new(corrupt_once),
        })
    }

    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// Answers a peer's file request (authority already checked by the
    /// router).
    pub async fn handle(
        &self,
        peer: PeerId,
        request: ControlRequest,
    ) -> Result<ControlResponse, Refusal> {
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
            ControlRequest::FetchFile { from, path, dest } => {
                let transfer = self.fetch_and_load(from, &path, &dest).await.map_err(|e| {
                    tracing::warn!(%peer, "fetch of {path} asked by {peer} failed: {e}");
                    match e {
                        FileError::Invalid(reason) => Refusal::invalid(reason),
                        other => Refusal::failed(other.to_string()),
                    }
                })?;
                Ok(ControlResponse::Fetched {
                    bytes: transfer.bytes,
                    sha256: transfer.sha256,
                })
            }
            other => Err(Refusal::invalid(format!("not a file request: {other:?}"))),
        }
    }

    /// Every regular file under public/ and image/ (hidden ones excluded).
    pub fn list(&self) -> Vec<FileEntry> {
        Workspace::same_for_engine(self.workspace.clone()).served_files()
    }

    /// The public and image files of this node, or of `node`.
    pub async fn list_on(&self, node: Option<&str>) -> Result<Vec<FileEntry>, FileError> {
        let Some(node) = node.filter(|n| *n != self.membership.name()) else {
            return Ok(self.list());
        };
        let peer = self.membership.peer_named(node).await?;
        match self
            .membership
            .request(peer, ControlRequest::ListFiles)
            .await?
        {
            ControlResponse::Files { entries } => Ok(entries),
            other => Err(FileError::Transfer(format!("unexpected answer {other:?}"))),
        }
    }

    /// Pulls `path` (public/ unless it says image/) from node `from` into
    /// this node's `dest`, or, with `to`, has node `to` pull it directly.
    pub async fn get(&self, body: GetFile) -> Result<Transfer, FileError> {
        let path = user_path(&body.path);
        let dest = body.dest.as_deref().map(user_path).unwrap_or_else(|| {
            format!(
                "public/received/{}/{}",
                body.from,
                path.split_once('/').map_or(path.as_str(), |(_, rest)| rest)
            )
        });
        let source = self.membership.peer_named(&body.from).await?;
        let Some(to) = body.to.filter(|t| t != self.membership.name()) else {
            return self.fetch(source, &path, &dest).await;
        };
        let target = self.membership.peer_named(&to).await?;
        let started = Instant::now();
        let request = ControlRequest::FetchFile {
            from: source,
            path,
            dest: dest.clone(),
        };
        match self.membership.request(target, request).await? {
            ControlResponse::Fetched { bytes, sha256 } => Ok(Transfer {
                path: dest,
                bytes,
                sha256,
                fetched_chunks: 0,
                resumed_chunks: 0,
                refetched_chunks: 0,
                seconds: started.elapsed().as_secs_f64(),
            }),
            other => Err(FileError::Transfer(format!("unexpected answer {other:?}"))),
        }
    }

    /// Copies a local file into this node's workspace (`public/<as>`, or
    /// `image/<name>` for [`Files::push_image`]), then has every other
    /// target pull it to the same place.
    pub async fn put(&self, body: PutFile) -> Result<Vec<NodeAnswer>, FileError> {
        let dest = match body.dest {
            Some(dest) if dest.starts_with("public/") => dest,
            Some(dest) => format!("public/{dest}"),
            None => format!("public/{}", file_name(&body.source)?),
        };
        self.put_at(&body.source, &dest, &body.to).await
    }

    /// Ships a `docker save` tar into every target's `image/`; each loads it.
    pub async fn push_image(&self, source: &str, to: &str) -> Result<Vec<NodeAnswer>, FileError> {
        let name = file_name(source)?;
        if !name.ends_with(".tar") {
            return Err(FileError::Invalid(format!("{name} is not a .tar file")));
        }
        self.put_at(source, &format!("image/{name}"), to).await
    }

    async fn put_at(
        &self,
        source: &str,
        dest: &str,
        to: &str,
    ) -> Result<Vec<NodeAnswer>, FileError> {
        let source = Path::new(source);
        require_regular_file(source).map_err(FileError::Invalid)?;
        let local = resolve(&self.workspace, dest).map_err(FileError::Invalid)?;
        copy_into_place(source, &local)
            .await
            .map_err(FileError::Local)?;
        let local_peer = self.membership.local_peer();
        let targets = self
            .membership
            .targets(to, false, &Default::default())
            .await?;
        let request = ControlRequest::FetchFile {
            from: local_peer,
            path: dest.to_string(),
            dest: dest.to_string(),
        };
        let calls = targets
            .into_iter()
            .filter(|(peer, _)| *peer != local_peer)
            .map(|(peer, node)| {
                let request = request.clone();
                async move {
                    let answer = self
                        .membership
                        .request(peer, request)
                        .await
                        .map_err(|e| e.to_string());
                    NodeAnswer::from_answer(node, answer)
                }
            });
        Ok(futures::future::join_all(calls).await)
    }

    /// Pulls a file into this node; an image tar is loaded once it is here.
    async fn fetch_and_load(
        &self,
        from: PeerId,
        path: &str,
        dest: &str,
    ) -> Result<Transfer, FileError> {
        let transfer = self.fetch(from, path, dest).await?;
        if dest.starts_with("image/") {
            let full = resolve(&self.workspace, dest).map_err(FileError::Invalid)?;
            self.images.load(&full).await.map_err(FileError::Invalid)?;
        }
        Ok(transfer)
    }

    fn served_file(&self, path: &str) -> Result<PathBuf, Refusal> {
        let full = resolve(&self.workspace, path).map_err(|e| {
            tracing::warn!("refused to serve: {e}");
            Refusal::invalid(e)
        })?;
        if !full.is_file() {
            return Err(Refusal::not_found(format!("no file '{path}' here")));
        }
        Ok(full)
    }

    /// The manifest of a served file, hashed once per version.
    pub async fn manifest(&self, path: &str) -> Result<FileManifest, Refusal> {
        let full = self.served_file(path)?;
        let meta = std::fs::metadata(&full).map_err(|e| Refusal::failed(e.to_string()))?;
        let version = version_of(&meta);
        if let Some(cached) = self.manifests.lock().expect("lock").get(&full) {
            if cached.version == version {
                return Ok(cached.clone());
            }
        }
        let path_text = path.to_string();
        let file = full.clone();
        let manifest =
            tokio::task::spawn_blocking(move || transfer::hash_file(&file, &path_text, version))
                .await
                .map_err(|e| Refusal::failed(e.to_string()))?
                .map_err(Refusal::failed)?;
        self.manifests
            .lock()
            .expect("lock")
            .insert(full, manifest.clone());
        Ok(manifest)
    }

    async fn chunk(
        &self,
        path: &str,
        version: FileVersion,
        index: u64,
    ) -> Result<Vec<u8>, Refusal> {
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
        .map_err(|e| Refusal::failed(e.to_string()))?
        .map_err(Refusal::failed)?;
        let mut corrupt = self.corrupt_once.lock().expect("lock");
        if *corrupt == Some(index) && !data.is_empty() {
            data[0] ^= 0xff;
            *corrupt = None;
        }
        Ok(data)
    }

    /// Pulls `path` from `peer` into `dest` (a workspace path), one
    /// transfer per destination at a time. Resumes a partial file left by an
    /// earlier attempt at the same version.
    pub async fn fetch(&self, peer: PeerId, path: &str, dest: &str) -> Result<Transfer, FileError> {
        let client = self
            .membership
            .client()
            .ok_or(MembershipError::NotInNetwork)?;
        let target = resolve(&self.workspace, dest).map_err(FileError::Invalid)?;
        if target.is_dir() {
            return Err(FileError::Invalid(format!("'{dest}' is a directory")));
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
}

/// The name of a file a user named.
fn file_name(path: &str) -> Result<String, FileError> {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| FileError::Invalid(format!("{path} names no file")))
}
