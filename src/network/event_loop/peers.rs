//! What the event loop does with what members say: records on the map
//! topic, and requests and answers on the control protocol. Requests about
//! jobs, sessions and files go on to the node's router.

use iris_behaviours::{
    codec,
    libp2p::{
        gossipsub,
        request_response::{self, ResponseChannel},
        PeerId,
    },
    ControlRequest, ControlResponse, MapMessage, NodeRecord, Refusal, RefusalKind,
};
use tokio::sync::oneshot;

use super::{EventLoop, ReplyTo};
use crate::network::answers::Arrival;

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

    pub(super) fn on_control(
        &mut self,
        event: request_response::Event<ControlRequest, ControlResponse>,
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
                    if let Some(probe) = self.probes.remove(&request_id) {
                        return self.on_probe_answer(probe, Some(response));
                    }
                    if let Some(outbound) = self.outbound.remove(&request_id) {
                        let _ = outbound.reply.send(Ok(response));
                        return;
                    }
                    self.on_response(peer, response);
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(probe) = self.probes.remove(&request_id) {
                    tracing::debug!(%peer, "probe failed: {error}");
                    return self.on_probe_answer(probe, None);
                }
                tracing::debug!(%peer, "control request failed: {error}");
                self.request_failed(request_id, &error);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "control request from peer failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Answers to our own hellos.
    fn on_response(&mut self, peer: PeerId, response: ControlResponse) {
        match response {
            ControlResponse::Hello { record, seen_as } => {
                let _ = self.take_record(peer, record);
                self.refute_if_doubted(peer, seen_as);
            }
            // The answer to our catch-up ([`EventLoop::catch_up`]): every
            // record it holds that is newer than ours, each as its own
            // node signed it.
            ControlResponse::Welcome { map, .. } => {
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
            ControlResponse::Refused { reason, .. } => {
                tracing::warn!(%peer, "peer refused us: {reason}");
            }
            _ => {}
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

    /// Hands a request to the node's router, with who sent it; the answer
    /// goes back (`to`) once the node has worked it out. Only current
    /// members are heard: a peer with the key but no record, or one that
    /// left, is refused here.
    fn forward(&mut self, peer: PeerId, request: ControlRequest, to: ReplyTo) {
        if !self.is_current_member(&peer) {
            self.warnings.warn("non-member", || {
                format!("refused a request from {peer}, which is not a current member")
            });
            let refusal = Refusal::forbidden(
                "forbidden: you are not a current member of this network (join it first)",
            );
            let refused = futures::future::ready((to, refusal.into()));
            return self.replies.push(Box::pin(refused));
        }
        let (reply, answer) = oneshot::channel();
        let in_use = self.ctx.activity.begin(peer);
        let inbound = crate::network::Inbound {
            peer,
            from_master: peer == self.network.master,
            request,
            reply,
        };
        if self.ctx.inbound.try_send(inbound).is_err() {
            tracing::warn!(%peer, "too many requests waiting; refused one");
        }
        self.replies.push(Box::pin(async move {
            let _in_use = in_use;
            let response = answer.await.unwrap_or_else(|_| {
                Refusal::new(
                    RefusalKind::Busy,
                    "the node is busy or shutting down; try again",
                )
                .into()
            });
            (to, response)
        }));
    }

    /// An at-most-once request: carried out the first time `id` comes from
    /// `peer`; a repeat (its sender lost the connection before the answer
    /// came) gets the first answer, or waits for it.
    fn forward_once(
        &mut self,
        peer: PeerId,
        id: u64,
        request: ControlRequest,
        channel: ResponseChannel<ControlResponse>,
    ) {
        if matches!(request, ControlRequest::AtMostOnce { .. }) {
            let refusal = Refusal::invalid("an at-most-once request may not wrap another");
            return self.answer(channel, refusal.into());
        }
        if request.is_repeatable() {
            return self.on_request(peer, request, channel);
        }
        if !self.is_current_member(&peer) {
            return self.forward(peer, request, ReplyTo::Channel(channel));
        }
        match self.answers.arrived(peer, id, channel) {
            Arrival::First => self.forward(peer, request, ReplyTo::Remembered { peer, id }),
            Arrival::Waiting => {
                tracing::debug!(%peer, id, "a request sent again waits for the first one's answer")
            }
            Arrival::Repeat(channel, answer) => {
                tracing::debug!(%peer, id, "a request sent again gets the first one's answer");
                self.answer(channel, *answer)
            }
        }
    }

    /// Sends an answer the node worked out to where it goes.
    pub(super) fn reply(&mut self, to: ReplyTo, response: ControlResponse) {
        match to {
            ReplyTo::Channel(channel) => self.answer(channel, response),
            ReplyTo::Remembered { peer, id } => {
                let now = std::time::Instant::now();
                for channel in self.answers.answered(peer, id, &response, now) {
                    self.answer(channel, response.clone());
                }
            }
        }
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
        request: ControlRequest,
        channel: ResponseChannel<ControlResponse>,
    ) {
        let response = match request {
            ControlRequest::Join { record } => match self.take_record(peer, record) {
                Ok(()) => ControlResponse::Welcome {
                    config: self.network.clone(),
                    map: self.map.entries(),
                    removed: self.map.removed(),
                },
                Err(reason) => {
                    Refusal::invalid(format!("{reason} in network '{}'", self.network.name)).into()
                }
            },
            ControlRequest::Hello { record, seen_as } => {
                // How we saw the peer before this sign of life.
                let ours = self.map.get(&peer).map(|e| e.state);
                match self.take_record(peer, record) {
                    Ok(()) => {
                        self.ctx.activity.touch(peer);
                        self.refute_if_doubted(peer, seen_as);
                        ControlResponse::Hello {
                            record: self.own.clone(),
                            seen_as: ours,
                        }
                    }
                    Err(reason) => Refusal::invalid(reason).into(),
                }
            }
            ControlRequest::Probe | ControlRequest::ProbeFor { .. }
                if !self.is_current_member(&peer) =>
            {
                Refusal::forbidden("forbidden: you are not a current member of this network").into()
            }
            ControlRequest::Probe => ControlResponse::Ack,
            ControlRequest::ProbeFor { target } => return self.probe_for(target, channel),
            ControlRequest::Leave { departure } => {
                let event = self.map.departed(&peer, departure);
                self.emit(event);
                ControlResponse::Ack
            }
            ControlRequest::AtMostOnce { id, request } => {
                return self.forward_once(peer, id, *request, channel)
            }
            request => return self.forward(peer, request, ReplyTo::Channel(channel)),
        };
        self.answer(channel, response);
    }
}
