//! The Merkle tree over a log's lines (RFC 6962, as Certificate
//! Transparency keeps its logs): its root stands for the whole log, and a
//! consistency proof of a few hashes shows that a log of `n` lines extends
//! the one of `m` lines a member saw before, without showing it any line.
//! A rewritten log, longer or not, has no such proof. The tree itself and
//! its proofs are the `ct-merkle` crate's; this file fits them to the log.
//!
//! A leaf is a line's hash (see [`super::entry`]); the tree keeps three
//! hashes a line in memory (about 96 bytes).

use ct_merkle::{mem_backed_tree::MemoryBackedTree, ConsistencyProof, RootHash};
use iris_behaviours::AuditHead;
use sha2::{digest::generic_array::GenericArray, Sha256};

/// The tree of one log.
#[derive(Default)]
pub struct AuditTree {
    tree: MemoryBackedTree<Sha256, [u8; 32]>,
}

impl AuditTree {
    pub fn push(&mut self, leaf: [u8; 32]) {
        self.tree.push(leaf);
    }

    /// How many lines it holds.
    pub fn len(&self) -> u64 {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// The root hash, in hex.
    pub fn root(&self) -> String {
        hex::encode(self.tree.root().as_bytes())
    }

    /// The proof that this tree extends its first `size` lines: none for a
    /// size it does not have, empty for its own.
    pub fn prove_from(&self, size: u64) -> Option<Vec<u8>> {
        match size {
            0 => None,
            size if size > self.len() => None,
            size if size == self.len() => Some(Vec::new()),
            size => Some(
                self.tree
                    .prove_consistency((self.len() - size) as usize)
                    .as_bytes()
                    .to_vec(),
            ),
        }
    }
}

/// Whether `proof` shows that the log `new` stands for extends the one
/// `old` stands for (heads of the same node; the caller checked their
/// signatures).
pub fn extends(old: &AuditHead, new: &AuditHead, proof: &[u8]) -> bool {
    let (Some(old_root), Some(new_root)) = (root_of(old), root_of(new)) else {
        return false;
    };
    if old.entries == new.entries {
        return old_root == new_root && proof.is_empty();
    }
    let Ok(proof) = ConsistencyProof::<Sha256>::try_from_bytes(proof.to_vec()) else {
        return false;
    };
    new_root.verify_consistency(&old_root, &proof).is_ok()
}

fn root_of(head: &AuditHead) -> Option<RootHash<Sha256>> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(&head.root, &mut bytes).ok()?;
    Some(RootHash::new(
        GenericArray::clone_from_slice(&bytes),
        head.entries,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(leaves: impl IntoIterator<Item = u8>) -> AuditTree {
        let mut tree = AuditTree::default();
        for leaf in leaves {
            tree.push([leaf; 32]);
        }
        tree
    }

    fn head(tree: &AuditTree) -> AuditHead {
        AuditHead {
            entries: tree.len(),
            root: tree.root(),
            signature: String::new(),
        }
    }

    #[test]
    fn a_log_that_only_grew_has_a_proof_for_every_earlier_size() {
        for old in 1..=9u8 {
            let before = head(&tree(0..old));
            for new in old..=17u8 {
                let after = tree(0..new);
                let proof = after.prove_from(old as u64).unwrap();
                assert!(extends(&before, &head(&after), &proof), "{old} -> {new}");
            }
        }
        let grown = tree(0..5);
        assert_eq!(grown.prove_from(0), None);
        assert_eq!(grown.prove_from(6), None, "a size it never had");
    }

    #[test]
    fn a_rewritten_log_has_no_proof_of_any_length() {
        let before = head(&tree(0..6));
        for changed in 0..6u8 {
            for new in 6..=12u8 {
                let forged = tree((0..new).map(|i| if i == changed { 99 } else { i }));
                let proof = forged.prove_from(6).unwrap();
                assert!(
                    !extends(&before, &head(&forged), &proof),
                    "line {changed} changed, {new} lines"
                );
            }
        }
        // Nor does a proof stand for a head other than its own.
        let honest = tree(0..9);
        let proof = honest.prove_from(6).unwrap();
        let mut other = head(&honest);
        other.root = tree(0..8).root();
        assert!(!extends(&before, &other, &proof));
        assert!(!extends(&before, &head(&tree(0..5)), &[]), "a shorter log");
        assert!(
            !extends(&before, &head(&honest), &proof[1..]),
            "a cut proof"
        );
    }
}
