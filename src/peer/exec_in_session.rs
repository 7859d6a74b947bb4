//! [`ExecInSession`]: the master runs a command in a session here. The
//! sessions service records it, checks the command against the owner's
//! approvals and passes the output through the egress gate.

use iris_behaviours::{libp2p::PeerId, ExecInSession, ExecOutput, Refusal};

use super::{Authority, Handler, Router};

impl Handler for ExecInSession {
    const AUTHORITY: Authority = Authority::Master("manage containers on");

    async fn handle(self, node: &Router, peer: PeerId, _: bool) -> Result<ExecOutput, Refusal> {
        node.sessions.exec_for(peer, self).await
    }
}
