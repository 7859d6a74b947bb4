//! Deriving the pre-shared key that fences a network off.
//!
//! The pnet layer needs 32 secret bytes that every member knows. We derive
//! them from the user's network key with Argon2id, so the key itself never
//! travels and is never stored (nodes keep only the derived PSK), and a
//! weak key cannot be guessed quickly from a captured handshake. Neither
//! the key nor anything derived from it is ever logged.

use argon2::{Algorithm, Argon2, Params, Version};
pub use libp2p::pnet::PreSharedKey;

/// The shortest network key a user may choose. `iris network create`
/// without a key generates 256 random bits instead.
pub const MIN_KEY_LEN: usize = 16;
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 1024;

/// Argon2id's parameters, fixed by the protocol: every member must derive
/// the same PSK. 64 MiB and 3 passes take a fraction of a second once per
/// create or join, and make each offline guess cost as much.
const MEMORY_KIB: u32 = 64 * 1024;
const PASSES: u32 = 3;
const LANES: u32 = 1;
/// The salt: fixed, because a joining node knows only the key and an
/// address until its handshake succeeds. It keeps Iris's derivation apart
/// from any other use of Argon2id over the same key.
const SALT: &[u8] = b"iris/pnet-psk/v2";

/// Whether a key the user chose is acceptable: long enough to resist
/// guessing, short enough to be a key.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.chars().count() < MIN_KEY_LEN {
        return Err(format!(
            "the network key is shorter than {MIN_KEY_LEN} characters: choose a longer one, \
             or let `iris network create` generate one"
        ));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!(
            "the network key is longer than {MAX_KEY_LEN} bytes"
        ));
    }
    Ok(())
}

/// Derives the network's PSK from the user's network key.
///
/// The network *name* is not part of the derivation on purpose: a joining
/// node is told only the key and a bootstrap address, and must complete the
/// encrypted handshake before it can learn the name. The name is bound to the
/// network afterwards, by the config the bootstrap peer sends.
pub fn derive_psk(key: &str) -> PreSharedKey {
    let params =
        Params::new(MEMORY_KIB, PASSES, LANES, Some(32)).expect("fixed parameters are valid");
    let mut psk = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(key.as_bytes(), SALT, &mut psk)
        .expect("a 32-byte output from valid parameters");
    PreSharedKey::new(psk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_psk_different_key_different_psk() {
        let fp = |k: &str| derive_psk(k).fingerprint().to_string();
        assert_eq!(fp("correct horse battery"), fp("correct horse battery"));
        assert_ne!(fp("correct horse battery"), fp("correct horse battery!"));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(validate_key("s3cret").unwrap_err().contains("16"));
        assert!(validate_key(&"k".repeat(16)).is_ok());
        assert!(validate_key(&"k".repeat(2000)).is_err());
    }
}
