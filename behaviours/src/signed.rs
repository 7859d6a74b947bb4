//! What nodes sign with their identity keys, so that no one can speak for
//! another: a member's record (signed by that member, with the time it was
//! signed) and the network's config (signed by the master that founded
//! it). A peer id of an ed25519 key holds the key itself, so anyone can
//! check a signature against the peer id alone.
//!
//! A signature covers the CBOR of the value with its signature field
//! empty, after a context string that keeps a signature of one kind from
//! passing for another.

use libp2p::{
    identity::{Keypair, PublicKey},
    PeerId,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{AuditHead, NetworkConfig, NodeRecord};

const RECORD_CONTEXT: &[u8] = b"iris/node-record/1\0";
const CONFIG_CONTEXT: &[u8] = b"iris/network-config/1\0";
const AUDIT_HEAD_CONTEXT: &[u8] = b"iris/audit-head/1\0";
/// An ed25519 signature is 64 bytes; anything longer is not one.
const MAX_SIGNATURE: usize = 64;

/// The public key a peer id holds (every Iris node's key is ed25519, small
/// enough to be inlined in its peer id).
pub fn public_key_of(peer: &PeerId) -> Option<PublicKey> {
    let hash = peer.as_ref();
    if hash.code() != 0 {
        return None; // a hashed key: not one of ours
    }
    PublicKey::try_decode_protobuf(hash.digest()).ok()
}

fn signed_bytes(context: &[u8], value: &impl Serialize) -> Vec<u8> {
    let mut bytes = context.to_vec();
    ciborium::into_writer(value, &mut bytes).expect("values encode to memory");
    bytes
}

fn verify(
    signer: &PeerId,
    context: &[u8],
    value: &impl Serialize,
    signature: &[u8],
) -> Result<(), String> {
    if signature.is_empty() {
        return Err("it is not signed".into());
    }
    let key = public_key_of(signer).ok_or("its signer's peer id holds no key")?;
    if signature.len() > MAX_SIGNATURE || !key.verify(&signed_bytes(context, value), signature) {
        return Err(format!("its signature is not {signer}'s"));
    }
    Ok(())
}

impl NodeRecord {
    /// Signs the record as of `at_ms` with its node's key.
    pub fn sign(&mut self, keypair: &Keypair, at_ms: u64) {
        self.signed_at_ms = at_ms;
        self.signature.clear();
        self.signature = keypair
            .sign(&signed_bytes(RECORD_CONTEXT, self))
            .expect("ed25519 signing does not fail");
    }

    /// Checks that the node the record describes signed it, as it is.
    pub fn verify(&self) -> Result<(), String> {
        let mut unsigned = self.clone();
        let signature = std::mem::take(&mut unsigned.signature);
        verify(&self.peer_id, RECORD_CONTEXT, &unsigned, &signature)
            .map_err(|e| format!("the record of '{}': {e}", self.name))
    }
}

impl NetworkConfig {
    /// Signs the config with the master's key (only the founder can).
    pub fn sign(&mut self, keypair: &Keypair) {
        self.signature.clear();
        self.signature = keypair
            .sign(&signed_bytes(CONFIG_CONTEXT, self))
            .expect("ed25519 signing does not fail");
    }

    /// Checks that the master it names signed it, as it is.
    pub fn verify(&self) -> Result<(), String> {
        let mut unsigned = self.clone();
        let signature = std::mem::take(&mut unsigned.signature);
        verify(&self.master, CONFIG_CONTEXT, &unsigned, &signature)
            .map_err(|e| format!("the network config of '{}': {e}", self.name))
    }

    /// The network's identity: the SHA-256 of its signed config, in hex. A
    /// join ticket pins it, so a bootstrap cannot pass off another network,
    /// or another master, as the one the ticket names.
    pub fn id(&self) -> String {
        let mut bytes = Vec::new();
        ciborium::into_writer(self, &mut bytes).expect("values encode to memory");
        hex(&Sha256::digest(&bytes))
    }
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 2 * MAX_SIGNATURE {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExecutorState, NetworkMode, Role};

    fn record(keypair: &Keypair) -> NodeRecord {
        NodeRecord {
            name: "bob".into(),
            peer_id: keypair.public().to_peer_id(),
            addrs: vec!["/ip4/10.0.0.2/tcp/4001".parse().unwrap()],
            api_port: 0,
            p2p_port: 4001,
            role: Role::Slave,
            tags: vec![],
            executor: ExecutorState::Available,
            images: vec![],
            version: 7,
            audit: None,
            signed_at_ms: 0,
            signature: vec![],
            datasets: Vec::new(),
        }
    }

    #[test]
    fn a_record_verifies_only_as_its_node_signed_it() {
        let bob = Keypair::generate_ed25519();
        let mallory = Keypair::generate_ed25519();
        let mut signed = record(&bob);
        assert!(signed.verify().is_err(), "unsigned");
        signed.sign(&bob, 1000);
        signed.verify().unwrap();
        let mut moved = signed.clone();
        moved.addrs = vec!["/ip4/6.6.6.6/tcp/4001".parse().unwrap()];
        assert!(moved.verify().is_err(), "a changed address");
        let mut fresher = signed.clone();
        fresher.signed_at_ms = 2000;
        assert!(fresher.verify().is_err(), "a changed time");
        let mut forged = record(&bob);
        forged.sign(&mallory, 1000);
        assert!(forged.verify().is_err(), "signed by another key");
    }

    #[test]
    fn a_config_verifies_only_as_its_master_signed_it_and_its_id_pins_it() {
        let alice = Keypair::generate_ed25519();
        let mallory = Keypair::generate_ed25519();
        let mut config = NetworkConfig {
            name: "lab".into(),
            mode: NetworkMode::MasterSlave,
            master: alice.public().to_peer_id(),
            created_at_ms: 1,
            signature: vec![],
        };
        config.sign(&alice);
        config.verify().unwrap();
        let id = config.id();
        assert_eq!(id.len(), 64);
        let mut usurped = config.clone();
        usurped.master = mallory.public().to_peer_id();
        assert!(usurped.verify().is_err());
        usurped.sign(&mallory);
        usurped.verify().unwrap();
        assert_ne!(usurped.id(), id, "a self-signed usurper has another id");
    }

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
