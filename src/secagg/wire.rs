//! The steps of a secure sum as they travel: each step is a type of its
//! own with the type of its answer ([`Step`]), so the master asks a step
//! and gets that step's answer, or an error, and never matches an answer.
//!
//! The wire crate carries a step as bytes (the control protocol's
//! `SecureSumStep`): the step's types are this module's (the session's
//! parameters, keys, shares), and the wire crate does not hold the
//! protocol's arithmetic. Every step but [`Shares`] comes from the master;
//! [`Shares`] goes from site to site.

use iris_behaviours::{libp2p::PeerId, SecureSumStep, MAX_SUM_ANSWER, SMALL_ANSWER};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{Params, SessionId, ShareBundle, SignedMaskKey, Unmasking};
use crate::membership::Membership;

/// Most words of a masked vector in one answer (4 MiB).
pub const PAGE_WORDS: usize = 512 * 1024;
/// Most words of a masked vector in one page, as bytes.
pub const PAGE_BYTES: usize = PAGE_WORDS * 8;

/// A step of a secure sum, and what it is answered with.
pub trait Step: Into<SaRequest> {
    type Answer: Serialize + DeserializeOwned;

    /// The most bytes the answer's CBOR may take: the asker reads no
    /// more. Most answers are a few words; a page is [`PAGE_BYTES`].
    const MAX_ANSWER: usize = SMALL_ANSWER;
}

/// The most an [`Unmasking`] may take: two shares of some 70 bytes and a
/// peer id for each of up to 255 sites.
const MAX_UNMASKING: usize = 128 * 1024;

// The largest step's answer, and its refusal, fit the wire's bound.
const _: () = assert!(PAGE_BYTES + 64 + SMALL_ANSWER <= MAX_SUM_ANSWER);
const _: () = assert!(MAX_UNMASKING + SMALL_ANSWER <= MAX_SUM_ANSWER);

/// Every step, as a site reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SaRequest {
    Probe(Probe),
    Setup(Setup),
    Roster(Roster),
    Shares(Shares),
    Collect(Collect),
    Fetch(Fetch),
    Survivors(Survivors),
    Unmask(Unmask),
}

/// Declares a step: its variant of [`SaRequest`] and its answer.
macro_rules! step {
    ($step:ident => $answer:ty $(, max_answer: $max:expr)?) => {
        impl Step for $step {
            type Answer = $answer;
            $(const MAX_ANSWER: usize = $max;)?
        }
        impl From<$step> for SaRequest {
            fn from(step: $step) -> Self {
                SaRequest::$step(step)
            }
        }
    };
}

/// Can `outputs/<job>/<file>` go into a sum of vectors of `entries`
/// entries (the weight not counted)? The master says the length, so that a
/// site's answer is yes or no, never a length of its choosing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    pub job_id: String,
    pub file: String,
    pub entries: u64,
}
/// Yes: the file is an update of that length, and may be summed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fits;
step!(Probe => Fits);

/// Join the session: answered with a signed mask key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Setup {
    pub params: Params,
    pub file: String,
}
step!(Setup => SignedMaskKey);

/// The roster of mask keys: share your secrets with each site in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Roster {
    pub session: SessionId,
    pub roster: Vec<SignedMaskKey>,
}
/// How many sites took the sender's shares.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shared {
    pub delivered: u64,
}
step!(Roster => Shared);

/// Site to site: the sender's shares for the receiver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shares {
    pub session: SessionId,
    pub bundle: ShareBundle,
}
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Received;
step!(Shares => Received);

/// Mask your vector against these sites (they shared).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Collect {
    pub session: SessionId,
    pub sharers: Vec<PeerId>,
}
/// The masked vector is ready, this many words long.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Masked {
    pub words: u64,
}
step!(Collect => Masked);

/// A page of your masked vector, from `offset` words on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fetch {
    pub session: SessionId,
    pub offset: u64,
}
/// Little-endian words, at most [`PAGE_WORDS`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page {
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}
step!(Fetch => Page, max_answer: PAGE_BYTES + 64);

/// Sign the list of survivors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Survivors {
    pub session: SessionId,
    pub survivors: Vec<PeerId>,
}
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Signature {
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}
step!(Survivors => Signature);

/// Give your shares to unmask the survivors' sum.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unmask {
    pub session: SessionId,
    pub survivors: Vec<PeerId>,
    pub signatures: Vec<(PeerId, Vec<u8>)>,
}
step!(Unmask => Unmasking, max_answer: MAX_UNMASKING);

/// Asks `peer` one step, and reads the answer as that step's: the
/// master's steps to a site, and a site's shares to another.
pub async fn ask<S: Step>(
    membership: &Membership,
    peer: PeerId,
    step: S,
) -> Result<S::Answer, String> {
    let request: SaRequest = step.into();
    // The answer's CBOR, inside the wire's answer, or a refusal.
    let max_answer = S::MAX_ANSWER + SMALL_ANSWER;
    let step = SecureSumStep {
        body: encode(&request),
        max_answer: max_answer as u32,
    };
    let answer = membership.call(peer, step).await;
    decode(&answer.map_err(|e| e.to_string())?.body)
}

pub fn encode(value: &impl Serialize) -> Vec<u8> {
    let mut bytes = Vec::new();
    ciborium::into_writer(value, &mut bytes).expect("values encode to memory");
    bytes
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    ciborium::from_reader(bytes).map_err(|e| format!("not a secure-sum message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer of another step is not read as this step's answer: a
    /// page where a key was asked for is an error, not a key.
    #[test]
    fn an_answer_of_another_step_is_an_error() {
        let page = encode(&Page {
            bytes: vec![1, 2, 3],
        });
        assert!(decode::<<Setup as Step>::Answer>(&page).is_err());
        assert!(decode::<<Collect as Step>::Answer>(&page).is_err());
        let masked = encode(&Masked { words: 3 });
        assert_eq!(decode::<Masked>(&masked).expect("a masked answer").words, 3);
        assert!(decode::<Page>(&masked).is_err());
    }
}
