//! The nodes the master removed from the network, as the master signed
//! the list: members pass it on to joiners, who refuse those nodes too.
//! Unsigned, any member used as a bootstrap could make a newcomer refuse
//! members of its choosing for good; signed, it can only pass on a list
//! the master made (an older one at worst, which the master's own notice
//! then brings up to date).

use libp2p::{identity::Keypair, PeerId};
use serde::{Deserialize, Serialize};

use crate::signed::{signed_bytes, verify};

const REMOVALS_CONTEXT: &[u8] = b"iris/removals/1\0";

/// The most nodes a list names: it only grows, and travels whole in a
/// join's answer and on gossip (about 40 bytes a node).
pub const MAX_REMOVED: usize = 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removals {
    /// Every node the master removed, in the order it removed them.
    pub peers: Vec<PeerId>,
    /// When the master signed this list: of two lists, the later one is
    /// the master's latest word.
    pub signed_at_ms: u64,
    /// The master's signature over the rest; empty for the empty list,
    /// which needs none.
    #[serde(default, with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl Removals {
    /// The list `peers`, signed by the master at `at_ms`.
    pub fn sign(peers: Vec<PeerId>, at_ms: u64, master: &Keypair) -> Self {
        let mut removals = Self {
            peers,
            signed_at_ms: at_ms,
            signature: Vec::new(),
        };
        removals.signature = master
            .sign(&signed_bytes(REMOVALS_CONTEXT, &removals))
            .expect("ed25519 signing does not fail");
        removals
    }

    /// Checks that `master` signed this list as it is, and that it is
    /// within bounds. The empty list passes unsigned: it removes no one.
    pub fn verify(&self, master: &PeerId) -> Result<(), String> {
        if self.peers.is_empty() {
            return Ok(());
        }
        if self.peers.len() > MAX_REMOVED {
            return Err(format!(
                "the list of removed nodes names {} nodes, at most {MAX_REMOVED}",
                self.peers.len()
            ));
        }
        let mut unsigned = self.clone();
        let signature = std::mem::take(&mut unsigned.signature);
        verify(master, REMOVALS_CONTEXT, &unsigned, &signature)
            .map_err(|e| format!("the list of removed nodes: {e} (only the master removes)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_masters_list_as_signed_passes() {
        let master = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519();
        let victim = other.public().to_peer_id();
        let master_id = master.public().to_peer_id();

        let signed = Removals::sign(vec![victim], 5, &master);
        signed.verify(&master_id).unwrap();
        assert!(Removals::default().verify(&master_id).is_ok());

        let unsigned = Removals {
            peers: vec![victim],
            ..Removals::default()
        };
        assert!(unsigned
            .verify(&master_id)
            .unwrap_err()
            .contains("not signed"));
        let by_another = Removals::sign(vec![victim], 5, &other);
        assert!(by_another.verify(&master_id).is_err());
        let mut grown = signed.clone();
        grown.peers.push(master_id);
        assert!(grown.verify(&master_id).is_err());

        let many = vec![victim; MAX_REMOVED + 1];
        let too_long = Removals::sign(many, 5, &master);
        assert!(too_long.verify(&master_id).unwrap_err().contains("at most"));
    }
}
