//! The steps of a secure sum as they travel: CBOR in the body of the
//! control protocol's `SecureSum` request and answer. Every step but
//! `Shares` comes from the master; `Shares` goes from site to site.

use iris_behaviours::libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::{Params, SessionId, ShareBundle, SignedMaskKey, Unmasking};

/// Most words of a masked vector in one answer (4 MiB).
pub const PAGE_WORDS: usize = 512 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SaRequest {
    /// Can `outputs/<job>/<file>` go into a sum of vectors of `entries`
    /// entries (the weight not counted)? The master says the length, so
    /// that a site's answer is yes or no, never a length of its choosing.
    Probe {
        job_id: String,
        file: String,
        entries: u64,
    },
    /// Join the session: answer with a signed mask key.
    Setup { params: Params, file: String },
    /// The roster of mask keys: share your secrets with each site in it.
    Roster {
        session: SessionId,
        roster: Vec<SignedMaskKey>,
    },
    /// Site to site: the sender's shares for the receiver.
    Shares {
        session: SessionId,
        bundle: ShareBundle,
    },
    /// Mask your vector against these sites (they shared).
    Collect {
        session: SessionId,
        sharers: Vec<PeerId>,
    },
    /// A page of your masked vector, from `offset` words on.
    Fetch { session: SessionId, offset: u64 },
    /// Sign the list of survivors.
    Survivors {
        session: SessionId,
        survivors: Vec<PeerId>,
    },
    /// Give your shares to unmask the survivors' sum.
    Unmask {
        session: SessionId,
        survivors: Vec<PeerId>,
        signatures: Vec<(PeerId, Vec<u8>)>,
    },
}

/// Most words of a masked vector in one page, as bytes.
pub const PAGE_BYTES: usize = PAGE_WORDS * 8;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SaResponse {
    /// Yes: the file is an update of that length, and may be summed.
    Fits,
    Key {
        key: SignedMaskKey,
    },
    Shared {
        delivered: u64,
    },
    Received,
    Masked {
        words: u64,
    },
    /// Little-endian words.
    Page {
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    Signed {
        signature: Vec<u8>,
    },
    Unmasking {
        unmasking: Unmasking,
    },
}

pub fn encode(value: &impl Serialize) -> Vec<u8> {
    let mut bytes = Vec::new();
    ciborium::into_writer(value, &mut bytes).expect("values encode to memory");
    bytes
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    ciborium::from_reader(bytes).map_err(|e| format!("not a secure-sum message: {e}"))
}
