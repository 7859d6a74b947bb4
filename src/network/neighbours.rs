//! Who watches whom: each member keeps connections to a few neighbours,
//! chosen so that every node computes the same choice from the same map.
//!
//! The members sit on [`RINGS`] rings, each ordered by a different hash of
//! their peer ids; a node's neighbours are its predecessor and successor on
//! every ring. The relation is symmetric (if B follows A on a ring, A
//! precedes B), so two nodes agree on whether they watch each other, and a
//! node has at most `2 * RINGS` neighbours however large the network is.
//! Several independent rings make the graph an expander: a message crosses
//! a network of a thousand members in a handful of hops, and no few
//! failures cut it in two. (Rapid, Suresh et al. 2018, monitors members
//! over rings the same way.)

use std::collections::BTreeSet;

use iris_behaviours::libp2p::PeerId;

/// Rings a member sits on; it has at most two neighbours per ring.
pub const RINGS: u8 = 4;

/// A member's place on `ring`.
fn position(ring: u8, peer: &PeerId) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("iris 2026 neighbour ring");
    hasher.update(&[ring]);
    hasher.update(&peer.to_bytes());
    *hasher.finalize().as_bytes()
}

/// The neighbours of `local` among `members` (which may or may not list
/// `local` itself): its predecessor and successor on each ring.
pub fn neighbours(local: PeerId, members: impl IntoIterator<Item = PeerId>) -> BTreeSet<PeerId> {
    let mut everyone: Vec<PeerId> = members.into_iter().filter(|p| *p != local).collect();
    everyone.sort_unstable();
    everyone.dedup();
    let mut chosen = BTreeSet::new();
    if everyone.is_empty() {
        return chosen;
    }
    everyone.push(local);
    for ring in 0..RINGS {
        let mut ordered: Vec<([u8; 32], PeerId)> =
            everyone.iter().map(|p| (position(ring, p), *p)).collect();
        ordered.sort_unstable();
        let at = ordered
            .iter()
            .position(|(_, p)| *p == local)
            .expect("local is on every ring");
        let n = ordered.len();
        chosen.insert(ordered[(at + 1) % n].1);
        chosen.insert(ordered[(at + n - 1) % n].1);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use iris_behaviours::libp2p::identity::Keypair;
    use std::collections::{BTreeMap, VecDeque};

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n)
            .map(|_| Keypair::generate_ed25519().public().to_peer_id())
            .collect()
    }

    #[test]
    fn small_networks_are_fully_connected() {
        let all = peers(3);
        for p in &all {
            let mine = neighbours(*p, all.clone());
            assert_eq!(mine.len(), 2);
            assert!(!mine.contains(p));
        }
        assert!(neighbours(all[0], vec![all[0]]).is_empty());
    }

    /// Symmetric, bounded, and connected with a small diameter: what lets
    /// every member be watched and every message reach everyone quickly.
    #[test]
    fn the_relation_is_symmetric_bounded_and_a_small_world() {
        let all = peers(300);
        let graph: BTreeMap<PeerId, BTreeSet<PeerId>> = all
            .iter()
            .map(|p| (*p, neighbours(*p, all.iter().copied())))
            .collect();
        for (p, mine) in &graph {
            assert!(mine.len() <= 2 * RINGS as usize && mine.len() >= 2);
            for q in mine {
                assert!(graph[q].contains(p), "not symmetric");
            }
        }
        // Breadth-first from one node: everyone within a few hops.
        let mut hops = BTreeMap::from([(all[0], 0)]);
        let mut queue = VecDeque::from([all[0]]);
        while let Some(p) = queue.pop_front() {
            for q in &graph[&p] {
                if !hops.contains_key(q) {
                    hops.insert(*q, hops[&p] + 1);
                    queue.push_back(*q);
                }
            }
        }
        assert_eq!(hops.len(), all.len(), "the graph is not connected");
        let diameter = hops.values().max().unwrap();
        assert!(*diameter <= 6, "{diameter} hops from one node to another");
    }

    #[test]
    fn a_join_changes_few_neighbourhoods() {
        let mut all = peers(100);
        let before: Vec<_> = all.iter().map(|p| neighbours(*p, all.clone())).collect();
        all.push(peers(1)[0]);
        let changed = all[..100]
            .iter()
            .zip(&before)
            .filter(|(p, b)| neighbours(**p, all.clone()) != **b)
            .count();
        assert!(changed <= 2 * RINGS as usize, "{changed} nodes changed");
    }
}
