//! [`DescribeFile`]: a member asks for a file's manifest before fetching
//! its chunks. Public and image files are any member's; a job's output is
//! only for the node that asked for the job, once the owner's release lets
//! it leave, and it leaves with its manifest, through the egress gate,
//! which records it before it goes.

use iris_behaviours::{libp2p::PeerId, DescribeFile, FileManifest, Refusal};

use super::{outputs::may_read, Authority, Handler, Router};
use crate::egress::Outgoing;

impl Handler for DescribeFile {
    const AUTHORITY: Authority = Authority::Member;

    async fn handle(self, node: &Router, peer: PeerId, _: bool) -> Result<FileManifest, Refusal> {
        let Some((job_id, release)) = may_read(&node.jobs, peer, &self.path).await? else {
            return node.files.server().manifest(&self.path).await;
        };
        node.egress
            .outputs_may_leave(&job_id, &release)
            .map_err(Refusal::forbidden)?;
        let manifest = node.files.server().manifest(&self.path).await?;
        let file = Outgoing::OutputFile {
            job_id: &job_id,
            path: &manifest.path,
            bytes: manifest.version.size,
            blake3: &manifest.blake3,
        };
        node.egress.pass(peer, file, &release).await?;
        Ok(manifest)
    }
}
