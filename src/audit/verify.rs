//! Reading a log from its file, and checking all of it: what `iris audit
//! verify` and the dashboard say about it.

use std::{io::BufRead, path::Path};

use iris_behaviours::{libp2p::PeerId, signed::public_key_of};

use super::{entry::GENESIS, tree::AuditTree, AuditEntry, AuditError};

/// A log that verified: how long it is, and its tree's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    /// The root of the tree over its lines, in hex: what the node's map
    /// record shows the members, signed.
    pub root: String,
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

/// Checks the log at `path`, written by the node `signer`: every line in
/// order, each sealed with the hash of the one before and signed with
/// the node's key.
pub fn verify(path: &Path, signer: &PeerId) -> Result<Verified, AuditError> {
    let key = public_key_of(signer)
        .ok_or_else(|| AuditError::NoKey(format!("the peer id {signer} holds no key")))?;
    let mut tree = AuditTree::default();
    let mut prev = GENESIS.to_string();
    for entry in read(path)? {
        let line = tree.len() + 1;
        let broken = |reason: String| AuditError::Broken { line, reason };
        if entry.seq != line {
            return Err(broken(format!(
                "its number is {}, where {line} should be (a line was removed or moved)",
                entry.seq
            )));
        }
        if entry.prev != prev {
            return Err(broken(
                "it does not follow the line before (a line was removed, moved or changed)".into(),
            ));
        }
        if !entry.is_sealed() {
            return Err(broken(
                "its content does not match its hash (it was changed)".into(),
            ));
        }
        if !entry.is_signed_by(&key) {
            return Err(broken(format!(
                "its signature is not {signer}'s (the line was sealed again without the \
                 node's key, or written before Iris signed its audit entries)"
            )));
        }
        tree.push(
            entry
                .leaf()
                .ok_or_else(|| broken("its hash is not 32 bytes of hex".into()))?,
        );
        prev = entry.hash;
    }
    Ok(Verified {
        entries: tree.len(),
        root: tree.root(),
    })
}
