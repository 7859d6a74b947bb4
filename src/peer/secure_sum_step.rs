//! [`SecureSumStep`]: a step of a secure sum. The site checks each step's
//! sender itself: the master's steps, and shares from the session's other
//! sites.

use iris_behaviours::{libp2p::PeerId, Refusal, SecureSumStep, SumAnswer};

use super::{Authority, Handler, Router};

impl Handler for SecureSumStep {
    const AUTHORITY: Authority = Authority::Member;

    async fn handle(
        self,
        node: &Router,
        peer: PeerId,
        from_master: bool,
    ) -> Result<SumAnswer, Refusal> {
        node.sums.handle(peer, from_master, self).await
    }
}
