//! What nodes sign with their identity keys, so that no one can speak for
//! another: a member's record (signed by that member, with the time it was
//! signed) and the network's config (signed by the master that founded
//! it). A peer id of an ed25519 key holds the key itself, so anyone can
//! check a signature against the peer id alone.
//!
//! A signature covers the CBOR of the value with its signature field
//! empty, after a context string that keeps a signature of one kind from
//! passing for another.

use libp2p::{identity::PublicKey, PeerId};
use serde::Serialize;

/// An ed25519 signature is 64 bytes; anything longer is not one.
const MAX_SIGNATURE: usize = 64;

/// The public key a peer id holds (every Iris node's key is ed25519, small
/// enough to be inlined in its peer id).
pub fn public_key_of(peer: &PeerId) -> Option<PublicKey> {
    let hash = peer.as_ref();
    if hash.code() != 0 {
        return None; // a hashed key: not one of ours
    }
    PublicKey::try_decode_protobuf(hash.digest()).ok()
}

pub(crate) fn signed_bytes(context: &[u8], value: &impl Serialize) -> Vec<u8> {
    let mut bytes = context.to_vec();
    ciborium::into_writer(value, &mut bytes).expect("values encode to memory");
    bytes
}

pub(crate) fn verify(
    signer: &PeerId,
    context: &[u8],
    value: &impl Serialize,
    signature: &[u8],
) -> Result<(), String> {
    if signature.is_empty() {
        return Err("it is not signed".into());
    }
    let key = public_key_of(signer).ok_or("its signer's peer id holds no key")?;
    if signature.len() > MAX_SIGNATURE || !key.verify(&signed_bytes(context, value), signature) {
        return Err(format!("its signature is not {signer}'s"));
    }
    Ok(())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 2 * MAX_SIGNATURE {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
