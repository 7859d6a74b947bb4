//! [`FetchFile`]: the master has this node pull a file from another node
//! into its public or image area (an image is loaded once it is here).

use iris_behaviours::{libp2p::PeerId, FetchFile, FetchStarted, Refusal};

use super::{Authority, Handler, Router};

impl Handler for FetchFile {
    const AUTHORITY: Authority = Authority::Master("push files to");

    async fn handle(self, node: &Router, peer: PeerId, _: bool) -> Result<FetchStarted, Refusal> {
        node.files.start_fetch(peer, self)
    }
}
