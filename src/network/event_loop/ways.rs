//! How this node is connected to each peer: directly, or through a relay.
//!
//! A direct connection is better: it does not load the relay, and it is
//! faster. When one comes up beside a relayed connection to the same peer
//! (hole punching made it, or the peer dialed us), the relayed one is
//! closed: libp2p spreads requests and streams over every connection to a
//! peer, so a relayed one left open would keep carrying half the traffic.
//! A call interrupted by the close is sent again (docs/protocol.md, "A
//! connection that closes under a request").

use std::collections::HashMap;

use iris_behaviours::{
    libp2p::{core::ConnectedPoint, swarm::ConnectionId, PeerId, Swarm},
    IrisBehaviour,
};

#[derive(Debug, Default)]
pub(super) struct Ways {
    /// Open connections by peer, each with whether it is relayed.
    open: HashMap<PeerId, Vec<(ConnectionId, bool)>>,
}

impl Ways {
    /// A connection to `peer` came up; a direct one closes the relayed
    /// ones to it.
    pub(super) fn established(
        &mut self,
        swarm: &mut Swarm<IrisBehaviour>,
        peer: PeerId,
        id: ConnectionId,
        endpoint: &ConnectedPoint,
    ) {
        let relayed = endpoint.is_relayed();
        let open = self.open.entry(peer).or_default();
        open.push((id, relayed));
        if relayed {
            return;
        }
        for (other, _) in open.iter().filter(|(_, relayed)| *relayed) {
            tracing::debug!(%peer, "a direct connection is up: closing the relayed one");
            swarm.close_connection(*other);
        }
    }

    pub(super) fn closed(&mut self, peer: PeerId, id: ConnectionId) {
        if let Some(open) = self.open.get_mut(&peer) {
            open.retain(|(c, _)| *c != id);
            if open.is_empty() {
                self.open.remove(&peer);
            }
        }
    }

    /// Whether every connection to `peer` goes through a relay; `None`
    /// when there is none.
    pub(super) fn relayed_only(&self, peer: &PeerId) -> Option<bool> {
        let open = self.open.get(peer)?;
        Some(open.iter().all(|(_, relayed)| *relayed))
    }
}
