//! The audit log, `DIR/audit.log`: what touched this node's private data,
//! for its owner. Append-only, one JSON line per event ([`AuditEvent`]).
//! Three things keep it honest:
//!
//! - each line carries the hash of the line before (a hash chain), so a
//!   line edited, deleted or moved breaks the chain at that line, and
//!   `iris audit verify` says where ([`entry`]);
//! - each line is signed with the node's identity key, so no one without
//!   the key can seal a line that verifies;
//! - the lines are the leaves of a Merkle tree (RFC 6962, [`tree`]) whose
//!   signed head is in the node's map record. Every member keeps the last
//!   head it saw from each node and asks for a proof that each newer one
//!   extends it (`src/witness/`): whoever rewrites a log, even with the
//!   node's key, is seen by the others, whatever its new length.
//!
//! An entry is on disk (fsynced) before the action it records goes ahead.

mod entry;
mod event;
mod log;
mod recovery;
pub mod tree;
mod verify;

pub use entry::{AuditEntry, GENESIS};
pub use event::{AuditEvent, ContributionPrivacy, DecidedBy, SavedFile, Verdict};
pub use log::AuditLog;
pub use recovery::last_recorded;
pub use verify::{read, verify, Verified};

use std::path::PathBuf;

/// Why the log does not verify, at which line (1-based).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log line {line}: {reason}")]
    Broken { line: u64, reason: String },
    #[error("cannot check the audit log's signatures: {0}")]
    NoKey(String),
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use iris_behaviours::libp2p::{identity::Keypair, PeerId};

    use super::*;

    fn new_key() -> Keypair {
        Keypair::generate_ed25519()
    }

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

    fn broken_at(path: &Path, signer: &PeerId) -> u64 {
        match verify(path, signer) {
            Err(AuditError::Broken { line, .. }) => line,
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_chain_verifies_and_any_edit_deletion_or_reordering_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let key = new_key();
        let signer = key.public().to_peer_id();
        let log = AuditLog::create(path.clone(), key.clone(), None).unwrap();
        for i in 1..=5 {
            log.append(event(i)).await.unwrap();
        }
        let checked = verify(&path, &signer).unwrap();
        let head = log.head();
        assert_eq!((checked.entries, &checked.root), (head.entries, &head.root));
        head.verify(&signer).unwrap();
        assert_eq!(head.entries, 6, "the log's start, then 5 entries");
        // A reopened log goes on where it was.
        let again = AuditLog::open(path.clone(), key.clone()).unwrap();
        assert_eq!(again.head(), head);
        again.append(event(6)).await.unwrap();
        assert_eq!(verify(&path, &signer).unwrap().entries, 7);
        assert!(
            verify(&path, &PeerId::from(new_key().public())).is_err(),
            "another node's key"
        );
        let good = lines(&path);

        let write = |lines: &[String]| std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let mut edited = good.clone();
        edited[3] = edited[3].replace("\"bytes\":3", "\"bytes\":300");
        write(&edited);
        assert_eq!(broken_at(&path, &signer), 4);
        let mut deleted = good.clone();
        deleted.remove(3);
        write(&deleted);
        assert_eq!(broken_at(&path, &signer), 4);
        let mut reordered = good.clone();
        reordered.swap(1, 2);
        write(&reordered);
        assert_eq!(broken_at(&path, &signer), 2);
        write(&good[..5]);
        assert_eq!(
            verify(&path, &signer).unwrap().entries,
            5,
            "a cut tail still verifies (the map's head catches it)"
        );
    }

    #[tokio::test]
    async fn a_line_cut_short_by_a_crash_is_kept_aside_and_the_chain_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let key = new_key();
        let log = AuditLog::create(path.clone(), key.clone(), None).unwrap();
        log.append(event(1)).await.unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"seq\":3,\"at_");
        std::fs::write(&path, bytes).unwrap();
        let log = AuditLog::open(path.clone(), key.clone()).unwrap();
        log.append(event(2)).await.unwrap();
        let signer = key.public().to_peer_id();
        assert_eq!(verify(&path, &signer).unwrap().entries, 3);
        let torn = std::fs::read_to_string(dir.path().join("audit.log.torn")).unwrap();
        assert_eq!(torn, "{\"seq\":3,\"at_\n");
    }

    #[tokio::test]
    async fn a_write_cut_short_under_a_running_node_leaves_no_torn_line_in_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let key = new_key();
        let log = AuditLog::create(path.clone(), key.clone(), None).unwrap();
        log.append(event(1)).await.unwrap();
        // What a full disk leaves of a line whose append failed.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, b"{\"seq\":3,\"at_ms\":17").unwrap();
        log.append(event(2)).await.unwrap();
        log.append(event(3)).await.unwrap();
        let signer = key.public().to_peer_id();
        assert_eq!(verify(&path, &signer).unwrap().entries, 4);
        assert_eq!(log.head().entries, 4);
        // A log cut shorter under the node is not written after.
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 10]).unwrap();
        let err = log.append(event(4)).await.unwrap_err();
        assert!(err.to_string().contains("shorter"), "{err}");
    }

    #[tokio::test]
    async fn a_damaged_last_line_or_a_missing_log_stops_the_node_instead_of_a_second_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let key = new_key();
        let log = AuditLog::create(path.clone(), key.clone(), None).unwrap();
        log.append(event(1)).await.unwrap();
        log.append(event(2)).await.unwrap();
        let mut damaged = lines(&path);
        damaged[1] = "{\"seq\":2, garbage".into();
        std::fs::write(&path, damaged.join("\n") + "\n").unwrap();
        let Err(AuditError::Broken { line: 2, reason }) = AuditLog::open(path.clone(), key.clone())
        else {
            panic!("a damaged line must stop the open");
        };
        assert!(reason.contains("iris audit new"), "{reason}");
        damaged.truncate(2);
        std::fs::write(&path, damaged.join("\n") + "\n").unwrap();
        let Err(AuditError::Broken { line: 2, reason }) = AuditLog::open(path.clone(), key.clone())
        else {
            panic!("a damaged last line must stop the open");
        };
        assert!(reason.contains("iris audit new"), "{reason}");
        assert_eq!(lines(&path), damaged, "the damaged log is left as it is");

        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "").unwrap();
        let emptied = AuditLog::open(path.clone(), key.clone())
            .err()
            .expect("an emptied log is refused");
        assert!(emptied.to_string().contains("empty"), "{emptied}");
        std::fs::remove_file(&path).unwrap();
        let missing = AuditLog::open(path.clone(), key.clone())
            .err()
            .expect("a missing log is refused");
        assert!(missing.to_string().contains("is missing"), "{missing}");
        // Deleted under a running node: the next append fails, and no new
        // chain starts.
        let log = AuditLog::create(path.clone(), key.clone(), None).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(log.append(event(2)).await.is_err());
        assert!(!path.exists());
    }
}
