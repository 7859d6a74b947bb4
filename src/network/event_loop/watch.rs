//! Liveness, as the event loop carries it out: the connections a node keeps
//! (its neighbours; others only while used), the probes its failure
//! detector asks for, and the probes it makes for other watchers. What the
//! detector concludes comes back to the loop as suspicions, which go out
//! on gossip ([`super::peers`]).

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use iris_behaviours::{
    libp2p::{
        request_response::{OutboundRequestId, ResponseChannel},
        swarm::dial_opts::{DialOpts, PeerCondition},
        PeerId, Swarm,
    },
    AnswerFrame, Asks, IrisBehaviour, Join, Liveness, MembershipRequest, NodeRecord, Probe,
    ProbeFor, Probed,
};

use super::{answer::answer, members::sealed};
use crate::{
    metrics::Metrics,
    network::{
        detector::{Action, Detector},
        map::NetworkMap,
        neighbours::neighbours,
        Activity,
    },
};

/// A connection to a member that is not a neighbour is closed once nothing
/// has used it for this long.
pub(super) const IDLE_CLOSE: Duration = Duration::from_secs(10);

/// Every this many upkeeps (of 2 s) a node catches up on the map from one
/// of its neighbours: a record gossip failed to bring (a member busy for a
/// second may drop what it was to forward) arrives within about 10 s. Each
/// catch-up costs the neighbour one map.
const CATCH_UP_EVERY: u64 = 5;

/// One of the probes the event loop sent, by what it is for.
pub(super) enum ProbeRequest {
    /// Our own direct probe of `target`.
    Direct(PeerId),
    /// We asked a helper to probe `target`.
    Asked(PeerId),
    /// A direct probe we make for a watcher that asked; the answer goes
    /// back on `channel`, a no if none came by `deadline`.
    Helping {
        channel: ResponseChannel<AnswerFrame>,
        deadline: Instant,
    },
}

/// Our detector gave up on `peer`, for `reason`.
pub(super) struct Suspicion {
    pub peer: PeerId,
    pub reason: String,
}

/// What the loop lends the watch for one step: the swarm to act on, the
/// map to read, and this node.
pub(super) struct Around<'a> {
    pub swarm: &'a mut Swarm<IrisBehaviour>,
    pub map: &'a NetworkMap,
    pub local: PeerId,
}

/// Whom this node watches and how: the failure detector, the probes in
/// flight, and the connections it keeps.
pub(super) struct Watch {
    detector: Detector,
    probes: HashMap<OutboundRequestId, ProbeRequest>,
    /// Peers we dialed a connection to: only the dialer closes an idle
    /// one, so the two sides never race to close it under a request.
    dialed: HashSet<PeerId>,
    /// Which gone member is tried next.
    gone_turn: usize,
    /// Upkeeps so far, to pace catching up.
    upkeeps: u64,
    /// What uses each connection, so idle ones can be closed.
    activity: Activity,
    /// Probes answered for others, for `/metrics`.
    metrics: Metrics,
}

impl Watch {
    pub(super) fn new(detector: Detector, activity: Activity, metrics: Metrics) -> Self {
        Self {
            detector,
            probes: HashMap::new(),
            dialed: HashSet::new(),
            gone_turn: 0,
            upkeeps: 0,
            activity,
            metrics,
        }
    }

    /// A connection we dialed: ours to close once idle.
    pub(super) fn dialed(&mut self, peer: PeerId) {
        self.dialed.insert(peer);
    }

    /// The last connection to `peer` closed: the detector may probe it
    /// at once.
    pub(super) fn disconnected(
        &mut self,
        around: Around<'_>,
        peer: PeerId,
        now: Instant,
    ) -> Vec<Suspicion> {
        self.dialed.remove(&peer);
        let action = self.detector.connection_lost(peer, now);
        self.act(around, action.into_iter().collect())
    }

    /// A member suspects this node; it refutes, and its own probes start
    /// afresh.
    pub(super) fn refuted(&mut self) {
        self.detector.refuted();
    }

    /// The probe `id` was ours: what it was for.
    pub(super) fn take_probe(&mut self, id: &OutboundRequestId) -> Option<ProbeRequest> {
        self.probes.remove(id)
    }

    /// The watched members' neighbours, recomputed after the map changed.
    pub(super) fn update_neighbours(&mut self, around: Around<'_>) {
        let chosen = neighbours(around.local, around.map.watched());
        let new: Vec<PeerId> = chosen
            .iter()
            .filter(|p| !self.detector.is_neighbour(p))
            .copied()
            .collect();
        self.detector.set_neighbours(chosen);
        // A new neighbour is reached for now, not at the next upkeep.
        for peer in new {
            dial(around.swarm, around.map, peer);
        }
    }

    /// A probe tick: the detector's own timeouts and next probe, and the
    /// probes we make for others that ran out of time.
    pub(super) fn tick(&mut self, around: Around<'_>, now: Instant) -> Vec<Suspicion> {
        let (map, swarm, local) = (around.map, &*around.swarm, around.local);
        let actions = self
            .detector
            .tick(now, |t| helpers_for(map, swarm, local, t));
        let overdue: Vec<OutboundRequestId> = self
            .probes
            .iter()
            .filter(
                |(_, p)| matches!(p, ProbeRequest::Helping { deadline, .. } if *deadline <= now),
            )
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            if let Some(ProbeRequest::Helping { channel, .. }) = self.probes.remove(&id) {
                answer(
                    around.swarm,
                    &self.metrics,
                    channel,
                    sealed::<ProbeFor>(Probed { reached: false }),
                );
            }
        }
        self.act(around, actions)
    }

    fn act(&mut self, around: Around<'_>, actions: Vec<Action>) -> Vec<Suspicion> {
        let mut suspicions = Vec::new();
        for action in actions {
            match action {
                Action::Probe(target) => {
                    let id = self.send_probe(
                        &mut *around.swarm,
                        around.map,
                        target,
                        Probe.into_request(),
                    );
                    self.probes.insert(id, ProbeRequest::Direct(target));
                }
                Action::AskHelpers { target, helpers } => {
                    for helper in helpers {
                        let ask = ProbeFor { target }.into_request();
                        let id = self.send_probe(&mut *around.swarm, around.map, helper, ask);
                        self.probes.insert(id, ProbeRequest::Asked(target));
                    }
                }
                Action::Suspect { peer, reason } => suspicions.push(Suspicion { peer, reason }),
            }
        }
        suspicions
    }

    /// Sends a probe, dialing the peer at its record's addresses if we
    /// are not connected (a probe after a broken connection does).
    fn send_probe(
        &mut self,
        swarm: &mut Swarm<IrisBehaviour>,
        map: &NetworkMap,
        peer: PeerId,
        request: MembershipRequest,
    ) -> OutboundRequestId {
        self.activity.touch(peer);
        swarm
            .behaviour_mut()
            .membership
            .send_request_with_addresses(&peer, request, map.addrs(&peer))
    }

    /// The answer to one of our probes, or its failure (`None`).
    pub(super) fn on_probe_answer(
        &mut self,
        around: Around<'_>,
        probe: ProbeRequest,
        answer_frame: Option<AnswerFrame>,
    ) -> Vec<Suspicion> {
        let now = Instant::now();
        // A probe is answered only by an acknowledgement.
        let acked = |answer: &Option<AnswerFrame>| {
            matches!(answer.as_ref().map(Probe::open), Some(Ok(Ok(_))))
        };
        match probe {
            ProbeRequest::Direct(target) => match acked(&answer_frame) {
                true => {
                    self.detector.acked(&target);
                    Vec::new()
                }
                false => {
                    let (map, swarm, local) = (around.map, &*around.swarm, around.local);
                    let actions = self
                        .detector
                        .direct_failed(target, now, |t| helpers_for(map, swarm, local, t));
                    self.act(around, actions)
                }
            },
            ProbeRequest::Asked(target) => {
                // A helper that failed to answer at all is no "no": only
                // an answer counts (Lifeguard's nack).
                match answer_frame.as_ref().map(ProbeFor::open) {
                    Some(Ok(Ok(Probed { reached }))) => {
                        let actions = self.detector.helper_answered(target, reached);
                        self.act(around, actions)
                    }
                    _ => Vec::new(),
                }
            }
            ProbeRequest::Helping { channel, .. } => {
                let reached = acked(&answer_frame);
                answer(
                    around.swarm,
                    &self.metrics,
                    channel,
                    sealed::<ProbeFor>(Probed { reached }),
                );
                Vec::new()
            }
        }
    }

    /// A watcher asks us to probe `target` for it.
    pub(super) fn probe_for(
        &mut self,
        around: Around<'_>,
        target: PeerId,
        channel: ResponseChannel<AnswerFrame>,
    ) {
        let known = around
            .map
            .get(&target)
            .is_some_and(|e| e.state != Liveness::Left);
        if target == around.local || !known {
            let reached = target == around.local;
            return answer(
                around.swarm,
                &self.metrics,
                channel,
                sealed::<ProbeFor>(Probed { reached }),
            );
        }
        let id = self.send_probe(around.swarm, around.map, target, Probe.into_request());
        let deadline = Instant::now() + self.detector.probe_timeout();
        self.probes
            .insert(id, ProbeRequest::Helping { channel, deadline });
    }

    /// Keeps the connections a node should hold: every neighbour's (dialed
    /// if missing) and, one at a time, a gone member's (so two halves of a
    /// network find each other again); any other that it dialed is closed
    /// once idle (the side that dialed it closes it), except those `keep`
    /// names (a place at a relay lives on a connection to it). Now and then it
    /// catches up on the map ([`Watch::catch_up`]): the request's id, if
    /// it asked.
    pub(super) fn upkeep(
        &mut self,
        around: Around<'_>,
        own: &NodeRecord,
        keep: impl Fn(&PeerId) -> bool,
    ) -> Option<OutboundRequestId> {
        let now = Instant::now();
        let (swarm, map) = (around.swarm, around.map);
        for peer in self.detector.neighbours() {
            dial(swarm, map, *peer);
        }
        let gone = map.gone();
        if !gone.is_empty() {
            self.gone_turn = self.gone_turn.wrapping_add(1);
            dial(swarm, map, gone[self.gone_turn % gone.len()]);
        }
        let idle: Vec<PeerId> = swarm
            .connected_peers()
            .filter(|p| self.dialed.contains(p) && !self.detector.is_neighbour(p))
            .filter(|p| !keep(p))
            .filter(|p| {
                self.activity
                    .idle_for(p, now)
                    .is_some_and(|idle| idle >= IDLE_CLOSE)
            })
            .copied()
            .collect();
        for peer in idle {
            tracing::debug!(%peer, "closing an idle connection to a member that is not a neighbour");
            let _ = swarm.disconnect_peer_id(peer);
        }
        self.activity.retain(|p| swarm.is_connected(p));
        self.catch_up(swarm, own)
    }

    /// Asks one neighbour for its whole map (a `Join`, which a member
    /// answers with its map like any joiner's), so the loop can take the
    /// records newer than ours: a record announced while this node was
    /// away or cut off reaches it this way, since nothing is announced
    /// periodically. Done at the first upkeep of a session and every
    /// [`CATCH_UP_EVERY`] upkeeps after.
    fn catch_up(
        &mut self,
        swarm: &mut Swarm<IrisBehaviour>,
        own: &NodeRecord,
    ) -> Option<OutboundRequestId> {
        self.upkeeps = self.upkeeps.wrapping_add(1);
        if self.upkeeps % CATCH_UP_EVERY != 1 {
            return None;
        }
        let connected: Vec<PeerId> = self
            .detector
            .neighbours()
            .iter()
            .filter(|p| swarm.is_connected(p))
            .copied()
            .collect();
        if connected.is_empty() {
            // Try again at the next upkeep.
            self.upkeeps = 0;
            return None;
        }
        let peer = connected[self.upkeeps as usize / CATCH_UP_EVERY as usize % connected.len()];
        let join = Join {
            record: own.clone(),
        };
        let membership = &mut swarm.behaviour_mut().membership;
        Some(membership.send_request(&peer, join.into_request()))
    }
}

/// Dials `peer` at its record's addresses, unless connected or dialing.
fn dial(swarm: &mut Swarm<IrisBehaviour>, map: &NetworkMap, peer: PeerId) {
    let addrs = map.addrs(&peer);
    if addrs.is_empty() || swarm.is_connected(&peer) {
        return;
    }
    let opts = DialOpts::peer_id(peer)
        .addresses(addrs)
        .condition(PeerCondition::DisconnectedAndNotDialing)
        .build();
    if let Err(e) = swarm.dial(opts) {
        tracing::trace!(%peer, "dial not started: {e}");
    }
}

/// Members that could probe `target` for `local`: the target's own
/// neighbours (they hold connections to it) that are alive, those `local`
/// is connected to first.
fn helpers_for(
    map: &NetworkMap,
    swarm: &Swarm<IrisBehaviour>,
    local: PeerId,
    target: &PeerId,
) -> Vec<PeerId> {
    let mut helpers: Vec<PeerId> = neighbours(*target, map.watched())
        .into_iter()
        .filter(|h| *h != local && map.is_alive(h))
        .collect();
    helpers.sort_by_key(|h| !swarm.is_connected(h));
    helpers
}
