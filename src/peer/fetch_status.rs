//! [`FetchStatus`]: the master follows a fetch it started here; only the
//! node that started it may ask.

use iris_behaviours::{libp2p::PeerId, FetchProgress, FetchStatus, Refusal};

use super::{Authority, Handler, Router};

impl Handler for FetchStatus {
    const AUTHORITY: Authority = Authority::Master("push files to");

    async fn handle(self, node: &Router, peer: PeerId, _: bool) -> Result<FetchProgress, Refusal> {
        node.files.fetch_status(peer, self)
    }
}
