//! The map: the lines a node holds about the others ([`MapEntry`]), and
//! the messages of the **map** gossipsub topic ([`MapMessage`]). Every
//! node announces its own [`NodeRecord`] there when it changes, and
//! watchers spread their suspicions there (a member is probed only by its
//! few neighbours, see the node's `network::detector`). The requests nodes
//! send each other are membership requests (`membership.rs`) and calls
//! (`calls/`).

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

pub use crate::names::{
    is_image_reference, validate_name, validate_tag, MAX_FIELD, MAX_NAME_LEN, MAX_TAG_LEN,
};

use crate::{NodeRecord, Removals};

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
    /// Only from the master: these nodes are removed from the network,
    /// as it signed the list. Sent when it removes one and whenever
    /// someone new subscribes.
    Removed { removals: Removals },
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
}
