//! [`ProveAudit`]: any member's witness may ask for proofs that this
//! node's audit log only grew. They show hashes, never a line.

use iris_behaviours::{
    libp2p::PeerId, AuditProofs, ProveAudit, Refusal, RefusalKind, MAX_PROOF_SIZES,
};

use super::{Authority, Handler, Router};

impl Handler for ProveAudit {
    const AUTHORITY: Authority = Authority::Member;

    async fn handle(self, node: &Router, _: PeerId, _: bool) -> Result<AuditProofs, Refusal> {
        if self.sizes.len() > MAX_PROOF_SIZES {
            return Err(Refusal::invalid(format!(
                "at most {MAX_PROOF_SIZES} sizes in one request for audit proofs"
            )));
        }
        let (head, proofs) = node.audit.prove(&self.sizes).await.ok_or_else(|| {
            Refusal::new(
                RefusalKind::NotFound,
                "this node's audit log never had one of those sizes",
            )
        })?;
        let proofs = proofs.into_iter().map(serde_bytes::ByteBuf::from).collect();
        Ok(AuditProofs { head, proofs })
    }
}
