//! Relaying for members that cannot be dialed (behind NAT or a firewall
//! that lets nothing in): a node the owner chose serves as a circuit relay
//! (libp2p's circuit relay v2), to the network's current members only.
//!
//! A circuit is a stream through the relay, and our whole handshake runs
//! inside it like over TCP: the version preamble, then noise with the
//! network key in its prologue, then yamux (transport.rs). The
//! relay copies bytes it cannot read, and a peer without the key fails
//! inside the circuit as it would over TCP.
//!
//! Who may use a relay is decided twice. The relay's own limits bound
//! reservations and circuits per peer and in all ([`relay_config`]); a
//! [`RelayGate`], which the node's event loop keeps up to date with the
//! map, lets only current members reserve a place or open a circuit, and
//! nobody at all while this node does not serve.

use std::{
    collections::HashSet,
    num::NonZeroU32,
    sync::{Arc, RwLock},
    time::Duration,
};

use libp2p::{relay, Multiaddr, PeerId};

/// Reservations (members that can be reached through this relay) at once.
pub const MAX_RESERVATIONS: usize = 1024;
/// Reservations one member holds at once: one per connection to the relay,
/// and a node keeps two connections to a peer at most.
pub const MAX_RESERVATIONS_PER_MEMBER: usize = 2;
/// How long a reservation lasts; the client renews it before it ends.
pub const RESERVATION_DURATION: Duration = Duration::from_secs(3600);
/// Circuits through this relay at once, for every member together.
pub const MAX_CIRCUITS: usize = 1024;
/// Circuits one member takes part in at once (as either end): a site talks
/// to every other site during a secure sum, so this is the largest network
/// of NATed sites a relay serves fully; one member cannot take more than
/// this share of [`MAX_CIRCUITS`] from the others.
pub const MAX_CIRCUITS_PER_MEMBER: usize = 64;
/// New circuits a member may open in a burst, then one per
/// [`CIRCUIT_REFILL`]: a circuit is a connection, which lives until idle,
/// so a member that opens them faster is flooding.
pub const CIRCUIT_BURST: u32 = 64;
pub const CIRCUIT_REFILL: Duration = Duration::from_secs(5);
/// New reservations a member may ask for in a burst, then one per
/// [`RESERVATION_REFILL`] (renewals count too).
pub const RESERVATION_BURST: u32 = 8;
pub const RESERVATION_REFILL: Duration = Duration::from_secs(60);
/// How long a circuit may last. Our circuits carry bulk data (images, files,
/// secure-sum pages), so there is no byte limit; a day bounds a circuit
/// forgotten open, and the connection is made again after it.
pub const MAX_CIRCUIT_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Whom this node's relay serves: nobody until the node serves, then its
/// network's current members. Cheap to clone; every clone is the same.
#[derive(Debug, Clone, Default)]
pub struct RelayGate(Arc<RwLock<Admitted>>);

#[derive(Debug, Default)]
struct Admitted {
    serving: bool,
    members: HashSet<PeerId>,
}

impl RelayGate {
    /// This node serves as a relay for `members`, or (`serving` false) for
    /// nobody.
    pub fn admit(&self, serving: bool, members: impl IntoIterator<Item = PeerId>) {
        let mut admitted = self.0.write().expect("relay gate lock");
        admitted.serving = serving;
        admitted.members = if serving {
            members.into_iter().collect()
        } else {
            HashSet::new()
        };
    }

    /// Whether `peer` may reserve a place or open a circuit here.
    pub fn admits(&self, peer: &PeerId) -> bool {
        let admitted = self.0.read().expect("relay gate lock");
        admitted.serving && admitted.members.contains(peer)
    }

    /// The gate as one of the relay's rate limiters: a refusal is its
    /// "resource limit exceeded" (libp2p has no other answer for it).
    fn limiter(&self) -> Box<dyn relay::RateLimiter> {
        let gate = self.clone();
        Box::new(move |peer: PeerId, _: &Multiaddr, _| gate.admits(&peer))
    }
}

/// The relay's settings: the limits above, and `gate` before every
/// reservation and circuit. No limit per IP address: members are known by
/// their key, and sites behind one NAT share an address.
pub fn relay_config(gate: &RelayGate) -> relay::Config {
    let config = relay::Config {
        max_reservations: MAX_RESERVATIONS,
        max_reservations_per_peer: MAX_RESERVATIONS_PER_MEMBER,
        reservation_duration: RESERVATION_DURATION,
        reservation_rate_limiters: vec![gate.limiter()],
        max_circuits: MAX_CIRCUITS,
        max_circuits_per_peer: MAX_CIRCUITS_PER_MEMBER,
        max_circuit_duration: MAX_CIRCUIT_DURATION,
        max_circuit_bytes: 0,
        circuit_src_rate_limiters: vec![gate.limiter()],
    };
    config
        .reservation_rate_per_peer(nonzero(RESERVATION_BURST), RESERVATION_REFILL)
        .circuit_src_per_peer(nonzero(CIRCUIT_BURST), CIRCUIT_REFILL)
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("a limit above zero")
}

/// Whether `addr` goes through a relay (it has `/p2p-circuit` in it).
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_admits_current_members_only_and_nobody_while_not_serving() {
        let (member, stranger) = (PeerId::random(), PeerId::random());
        let gate = RelayGate::default();
        assert!(!gate.admits(&member), "a new gate admits nobody");
        gate.admit(false, [member]);
        assert!(!gate.admits(&member), "a node that does not serve");
        gate.admit(true, [member]);
        assert!(gate.admits(&member));
        assert!(!gate.admits(&stranger));
        let mut limiter = gate.limiter();
        let addr: Multiaddr = "/ip4/192.0.2.1/tcp/1".parse().unwrap();
        // web_time's Instant is std's off the web.
        let now = std::time::Instant::now();
        assert!(limiter.try_next(member, &addr, now));
        assert!(!limiter.try_next(stranger, &addr, now));
        // The member left: the limiter, a clone, sees it at once.
        gate.admit(true, []);
        assert!(!limiter.try_next(member, &addr, now));
    }

    #[test]
    fn a_circuit_address_is_told_from_a_direct_one() {
        let direct: Multiaddr = "/ip4/192.0.2.1/tcp/7000".parse().unwrap();
        let relayed: Multiaddr = format!("{direct}/p2p/{}/p2p-circuit", PeerId::random())
            .parse()
            .unwrap();
        assert!(!is_relayed(&direct));
        assert!(is_relayed(&relayed));
    }
}
