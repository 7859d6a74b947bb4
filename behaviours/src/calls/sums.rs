//! Calls of a secure sum: the master's steps to each site, and a site's
//! shares to another site. The steps themselves are the node's `secagg`
//! module's: they travel here as its CBOR.

use serde::{Deserialize, Serialize};

use super::call;

/// The calls of a secure sum, as the wire carries them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SumCall {
    Step(SecureSumStep),
}

/// A step of a secure sum: from the master, or a site's shares sent to
/// another site.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecureSumStep {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// The answer to a step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SumAnswer {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

call!(SecureSumStep => SumAnswer, Sums(SumCall::Step), repeatable: false);
