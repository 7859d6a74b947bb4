//! Deriving the pre-shared key that fences a network off.
//!
//! The pnet layer needs 32 secret bytes that every member knows. We derive them
//! from the user's network key with SHA-256 under a fixed domain string, so the
//! key itself never travels and is never stored: nodes keep only the derived
//! PSK, and logs show only its fingerprint.

pub use libp2p::pnet::PreSharedKey;
use sha2::{Digest, Sha256};

/// Separates Iris PSKs from any other use of SHA-256 over the same key.
const DOMAIN: &[u8] = b"iris/pnet-psk/v1";

/// Derives the network's PSK from the user's network key.
///
/// The network *name* is not part of the derivation on purpose: a joining
/// node is told only the key and a bootstrap address, and must complete the
/// encrypted handshake before it can learn the name. The name is bound to the
/// network afterwards, by the config the bootstrap peer sends.
pub fn derive_psk(key: &str) -> PreSharedKey {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update((key.len() as u64).to_be_bytes());
    hasher.update(key.as_bytes());
    PreSharedKey::new(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_psk_different_key_different_psk() {
        let a = derive_psk("s3cret");
        let fp = |k: &str| derive_psk(k).fingerprint().to_string();
        assert_eq!(a.fingerprint().to_string(), fp("s3cret"));
        assert_ne!(fp("s3cret"), fp("s3cret2"));
        assert_ne!(fp("s3cret"), fp(""));
    }

    #[test]
    fn psk_is_not_the_plain_hash_of_the_key() {
        let plain: [u8; 32] = Sha256::digest(b"s3cret").into();
        assert_ne!(
            PreSharedKey::new(plain).fingerprint().to_string(),
            derive_psk("s3cret").fingerprint().to_string()
        );
    }
}
