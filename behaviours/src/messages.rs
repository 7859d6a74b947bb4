//! The records nodes describe themselves and their network with, and the
//! messages of the **map** gossipsub topic ([`MapMessage`]): every node
//! announces its own [`NodeRecord`] there when it changes, and watchers
//! spread their suspicions there (a member is probed only by its few
//! neighbours, see the node's `network::detector`). The requests nodes send
//! each other are membership requests (`membership.rs`) and calls
//! (`calls/`).
//!
//! A record is only ever accepted from the node it describes: receivers check
//! the record's `peer_id` against the authenticated sender.

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

pub use crate::names::{validate_name, validate_tag, MAX_FIELD, MAX_NAME_LEN, MAX_TAG_LEN};

/// Most tags a node may carry.
pub const MAX_TAGS: usize = 32;
/// Most addresses a record may list.
pub const MAX_ADDRS: usize = 32;
/// The longest reason a record may give for an unavailable executor.
pub const MAX_REASON: usize = 1024;

/// How a network is governed. Only one mode exists today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The genesis node is master: only it may run jobs on, or push files to,
    /// other nodes.
    MasterSlave,
}

impl std::str::FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "master_slave" => Ok(Self::MasterSlave),
            other => Err(format!(
                "unsupported network mode '{other}': the only mode is 'master_slave'"
            )),
        }
    }
}

/// What every member knows about the network it belongs to. The key is not
/// here: it never leaves the node it was typed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkConfig {
    pub name: String,
    pub mode: NetworkMode,
    /// The genesis node, master in `master_slave` mode.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub master: PeerId,
    /// Unix time in milliseconds when the network was created.
    pub created_at_ms: u64,
    /// The master's signature over the rest ([`crate::signed`]).
    #[serde(default, with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// A node's part in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Master,
    Slave,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Slave => "slave",
        })
    }
}

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
    /// Its node's signature over the rest ([`crate::signed`]).
    #[serde(default, with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Where a node's audit log stands: the size and root of the Merkle tree
/// over its entries (RFC 6962), signed with the node's key
/// ([`crate::signed`]). A member keeps the last head it saw from each node
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
}

/// How a node looks to the node that holds the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    Alive,
    /// Its connection dropped or it stopped answering; it may come back.
    Suspect,
    /// Suspect for too long.
    Gone,
    /// It said goodbye.
    Left,
}

impl std::fmt::Display for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Liveness::Alive => "alive",
            Liveness::Suspect => "suspect",
            Liveness::Gone => "gone",
            Liveness::Left => "left",
        })
    }
}

/// One line of the network map: a record and what the holder makes of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapEntry {
    pub record: NodeRecord,
    pub state: Liveness,
    /// Unix time in milliseconds when the holder last heard from the node.
    pub last_seen_ms: u64,
}

/// Why a node says goodbye.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Departure {
    /// It left the network for good (`iris network leave`).
    Leave,
    /// It is shutting down and will rejoin when it restarts.
    Shutdown,
}

impl std::fmt::Display for Departure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Departure::Leave => "left the network",
            Departure::Shutdown => "shut down",
        })
    }
}

/// Messages on the network's gossipsub topic.
// Announcements are the common case and live only until they are encoded or
// merged, so boxing the record would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MapMessage {
    /// The sender's own record, when it changes or to refute a suspicion.
    Announce { record: NodeRecord },
    /// The sender, a watcher of `peer`, could not reach it directly nor
    /// through others. It names the copy of `peer`'s record it holds
    /// (version and signing time): a newer copy refutes the suspicion.
    Suspect {
        peer: PeerId,
        version: u64,
        signed_at_ms: u64,
    },
    /// The sender leaves the network or shuts down.
    Leave { departure: Departure },
    /// Only from the master: these nodes are removed from the network.
    /// Sent when it removes one and whenever someone new subscribes.
    Removed { peers: Vec<PeerId> },
}

/// The gossipsub topic of a network.
pub fn map_topic(network_name: &str) -> String {
    format!("iris/{network_name}/map/2")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("node name", "alice-1.b_c").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "../x", &"x".repeat(65)] {
            assert!(validate_name("node name", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn modes_other_than_master_slave_are_refused() {
        assert_eq!(
            "master_slave".parse::<NetworkMode>(),
            Ok(NetworkMode::MasterSlave)
        );
        let err = "fully_distributed".parse::<NetworkMode>().unwrap_err();
        assert!(err.contains("master_slave"), "{err}");
    }
}
