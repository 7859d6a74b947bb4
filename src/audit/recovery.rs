//! After a crash: the owner's changes that the log recorded are put in
//! force, and those it did not are dropped.
//!
//! A change is written beside its file and synced, then recorded, then put
//! in place (`store::StagedFile`): the record comes before the rename so
//! that the log never misses a change in force, and a crash between the
//! two leaves the new content beside the file. The record names each
//! file's new hash ([`SavedFile`]), so at the next start (`node.rs`) the
//! content whose hash the log recorded last for its file goes in place,
//! and any other content left beside a file (a change never recorded, a
//! write cut short) is removed. A change is in force exactly when the log
//! says it was made.

use std::{collections::HashMap, path::Path};

use super::{AuditEntry, AuditEvent, SavedFile};

/// For each file the log at `log` recorded a change of (named as
/// [`SavedFile::name_of`] names it), the hash of its content after the
/// last one. Only whole lines count: a line cut short by a crash was never
/// acknowledged. A log that cannot be read recorded nothing here (opening
/// it will say why).
pub fn last_recorded(log: &Path) -> HashMap<String, String> {
    let Ok(bytes) = std::fs::read(log) else {
        return HashMap::new();
    };
    let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut recorded = HashMap::new();
    for line in bytes[..whole].split(|b| *b == b'\n') {
        let Ok(entry) = serde_json::from_slice::<AuditEntry>(line) else {
            continue;
        };
        if let AuditEvent::PolicyChanged { saved, .. } = entry.event {
            for SavedFile { file, blake3 } in saved {
                recorded.insert(file, blake3);
            }
        }
    }
    recorded
}
