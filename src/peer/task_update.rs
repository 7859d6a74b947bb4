//! [`TaskUpdate`]: a node that runs a task for this one reports its new
//! state. Any member may report; the job's record takes a report only for
//! the task that member runs.

use iris_behaviours::{libp2p::PeerId, Accepted, Refusal, TaskUpdate};

use super::{Authority, Handler, Router};

impl Handler for TaskUpdate {
    const AUTHORITY: Authority = Authority::Member;

    async fn handle(self, node: &Router, peer: PeerId, _: bool) -> Result<Accepted, Refusal> {
        // The peer's word: checked before the job's record takes any of it.
        self.report.validate().map_err(Refusal::invalid)?;
        node.jobs.take_report(peer, self.report).await;
        Ok(Accepted)
    }
}
