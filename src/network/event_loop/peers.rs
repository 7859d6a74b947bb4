//! What the event loop does with what members say: records on the map
//! topic, and requests and answers on the membership protocol. Calls
//! (jobs, sessions, files, sums) pass through [`super::call_desk`].

use std::time::Instant;

use iris_behaviours::{
    codec,
    libp2p::{
        gossipsub,
        request_response::{self, ResponseChannel},
        PeerId,
    },
    Accepted, AnswerFrame, Asks, Hello, Join, Leave, Liveness, MapMessage, MembershipRequest,
    NodeRecord, ProbeFor, Refusal, Welcome, MAX_CONTROL_RESPONSE,
};

use super::{
    answer,
    watch::{ProbeRequest, Suspicion},
    EventLoop,
};

/// How far ahead of our clock a copy of a record named in a suspicion may
/// be: clocks differ a little, but a copy signed later than this cannot
/// exist yet.
const MAX_CLOCK_AHEAD: std::time::Duration = std::time::Duration::from_secs(10 * 60);

impl EventLoop {
    pub(super) fn on_gossip(&mut self, event: gossipsub::Event) {
        let gossipsub::Event::Message { message, .. } = event else {
            if let gossipsub::Event::Subscribed { .. } = event {
                // The first listener of a session hears our record; the
                // master tells each new one whom it removed.
                if self.unannounced {
                    self.announce();
                }
                self.publish_removed();
            }
            return;
        };
        self.ctx.settings.traffic.map.received(message.data.len());
        // Strict validation guarantees a signed author.
        let Some(author) = message.source else { return };
        let decoded: MapMessage = match codec::decode(&message.data) {
            Ok(m) => m,
            Err(e) => return tracing::warn!(%author, "ignored a malformed map message: {e}"),
        };
        match decoded {
            MapMessage::Announce { record } => {
                if record.peer_id != author {
                    return tracing::warn!(%author, "ignored a record for {} sent by someone else", record.peer_id);
                }
                if let Err(reason) = record.verify() {
                    return tracing::warn!(%author, "ignored a record: {reason}");
                }
                match self.map.merge(record) {
                    Ok(event) => self.emit(event),
                    Err(reason) => tracing::warn!(%author, "ignored a record: {reason}"),
                }
            }
            MapMessage::Suspect {
                peer,
                version,
                signed_at_ms,
            } => self.on_suspicion(author, peer, (version, signed_at_ms)),
            MapMessage::Leave { departure } => {
                let event = self.map.departed(&author, departure);
                self.emit(event);
            }
            MapMessage::Removed { peers } if author == self.network.master => self.remove(peers),
            MapMessage::Removed { .. } => {
                tracing::warn!(%author, "ignored a removal from a node that is not the master")
            }
        }
    }

    /// Removes nodes the master removed: pruned from the map, refused and
    /// disconnected from now on.
    pub(super) fn remove(&mut self, peers: Vec<PeerId>) {
        for peer in peers {
            if let Some(event) = self.map.remove(peer) {
                tracing::info!(%peer, "the master removed a node from the network");
                self.emit(Some(event));
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
    }

    /// The master tells everyone which nodes it removed: at each removal,
    /// and to each new listener, so a member that missed one learns it.
    pub(super) fn publish_removed(&mut self) {
        let peers = self.map.removed();
        if self.network.master != self.own.peer_id || peers.is_empty() {
            return;
        }
        let _ = self.publish(&MapMessage::Removed { peers });
    }

    pub(super) fn on_membership(
        &mut self,
        event: request_response::Event<MembershipRequest, AnswerFrame>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    let event = self.map.heard_from(&peer);
                    self.emit(event);
                    if let Some(probe) = self.watch.take_probe(&request_id) {
                        return self.probe_answered(probe, Some(response));
                    }
                    match self.asked.remove(&request_id) {
                        Some(Asked::Hello) => self.on_hello_back(peer, &response),
                        Some(Asked::CatchUp) => self.on_catch_up(peer, &response),
                        // A goodbye's acknowledgement, or a late answer.
                        None => {}
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(probe) = self.watch.take_probe(&request_id) {
                    tracing::debug!(%peer, "probe failed: {error}");
                    return self.probe_answered(probe, None);
                }
                self.asked.remove(&request_id);
                tracing::debug!(%peer, "a membership request failed: {error}");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "a membership request from a peer failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// A member's answer to our hello: its record, and how it sees us.
    fn on_hello_back(&mut self, peer: PeerId, answer: &AnswerFrame) {
        match Hello::open(answer) {
            Ok(Ok(Hello { record, seen_as })) => {
                let _ = self.take_record(peer, record);
                self.refute_if_doubted(peer, seen_as);
            }
            Ok(Err(refusal)) => tracing::warn!(%peer, "peer refused us: {}", refusal.reason),
            Err(e) => tracing::debug!(%peer, "an answer to our hello that is not one: {e}"),
        }
    }

    /// The answer to our catch-up ([`super::watch::Watch::upkeep`]): every record
    /// it holds that is newer than ours, each as its own node signed it.
    fn on_catch_up(&mut self, peer: PeerId, answer: &AnswerFrame) {
        let map = match Join::open(answer) {
            Ok(Ok(Welcome { map, .. })) => map,
            Ok(Err(refusal)) => return tracing::warn!(%peer, "peer refused us: {}", refusal.reason),
            Err(e) => {
                return tracing::debug!(%peer, "an answer to our catch-up that is not one: {e}")
            }
        };
        for entry in map {
            if entry.record.peer_id == self.own.peer_id
                || self.map.stamp(&entry.record.peer_id)
                    >= Some((entry.record.version, entry.record.signed_at_ms))
            {
                continue;
            }
            if let Err(reason) = entry.record.verify() {
                tracing::warn!(%peer, "a catch-up held a record that does not verify: {reason}");
                continue;
            }
            match self.map.merge(entry.record) {
                Ok(event) => self.emit(event),
                Err(reason) => tracing::debug!(%peer, "a catch-up record: {reason}"),
            }
        }
    }

    /// Hands a chunk stream to the router if a current member opened it;
    /// anyone else's is dropped, which resets it.
    pub(super) fn forward_stream(&mut self, peer: PeerId, stream: iris_behaviours::libp2p::Stream) {
        if !self.is_current_member(&peer) {
            self.warnings.warn("non-member", || {
                format!("refused a chunk stream from {peer}, which is not a current member")
            });
            return;
        }
        let stream = crate::network::Busy::new(stream, self.ctx.activity.begin(peer));
        let inbound = crate::network::InboundStream { peer, stream };
        if self.ctx.inbound_streams.try_send(inbound).is_err() {
            tracing::warn!(%peer, "too many chunk streams waiting; refused one");
        }
    }

    pub(super) fn is_current_member(&self, peer: &PeerId) -> bool {
        self.map
            .get(peer)
            .is_some_and(|entry| entry.state != iris_behaviours::Liveness::Left)
    }

    /// Merges a record that arrived on a connection authenticated as `peer`.
    fn take_record(&mut self, peer: PeerId, record: NodeRecord) -> Result<(), String> {
        if record.peer_id != peer {
            let reason = format!("the record is for {}, but you are {peer}", record.peer_id);
            tracing::warn!(%peer, "{reason}");
            return Err(reason);
        }
        record.verify()?;
        match self.map.merge(record) {
            Ok(event) => {
                self.emit(event);
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(%peer, "refused a record: {reason}");
                Err(reason)
            }
        }
    }

    fn on_request(
        &mut self,
        peer: PeerId,
        request: MembershipRequest,
        channel: ResponseChannel<AnswerFrame>,
    ) {
        let response = match request {
            MembershipRequest::Join(Join { record }) => match self.take_record(peer, record) {
                Ok(()) => sealed(Welcome {
                    config: self.network.clone(),
                    map: self.map.entries(),
                    removed: self.map.removed(),
                }),
                Err(reason) => AnswerFrame::refused(Refusal::invalid(format!(
                    "{reason} in network '{}'",
                    self.network.name
                ))),
            },
            MembershipRequest::Hello(Hello { record, seen_as }) => {
                // How we saw the peer before this sign of life.
                let ours = self.map.get(&peer).map(|e| e.state);
                match self.take_record(peer, record) {
                    Ok(()) => {
                        self.ctx.activity.touch(peer);
                        self.refute_if_doubted(peer, seen_as);
                        sealed(Hello {
                            record: self.own.clone(),
                            seen_as: ours,
                        })
                    }
                    Err(reason) => AnswerFrame::refused(Refusal::invalid(reason)),
                }
            }
            MembershipRequest::Probe(_) | MembershipRequest::ProbeFor(_)
                if !self.is_current_member(&peer) =>
            {
                AnswerFrame::refused(Refusal::forbidden(
                    "forbidden: you are not a current member of this network",
                ))
            }
            MembershipRequest::Probe(_) => sealed(Accepted),
            MembershipRequest::ProbeFor(ProbeFor { target }) => {
                let (watch, around) = self.around();
                return watch.probe_for(around, target, channel);
            }
            MembershipRequest::Leave(Leave { departure }) => {
                let event = self.map.departed(&peer, departure);
                self.emit(event);
                sealed(Accepted)
            }
        };
        answer(&mut self.swarm, &self.ctx.metrics, channel, response);
    }

    /// The answer to one of our probes, or its failure (`None`).
    fn probe_answered(&mut self, probe: ProbeRequest, answer: Option<AnswerFrame>) {
        let (watch, around) = self.around();
        let suspicions = watch.on_probe_answer(around, probe, answer);
        self.suspect_all(suspicions);
    }

    /// Our detector gave up on these members.
    pub(super) fn suspect_all(&mut self, suspicions: Vec<Suspicion>) {
        for Suspicion { peer, reason } in suspicions {
            self.suspect(peer, &reason);
        }
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
            self.watch.refuted();
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
}

/// What we asked a member on the membership protocol, to read its answer
/// as the answer to that (probes are kept apart, [`super::watch`]).
pub(super) enum Asked {
    Hello,
    CatchUp,
}

/// The frame of an answer the event loop gives.
pub(super) fn sealed(answer: impl serde::Serialize) -> AnswerFrame {
    AnswerFrame::seal(Ok(answer), MAX_CONTROL_RESPONSE)
}
