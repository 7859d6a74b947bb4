//! [`RemoveSession`]: the master removes a session here.

use iris_behaviours::{libp2p::PeerId, Accepted, Refusal, RemoveSession};

use super::{Authority, Handler, Router};

impl Handler for RemoveSession {
    const AUTHORITY: Authority = Authority::Master("manage containers on");

    async fn handle(self, node: &Router, _: PeerId, _: bool) -> Result<Accepted, Refusal> {
        node.sessions.remove_for(self).await
    }
}
