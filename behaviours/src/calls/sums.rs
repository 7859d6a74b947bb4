//! Calls of a secure sum: the master's steps to each site, and a site's
//! shares to another site. The steps themselves are the node's `secagg`
//! module's: they travel here as its CBOR.

use serde::{Deserialize, Serialize};

use super::{Call, PeerRequest};
use crate::codec::SMALL_ANSWER;

/// The calls of a secure sum, as the wire carries them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SumCall {
    Step(SecureSumStep),
}

impl SumCall {
    /// The bound of this call's answer.
    pub fn max_answer(&self) -> usize {
        match self {
            Self::Step(call) => call.max_answer(),
        }
    }
}

/// A step of a secure sum: from the master, or a site's shares sent to
/// another site.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecureSumStep {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// The bound of this step's answer, which only the asker knows (the
    /// step is bytes here): a key is small, a page of a masked vector is
    /// megabytes. At most [`MAX_SUM_ANSWER`].
    pub max_answer: u32,
}

/// The most any step's answer may be: a page of a masked vector (4 MiB in
/// the node's `secagg`), and room for the rest.
pub const MAX_SUM_ANSWER: usize = 4 * 1024 * 1024 + 2 * SMALL_ANSWER;

/// The answer to a step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SumAnswer {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

impl Call for SecureSumStep {
    type Answer = SumAnswer;
    const REPEATABLE: bool = false;

    fn max_answer(&self) -> usize {
        (self.max_answer as usize).min(MAX_SUM_ANSWER)
    }

    fn into_request(self) -> PeerRequest {
        PeerRequest::Sums(SumCall::Step(self))
    }
}
