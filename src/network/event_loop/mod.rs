//! The task that owns the swarm, and the only code that drives it: it
//! listens and joins ([`setup`]), keeps the map, answers peers' membership
//! requests ([`peers`]), passes calls both ways ([`call_desk`]), announces
//! this node, watches its neighbours ([`watch`]), saves the membership and
//! says goodbye.

mod call_desk;
mod peers;
pub(crate) mod setup;
mod warnings;
mod watch;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use iris_behaviours::{
    behaviour::MAX_GOSSIP_MESSAGE,
    codec,
    libp2p::{
        gossipsub::{self, IdentTopic},
        request_response::{self, OutboundRequestId},
        swarm::{ListenError, SwarmEvent},
        PeerId, Swarm,
    },
    AnswerFrame, Asks, Departure, Hello, IrisBehaviour, IrisBehaviourEvent, Leave, MapMessage,
    NetworkConfig, NodeRecord,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    detector::{Detector, Timings},
    map::NetworkMap,
    next_version,
    saver::Saver,
    Command, NetworkContext, NetworkError, Snapshot,
};
use crate::{events::EventKind, store::SavedMembership};
use call_desk::{CallDesk, Sender};
use setup::{Goal, Phase};

/// How often probe and request timeouts are checked.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);
/// How often the connections are looked after: missing neighbours dialed,
/// a gone member tried, idle others closed.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(2);
/// At most this often the membership is written to disk.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// How long goodbyes may take before we go anyway.
const DEPART_DEADLINE: Duration = Duration::from_secs(1);

pub(super) fn topic(network: &NetworkConfig) -> IdentTopic {
    IdentTopic::new(iris_behaviours::map_topic(&network.name))
}

pub(super) struct EventLoop {
    ctx: Arc<NetworkContext>,
    swarm: Swarm<IrisBehaviour>,
    commands: mpsc::Receiver<Command>,
    network: NetworkConfig,
    topic: IdentTopic,
    own: NodeRecord,
    map: NetworkMap,
    /// The map or our record changed since the last save.
    dirty: bool,
    /// Writes the membership to disk; taken when the loop departs.
    saver: Option<Saver>,
    /// Which gone member is tried next.
    gone_turn: usize,
    /// Upkeeps so far, to pace catching up ([`watch`]).
    upkeeps: u64,
    /// Our record changed, or a new session began, and not everyone has
    /// heard yet: announced as soon as a gossip peer listens.
    unannounced: bool,
    /// Peers we dialed a connection to: only the dialer closes an idle
    /// one, so the two sides never race to close it under a request.
    dialed: std::collections::HashSet<PeerId>,
    /// Probes and whom to watch ([`watch`]).
    detector: Detector,
    probes: HashMap<OutboundRequestId, watch::ProbeRequest>,
    /// Our hellos and catch-ups waiting for an answer.
    asked: HashMap<OutboundRequestId, peers::Asked>,
    /// Calls, ours to peers and peers' to our router.
    desk: CallDesk,
    /// Where the setup is ([`setup`]).
    phase: Phase,
    /// Told once the setup has succeeded or failed.
    ready: Option<oneshot::Sender<Result<Snapshot, NetworkError>>>,
    /// Who was turned away, logged at a bounded rate.
    warnings: warnings::Warnings,
    /// Chunk streams peers open; members' go to the router.
    chunk_streams: iris_behaviours::libp2p_stream::IncomingStreams,
}

impl EventLoop {
    /// A loop for `swarm`, which has not started listening. Until the setup
    /// says otherwise, `network` is the config to create or resume, or a
    /// stand-in while joining.
    pub(super) fn new(
        ctx: Arc<NetworkContext>,
        swarm: Swarm<IrisBehaviour>,
        commands: mpsc::Receiver<Command>,
        network: NetworkConfig,
        own: NodeRecord,
        ready: oneshot::Sender<Result<Snapshot, NetworkError>>,
        chunk_streams: iris_behaviours::libp2p_stream::IncomingStreams,
    ) -> Self {
        let topic = topic(&network);
        let map = NetworkMap::new(&network, own.clone());
        let saver = Saver::spawn(ctx.store.clone());
        let liveness = &ctx.config.liveness;
        let timings = Timings::new(liveness.probe_interval(), liveness.suspect_after());
        let desk = CallDesk::new(
            ctx.inbound.clone(),
            ctx.activity.clone(),
            ctx.metrics.clone(),
        );
        Self {
            ctx,
            swarm,
            commands,
            network,
            topic,
            own,
            map,
            dirty: true,
            saver: Some(saver),
            gone_turn: 0,
            upkeeps: 0,
            unannounced: true,
            dialed: Default::default(),
            detector: Detector::new(timings, Instant::now()),
            probes: HashMap::new(),
            asked: HashMap::new(),
            desk,
            phase: Phase::Member,
            ready: Some(ready),
            warnings: Default::default(),
            chunk_streams,
        }
    }

    /// Listens, sets up the membership `goal` asks for, then runs it until
    /// this node departs. Returns at once if the setup fails.
    pub(super) async fn run(mut self, goal: Goal, previous_port: Option<u16>) {
        self.start_listening(goal, previous_port);
        let gone_after = self.ctx.config.liveness.gone_after();
        let mut liveness_check = tokio::time::interval(LIVENESS_CHECK);
        let mut upkeep = tokio::time::interval(UPKEEP_INTERVAL);
        let mut save = tokio::time::interval(SAVE_INTERVAL);
        for timer in [&mut liveness_check, &mut upkeep, &mut save] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        let mut capabilities = self.ctx.capabilities.subscribe();
        // Our record was built from an earlier look; catch up once.
        capabilities.mark_changed();
        let member = |l: &Self| l.is_member();
        loop {
            if self.has_failed() {
                return;
            }
            let setup_deadline = self.setup_deadline();
            tokio::select! {
                event = self.swarm.select_next_some() => {
                    if self.is_member() {
                        self.on_swarm_event(event)
                    } else {
                        self.on_setup_event(event)
                    }
                }
                _ = tokio::time::sleep_until(setup_deadline.unwrap_or_else(Instant::now).into()), if setup_deadline.is_some() => {
                    self.on_setup_timer()
                }
                command = self.commands.recv(), if member(&self) => match command {
                    Some(Command::Snapshot { reply }) => {
                        let _ = reply.send(self.snapshot());
                    }
                    Some(Command::Call { peer, call, reply }) => self.call(peer, call, reply),
                    Some(Command::Remove { peer, reply }) => {
                        self.remove(vec![peer]);
                        self.publish_removed();
                        let _ = reply.send(());
                    }
                    Some(Command::Depart { departure, reply }) => {
                        self.depart(departure).await;
                        let _ = reply.send(());
                        return;
                    }
                    // Every handle is gone: the node is going away.
                    None => {
                        self.depart(Departure::Shutdown).await;
                        return;
                    }
                },
                _ = liveness_check.tick(), if member(&self) => {
                    let now = Instant::now();
                    let addrs = |peer: &PeerId| self.map.addrs(peer);
                    self.desk.tick(&mut self.swarm.behaviour_mut().calls, addrs, now);
                    self.on_probe_tick(now);
                    let events = self.map.tick(now, gone_after);
                    self.emit_all(events);
                }
                _ = upkeep.tick(), if member(&self) => self.maintain_connections(),
                Some((peer, stream)) = self.chunk_streams.next() => self.forward_stream(peer, stream),
                reply = self.desk.next_reply() => {
                    self.desk.deliver(&mut self.swarm.behaviour_mut().calls, reply);
                }
                Ok(()) = capabilities.changed(), if member(&self) => {
                    let current = capabilities.borrow_and_update().clone();
                    self.own.executor = current.executor;
                    self.own.images = current.images;
                    self.own.audit = current.audit;
                    self.own.datasets = current.datasets;
                    self.own_record_changed();
                }
                _ = save.tick(), if member(&self) => self.save_if_dirty(),
            }
        }
    }

    /// Sends a call of this node's to `peer`.
    fn call(
        &mut self,
        peer: PeerId,
        call: Box<super::OutgoingCall>,
        reply: oneshot::Sender<Result<AnswerFrame, String>>,
    ) {
        let addrs = self.map.addrs(&peer);
        let calls = &mut self.swarm.behaviour_mut().calls;
        let call = (call.request, call.repeatable, call.within);
        self.desk.call(calls, addrs, peer, call, reply);
    }

    /// Calls on the wire: peers' go to the router if they are current
    /// members; answers to ours go to their callers.
    fn on_calls(&mut self, event: request_response::Event<iris_behaviours::Envelope, AnswerFrame>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let sender = if self.is_current_member(&peer) {
                    Sender::Member {
                        is_master: peer == self.network.master,
                    }
                } else {
                    self.warnings.warn("non-member", || {
                        format!("refused a call from {peer}, which is not a current member")
                    });
                    Sender::Stranger
                };
                let calls = &mut self.swarm.behaviour_mut().calls;
                self.desk.arrived(calls, peer, sender, request, channel);
            }
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let event = self.map.heard_from(&peer);
                self.emit(event);
                self.desk.answered(request_id, response);
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, "a call failed: {error}");
                self.desk.failed(request_id, &error);
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "a call from a peer failed: {error}");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            network: self.network.clone(),
            own: self.own.clone(),
            map: self.map.entries(),
            connected: self.swarm.connected_peers().copied().collect(),
        }
    }

    /// Publishes a change of the map; who watches whom may change with it.
    fn emit(&mut self, event: Option<EventKind>) {
        if let Some(event) = event {
            self.ctx.events.emit(event);
            self.dirty = true;
            self.update_neighbours();
        }
    }

    fn emit_all(&mut self, events: Vec<EventKind>) {
        for event in events {
            self.emit(Some(event));
        }
    }

    /// Hands the membership to the saver if it changed: no file I/O here,
    /// on the swarm's task.
    fn save_if_dirty(&mut self) {
        let Some(saver) = self.saver.as_ref().filter(|_| self.dirty) else {
            return;
        };
        saver.save(SavedMembership {
            network: self.network.clone(),
            own_version: self.own.version,
            map: self.map.entries(),
            removed: self.map.removed(),
        });
        self.dirty = false;
    }

    /// Publishes a freshly signed copy of our record on the map topic:
    /// when it changed, when a session begins, to refute a suspicion. If
    /// no gossip peer listens yet, it goes out when the first one does.
    fn announce(&mut self) {
        self.sign_own();
        let message = MapMessage::Announce {
            record: self.own.clone(),
        };
        self.unannounced = !self.publish(&message);
    }

    /// Publishes on the map topic; false if no one listens yet.
    pub(super) fn publish(&mut self, message: &MapMessage) -> bool {
        let bytes = match codec::encode(message, MAX_GOSSIP_MESSAGE) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!("cannot encode a map message: {e}");
                return true;
            }
        };
        let len = bytes.len();
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), bytes)
        {
            Ok(_) => {
                self.ctx.settings.traffic.map.sent(len);
                true
            }
            // Nobody has subscribed yet (we are alone, or just connected).
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => false,
            Err(e) => {
                tracing::debug!("map publish failed: {e}");
                true
            }
        }
    }

    /// Tells every connected member we are going, on the membership protocol
    /// (acknowledged) and on gossip (for members we reach only through
    /// others), and waits a little for the acknowledgements.
    async fn depart(&mut self, departure: Departure) {
        let _ = self.publish(&MapMessage::Leave { departure });
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let mut pending: std::collections::HashSet<_> = peers
            .iter()
            .map(|peer| {
                self.swarm
                    .behaviour_mut()
                    .membership
                    .send_request(peer, Leave { departure }.into_request())
            })
            .collect();
        let deadline = tokio::time::Instant::now() + DEPART_DEADLINE;
        while !pending.is_empty() {
            let Ok(event) = tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await
            else {
                tracing::warn!(
                    "{} members did not acknowledge our departure in time",
                    pending.len()
                );
                break;
            };
            use request_response::{Event, Message};
            match event {
                SwarmEvent::Behaviour(IrisBehaviourEvent::Membership(
                    Event::Message {
                        message: Message::Response { request_id, .. },
                        ..
                    }
                    | Event::OutboundFailure { request_id, .. },
                )) if pending.contains(&request_id) => {
                    pending.remove(&request_id);
                }
                // Goodbyes or not, the rest is handled as always.
                other => self.on_swarm_event(other),
            }
        }
        if departure == Departure::Shutdown {
            self.dirty = true;
            self.save_if_dirty();
        }
        // Every save is on disk before the goodbye completes: after a leave
        // the membership is cleared, and no late write may bring it back.
        if let Some(saver) = self.saver.take() {
            saver.finish().await;
        }
        tracing::info!(network = %self.network.name, "{departure}");
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<IrisBehaviourEvent>) {
        let now = Instant::now();
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                if self.map.is_removed(&peer_id) {
                    self.warnings.warn("removed", || {
                        format!("closed a connection from a removed node, {peer_id}")
                    });
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                // A new connection is in use from its first moment, on
                // both sides: it must not be taken for an idle one before
                // its first request arrives.
                self.ctx.activity.touch(peer_id);
                if endpoint.is_dialer() {
                    self.dialed.insert(peer_id);
                }
                // The dialer introduces itself; the answer introduces the
                // other side. Each tells the other how it sees it.
                if endpoint.is_dialer() && num_established.get() == 1 {
                    let hello = Hello {
                        record: self.own.clone(),
                        seen_as: self.map.get(&peer_id).map(|e| e.state),
                    };
                    let membership = &mut self.swarm.behaviour_mut().membership;
                    let id = membership.send_request(&peer_id, hello.into_request());
                    self.asked.insert(id, peers::Asked::Hello);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, "disconnected: {cause:?}");
                self.dialed.remove(&peer_id);
                let action = self.detector.connection_lost(peer_id, now);
                self.act(action.into_iter().collect());
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => self.incoming_failed(&send_back_addr, &error),
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, "dial failed: {}", super::error_chain(&error));
            }
            SwarmEvent::NewListenAddr { address, .. }
                if !self.own.addrs.contains(&address)
                    && self.own.addrs.len() < iris_behaviours::MAX_ADDRS
                    && (super::worth_announcing(&self.ctx, &address)
                        || self.own.addrs.is_empty()) =>
            {
                self.own.addrs.push(address);
                self.own_record_changed();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.own.addrs.retain(|a| a != &address);
                self.own_record_changed();
            }
            SwarmEvent::Behaviour(IrisBehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(IrisBehaviourEvent::Membership(event)) => {
                self.on_membership(event)
            }
            SwarmEvent::Behaviour(IrisBehaviourEvent::Calls(event)) => self.on_calls(event),
            _ => {}
        }
    }

    /// Signs our record as of now; each announcement and introduction is a
    /// fresh signature, so a replayed copy is never taken for a sign of
    /// life, and a newer one refutes any suspicion of an older.
    pub(super) fn sign_own(&mut self) {
        let at = crate::now_ms().max(self.own.signed_at_ms + 1);
        self.own.sign(&self.ctx.keypair, at);
        self.map.set_own(self.own.clone());
    }

    fn own_record_changed(&mut self) {
        self.own.version = next_version(self.own.version);
        self.map.set_own(self.own.clone());
        self.dirty = true;
        self.announce();
    }
}

impl EventLoop {
    /// A connection that failed in its handshake or was refused: a wrong
    /// key and a connection past the limits are worth a warning (at a
    /// bounded rate), a dialer that hung up is not.
    pub(super) fn incoming_failed(
        &mut self,
        from: &iris_behaviours::libp2p::Multiaddr,
        error: &ListenError,
    ) {
        if let ListenError::Denied { cause } = error {
            self.warnings.warn("limit", || {
                format!("refused an incoming connection from {from}: {cause}")
            });
        } else {
            match super::classify_incoming(error) {
                super::IncomingFailure::WrongKey => self.warnings.warn("wrong-key", || {
                    format!(
                        "refused an incoming connection from {from}: handshake failed, wrong network key? ({})",
                        super::error_chain(error)
                    )
                }),
                super::IncomingFailure::Incompatible(why) => {
                    self.warnings.warn("incompatible", || {
                        format!("refused an incoming connection from {from}: {why}")
                    })
                }
                super::IncomingFailure::Other => tracing::debug!(
                    from = %from,
                    "an incoming connection ended in its handshake: {}",
                    super::error_chain(error)
                ),
            }
        }
    }
}
