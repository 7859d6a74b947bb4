//! Where a node's audit log stands, as its record shows the other members.

use libp2p::{identity::Keypair, PeerId};
use serde::{Deserialize, Serialize};

use crate::signed::{hex, signed_bytes, unhex, verify};

const AUDIT_HEAD_CONTEXT: &[u8] = b"iris/audit-head/1\0";

/// Where a node's audit log stands: the size and root of the Merkle tree
/// over its entries (RFC 6962), signed with the node's key
/// ([`AuditHead::signed`]). A member keeps the last head it saw from each node
/// and asks for a proof ([`crate::ProveAudit`]) that every
/// newer one extends it: a log rewritten, of any length, has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditHead {
    /// How many entries the log has.
    pub entries: u64,
    /// The tree's root hash, in hex.
    pub root: String,
    /// The node's signature over the rest, in hex.
    #[serde(default)]
    pub signature: String,
}

impl AuditHead {
    /// The head of a tree of `entries` with this `root`, signed with its
    /// node's key.
    pub fn signed(entries: u64, root: String, keypair: &Keypair) -> Self {
        let mut head = AuditHead {
            entries,
            root,
            signature: String::new(),
        };
        head.signature = hex(&keypair
            .sign(&signed_bytes(AUDIT_HEAD_CONTEXT, &head))
            .expect("ed25519 signing does not fail"));
        head
    }

    /// Checks that `signer` signed this head, as it is.
    pub fn verify(&self, signer: &PeerId) -> Result<(), String> {
        let mut unsigned = self.clone();
        let signature = std::mem::take(&mut unsigned.signature);
        let signature = unhex(&signature).ok_or("its signature is not hex")?;
        verify(signer, AUDIT_HEAD_CONTEXT, &unsigned, &signature)
            .map_err(|e| format!("an audit head: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_head_verifies_only_as_its_node_signed_it() {
        let bob = Keypair::generate_ed25519();
        let mallory = Keypair::generate_ed25519();
        let head = AuditHead::signed(7, "ab".repeat(32), &bob);
        head.verify(&bob.public().to_peer_id()).unwrap();
        assert!(head.verify(&mallory.public().to_peer_id()).is_err());
        let mut longer = head.clone();
        longer.entries = 8;
        assert!(longer.verify(&bob.public().to_peer_id()).is_err());
        let mut garbled = head.clone();
        garbled.signature = "zz".into();
        assert!(garbled.verify(&bob.public().to_peer_id()).is_err());
    }
}
