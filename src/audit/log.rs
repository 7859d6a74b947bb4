//! The running node's log: appends go one at a time, each on disk
//! (fsynced) before the action it records goes ahead; after each, the
//! tree's new head is signed and published for the node's map record.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use iris_behaviours::{libp2p::identity::Keypair, AuditHead};

use super::{entry::GENESIS, tree::AuditTree, AuditEntry, AuditError, AuditEvent};

/// The log of one node.
pub struct AuditLog {
    path: PathBuf,
    keypair: Keypair,
    state: tokio::sync::Mutex<State>,
    /// The signed head after each append, for the node's map record.
    published: tokio::sync::watch::Sender<AuditHead>,
}

/// Where the chain and the tree stand.
struct State {
    /// The hash of the last line (the next line's `prev`).
    last_hash: String,
    tree: AuditTree,
    /// The bytes of the log's whole lines: where the next line starts.
    length: u64,
}

impl State {
    fn head(&self, keypair: &Keypair) -> AuditHead {
        AuditHead::signed(self.tree.len(), self.tree.root(), keypair)
    }
}

/// How an append opens its file.
enum Opening {
    /// The file must not exist yet (a log's first line).
    New,
    /// Either (the file of torn lines).
    Either,
}

/// Appends `bytes` to `path` whole and syncs them.
fn append_synced(path: &Path, bytes: &[u8], opening: Opening) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    match opening {
        Opening::New => options.create_new(true),
        Opening::Either => options.create(true),
    };
    let mut file = options.append(true).mode(0o600).open(path)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_data());
    if written.is_err() && matches!(opening, Opening::New) {
        // A log's first line cut short would read as an emptied log.
        let _ = std::fs::remove_file(path);
    }
    written
}

/// Appends one whole `line` to the log at `path`, whose whole lines end
/// at `length`, and syncs it; or leaves the log as it was. A write cut
/// short (a full disk, an I/O error) is cut off again at once, and again
/// before the next append if that failed too: a torn line in the middle
/// would end the chain for good, and every line after it.
fn append_line(path: &Path, line: &[u8], length: u64) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().append(true).open(path)?;
    let found = file.metadata()?.len();
    if found < length {
        return Err(std::io::Error::other(format!(
            "the log is shorter ({found} bytes) than this node wrote it ({length}): \
             it was cut under the running node"
        )));
    }
    if found > length {
        file.set_len(length)?;
    }
    let written = (&file).write_all(line).and_then(|()| file.sync_data());
    if written.is_err() {
        // Best effort: if this fails too, the next append tries again.
        let _ = file.set_len(length).and_then(|()| file.sync_data());
    }
    written
}

/// Keeps the bytes of a torn last line in `<path>.torn`, as a line.
fn keep_torn(path: &Path, torn: &[u8]) -> std::io::Result<()> {
    let mut name = path.as_os_str().to_owned();
    name.push(".torn");
    append_synced(Path::new(&name), &[torn, b"\n"].concat(), Opening::Either)
}

fn line_of(entry: &AuditEntry) -> Vec<u8> {
    let mut line = serde_json::to_vec(entry).expect("entries serialize");
    line.push(b'\n');
    line
}

impl AuditLog {
    /// Starts the log at `path` with its first entry, unless there is one
    /// already, which it opens (`iris init`, `iris audit new`).
    pub fn create(
        path: PathBuf,
        keypair: Keypair,
        after: Option<String>,
    ) -> Result<Self, AuditError> {
        if path.exists() {
            return Self::open(path, keypair);
        }
        let first = AuditEntry::new(
            1,
            crate::now_ms(),
            GENESIS.into(),
            AuditEvent::LogStarted { after },
            &keypair,
        );
        append_synced(&path, &line_of(&first), Opening::New).map_err(|source| AuditError::Io {
            path: path.clone(),
            source,
        })?;
        let mut tree = AuditTree::default();
        tree.push(first.leaf().expect("a fresh hash is 32 bytes of hex"));
        let length = line_of(&first).len() as u64;
        Ok(Self::with(path, keypair, first.hash, tree, length))
    }

    fn with(
        path: PathBuf,
        keypair: Keypair,
        last_hash: String,
        tree: AuditTree,
        length: u64,
    ) -> Self {
        let state = State {
            last_hash,
            tree,
            length,
        };
        Self {
            published: tokio::sync::watch::Sender::new(state.head(&keypair)),
            state: tokio::sync::Mutex::new(state),
            path,
            keypair,
        }
    }

    /// Opens the log at `path`, which must be there, and builds its tree.
    /// A last line cut short by a crash was never acknowledged: it goes
    /// to `audit.log.torn` (kept, not lost) and the log goes on from the
    /// line before. A whole line that is not an entry stops the node:
    /// going on would start a second chain, silently.
    pub fn open(path: PathBuf, keypair: Keypair) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AuditError::Missing { path })
            }
            Err(e) => return Err(io(e)),
        };
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            tracing::warn!(
                "moving a partial last line of {} to {}.torn",
                path.display(),
                path.display()
            );
            keep_torn(&path, &bytes[complete..]).map_err(io)?;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io)?;
            file.set_len(complete as u64).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        let mut tree = AuditTree::default();
        let mut last_hash = GENESIS.to_string();
        for (i, line) in bytes[..complete]
            .split_inclusive(|b| *b == b'\n')
            .enumerate()
        {
            let line = &line[..line.len() - 1];
            let entry = serde_json::from_slice::<AuditEntry>(line)
                .ok()
                .and_then(|entry| Some((entry.leaf()?, entry.hash)));
            let Some((leaf, hash)) = entry else {
                return Err(AuditError::Broken {
                    line: i as u64 + 1,
                    reason: "it is not an audit entry, and this node will not start a second \
                             chain after it. Move audit.log aside (keep it: it is the record) \
                             and run `iris audit new --dir DIR`, or repair the line"
                        .into(),
                });
            };
            tree.push(leaf);
            last_hash = hash;
        }
        if tree.is_empty() {
            return Err(AuditError::Broken {
                line: 1,
                reason: "the log is empty, though a node's log starts with its first entry at \
                         `iris init`: it was emptied. Move audit.log aside and run `iris audit \
                         new --dir DIR` (the peers will see that the old log is gone)"
                    .into(),
            });
        }
        Ok(Self::with(path, keypair, last_hash, tree, complete as u64))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The signed head after every append.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<AuditHead> {
        self.published.subscribe()
    }

    /// The log's current signed head.
    pub fn head(&self) -> AuditHead {
        self.published.borrow().clone()
    }

    /// Appends `event`; returns once it is on disk. A log that was
    /// deleted under a running node is not started again: the append
    /// fails, and with it whatever it was to record. So does an append
    /// on a full disk, which leaves no part of its line behind; the next
    /// append, once there is room, goes on from the last whole line.
    pub async fn append(&self, event: AuditEvent) -> Result<(), AuditError> {
        let mut state = self.state.lock().await;
        let entry = AuditEntry::new(
            state.tree.len() + 1,
            crate::now_ms(),
            state.last_hash.clone(),
            event,
            &self.keypair,
        );
        let line = line_of(&entry);
        let (path, length) = (self.path.clone(), state.length);
        let added = line.len() as u64;
        tokio::task::spawn_blocking(move || append_line(&path, &line, length))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|source| AuditError::Io {
                path: self.path.clone(),
                source,
            })?;
        state
            .tree
            .push(entry.leaf().expect("a fresh hash is 32 bytes of hex"));
        state.last_hash = entry.hash;
        state.length += added;
        self.published.send_replace(state.head(&self.keypair));
        Ok(())
    }

    /// The log's signed head now, and for each of `sizes` the proof that
    /// the log extends its first that many lines; none if the log never
    /// had one of those sizes (it shrank, or the asker is wrong).
    pub async fn prove(&self, sizes: &[u64]) -> Option<(AuditHead, Vec<Vec<u8>>)> {
        let state = self.state.lock().await;
        let proofs = sizes
            .iter()
            .map(|size| state.tree.prove_from(*size))
            .collect::<Option<Vec<_>>>()?;
        Some((self.published.borrow().clone(), proofs))
    }
}
