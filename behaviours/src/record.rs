//! What a node says about itself: its [`NodeRecord`], announced on the
//! map topic whenever it changes and only ever accepted from the node it
//! describes (receivers check its `peer_id` against the authenticated
//! sender, and its signature against that peer id).

use libp2p::{identity::Keypair, Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::{
    names::{validate_name, validate_tag, MAX_FIELD},
    signed::{signed_bytes, verify},
    AuditHead, Role,
};

/// Most tags a node may carry.
pub const MAX_TAGS: usize = 32;
/// Most addresses a record may list.
pub const MAX_ADDRS: usize = 32;
/// The longest reason a record may give for an unavailable executor.
pub const MAX_REASON: usize = 1024;

const RECORD_CONTEXT: &[u8] = b"iris/node-record/1\0";

/// What a node says about itself. Only the node itself writes its record;
/// a higher `version` replaces a lower one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub peer_id: PeerId,
    /// Addresses others can dial, without the `/p2p/` suffix.
    pub addrs: Vec<Multiaddr>,
    pub api_port: u16,
    pub p2p_port: u16,
    pub role: Role,
    /// Whether its node relays for members that cannot be dialed
    /// ([`crate::relay`]): the others reserve a place there.
    #[serde(default)]
    pub relay: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Whether this node can run containers, and why not.
    #[serde(default)]
    pub executor: ExecutorState,
    /// The tagged images its Docker engine has.
    #[serde(default)]
    pub images: Vec<ImageRef>,
    /// The datasets its owner declared: their cards, never their data.
    #[serde(default)]
    pub datasets: Vec<crate::datasets::DatasetCard>,
    /// Grows with every change of the record, across restarts too.
    pub version: u64,
    /// The signed head of its audit log, so other members can tell when
    /// it is rewritten.
    #[serde(default)]
    pub audit: Option<AuditHead>,
    /// When its node signed it (unix ms, growing within a version): a copy
    /// no newer than one already seen is no sign of life.
    #[serde(default)]
    pub signed_at_ms: u64,
    /// Its node's signature over the rest (signed with [`NodeRecord::sign`]).
    #[serde(default, with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl NodeRecord {
    /// Checks what a peer could get wrong on purpose or by accident.
    pub fn validate(&self) -> Result<(), String> {
        validate_name("node name", &self.name)?;
        if self.addrs.len() > MAX_ADDRS {
            return Err(format!(
                "record lists {} addresses, at most {MAX_ADDRS}",
                self.addrs.len()
            ));
        }
        if self.tags.len() > MAX_TAGS {
            return Err(format!(
                "record has {} tags, at most {MAX_TAGS}",
                self.tags.len()
            ));
        }
        for tag in &self.tags {
            validate_tag(tag)?;
        }
        if self.images.len() > MAX_IMAGES {
            return Err(format!(
                "record lists {} images, at most {MAX_IMAGES}",
                self.images.len()
            ));
        }
        // Every field is bounded, so a record cannot grow a member's map.
        let image_too_big = |i: &ImageRef| {
            i.id.len() > MAX_FIELD
                || i.tags.len() > MAX_TAGS
                || i.tags.iter().any(|t| t.len() > MAX_FIELD)
        };
        if self.images.iter().any(image_too_big) {
            return Err(format!(
                "record lists an image with more than {MAX_TAGS} tags or a name over {MAX_FIELD} bytes"
            ));
        }
        crate::datasets::validate_cards(&self.datasets)?;
        if self
            .audit
            .as_ref()
            .is_some_and(|a| a.root.len() > 64 || a.signature.len() > 128)
        {
            return Err("record's audit head has a root or signature longer than one".into());
        }
        if let ExecutorState::Unavailable(reason) = &self.executor {
            if reason.len() > MAX_REASON {
                return Err(format!(
                    "record's executor reason is over {MAX_REASON} bytes"
                ));
            }
        }
        Ok(())
    }

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

/// Most images a record may list.
pub const MAX_IMAGES: usize = 256;

/// Whether a node's Docker engine answers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum ExecutorState {
    Available,
    #[default]
    Unknown,
    Unavailable(String),
}

impl std::fmt::Display for ExecutorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecutorState::Available => f.write_str("available"),
            ExecutorState::Unknown => f.write_str("unknown"),
            ExecutorState::Unavailable(reason) => write!(f, "unavailable ({reason})"),
        }
    }
}

/// An image a node has: its content id and tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageRef {
    pub id: String,
    pub tags: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExecutorState;

    fn record(keypair: &Keypair) -> NodeRecord {
        NodeRecord {
            name: "bob".into(),
            peer_id: keypair.public().to_peer_id(),
            addrs: vec!["/ip4/10.0.0.2/tcp/4001".parse().unwrap()],
            api_port: 0,
            p2p_port: 4001,
            role: Role::Slave,
            relay: false,
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
}
