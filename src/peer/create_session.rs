//! [`CreateSession`]: the master starts a long-lived container here, under
//! the owner's policy for sessions (checked by the sessions service).

use iris_behaviours::{libp2p::PeerId, Accepted, CreateSession, Refusal};

use super::{Authority, Handler, Router};

impl Handler for CreateSession {
    const AUTHORITY: Authority = Authority::Master("manage containers on");

    async fn handle(self, node: &Router, peer: PeerId, _: bool) -> Result<Accepted, Refusal> {
        node.sessions.create_for(peer, self).await
    }
}
