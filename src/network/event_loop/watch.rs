//! Liveness, as the event loop carries it out: the connections a node keeps
//! (its neighbours; others only while used), the probes its failure
//! detector asks for, the probes it makes for other watchers, and the
//! suspicions that go out on gossip and come back refuted.

use std::time::{Duration, Instant};

use iris_behaviours::{
    libp2p::{
        request_response::{OutboundRequestId, ResponseChannel},
        swarm::dial_opts::{DialOpts, PeerCondition},
        PeerId,
    },
    AnswerFrame, Asks, Join, Liveness, MapMessage, MembershipRequest, Probe, ProbeFor, Probed,
};

use super::{
    peers::{sealed, Asked},
    EventLoop,
};
use crate::network::{detector::Action, map::NetworkMap, neighbours::neighbours};

/// A connection to a member that is not a neighbour is closed once nothing
/// has used it for this long.
pub(super) const IDLE_CLOSE: Duration = Duration::from_secs(10);

/// How far ahead of our clock a copy of a record named in a suspicion may
/// be: clocks differ a little, but a copy signed later than this cannot
/// exist yet.
pub(super) const MAX_CLOCK_AHEAD: Duration = Duration::from_secs(10 * 60);

/// Every this many upkeeps (of 2 s) a node catches up on the map from one
/// of its neighbours.
const CATCH_UP_EVERY: u64 = 15;

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

impl EventLoop {
    /// The watched members' neighbours, recomputed after the map changed.
    pub(super) fn update_neighbours(&mut self) {
        let local = self.own.peer_id;
        let chosen = neighbours(local, self.map.watched());
        let new: Vec<PeerId> = chosen
            .iter()
            .filter(|p| !self.detector.is_neighbour(p))
            .copied()
            .collect();
        self.detector.set_neighbours(chosen);
        // A new neighbour is reached for now, not at the next upkeep.
        for peer in new {
            self.dial(peer);
        }
    }

    /// A probe tick: the detector's own timeouts and next probe, and the
    /// probes we make for others that ran out of time.
    pub(super) fn on_probe_tick(&mut self, now: Instant) {
        let (map, swarm, local) = (&self.map, &self.swarm, self.own.peer_id);
        let actions = self
            .detector
            .tick(now, |t| helpers_for(map, swarm, local, t));
        self.act(actions);
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
                self.answer(channel, sealed(Probed { reached: false }));
            }
        }
    }

    pub(super) fn act(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Probe(target) => {
                    let id = self.send_probe(target, Probe.into_request());
                    self.probes.insert(id, ProbeRequest::Direct(target));
                }
                Action::AskHelpers { target, helpers } => {
                    for helper in helpers {
                        let id = self.send_probe(helper, ProbeFor { target }.into_request());
                        self.probes.insert(id, ProbeRequest::Asked(target));
                    }
                }
                Action::Suspect { peer, reason } => self.suspect(peer, &reason),
            }
        }
    }

    /// Sends a probe, dialing the peer at its record's addresses if we
    /// are not connected (a probe after a broken connection does).
    fn send_probe(&mut self, peer: PeerId, request: MembershipRequest) -> OutboundRequestId {
        self.ctx.activity.touch(peer);
        let addrs = self.map.addrs(&peer);
        self.swarm
            .behaviour_mut()
            .membership
            .send_request_with_addresses(&peer, request, addrs)
    }

    /// Our detector gave up on `peer`: suspect it here and tell everyone,
    /// naming the copy of its record we hold so a newer one refutes it.
    fn suspect(&mut self, peer: PeerId, reason: &str) {
        let Some((version, signed_at_ms)) = self.map.stamp(&peer) else {
            return;
        };
        let event = self.map.suspect_observed(&peer, Instant::now(), reason);
        if event.is_some() {
            tracing::info!(%peer, "suspect: {reason}");
            self.publish(&MapMessage::Suspect {
                peer,
                version,
                signed_at_ms,
            });
        }
        self.emit(event);
    }

    /// Another watcher suspects `peer`. If that is us, we refute it with a
    /// newer copy of our record, whatever copy it names (members may hold
    /// older ones than our latest, which only a neighbour saw); otherwise
    /// we believe it, unless we hold a newer copy than the one it names.
    ///
    /// A suspicion naming a copy from the future (a version or signing time
    /// more than [`MAX_CLOCK_AHEAD`] past our clock) is a lie, and ignored:
    /// no copy could beat it. We refute with a copy newer than the one it
    /// names, so our refutation wins in any order: before, a lie naming a
    /// copy newer than ours that reached a member after our refutation
    /// stood there (seen as a flaky test).
    pub(super) fn on_suspicion(&mut self, author: PeerId, peer: PeerId, stamp: (u64, u64)) {
        if !self.is_current_member(&author) {
            return tracing::warn!(%author, "ignored a suspicion from a node that is not a member");
        }
        let horizon = crate::now_ms().saturating_add(MAX_CLOCK_AHEAD.as_millis() as u64);
        if stamp.0 > horizon || stamp.1 > horizon {
            return tracing::warn!(%author, %peer, ?stamp, "ignored a suspicion naming a copy from the future");
        }
        if peer == self.own.peer_id {
            tracing::info!(%author, ?stamp, "refuting a suspicion of this node");
            self.detector.refuted();
            if (self.own.version, self.own.signed_at_ms) <= stamp {
                if stamp.0 > self.own.version {
                    self.own.version = stamp.0;
                    self.dirty = true;
                }
                // The next signature is later than the copy it names.
                self.own.signed_at_ms = self.own.signed_at_ms.max(stamp.1);
            }
            self.announce();
            return;
        }
        let by = self
            .map
            .get(&author)
            .map(|e| e.record.name)
            .unwrap_or_else(|| author.to_string());
        let reason = format!("{by} could not reach it");
        let event = self
            .map
            .suspect_reported(&peer, stamp, Instant::now(), &reason);
        self.emit(event);
    }

    /// `peer` says its map shows us `seen_as`: if not alive, others may
    /// see us so too, and a newer copy of our record tells them all.
    pub(super) fn refute_if_doubted(&mut self, peer: PeerId, seen_as: Option<Liveness>) {
        if matches!(seen_as, Some(Liveness::Suspect | Liveness::Gone)) {
            tracing::info!(%peer, ?seen_as, "a member doubted this node; announcing it anew");
            self.announce();
        }
    }

    /// The answer to one of our probes, or its failure (`None`).
    pub(super) fn on_probe_answer(&mut self, probe: ProbeRequest, answer: Option<AnswerFrame>) {
        let now = Instant::now();
        // A probe is answered only by an acknowledgement.
        let acked = |answer: &Option<AnswerFrame>| {
            matches!(answer.as_ref().map(Probe::open), Some(Ok(Ok(_))))
        };
        match probe {
            ProbeRequest::Direct(target) => match acked(&answer) {
                true => self.detector.acked(&target),
                false => {
                    let (map, swarm, local) = (&self.map, &self.swarm, self.own.peer_id);
                    let actions = self
                        .detector
                        .direct_failed(target, now, |t| helpers_for(map, swarm, local, t));
                    self.act(actions);
                }
            },
            ProbeRequest::Asked(target) => {
                // A helper that failed to answer at all is no "no": only
                // an answer counts (Lifeguard's nack).
                if let Some(Ok(Ok(Probed { reached }))) = answer.as_ref().map(ProbeFor::open) {
                    let actions = self.detector.helper_answered(target, reached);
                    self.act(actions);
                }
            }
            ProbeRequest::Helping { channel, .. } => {
                let reached = acked(&answer);
                self.answer(channel, sealed(Probed { reached }));
            }
        }
    }

    /// A watcher asks us to probe `target` for it.
    pub(super) fn probe_for(&mut self, target: PeerId, channel: ResponseChannel<AnswerFrame>) {
        let known = self
            .map
            .get(&target)
            .is_some_and(|e| e.state != Liveness::Left);
        if target == self.own.peer_id || !known {
            let reached = target == self.own.peer_id;
            return self.answer(channel, sealed(Probed { reached }));
        }
        let id = self.send_probe(target, Probe.into_request());
        let deadline = Instant::now() + self.detector.probe_timeout();
        self.probes
            .insert(id, ProbeRequest::Helping { channel, deadline });
    }

    pub(super) fn answer(&mut self, channel: ResponseChannel<AnswerFrame>, response: AnswerFrame) {
        self.ctx.metrics.peer_request(response.refusal().is_some());
        if self
            .swarm
            .behaviour_mut()
            .membership
            .send_response(channel, response)
            .is_err()
        {
            tracing::debug!("could not answer: the connection closed");
        }
    }

    /// Keeps the connections a node should hold: every neighbour's (dialed
    /// if missing) and, one at a time, a gone member's (so two halves of a
    /// network find each other again); any other that it dialed is closed
    /// once idle (the side that dialed it closes it).
    pub(super) fn maintain_connections(&mut self) {
        let now = Instant::now();
        let neighbours: Vec<PeerId> = self.detector.neighbours().iter().copied().collect();
        for peer in neighbours {
            self.dial(peer);
        }
        let gone = self.map.gone();
        if !gone.is_empty() {
            self.gone_turn = self.gone_turn.wrapping_add(1);
            self.dial(gone[self.gone_turn % gone.len()]);
        }
        let idle: Vec<PeerId> = self
            .swarm
            .connected_peers()
            .filter(|p| self.dialed.contains(p) && !self.detector.is_neighbour(p))
            .filter(|p| {
                self.ctx
                    .activity
                    .idle_for(p, now)
                    .is_some_and(|idle| idle >= IDLE_CLOSE)
            })
            .copied()
            .collect();
        for peer in idle {
            tracing::debug!(%peer, "closing an idle connection to a member that is not a neighbour");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        let swarm = &self.swarm;
        self.ctx.activity.retain(|p| swarm.is_connected(p));
        self.catch_up();
    }

    /// Asks one neighbour for its whole map (a `Join`, which a member
    /// answers with its map like any joiner's) and takes the records newer
    /// than ours: a record announced while this node was away or cut off
    /// reaches it this way, since nothing is announced periodically. Done
    /// at the first upkeep of a session and every [`CATCH_UP_EVERY`]
    /// upkeeps after.
    pub(super) fn catch_up(&mut self) {
        self.upkeeps = self.upkeeps.wrapping_add(1);
        if self.upkeeps % CATCH_UP_EVERY != 1 {
            return;
        }
        let connected: Vec<PeerId> = self
            .detector
            .neighbours()
            .iter()
            .filter(|p| self.swarm.is_connected(p))
            .copied()
            .collect();
        if connected.is_empty() {
            // Try again at the next upkeep.
            self.upkeeps = 0;
            return;
        }
        let peer = connected[self.upkeeps as usize / CATCH_UP_EVERY as usize % connected.len()];
        let join = Join {
            record: self.own.clone(),
        };
        let membership = &mut self.swarm.behaviour_mut().membership;
        let id = membership.send_request(&peer, join.into_request());
        self.asked.insert(id, Asked::CatchUp);
    }

    fn dial(&mut self, peer: PeerId) {
        let addrs = self.map.addrs(&peer);
        if addrs.is_empty() || self.swarm.is_connected(&peer) {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::trace!(%peer, "dial not started: {e}");
        }
    }
}

/// Members that could probe `target` for `local`: the target's own
/// neighbours (they hold connections to it) that are alive, those `local`
/// is connected to first.
fn helpers_for(
    map: &NetworkMap,
    swarm: &iris_behaviours::libp2p::Swarm<iris_behaviours::IrisBehaviour>,
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
