//! [`FetchLogs`]: the master reads a task's output from offsets on, as far
//! as the owner's policy lets logs leave (the runner checks).

use iris_behaviours::{libp2p::PeerId, FetchLogs, Logs, Refusal};

use super::{Authority, Handler, Router};

impl Handler for FetchLogs {
    const AUTHORITY: Authority = Authority::Master("read job logs of");

    async fn handle(self, node: &Router, peer: PeerId, _: bool) -> Result<Logs, Refusal> {
        let offsets = (self.stdout_offset, self.stderr_offset);
        let (stdout, stderr) = node.jobs.runner.logs(&self.job_id, peer, offsets).await?;
        Ok(Logs { stdout, stderr })
    }
}
