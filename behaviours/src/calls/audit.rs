//! Calls about audit logs: a member that kept an older head of another's
//! log asks it to prove that the log only grew.

use serde::{Deserialize, Serialize};

use super::{call, Call};
use crate::{codec::SMALL_ANSWER, AuditHead};

/// The calls about audit logs, as the wire carries them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AuditCall {
    Prove(ProveAudit),
}

impl AuditCall {
    /// The bound of this call's answer.
    pub fn max_answer(&self) -> usize {
        match self {
            Self::Prove(call) => call.max_answer(),
        }
    }
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

/// The bound of a proof's answer: a signed head, and for each size a
/// proof of at most 64 hashes of 32 bytes (a log of up to 2⁶⁴ lines).
pub const MAX_PROOFS_ANSWER: usize = SMALL_ANSWER + MAX_PROOF_SIZES * 64 * 34;

call!(ProveAudit => AuditProofs, Audit(AuditCall::Prove), repeatable: true,
    max_answer: MAX_PROOFS_ANSWER);
