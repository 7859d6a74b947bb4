//! The masks: ChaCha20 keystreams read as u64 words, keyed by HKDF-SHA256
//! from a secret (a self seed, or an X25519 agreement between two sites)
//! and bound to the session and the pair, so no two masks ever share a key.

use chacha20::{
    cipher::{KeyIvInit, StreamCipher},
    ChaCha20,
};
use hkdf::Hkdf;
use iris_behaviours::libp2p::PeerId;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::SessionId;

/// Words generated per ChaCha20 call: 32 KiB at a time, not the whole mask.
const BLOCK_WORDS: usize = 4096;

/// A mask's ChaCha20 key.
pub(crate) struct MaskKey(Zeroizing<[u8; 32]>);

impl MaskKey {
    fn derive(secret: &[u8], session: &SessionId, label: &[u8]) -> Self {
        let hkdf = Hkdf::<Sha256>::new(Some(&session.0), secret);
        let mut key = Zeroizing::new([0u8; 32]);
        hkdf.expand(label, key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        Self(key)
    }

    /// The key of a site's self mask.
    pub(crate) fn from_seed(seed: &[u8], session: &SessionId) -> Self {
        Self::derive(seed, session, b"iris/secagg/self-mask/1")
    }

    /// The key of the pairwise mask of `a` and `b` (the same for both), from
    /// their X25519 agreement.
    pub(crate) fn for_pair(agreed: &[u8; 32], session: &SessionId, a: &PeerId, b: &PeerId) -> Self {
        let (low, high) = if a < b { (a, b) } else { (b, a) };
        let mut label = b"iris/secagg/pair-mask/1".to_vec();
        label.extend_from_slice(&low.to_bytes());
        label.extend_from_slice(&high.to_bytes());
        Self::derive(agreed, session, &label)
    }

    /// Adds (or subtracts) this key's mask to `vector`, word by word, mod 2⁶⁴.
    pub(crate) fn apply(&self, vector: &mut [u64], add: bool) {
        let mut cipher = ChaCha20::new(self.0.as_ref().into(), &[0u8; 12].into());
        let mut bytes = vec![0u8; BLOCK_WORDS * 8];
        for words in vector.chunks_mut(BLOCK_WORDS) {
            let bytes = &mut bytes[..words.len() * 8];
            bytes.fill(0);
            cipher.apply_keystream(bytes);
            for (word, mask) in words.iter_mut().zip(bytes.chunks_exact(8)) {
                let mask = u64::from_le_bytes(mask.try_into().expect("8 bytes"));
                *word = if add {
                    word.wrapping_add(mask)
                } else {
                    word.wrapping_sub(mask)
                };
            }
        }
    }
}

/// Whether `me` adds the pairwise mask it shares with `other` (the other
/// subtracts it): the lower peer id adds.
pub(crate) fn adds_pair_mask(me: &PeerId, other: &PeerId) -> bool {
    me < other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_added_then_subtracted_leaves_the_vector_and_pairs_agree_on_keys() {
        let session = SessionId([7; 32]);
        let key = MaskKey::from_seed(&[1; 32], &session);
        let original: Vec<u64> = (0..10_000).collect();
        let mut masked = original.clone();
        key.apply(&mut masked, true);
        assert_ne!(masked, original);
        key.apply(&mut masked, false);
        assert_eq!(masked, original);

        let (a, b) = (PeerId::random(), PeerId::random());
        let ab = MaskKey::for_pair(&[3; 32], &session, &a, &b);
        let ba = MaskKey::for_pair(&[3; 32], &session, &b, &a);
        assert_eq!(*ab.0, *ba.0);
        let other_session = MaskKey::for_pair(&[3; 32], &SessionId([8; 32]), &a, &b);
        assert_ne!(*ab.0, *other_session.0);
    }
}
