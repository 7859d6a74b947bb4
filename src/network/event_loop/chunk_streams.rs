//! Chunk streams peers open (file transfers, src/files/): a current
//! member's goes to the router; anyone else's is dropped, which resets it.

use iris_behaviours::libp2p::{PeerId, Stream};

use super::warnings::Warnings;
use crate::network::{Busy, InboundStream, NetworkContext};

/// Hands `stream` from `peer` to the router if `peer` is a current member.
pub(super) fn forward(
    ctx: &NetworkContext,
    is_member: bool,
    warnings: &mut Warnings,
    peer: PeerId,
    stream: Stream,
) {
    if !is_member {
        warnings.warn("non-member", || {
            format!("refused a chunk stream from {peer}, which is not a current member")
        });
        return;
    }
    let stream = Busy::new(stream, ctx.activity.begin(peer));
    let inbound = InboundStream { peer, stream };
    if ctx.inbound_streams.try_send(inbound).is_err() {
        tracing::warn!(%peer, "too many chunk streams waiting; refused one");
    }
}
