//! Deriving the pre-shared key that fences a network off.
//!
//! The handshake needs 32 secret bytes that every member knows. We derive
//! them from the user's network key with Argon2id, so the key itself never
//! travels and is never stored (nodes keep only the derived PSK), and a
//! weak key cannot be guessed quickly from a captured handshake. Neither
//! the key nor anything derived from it is ever logged: only its
//! [`PreSharedKey::fingerprint`].

use std::{fmt, str::FromStr};

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroize;

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
/// from any other use of Argon2id over the same key. (It still names pnet,
/// which the PSK once keyed: changing it would change every network's PSK.)
const SALT: &[u8] = b"iris/pnet-psk/v2";

/// The 32 secret bytes every member of a network holds. What the
/// transport binds into each noise handshake is derived from them
/// ([`PreSharedKey::noise_prologue`]); they never travel.
#[derive(Clone, PartialEq, Eq)]
pub struct PreSharedKey([u8; 32]);

/// How a PSK is kept on disk: the text format libp2p's pnet used, so a
/// node directory made before pnet was dropped still loads.
const KEY_HEADER: &str = "/key/swarm/psk/1.0.0/\n/base16/\n";

impl PreSharedKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// What may be logged or shown to tell two PSKs apart: 8 bytes of a
    /// one-way derivation, never the key.
    pub fn fingerprint(&self) -> String {
        let full = blake3::derive_key("iris network-key fingerprint v1", &self.0);
        hex::encode(&full[..8])
    }

    /// The noise prologue of a connection speaking protocol `version`.
    /// Both sides hash their prologue into the handshake, so one that
    /// lacks the key (or speaks another version) fails it: noise's second
    /// message does not decrypt.
    pub fn noise_prologue(&self, version: u32) -> Vec<u8> {
        let key = blake3::derive_key("iris noise prologue v1", &self.0);
        let mut prologue = format!("iris/{version}/").into_bytes();
        prologue.extend_from_slice(blake3::keyed_hash(&key, &version.to_be_bytes()).as_bytes());
        prologue
    }
}

impl Drop for PreSharedKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for PreSharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PreSharedKey({})", self.fingerprint())
    }
}

/// The on-disk text (see [`KEY_HEADER`]). Not for logs: it is the secret.
impl fmt::Display for PreSharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{KEY_HEADER}{}", hex::encode(self.0))
    }
}

impl FromStr for PreSharedKey {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let hex_key = text
            .strip_prefix(KEY_HEADER)
            .ok_or("not a network PSK (its header is missing)")?
            .trim();
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_key, &mut bytes).map_err(|e| format!("not a network PSK: {e}"))?;
        Ok(Self(bytes))
    }
}

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
    let key = PreSharedKey::new(psk);
    psk.zeroize();
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_psk_different_key_different_psk() {
        let fp = |k: &str| derive_psk(k).fingerprint();
        assert_eq!(fp("correct horse battery"), fp("correct horse battery"));
        assert_ne!(fp("correct horse battery"), fp("correct horse battery!"));
    }

    #[test]
    fn a_psk_survives_its_text_and_its_prologue_depends_on_key_and_version() {
        let psk = derive_psk("correct horse battery");
        let again: PreSharedKey = psk.to_string().parse().unwrap();
        assert_eq!(again, psk);
        assert!("/key/swarm/psk/1.0.0/\n/base16/\nzz"
            .parse::<PreSharedKey>()
            .is_err());
        assert!("hello".parse::<PreSharedKey>().is_err());
        let other = derive_psk("correct horse battery!");
        assert_eq!(psk.noise_prologue(5), again.noise_prologue(5));
        assert_ne!(psk.noise_prologue(5), other.noise_prologue(5));
        assert_ne!(psk.noise_prologue(5), psk.noise_prologue(6));
        assert!(!format!("{psk:?}").contains(&hex::encode(&psk.0[..4])));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(validate_key("s3cret").unwrap_err().contains("16"));
        assert!(validate_key(&"k".repeat(16)).is_ok());
        assert!(validate_key(&"k".repeat(2000)).is_err());
    }
}
