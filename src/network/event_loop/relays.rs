//! This node's part in relaying ([`iris_behaviours::relay`]). As a relay:
//! whom it serves (the map's current members, through the gate) and which
//! addresses it tells those who reserve. As any other member: a place
//! reserved at the network's relays, so that a member that cannot dial it
//! (it may sit behind NAT) reaches it through one. The reservation's
//! circuit address enters our record like any address we listen on.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use iris_behaviours::{
    is_relayed,
    libp2p::{
        core::transport::ListenerId, dcutr, multiaddr::Protocol, relay, swarm::SwarmEvent,
        Multiaddr, PeerId, Swarm,
    },
    IrisBehaviour, IrisBehaviourEvent, NodeRecord, RelayGate,
};

use super::{reachability::Reachability, warnings::Warnings, ways::Ways};
use crate::network::map::NetworkMap;

/// Relays a member reserves a place at, at most.
const RELAYS_USED: usize = 2;
/// How long after a failed reservation the next is tried (at the relay's
/// next address).
const RETRY_AFTER: Duration = Duration::from_secs(10);

pub(super) struct Relays {
    gate: RelayGate,
    /// The addresses this node, as a relay, tells those who reserve.
    told: Vec<Multiaddr>,
    /// Our reservations (listeners on a relay), and the relay of each.
    reserved: HashMap<ListenerId, PeerId>,
    /// Members that hold a place at our relay.
    placed: HashSet<PeerId>,
    /// Relays whose reservation failed: when to try again, and at which of
    /// their addresses.
    failed: HashMap<PeerId, (Instant, usize)>,
    /// How we are connected to each peer: directly, through a relay.
    ways: Ways,
    /// Whether others can dial us.
    reachability: Reachability,
}

impl Relays {
    pub(super) fn new(gate: RelayGate) -> Self {
        Self {
            gate,
            told: Vec::new(),
            reserved: HashMap::new(),
            placed: HashSet::new(),
            failed: HashMap::new(),
            ways: Ways::default(),
            reachability: Reachability::default(),
        }
    }

    /// The map or our record changed: a relay serves the members now in
    /// the map, and tells them the direct addresses in our record.
    pub(super) fn serve(
        &mut self,
        swarm: &mut Swarm<IrisBehaviour>,
        own: &NodeRecord,
        map: &NetworkMap,
    ) {
        self.gate.admit(own.relay, map.current_members());
        let status = match own.relay {
            true => relay::Status::Enable,
            false => relay::Status::Disable,
        };
        swarm.behaviour_mut().relay.set_status(Some(status));
        let told: Vec<Multiaddr> = match own.relay {
            true => own
                .addrs
                .iter()
                .filter(|a| !is_relayed(a))
                .cloned()
                .collect(),
            false => Vec::new(),
        };
        for stale in self.told.iter().filter(|a| !told.contains(a)) {
            swarm.remove_external_address(stale);
        }
        for new in told.iter().filter(|a| !self.told.contains(a)) {
            swarm.add_external_address(new.clone());
        }
        self.told = told;
    }

    /// Whether the connection to `peer` must stay open though idle: a
    /// place at a relay lives on it, ours there or the peer's here.
    pub(super) fn keeps(&self, peer: &PeerId) -> bool {
        self.placed.contains(peer) || self.reserved.values().any(|r| r == peer)
    }

    /// Reserves a place at each relay in the map (up to [`RELAYS_USED`])
    /// that we hold none at, until a test found that others can dial us:
    /// then we give our places up. A relay reserves nowhere.
    pub(super) fn reserve(
        &mut self,
        swarm: &mut Swarm<IrisBehaviour>,
        own: &NodeRecord,
        map: &NetworkMap,
    ) {
        if own.relay || self.reachability == Reachability::Reachable {
            for (id, relay) in self.reserved.drain() {
                tracing::debug!(%relay, "reachable directly: giving up our place at a relay");
                swarm.remove_listener(id);
            }
            return;
        }
        let now = Instant::now();
        for relay in map.relays().into_iter().take(RELAYS_USED) {
            let held = self.reserved.values().any(|r| *r == relay);
            let waiting = self.failed.get(&relay).is_some_and(|(at, _)| now < *at);
            if held || waiting {
                continue;
            }
            let direct: Vec<Multiaddr> = map
                .addrs(&relay)
                .into_iter()
                .filter(|a| !is_relayed(a))
                .collect();
            if direct.is_empty() {
                continue;
            }
            let turn = self.failed.get(&relay).map_or(0, |(_, turn)| *turn);
            let circuit = direct[turn % direct.len()]
                .clone()
                .with(Protocol::P2p(relay))
                .with(Protocol::P2pCircuit);
            match swarm.listen_on(circuit.clone()) {
                Ok(id) => {
                    tracing::debug!(%relay, "reserving a place at {circuit}");
                    self.reserved.insert(id, relay);
                }
                Err(e) => {
                    tracing::debug!(%relay, "cannot reserve at {circuit}: {e}");
                    self.failed.insert(relay, (now + RETRY_AFTER, turn + 1));
                }
            }
        }
    }

    /// Takes the events of relaying and hole punching (and a listener's
    /// end, which may be a reservation's), and watches connections come
    /// and go; every other event is handed back.
    pub(super) fn on_event(
        &mut self,
        swarm: &mut Swarm<IrisBehaviour>,
        event: SwarmEvent<IrisBehaviourEvent>,
        warnings: &mut Warnings,
    ) -> Option<SwarmEvent<IrisBehaviourEvent>> {
        match event {
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => self.closed(listener_id, reason),
            SwarmEvent::Behaviour(IrisBehaviourEvent::Relay(event)) => {
                self.on_relay(event, warnings)
            }
            SwarmEvent::Behaviour(IrisBehaviourEvent::RelayClient(event)) => self.on_client(event),
            SwarmEvent::Behaviour(IrisBehaviourEvent::Dcutr(event)) => self.on_hole_punch(event),
            // An address through a relay, or with no IP address in it,
            // says nothing of a direct way.
            SwarmEvent::Behaviour(IrisBehaviourEvent::Reachability(event))
                if is_relayed(&event.tested_addr) || !has_ip(&event.tested_addr) => {}
            SwarmEvent::Behaviour(IrisBehaviourEvent::Reachability(event)) => {
                let dialed_back = event.result.is_ok();
                if self.reachability.tested(dialed_back) {
                    let (addr, server) = (&event.tested_addr, event.server);
                    tracing::info!(%server, "reachability test of {addr}: {:?}", event.result);
                }
            }
            SwarmEvent::Behaviour(IrisBehaviourEvent::ReachabilityServer(event)) => {
                tracing::debug!("tested a member's reachability: {event:?}")
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                ref endpoint,
                ..
            } => {
                self.ways
                    .established(swarm, peer_id, connection_id, endpoint);
                return Some(event);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => {
                self.ways.closed(peer_id, connection_id);
                return Some(event);
            }
            other => return Some(other),
        }
        None
    }

    /// Whether our record should list the addresses we listen on: not
    /// once we found that nobody can dial them.
    pub(super) fn reachable(&self) -> bool {
        self.reachability.listed()
    }

    /// Whether we reach `peer` only through a relay now (`None`: not
    /// connected).
    pub(super) fn relayed_only(&self, peer: &PeerId) -> Option<bool> {
        self.ways.relayed_only(peer)
    }

    fn on_hole_punch(&mut self, event: dcutr::Event) {
        let peer = event.remote_peer_id;
        match event.result {
            Ok(_) => {
                tracing::info!(%peer, "hole punched: a direct connection replaces the relayed one")
            }
            Err(e) => tracing::info!(%peer, "hole punching failed, staying relayed: {e}"),
        }
    }

    /// A listener closed: if it was a reservation, the next is tried later.
    fn closed(&mut self, id: ListenerId, reason: Result<(), std::io::Error>) {
        let Some(relay) = self.reserved.remove(&id) else {
            return;
        };
        match reason {
            Ok(()) => tracing::info!(%relay, "the reservation at a relay ended"),
            Err(e) => tracing::info!(%relay, "the reservation at a relay ended: {e}"),
        }
        let turn = self.failed.get(&relay).map_or(0, |(_, turn)| *turn);
        self.failed
            .insert(relay, (Instant::now() + RETRY_AFTER, turn + 1));
    }

    /// What our relay did: refusals are worth a (rate-limited) warning.
    fn on_relay(&mut self, event: relay::Event, warnings: &mut Warnings) {
        match event {
            relay::Event::ReservationReqDenied { src_peer_id, .. } => {
                warnings.warn("relay", || {
                    format!(
                        "refused {src_peer_id} a place at this relay: not a current member, \
                         or over its limits"
                    )
                });
            }
            relay::Event::CircuitReqDenied {
                src_peer_id,
                dst_peer_id,
                status,
            } => {
                warnings.warn("relay", || {
                    format!(
                        "refused {src_peer_id} a circuit to {dst_peer_id} through this relay \
                         ({status:?}): not a current member, over its limits, or the other \
                         end holds no place here"
                    )
                });
            }
            relay::Event::ReservationReqAccepted {
                src_peer_id,
                renewed,
            } => {
                if !renewed {
                    tracing::debug!(peer = %src_peer_id, "a member reserved a place at this relay");
                }
                self.placed.insert(src_peer_id);
            }
            relay::Event::ReservationClosed { src_peer_id }
            | relay::Event::ReservationTimedOut { src_peer_id } => {
                self.placed.remove(&src_peer_id);
            }
            other => tracing::trace!("relay: {other:?}"),
        }
    }

    /// What our side of other relays did.
    fn on_client(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal: false,
                ..
            } => {
                self.failed.remove(&relay_peer_id);
                tracing::info!(relay = %relay_peer_id, "reserved a place at a relay");
            }
            other => tracing::debug!("relay client: {other:?}"),
        }
    }
}

fn has_ip(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::Ip4(_) | Protocol::Ip6(_)))
}
