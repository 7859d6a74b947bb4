//! [`RunTask`]: the master asks this node to run a task. The runner
//! applies the owner's policy to it; progress goes back as task updates.

use iris_behaviours::{libp2p::PeerId, Accepted, Refusal, RunTask};

use super::{Authority, Handler, Router};

impl Handler for RunTask {
    const AUTHORITY: Authority = Authority::Master("run jobs on");

    async fn handle(self, node: &Router, peer: PeerId, _: bool) -> Result<Accepted, Refusal> {
        node.jobs.runner.submit(peer, self.spec).await?;
        Ok(Accepted)
    }
}
