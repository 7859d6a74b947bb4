//! Secure aggregation: the master learns the sum of the sites' vectors and
//! nothing else, even when sites drop out (SecAgg, Bonawitz et al. 2017,
//! over the complete graph; docs/secure-aggregation.md).
//!
//! Each site adds two kinds of masks to its fixed-point vector in Z/2⁶⁴: a
//! pairwise mask with every other site, from an X25519 agreement, which
//! cancels in the sum; and a self mask from a random seed, which hides a
//! site whose vector arrives after it was declared dropped. Both secrets
//! are Shamir-shared among the sites, sent directly between them, never
//! through the master. To unmask, every survivor gives the master, for each
//! site, either its share of that site's self seed (the site's vector is in
//! the sum) or its share of that site's key (it dropped, and its pairwise
//! masks must come out), never both.
//!
//! [`Participant`] (a site's side) and [`Aggregator`] (the master's) are
//! the protocol's arithmetic and its rules, without any I/O, so a unit test
//! runs every party in memory. On real nodes, [`SecureSums`] (`site.rs`)
//! answers the master's steps and sends shares to the other sites, and
//! [`Coordinator`] drives a session from the master; the steps travel as
//! [`wire`] messages in the control protocol.

mod aggregator;
pub mod coordinator;
mod fixed;
mod job_sum;
mod mask;
mod participant;
mod probed;
pub mod site;
#[cfg(test)]
mod tests;
mod update;
pub mod wire;

pub use crate::api_types::SumOutcome;
pub use aggregator::Aggregator;
pub use coordinator::Coordinator;
pub use fixed::FixedPoint;
pub use job_sum::{sum_job, SumJobError};
pub use participant::Participant;
pub use site::{SecureSums, SiteTask, SiteTasks};
pub use update::UpdateError;

use crate::privacy::{DiscreteGaussian, Privacy};
use iris_behaviours::libp2p::{identity::Keypair, PeerId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// At most this many participants: a Shamir share over GF(256) has 255
/// distinct points.
pub const MAX_PARTICIPANTS: usize = 255;
/// Most entries of a vector summed (the weight included): 1 GiB of words.
pub const MAX_LENGTH: usize = 1 << 27;
/// Fewer inputs than this are never summed: a sum of two tells each of the
/// two the other's vector.
pub const MIN_INPUTS: usize = 3;

/// What every party of one aggregation agrees on; its hash is the session
/// id, which every key, share and signature of the session is bound to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub job_id: String,
    pub round: u64,
    pub master: PeerId,
    /// The sites asked to take part, in the order of their peer ids: a
    /// site's share of every secret is the one at its place (1-based).
    pub participants: Vec<PeerId>,
    /// Shares needed to rebuild a secret, and the fewest inputs summed.
    pub threshold: usize,
    /// Entries of each vector.
    pub length: usize,
    pub fixed: FixedPoint,
    /// Differential privacy: each site clips its vector and adds noise
    /// (none: a noise-free sum, which a site's owner must allow).
    #[serde(default)]
    pub privacy: Option<Privacy>,
}

/// The noise each site adds to each entry of a session of `length`
/// entries that it sums (the weighted entries and the weight; the count of
/// clipped entries is not sent under differential privacy).
fn noise_of(
    fixed: &FixedPoint,
    privacy: Option<&Privacy>,
    length: usize,
) -> Result<Option<DiscreteGaussian>, SecAggError> {
    let Some(privacy) = privacy else {
        return Ok(None);
    };
    privacy.validate().map_err(SecAggError::Invalid)?;
    privacy
        .noise(fixed.scale(), length.saturating_sub(1))
        .map(Some)
        .map_err(SecAggError::Invalid)
}

/// Refuses a session of `length` entries encoded as `fixed`, with the
/// noise `privacy` asks for, whose sum over `n` sites could overflow: the
/// master checks before any site computes, and every site again.
pub fn check_room(
    fixed: &FixedPoint,
    privacy: Option<&Privacy>,
    n: usize,
    length: usize,
) -> Result<(), SecAggError> {
    match noise_of(fixed, privacy, length)? {
        None => fixed.check_sum_of(n),
        Some(noise) => {
            // The sampler never draws beyond 40σ.
            fixed.check_noisy_sum_of(n, noise.reach() as f64)
        }
    }
}

/// The default threshold for `n` participants: ⌊2n/3⌋ + 1, never below
/// [`MIN_INPUTS`]. Two thirds, so that a master lying about who dropped
/// cannot gather enough honest signatures for two different survivor lists.
pub fn default_threshold(n: usize) -> usize {
    (2 * n / 3 + 1).max(MIN_INPUTS)
}

impl Params {
    /// Parameters for `participants` (sorted here) with the default
    /// threshold; checked.
    pub fn new(
        job_id: String,
        round: u64,
        master: PeerId,
        mut participants: Vec<PeerId>,
        length: usize,
        fixed: FixedPoint,
        privacy: Option<Privacy>,
    ) -> Result<Self, SecAggError> {
        participants.sort();
        let params = Self {
            job_id,
            round,
            master,
            threshold: default_threshold(participants.len()),
            participants,
            length,
            fixed,
            privacy,
        };
        params.validate()?;
        Ok(params)
    }

    /// Refuses parameters under which the protocol would be unsafe or its
    /// sum could overflow.
    pub fn validate(&self) -> Result<(), SecAggError> {
        let n = self.participants.len();
        let invalid = |why: String| Err(SecAggError::Invalid(why));
        if !(MIN_INPUTS..=MAX_PARTICIPANTS).contains(&n) {
            return invalid(format!(
                "a secure sum needs {MIN_INPUTS} to {MAX_PARTICIPANTS} participants, not {n}"
            ));
        }
        if !self.participants.windows(2).all(|w| w[0] < w[1]) {
            return invalid("the participants must be distinct and in order".into());
        }
        if self.threshold < MIN_INPUTS.max(n / 2 + 1) || self.threshold > n {
            return invalid(format!(
                "the threshold {} must be from {} to {n}",
                self.threshold,
                MIN_INPUTS.max(n / 2 + 1)
            ));
        }
        if self.length == 0 || self.length > MAX_LENGTH {
            return invalid(format!("a vector of {} entries", self.length));
        }
        check_room(&self.fixed, self.privacy.as_ref(), n, self.length)
    }

    /// The noise each site adds to each entry it sums, or none for a
    /// noise-free sum.
    pub fn noise(&self) -> Result<Option<DiscreteGaussian>, SecAggError> {
        noise_of(&self.fixed, self.privacy.as_ref(), self.length)
    }

    /// The session id: SHA-256 of a context string and the parameters'
    /// CBOR, so two sessions that differ in anything never share a key.
    pub fn session_id(&self) -> SessionId {
        let mut bytes = b"iris/secagg/session/1\0".to_vec();
        ciborium::into_writer(self, &mut bytes).expect("params encode to memory");
        SessionId(Sha256::digest(&bytes).into())
    }

    /// A participant's place, 1-based: the x of its Shamir shares.
    pub(crate) fn place_of(&self, peer: &PeerId) -> Option<u8> {
        let index = self.participants.binary_search(peer).ok()?;
        u8::try_from(index + 1).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionId(pub [u8; 32]);

/// A site's X25519 public key for its pairwise masks and a commitment to
/// its self-mask seed, signed with its node identity for this session: the
/// master cannot swap in a key of its own, and a seed rebuilt from shares
/// that someone falsified is caught instead of unmasking a wrong sum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMaskKey {
    pub peer: PeerId,
    pub public: [u8; 32],
    pub seed_commitment: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// The commitment to a self-mask seed: its SHA-256, bound to the session.
pub(crate) fn commit_seed(session: &SessionId, seed: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"iris/secagg/seed-commitment/1\0");
    hash.update(session.0);
    hash.update(seed);
    hash.finalize().into()
}

/// One site's shares of another site's two secrets, sent from the owner of
/// the secrets to the holder directly.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareBundle {
    pub session: SessionId,
    /// The share of the self-mask seed.
    #[serde(with = "serde_bytes")]
    pub seed_share: Vec<u8>,
    /// The share of the mask key's secret half.
    #[serde(with = "serde_bytes")]
    pub key_share: Vec<u8>,
}

impl std::fmt::Debug for ShareBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShareBundle { .. }")
    }
}

/// What one survivor reveals to unmask the sum: for each site, one share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unmasking {
    /// Seed shares of the sites whose vectors are in the sum.
    pub seeds: Vec<(PeerId, Vec<u8>)>,
    /// Key shares of the sites that dropped after sharing.
    pub keys: Vec<(PeerId, Vec<u8>)>,
}

/// Why a step of the protocol was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecAggError {
    #[error("secure sum: {0}")]
    Invalid(String),
    /// Refused to keep a site's secret: the step would reveal more than
    /// the protocol allows.
    #[error("secure sum refused: {0}")]
    Refused(String),
    /// Too few sites are left to go on: the session ends with no sum.
    #[error("secure sum aborted: {0}")]
    Aborted(String),
}

/// What a site signs: a context, the session, and the value.
fn signed_bytes(context: &[u8], session: &SessionId, value: &impl Serialize) -> Vec<u8> {
    let mut bytes = context.to_vec();
    bytes.extend_from_slice(&session.0);
    ciborium::into_writer(value, &mut bytes).expect("values encode to memory");
    bytes
}

const MASK_KEY_CONTEXT: &[u8] = b"iris/secagg/mask-key/1\0";
const SURVIVORS_CONTEXT: &[u8] = b"iris/secagg/survivors/1\0";

fn sign(keypair: &Keypair, context: &[u8], session: &SessionId, value: &impl Serialize) -> Vec<u8> {
    keypair
        .sign(&signed_bytes(context, session, value))
        .expect("ed25519 signing does not fail")
}

fn verify(
    signer: &PeerId,
    context: &[u8],
    session: &SessionId,
    value: &impl Serialize,
    signature: &[u8],
) -> bool {
    iris_behaviours::signed::public_key_of(signer)
        .is_some_and(|key| key.verify(&signed_bytes(context, session, value), signature))
}

impl SignedMaskKey {
    pub fn new(
        keypair: &Keypair,
        session: &SessionId,
        public: [u8; 32],
        seed_commitment: [u8; 32],
    ) -> Self {
        let signed = (public, seed_commitment);
        Self {
            peer: keypair.public().to_peer_id(),
            public,
            seed_commitment,
            signature: sign(keypair, MASK_KEY_CONTEXT, session, &signed),
        }
    }

    pub fn verify(&self, session: &SessionId) -> Result<(), SecAggError> {
        let signed = (self.public, self.seed_commitment);
        if verify(
            &self.peer,
            MASK_KEY_CONTEXT,
            session,
            &signed,
            &self.signature,
        ) {
            Ok(())
        } else {
            Err(SecAggError::Refused(format!(
                "the mask key of {} is not signed by it for this session",
                self.peer
            )))
        }
    }
}

/// A site's signature over the list of survivors (whose vectors are in the
/// sum): a site signs one list per session, so a master that shows
/// different lists to different sites cannot gather enough signatures for
/// both.
pub fn sign_survivors(keypair: &Keypair, session: &SessionId, survivors: &[PeerId]) -> Vec<u8> {
    sign(keypair, SURVIVORS_CONTEXT, session, &survivors)
}

pub(crate) fn verify_survivors(
    signer: &PeerId,
    session: &SessionId,
    survivors: &[PeerId],
    signature: &[u8],
) -> bool {
    verify(signer, SURVIVORS_CONTEXT, session, &survivors, signature)
}
