//! The audit log, `DIR/audit.log`: what touched this node's private data,
//! for its owner. Append-only, one JSON line per event, each line carrying
//! the hash of the line before it (a hash chain): a line edited, deleted or
//! moved breaks the chain at that line, and `iris audit verify` says where.
//! An entry is on disk (fsynced) before the action it records goes ahead.
//!
//! A line's `hash` is the SHA-256 of the previous line's hash, a newline,
//! and the line's JSON without its `hash` field (as this module writes it).

use std::{
    io::{BufRead, Write},
    path::{Path, PathBuf},
};

use iris_behaviours::{libp2p::PeerId, TaskState};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditEvent {
    /// A node asked this one to run a task.
    TaskRequested {
        job_id: String,
        #[schema(value_type = String)]
        from: PeerId,
        image: String,
        argv: Vec<String>,
        network: Option<String>,
        memory_bytes: i64,
        nano_cpus: i64,
        inputs: Vec<String>,
        /// What the image's name meant here when the request came.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image_id: Option<String>,
        /// The dataset it reads; none: the whole private area.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dataset: Option<String>,
    },
    /// What was decided about a request: by the policy, or by the owner.
    Decision {
        /// The job id, or `session NAME`.
        subject: String,
        #[schema(value_type = String)]
        from: PeerId,
        image_id: Option<String>,
        verdict: Verdict,
        by: DecidedBy,
        reason: String,
    },
    /// A task's container is about to start, from exactly this image.
    TaskStarted { job_id: String, image_id: String },
    /// Its container ended (or never started).
    TaskEnded {
        job_id: String,
        state: TaskState,
        exit_code: Option<i64>,
        image_id: Option<String>,
    },
    /// A file of a task's outputs went to the node that asked for the job.
    OutputReleased {
        job_id: String,
        path: String,
        #[schema(value_type = String)]
        to: PeerId,
        bytes: u64,
        /// Written by releases before BLAKE3 (kept so their entries
        /// still verify).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
        /// The file's BLAKE3 hash, as its manifest named it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        blake3: Option<String>,
    },
    /// A task's logs went to the node that asked for the job.
    LogsReleased {
        job_id: String,
        #[schema(value_type = String)]
        to: PeerId,
        bytes: u64,
    },
    /// The owner released a task's held outputs, or refused to.
    ReleaseDecided {
        job_id: String,
        released: bool,
        reason: Option<String>,
    },
    /// A node asked to start a session (a long-lived container) here.
    SessionRequested {
        name: String,
        #[schema(value_type = String)]
        from: PeerId,
        image: String,
        image_id: Option<String>,
        argv: Vec<String>,
        network: Option<String>,
    },
    /// A node asked to run a command in a session here.
    ExecRequested {
        name: String,
        #[schema(value_type = String)]
        from: PeerId,
        argv: Vec<String>,
    },
    /// A command's output in a session went to the node that ran it.
    ExecReleased {
        name: String,
        #[schema(value_type = String)]
        to: PeerId,
        bytes: u64,
        sha256: String,
    },
    /// The owner changed the policy.
    PolicyChanged { change: String },
    /// This log begins: at `iris init`, or when the owner started a new
    /// one knowingly (`iris audit new`), after what became of the old one.
    LogStarted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    /// A task's output left, masked, as an input of a secure sum: the sum
    /// unmasks only with `threshold` of the `participants` inputs in it.
    Contribution {
        job_id: String,
        session: String,
        #[schema(value_type = String)]
        to: PeerId,
        length: u64,
        participants: u64,
        threshold: u64,
    },
}

/// What a decision was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approved,
    AwaitingApproval,
    Denied,
}

/// Who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    Policy,
    Owner,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// 1 for the first line, then one more each line.
    pub seq: u64,
    pub at_ms: u64,
    /// The hash of the line before ([`GENESIS`] for the first).
    pub prev: String,
    pub event: AuditEvent,
    pub hash: String,
}

/// The part of a line its hash covers.
#[derive(Serialize)]
struct Unsealed<'a> {
    seq: u64,
    at_ms: u64,
    prev: &'a str,
    event: &'a AuditEvent,
}

fn seal(seq: u64, at_ms: u64, prev: &str, event: &AuditEvent) -> String {
    let body = serde_json::to_vec(&Unsealed {
        seq,
        at_ms,
        prev,
        event,
    })
    .expect("entries serialize");
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    hasher.update(b"\n");
    hasher.update(&body);
    hex::encode(hasher.finalize())
}

/// Why the log does not verify, at which line (1-based).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log line {line}: {reason}")]
    Broken { line: u64, reason: String },
    #[error(
        "{path} is missing: a node keeps its audit log from `iris init` on, so it was deleted \
         or moved. Restore it; or, to start a new log knowingly (the peers will see that the \
         old one is gone), run `iris audit new --dir DIR` with the node stopped"
    , path = .path.display())]
    Missing { path: PathBuf },
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The length of a chain and the hash at its head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub entries: u64,
    pub head: String,
}

impl ChainHead {
    /// The head of a log with no entry.
    fn genesis() -> Self {
        Self {
            entries: 0,
            head: GENESIS.into(),
        }
    }
}

/// The line that appends `event` after `head`, and the head after it.
fn sealed(head: &ChainHead, event: AuditEvent) -> (Vec<u8>, ChainHead) {
    let seq = head.entries + 1;
    let at_ms = crate::now_ms();
    let hash = seal(seq, at_ms, &head.head, &event);
    let entry = AuditEntry {
        seq,
        at_ms,
        prev: head.head.clone(),
        event,
        hash: hash.clone(),
    };
    let mut line = serde_json::to_vec(&entry).expect("entries serialize");
    line.push(b'\n');
    (
        line,
        ChainHead {
            entries: seq,
            head: hash,
        },
    )
}

/// Appends one whole line to the log and syncs it; `new`: the log must
/// not exist yet, otherwise it must.
fn write_line(path: &Path, line: &[u8], new: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create_new(new)
        .mode(0o600)
        .open(path)?;
    file.write_all(line)?;
    file.sync_data()
}

/// Appends the bytes of a torn last line to `<path>.torn`, synced.
fn keep_torn(path: &Path, torn: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut name = path.as_os_str().to_owned();
    name.push(".torn");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(name)?;
    file.write_all(torn)?;
    file.write_all(b"\n")?;
    file.sync_data()
}

/// The log of one node: appends go one at a time, each fsynced.
pub struct AuditLog {
    path: PathBuf,
    head: tokio::sync::Mutex<ChainHead>,
    /// The head after each append, for the node's map record.
    published: tokio::sync::watch::Sender<ChainHead>,
}

impl AuditLog {
    /// Starts the log at `path` with its first entry, unless there is one
    /// already, which it opens (`iris init`).
    pub fn create(path: PathBuf, after: Option<String>) -> Result<Self, AuditError> {
        if path.exists() {
            return Self::open(path);
        }
        let (line, head) = sealed(&ChainHead::genesis(), AuditEvent::LogStarted { after });
        write_line(&path, &line, true).map_err(|source| AuditError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            published: tokio::sync::watch::Sender::new(head.clone()),
            head: tokio::sync::Mutex::new(head),
        })
    }

    /// Opens the log at `path`, which must be there. A last line cut short
    /// by a crash was never acknowledged: it goes to `audit.log.torn`
    /// (kept, not lost) and the chain goes on from the line before. A last
    /// whole line that is not an entry stops the node: going on would
    /// start a second chain, silently.
    pub fn open(path: PathBuf) -> Result<Self, AuditError> {
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
        let whole = &bytes[..complete];
        let mut head = ChainHead::genesis();
        if let Some(last) = whole.split(|b| *b == b'\n').rev().nth(1) {
            let entry =
                serde_json::from_slice::<AuditEntry>(last).map_err(|_| AuditError::Broken {
                    line: whole.iter().filter(|b| **b == b'\n').count() as u64,
                    reason: "the last line is not an audit entry, and this node will not start a \
                         second chain after it. Move audit.log aside (keep it: it is the record) \
                         and run `iris audit new --dir DIR`, or repair the line"
                        .into(),
                })?;
            head = ChainHead {
                entries: entry.seq,
                head: entry.hash,
            };
        }
        Ok(Self {
            path,
            published: tokio::sync::watch::Sender::new(head.clone()),
            head: tokio::sync::Mutex::new(head),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The head after every append.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<ChainHead> {
        self.published.subscribe()
    }

    /// The length and head hash of the chain.
    pub async fn head(&self) -> ChainHead {
        self.head.lock().await.clone()
    }

    /// Appends `event`; returns once it is on disk. A log that was
    /// deleted under a running node is not started again: the append
    /// fails, and with it whatever it was to record.
    pub async fn append(&self, event: AuditEvent) -> Result<(), AuditError> {
        let mut head = self.head.lock().await;
        let (line, next) = sealed(&head, event);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_line(&path, &line, false))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|source| AuditError::Io {
                path: self.path.clone(),
                source,
            })?;
        *head = next;
        self.published.send_replace(head.clone());
        Ok(())
    }
}

/// Reads every entry of the log at `path` (none if there is none).
pub fn read(path: &Path) -> Result<Vec<AuditEntry>, AuditError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AuditError::Io {
                path: path.into(),
                source,
            })
        }
    };
    let mut entries = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| AuditError::Io {
            path: path.into(),
            source,
        })?;
        let entry = serde_json::from_str(&line).map_err(|e| AuditError::Broken {
            line: i as u64 + 1,
            reason: format!("not an audit entry: {e}"),
        })?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Checks the chain of the log at `path`: every line in order, each
/// sealed with the hash of the one before.
pub fn verify(path: &Path) -> Result<ChainHead, AuditError> {
    let mut head = ChainHead {
        entries: 0,
        head: GENESIS.into(),
    };
    for entry in read(path)? {
        let line = head.entries + 1;
        let broken = |reason: String| AuditError::Broken { line, reason };
        if entry.seq != line {
            return Err(broken(format!(
                "its number is {}, where {line} should be (a line was removed or moved)",
                entry.seq
            )));
        }
        if entry.prev != head.head {
            return Err(broken(
                "it does not follow the line before (a line was removed, moved or changed)".into(),
            ));
        }
        if seal(entry.seq, entry.at_ms, &entry.prev, &entry.event) != entry.hash {
            return Err(broken(
                "its content does not match its hash (it was changed)".into(),
            ));
        }
        head = ChainHead {
            entries: line,
            head: entry.hash,
        };
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64) -> AuditEvent {
        AuditEvent::LogsReleased {
            job_id: format!("job-{i}"),
            to: PeerId::random(),
            bytes: i,
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn broken_at(path: &Path) -> u64 {
        match verify(path) {
            Err(AuditError::Broken { line, .. }) => line,
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_chain_verifies_and_any_edit_deletion_or_reordering_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::create(path.clone(), None).unwrap();
        for i in 1..=5 {
            log.append(event(i)).await.unwrap();
        }
        let head = verify(&path).unwrap();
        assert_eq!(head, log.head().await);
        assert_eq!(head.entries, 6, "the log's start, then 5 entries");
        // A reopened log goes on where it was.
        let again = AuditLog::open(path.clone()).unwrap();
        again.append(event(6)).await.unwrap();
        assert_eq!(verify(&path).unwrap().entries, 7);
        let good = lines(&path);

        let write = |lines: &[String]| std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let mut edited = good.clone();
        edited[3] = edited[3].replace("\"bytes\":3", "\"bytes\":300");
        write(&edited);
        assert_eq!(broken_at(&path), 4);
        let mut deleted = good.clone();
        deleted.remove(3);
        write(&deleted);
        assert_eq!(broken_at(&path), 4);
        let mut reordered = good.clone();
        reordered.swap(1, 2);
        write(&reordered);
        assert_eq!(broken_at(&path), 2);
        write(&good[..5]);
        assert_eq!(
            verify(&path).unwrap().entries,
            5,
            "a cut tail still verifies (the map's head catches it)"
        );
    }

    #[tokio::test]
    async fn a_line_cut_short_by_a_crash_is_kept_aside_and_the_chain_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::create(path.clone(), None).unwrap();
        log.append(event(1)).await.unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"seq\":3,\"at_");
        std::fs::write(&path, bytes).unwrap();
        let log = AuditLog::open(path.clone()).unwrap();
        log.append(event(2)).await.unwrap();
        assert_eq!(verify(&path).unwrap().entries, 3);
        let torn = std::fs::read_to_string(dir.path().join("audit.log.torn")).unwrap();
        assert_eq!(torn, "{\"seq\":3,\"at_\n");
    }

    #[tokio::test]
    async fn a_damaged_last_line_or_a_missing_log_stops_the_node_instead_of_a_second_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::create(path.clone(), None).unwrap();
        log.append(event(1)).await.unwrap();
        let mut damaged = lines(&path);
        damaged[1] = "{\"seq\":2, garbage".into();
        std::fs::write(&path, damaged.join("\n") + "\n").unwrap();
        let Err(AuditError::Broken { line: 2, reason }) = AuditLog::open(path.clone()) else {
            panic!("a damaged last line must stop the open");
        };
        assert!(reason.contains("iris audit new"), "{reason}");
        assert_eq!(lines(&path), damaged, "the damaged log is left as it is");

        std::fs::remove_file(&path).unwrap();
        let missing = AuditLog::open(path.clone())
            .err()
            .expect("a missing log is refused");
        assert!(missing.to_string().contains("is missing"), "{missing}");
        // Deleted under a running node: the next append fails, and no new
        // chain starts.
        let log = AuditLog::create(path.clone(), None).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(log.append(event(2)).await.is_err());
        assert!(!path.exists());
    }
}
