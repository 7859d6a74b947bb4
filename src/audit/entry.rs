//! One line of the audit log: an event, sealed into the hash chain and
//! signed with the node's identity key.
//!
//! A line's `hash` is the SHA-256 of the previous line's hash, a newline,
//! and the line's JSON without its `hash` and `sig` fields (as this module
//! writes it). Its `sig` is the node's ed25519 signature over that hash,
//! after a context string, so that no one without the node's key can seal
//! a line that verifies.

use iris_behaviours::libp2p::identity::{Keypair, PublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AuditEvent;

/// The `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an entry's signature covers, before its hash.
const ENTRY_CONTEXT: &[u8] = b"iris/audit-entry/1\0";

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// 1 for the first line, then one more each line.
    pub seq: u64,
    pub at_ms: u64,
    /// The hash of the line before ([`GENESIS`] for the first).
    pub prev: String,
    pub event: AuditEvent,
    pub hash: String,
    /// The node's signature over `hash`, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
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

fn signed_bytes(hash: &str) -> Vec<u8> {
    [ENTRY_CONTEXT, hash.as_bytes()].concat()
}

impl AuditEntry {
    /// Line `seq`, recording `event` after the line whose hash is `prev`,
    /// sealed and signed with `keypair`.
    pub fn new(seq: u64, at_ms: u64, prev: String, event: AuditEvent, keypair: &Keypair) -> Self {
        let hash = seal(seq, at_ms, &prev, &event);
        let sig = keypair
            .sign(&signed_bytes(&hash))
            .expect("ed25519 signing does not fail");
        AuditEntry {
            seq,
            at_ms,
            prev,
            event,
            hash,
            sig: Some(hex::encode(sig)),
        }
    }

    /// This entry, sealed again after `prev` (none: as the first line) and
    /// signed again with `keypair` if there is one (otherwise its old
    /// signature stays, and no longer matches). It is what someone with
    /// the run of a node's disk can do to its log: without the key, `iris
    /// audit verify` finds it; with it, the members' witness does (see
    /// `src/witness/`). The tests use it to play that someone.
    pub fn reseal(self, prev: Option<&AuditEntry>, keypair: Option<&Keypair>) -> Self {
        let prev = prev.map_or_else(|| GENESIS.to_string(), |p| p.hash.clone());
        match keypair {
            Some(keypair) => Self::new(self.seq, self.at_ms, prev, self.event, keypair),
            None => AuditEntry {
                hash: seal(self.seq, self.at_ms, &prev, &self.event),
                prev,
                ..self
            },
        }
    }

    /// Whether `hash` is the hash of the rest of the line.
    pub fn is_sealed(&self) -> bool {
        seal(self.seq, self.at_ms, &self.prev, &self.event) == self.hash
    }

    /// Whether `key` signed this line's hash.
    pub fn is_signed_by(&self, key: &PublicKey) -> bool {
        let Some(sig) = self.sig.as_deref().and_then(|s| hex::decode(s).ok()) else {
            return false;
        };
        sig.len() == 64 && key.verify(&signed_bytes(&self.hash), &sig)
    }

    /// The line's leaf in the log's Merkle tree: its hash, as bytes.
    pub fn leaf(&self) -> Option<[u8; 32]> {
        let mut leaf = [0u8; 32];
        hex::decode_to_slice(&self.hash, &mut leaf).ok()?;
        Some(leaf)
    }
}
