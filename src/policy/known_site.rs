//! A site the owner recognises as a co-participant of secure sums: a
//! member the owner picked by name, pinned to the identity it had then, so
//! that a node joining later under the same name is not taken for it.

use iris_behaviours::libp2p::PeerId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KnownSite {
    /// The member's name when the owner recognised it.
    pub name: String,
    /// Its identity: what is recognised.
    #[schema(value_type = String)]
    pub peer_id: PeerId,
}

impl std::fmt::Display for KnownSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.peer_id)
    }
}
