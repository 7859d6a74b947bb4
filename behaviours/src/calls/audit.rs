//! Calls about audit logs: a member that kept an older head of another's
//! log asks it to prove that the log only grew.

use serde::{Deserialize, Serialize};

use super::call;
use crate::AuditHead;

/// The calls about audit logs, as the wire carries them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AuditCall {
    Prove(ProveAudit),
}

/// "Prove that your audit log extends these sizes": consistency proofs
/// from each of `sizes` (at most [`MAX_PROOF_SIZES`]) to the receiver's
/// current tree, refused when a size is beyond the log: a log that shrank.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProveAudit {
    pub sizes: Vec<u64>,
}

/// Most sizes one [`ProveAudit`] asks about: the head the caller kept and
/// the one it was just shown.
pub const MAX_PROOF_SIZES: usize = 2;

/// The log's current signed head, and for each size asked about the RFC
/// 6962 consistency proof from that size to `head` (empty for `head`'s own
/// size).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditProofs {
    pub head: AuditHead,
    pub proofs: Vec<serde_bytes::ByteBuf>,
}

call!(ProveAudit => AuditProofs, Audit(AuditCall::Prove), repeatable: true);
