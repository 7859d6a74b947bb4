//! [`CancelTask`]: the master stops a task this node runs for it.

use iris_behaviours::{libp2p::PeerId, Accepted, CancelTask, Refusal};

use super::{Authority, Handler, Router};

impl Handler for CancelTask {
    const AUTHORITY: Authority = Authority::Master("cancel jobs on");

    async fn handle(self, node: &Router, peer: PeerId, _: bool) -> Result<Accepted, Refusal> {
        node.jobs.runner.cancel(&self.job_id, peer)?;
        Ok(Accepted)
    }
}
