//! Files between nodes: a node serves its `public/` and `image/` files to
//! members, and a job's `outputs/` to the node that submitted it (the
//! router checks who asks), in 1 MiB chunks whose BLAKE3 hashes, in a
//! manifest, combine to the file's hash ([`serve`]); a receiver fetches
//! chunks on a few streams at once, checks each as it arrives, writes it
//! in place in a partial file it can resume, and renames the file into
//! place once every chunk is checked ([`transfer`]). Each side hashes the
//! file once. Nothing is held in memory whole.
//! Every file is opened through a handle on its area ([`crate::safe_fs`]):
//! no link is followed, whoever planted it.

mod push;
mod serve;
mod transfer;

pub use push::fetch_on;
pub use serve::FileServer;
use transfer::Puller;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Instant,
};

use iris_behaviours::{libp2p::PeerId, FileEntry, ListFiles};

use crate::{
    api_types::{GetFile, NodeAnswer, PutFile, Transfer},
    crew::Crew,
    events::Events,
    images::ImageLibrary,
    membership::{Membership, MembershipError},
    metrics::Metrics,
    network::NetworkError,
    workspace::{
        copy_into_place, require_regular_file, user_path, Area, UserFileError, Workspace,
        WorkspacePath,
    },
};

/// Why a file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A path or file the caller named is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// A file the caller named on this machine is not there.
    #[error("{0}")]
    NotFound(String),
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
    /// The file would not fit on this node's disk with the margin it
    /// keeps free.
    #[error("{0}")]
    NoRoom(String),
    /// This node's Docker engine could not take a shipped image.
    #[error("{0}")]
    Engine(String),
    /// The path is fine, but what this node holds stands in its way: a
    /// file where it needs a directory, or the other way round.
    #[error("{0}")]
    InTheWay(String),
}

/// The most bytes an upload takes, or a read of a local file gives, in
/// one request of the API: a model or a checkpoint, not a dataset.
pub const MAX_UPLOAD: usize = 64 << 20;

/// `dest` under `public/`, as a put or an upload names its place.
fn in_public(dest: &str) -> String {
    if dest.starts_with("public/") {
        dest.to_string()
    } else {
        format!("public/{dest}")
    }
}

/// Where a peer may have this node pull a file to, or its user a file in.
pub(super) const DESTINATIONS: [Area; 2] = [Area::Public, Area::Image];
/// What this node serves (the router decides to whom).
const SERVED: [Area; 3] = [Area::Public, Area::Image, Area::Outputs];

pub struct Files {
    workspace: Workspace,
    membership: Arc<Membership>,
    images: Arc<ImageLibrary>,
    /// What peers fetch from this node.
    server: FileServer,
    /// What fetches from peers.
    puller: Puller,
    /// Fetches this node runs for others ([`push`]).
    pushes: push::Pushes,
    /// The tasks of those fetches, stopped when the node shuts down.
    pub(super) crew: Crew,
    /// Transfers, for `/metrics`.
    metrics: Metrics,
    /// One transfer into a destination at a time: two would share its
    /// partial file, and one could truncate chunks the other had checked.
    destinations: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl Files {
    pub fn new(
        workspace: PathBuf,
        membership: Arc<Membership>,
        images: Arc<ImageLibrary>,
        events: Events,
        metrics: Metrics,
    ) -> Arc<Self> {
        let workspace = Workspace::same_for_engine(workspace);
        Arc::new(Self {
            server: FileServer::new(workspace.clone(), metrics.clone()),
            puller: Puller {
                workspace: workspace.clone(),
                events,
                metrics: metrics.clone(),
            },
            workspace,
            membership,
            images,
            pushes: Default::default(),
            crew: Crew::default(),
            metrics,
            destinations: Mutex::new(HashMap::new()),
        })
    }

    /// What peers fetch from this node: manifests and chunks.
    pub fn server(&self) -> &FileServer {
        &self.server
    }

    /// A peer's [`iris_behaviours::FetchFile`]: starts the pull and
    /// answers with its id ([`push`]).
    pub fn start_fetch(
        self: &Arc<Self>,
        origin: PeerId,
        fetch: iris_behaviours::FetchFile,
    ) -> Result<iris_behaviours::FetchStarted, iris_behaviours::Refusal> {
        self.pushes.start(self, origin, fetch)
    }

    /// A peer's [`iris_behaviours::FetchStatus`]: how its fetch goes.
    pub fn fetch_status(
        &self,
        origin: PeerId,
        status: iris_behaviours::FetchStatus,
    ) -> Result<iris_behaviours::FetchProgress, iris_behaviours::Refusal> {
        self.pushes.status(origin, status)
    }

    /// Stops the fetches this node runs for others, and waits for them.
    pub async fn stop(&self) {
        self.crew.stop().await;
    }

    /// Every regular file under public/ and image/ (hidden ones excluded).
    pub fn list(&self) -> Vec<FileEntry> {
        self.workspace.served_files()
    }

    /// The public and image files of this node, or of `node`.
    pub async fn list_on(&self, node: Option<&str>) -> Result<Vec<FileEntry>, FileError> {
        let Some(node) = node.filter(|n| *n != self.membership.name()) else {
            return Ok(self.list());
        };
        let peer = self.membership.peer_named(node).await?;
        Ok(self.membership.call(peer, ListFiles).await?)
    }

    /// Pulls `path` (public/ unless it names another area) from node
    /// `from` into this node's `dest`, or, with `to`, has node `to` pull it
    /// directly. A job's output lands in `gathered/<job>/<from>/` unless the
    /// user names a destination: a site's result is not made public by
    /// default.
    pub async fn get(&self, body: GetFile) -> Result<Transfer, FileError> {
        let path = user_path(&body.path);
        let source_path = WorkspacePath::parse(&path).map_err(FileError::Invalid)?;
        let dest = match body.dest.as_deref() {
            Some(dest) => user_path(dest),
            None if source_path.area == Area::Outputs => {
                let mut parts = source_path.relative.iter();
                let job = parts.next().unwrap_or_default().to_string_lossy();
                let rest = parts.as_path().display();
                format!("gathered/{job}/{}/{rest}", body.from)
            }
            None => format!(
                "public/received/{}/{}",
                body.from,
                source_path.relative.display()
            ),
        };
        let dest = WorkspacePath::parse(&dest).map_err(FileError::Invalid)?;
        let source = self.membership.peer_named(&body.from).await?;
        let Some(to) = body.to.filter(|t| t != self.membership.name()) else {
            let dest = dest
                .require(
                    &[Area::Public, Area::Image, Area::Gathered],
                    "a destination",
                )
                .map_err(FileError::Invalid)?;
            return self.fetch(source, &path, &dest).await;
        };
        let dest = dest
            .require(&DESTINATIONS, "a destination on another node")
            .map_err(FileError::Invalid)?
            .to_string();
        let target = self.membership.peer_named(&to).await?;
        let started = Instant::now();
        let (bytes, blake3) =
            fetch_on(&self.membership, target, source, path, dest.clone()).await?;
        Ok(Transfer {
            path: dest,
            bytes,
            blake3,
            fetched_chunks: 0,
            resumed_chunks: 0,
            refetched_chunks: 0,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Copies a local file into this node's workspace (`public/<as>`, or
    /// `image/<name>` for [`Files::push_image`]), then has every other
    /// target pull it to the same place.
    pub async fn put(&self, body: PutFile) -> Result<Vec<NodeAnswer>, FileError> {
        let dest = match body.dest {
            Some(dest) => in_public(&dest),
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
        require_regular_file(Path::new(source)).map_err(|e| match e {
            UserFileError::Missing(e) => FileError::NotFound(e),
            UserFileError::Unusable(e) => FileError::Invalid(e),
        })?;
        let place = WorkspacePath::parse(dest)
            .and_then(|d| d.require(&DESTINATIONS, "a destination"))
            .map_err(FileError::Invalid)?;
        let (from, workspace, into) =
            (PathBuf::from(source), self.workspace.clone(), place.clone());
        tokio::task::spawn_blocking(move || {
            let mut source = std::fs::File::open(&from)?;
            copy_into_place(&mut source, &workspace.area(into.area)?, &into.relative)
        })
        .await
        .map_err(|e| FileError::Local(e.to_string()))?
        .map_err(|e| FileError::Local(format!("cannot copy {source} to {dest}: {e}")))?;
        self.ship(&place, to).await
    }

    /// Keeps `bytes` as `public/<dest>` in this node's workspace (whole,
    /// or not at all), then has every other target of `to`, if any, pull
    /// it to the same place: a researcher's model, sent from wherever the
    /// client runs, delivered to the sites as a job's input.
    pub async fn upload(
        &self,
        dest: &str,
        to: Option<&str>,
        bytes: Vec<u8>,
    ) -> Result<Vec<NodeAnswer>, FileError> {
        let place = WorkspacePath::parse(&in_public(dest))
            .and_then(|d| d.require(&[Area::Public], "an upload's place"))
            .map_err(FileError::Invalid)?;
        if place.relative.as_os_str().is_empty() {
            return Err(FileError::Invalid("an upload needs a file name".into()));
        }
        self.write_local(&place, bytes).await?;
        match to {
            Some(to) => self.ship(&place, to).await,
            None => Ok(Vec::new()),
        }
    }

    /// The bytes of a file of this node's own workspace, for its owner's
    /// API: what it shares (`public/`) and what it gathered (a job's sum,
    /// other nodes' released outputs); never a dataset, nor an output its
    /// owner has not released. At most [`MAX_UPLOAD`] bytes.
    pub async fn read_local(&self, path: &str) -> Result<Vec<u8>, FileError> {
        let place = WorkspacePath::parse(path)
            .and_then(|p| p.require(&[Area::Public, Area::Gathered], "a file to read"))
            .map_err(FileError::Invalid)?;
        let (workspace, shown) = (self.workspace.clone(), place.to_string());
        tokio::task::spawn_blocking(move || {
            let area = workspace
                .area(place.area)
                .map_err(|e| FileError::Local(e.to_string()))?;
            let file = area
                .open_file(&place.relative)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        FileError::NotFound(format!("no file '{shown}' here"))
                    }
                    _ => FileError::Invalid(format!("'{shown}': {e}")),
                })?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(file, MAX_UPLOAD as u64 + 1),
                &mut bytes,
            )
            .map_err(|e| FileError::Local(format!("cannot read {shown}: {e}")))?;
            if bytes.len() > MAX_UPLOAD {
                return Err(FileError::Invalid(format!(
                    "{shown} is larger than the {} MiB this route gives; fetch it with files get",
                    MAX_UPLOAD >> 20
                )));
            }
            Ok(bytes)
        })
        .await
        .map_err(|e| FileError::Local(e.to_string()))?
    }

    /// Has every target of `to` but this node pull `place` from this node,
    /// to the same place.
    async fn ship(&self, place: &WorkspacePath, to: &str) -> Result<Vec<NodeAnswer>, FileError> {
        let dest = place.to_string();
        let dest = dest.as_str();
        let local_peer = self.membership.local_peer();
        let targets = self
            .membership
            .targets(to, false, &Default::default())
            .await?;
        let calls = targets
            .into_iter()
            .filter(|(peer, _)| *peer != local_peer)
            .map(|(peer, node)| async move {
                let answer = fetch_on(
                    &self.membership,
                    peer,
                    local_peer,
                    dest.to_string(),
                    dest.to_string(),
                )
                .await
                .map(|_| None)
                .map_err(|e| e.to_string());
                NodeAnswer::from_answer(node, answer)
            });
        Ok(futures::future::join_all(calls).await)
    }

    /// Pulls a file into this node; an image tar is loaded once it is here.
    pub(super) async fn fetch_and_load(
        &self,
        from: PeerId,
        path: &str,
        dest: &WorkspacePath,
    ) -> Result<Transfer, FileError> {
        let transfer = self.fetch(from, path, dest).await?;
        if dest.area == Area::Image {
            let full = self.workspace.local.join("image").join(&dest.relative);
            // A shipped tar that the node refuses is not kept (nor served).
            self.images
                .load_or_remove(&full, false)
                .await
                .map_err(|e| match e {
                    crate::images::LoadError::Refused(_) => FileError::Invalid(e.to_string()),
                    crate::images::LoadError::Engine(_) => FileError::Engine(e.to_string()),
                })?;
        }
        Ok(transfer)
    }

    /// Copies a file of this node's own workspace to another place in it
    /// (a gather of this node's own task), never through a link.
    pub async fn copy_local(&self, path: &str, dest: &WorkspacePath) -> Result<(), FileError> {
        let (workspace, name, dest) = (self.workspace.clone(), path.to_string(), dest.clone());
        tokio::task::spawn_blocking(move || {
            let (mut source, _) = FileServer::open_served(&workspace, &name)
                .map_err(|r| FileError::Invalid(r.reason))?;
            let area = workspace
                .area(dest.area)
                .map_err(|e| FileError::Local(e.to_string()))?;
            copy_into_place(&mut source, &area, &dest.relative)
                .map_err(|e| FileError::Local(format!("cannot copy {name} to {dest}: {e}")))
        })
        .await
        .map_err(|e| FileError::Local(e.to_string()))?
    }

    /// Writes `bytes` as `dest` (a workspace path) on this node: whole, or
    /// not at all, and through no link.
    pub async fn write_local(&self, dest: &WorkspacePath, bytes: Vec<u8>) -> Result<(), FileError> {
        let (workspace, place) = (self.workspace.clone(), dest.clone());
        tokio::task::spawn_blocking(move || {
            let dest = place;
            let area = workspace.area(dest.area)?;
            let name = dest
                .relative
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| std::io::Error::other("names no file"))?;
            let dir = area.subdir(dest.relative.parent().unwrap_or(Path::new("")), true)?;
            // Named after the file's name, never longer than a name may be.
            let partial = format!(".{}.write", &blake3::hash(name.as_bytes()).to_hex()[..16]);
            dir.remove(&partial)?;
            let mut file = dir.write_file(&partial, true)?;
            std::io::Write::write_all(&mut file, &bytes)?;
            file.sync_all()?;
            dir.rename(&partial, name)
        })
        .await
        .map_err(|e| FileError::Local(e.to_string()))?
        .map_err(|e| {
            use std::io::ErrorKind::{AlreadyExists, InvalidInput, IsADirectory, NotADirectory};
            match e.kind() {
                // What the node holds stands in the path's way (a file
                // where it needs a directory, or a link: `safe_fs`).
                NotADirectory | IsADirectory | AlreadyExists | InvalidInput => {
                    FileError::InTheWay(format!(
                    "cannot write {dest}: a file or directory of another kind is in its way ({e})"
                ))
                }
                _ => FileError::Local(format!("cannot write {dest}: {e}")),
            }
        })
    }

    /// Pulls `path` from `peer` into `dest` (a workspace path), one
    /// transfer per destination at a time. Resumes a partial file left by an
    /// earlier attempt at the same version.
    pub async fn fetch(
        &self,
        peer: PeerId,
        path: &str,
        dest: &WorkspacePath,
    ) -> Result<Transfer, FileError> {
        let client = self
            .membership
            .client()
            .ok_or_else(|| self.membership.no_network())?;
        let target = self.workspace.local.join(dest.to_string());
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
        let transfer = self.metrics.transfer();
        let result = self.puller.fetch_into(&client, peer, path, dest).await;
        if result.is_ok() {
            transfer.done();
        }
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
