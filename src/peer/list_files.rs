//! [`ListFiles`]: any member may see the public and image files this node
//! serves (never a job's outputs, nor anything private).

use iris_behaviours::{libp2p::PeerId, FileEntry, ListFiles, Refusal};

use super::{Authority, Handler, Router};

impl Handler for ListFiles {
    const AUTHORITY: Authority = Authority::Member;

    async fn handle(self, node: &Router, _: PeerId, _: bool) -> Result<Vec<FileEntry>, Refusal> {
        Ok(node.files.list())
    }
}
