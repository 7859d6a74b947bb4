use iris_behaviours::libp2p::identity::Keypair;

use super::*;
use crate::audit::tree::AuditTree;

/// A node's log as its witness sees it: a tree over `leaves`, and heads
/// signed with its key.
struct WitnessedLog {
    key: Keypair,
    tree: AuditTree,
}

impl WitnessedLog {
    fn new(leaves: impl IntoIterator<Item = u8>) -> Self {
        let mut node = WitnessedLog {
            key: Keypair::generate_ed25519(),
            tree: AuditTree::default(),
        };
        node.grow(leaves);
        node
    }

    fn grow(&mut self, leaves: impl IntoIterator<Item = u8>) {
        for leaf in leaves {
            self.tree.push([leaf; 32]);
        }
    }

    fn peer(&self) -> PeerId {
        self.key.public().to_peer_id()
    }

    fn head(&self) -> AuditHead {
        AuditHead::signed(self.tree.len(), self.tree.root(), &self.key)
    }

    /// What its node answers to a request for proofs.
    fn answer(&self, sizes: &[u64]) -> Answer {
        let proofs = sizes
            .iter()
            .map(|s| self.tree.prove_from(*s))
            .collect::<Option<Vec<_>>>()
            .ok_or("no such size")?;
        Ok((self.head(), proofs))
    }
}

fn new_witness() -> (tempfile::TempDir, Witness) {
    let dir = tempfile::tempdir().unwrap();
    let witness = Witness::open(dir.path().join("witnessed.json"));
    (dir, witness)
}

/// Shows `node`'s head to the witness, and answers its request if any.
fn show(witness: &mut Witness, node: &WitnessedLog) -> Option<Rewrite> {
    let now = node.head();
    match witness.seen(node.peer(), &now) {
        Seen::Prove(sizes) => witness.proven(node.peer(), &now, node.answer(&sizes)),
        Seen::Rewritten(rewrite) => Some(rewrite),
        Seen::Nothing | Seen::First => None,
    }
}

#[test]
fn a_log_that_grows_is_proven_and_its_newest_head_kept_across_restarts() {
    let (dir, mut witness) = new_witness();
    let mut bob = WitnessedLog::new(0..3);
    assert_eq!(witness.seen(bob.peer(), &bob.head()), Seen::First);
    assert_eq!(witness.seen(bob.peer(), &bob.head()), Seen::Nothing);
    for grown in [1, 5, 1, 30] {
        bob.grow(0..grown);
        assert_eq!(show(&mut witness, &bob), None);
        assert_eq!(witness.kept(&bob.peer()), Some(&bob.head()));
    }
    // A record older than the head kept (it was proven in a race with
    // the record's gossip) is proven too.
    let shown = bob.head();
    bob.grow(0..4);
    let mut kept = Witness::open(dir.path().join("witnessed.json"));
    assert_eq!(
        kept.kept(&bob.peer()),
        Some(&shown),
        "kept across a restart"
    );
    assert_eq!(show(&mut kept, &bob), None);
    let Seen::Prove(sizes) = kept.seen(bob.peer(), &shown) else {
        panic!("a head other than the kept one must be proven");
    };
    assert_eq!(sizes, [bob.tree.len(), shown.entries]);
    assert_eq!(kept.proven(bob.peer(), &shown, bob.answer(&sizes)), None);
}

#[test]
fn a_rewrite_of_any_length_raises_one_alarm_with_both_heads() {
    for (cut, grown) in [(0, 0), (0, 1), (2, 5), (4, 0), (5, 2)] {
        let (_dir, mut witness) = new_witness();
        let bob = WitnessedLog::new(0..6);
        let before = bob.head();
        assert_eq!(show(&mut witness, &bob), None);
        // The disk's owner keeps the first `cut` lines, changes the next,
        // and writes `grown` more: signed with bob's own key.
        let mut forged = WitnessedLog {
            key: bob.key.clone(),
            tree: AuditTree::default(),
        };
        forged.grow(0..cut);
        forged.grow([99]);
        forged.grow(cut + 1..6 + grown);
        let rewrite = show(&mut witness, &forged)
            .unwrap_or_else(|| panic!("line {cut} changed, {grown} more: no alarm"));
        assert_eq!(rewrite.before, before);
        assert_eq!(rewrite.now, forged.head());
        assert_eq!(
            show(&mut witness, &forged),
            None,
            "one alarm, not one a look"
        );
    }
}

#[test]
fn a_shrunk_log_a_false_proof_or_another_nodes_head_is_no_proof() {
    let (_dir, mut witness) = new_witness();
    let mut bob = WitnessedLog::new(0..8);
    let before = bob.head();
    show(&mut witness, &bob);
    // Cut to 5 lines: it cannot prove 8.
    let cut = WitnessedLog {
        key: bob.key.clone(),
        tree: {
            let mut tree = AuditTree::default();
            (0..5).for_each(|i| tree.push([i; 32]));
            tree
        },
    };
    let rewrite = show(&mut witness, &cut).expect("a cut log");
    assert_eq!((rewrite.before.entries, rewrite.now.entries), (8, 5));

    // A proof signed by someone else, or a head that is not its own.
    let (_dir, mut witness) = new_witness();
    show(&mut witness, &bob);
    bob.grow(8..10);
    let now = bob.head();
    let Seen::Prove(sizes) = witness.seen(bob.peer(), &now) else {
        panic!("a longer head must be proven");
    };
    let mallory = WitnessedLog::new(0..10);
    let (_, proofs) = bob.answer(&sizes).unwrap();
    let forged = AuditHead::signed(now.entries, now.root.clone(), &mallory.key);
    assert!(witness
        .proven(bob.peer(), &now, Ok((forged, proofs)))
        .is_some());
    assert_eq!(
        witness.seen(mallory.peer(), &before),
        Seen::Nothing,
        "not mallory's"
    );
}
