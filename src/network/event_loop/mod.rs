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
        swarm::SwarmEvent,
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
use setup::{Goal, Joined, Setup};
use watch::{Around, Watch};

/// How often probe and request timeouts are checked.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);
/// How often the connections are looked after: missing neighbours dialed,
/// a gone member tried, idle others closed.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(2);
/// At most this often the membership is written to disk.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// How long goodbyes may take before we go anyway.
const DEPART_DEADLINE: Duration = Duration::from_secs(1);

fn topic(network: &NetworkConfig) -> IdentTopic {
    IdentTopic::new(iris_behaviours::map_topic(&network.name))
}

/// Answers a membership request on `channel`.
fn answer(
    swarm: &mut Swarm<IrisBehaviour>,
    metrics: &crate::metrics::Metrics,
    channel: request_response::ResponseChannel<AnswerFrame>,
    response: AnswerFrame,
) {
    metrics.peer_request(response.refusal().is_some());
    if swarm
        .behaviour_mut()
        .membership
        .send_response(channel, response)
        .is_err()
    {
        tracing::debug!("could not answer: the connection closed");
    }
}

/// Signs `own` as of now, later than its last signature.
fn sign_now(own: &mut NodeRecord, keypair: &iris_behaviours::libp2p::identity::Keypair) {
    let at = crate::now_ms().max(own.signed_at_ms + 1);
    own.sign(keypair, at);
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
    /// Our record changed, or a new session began, and not everyone has
    /// heard yet: announced as soon as a gossip peer listens.
    unannounced: bool,
    /// Whom this node watches, and the connections it keeps ([`watch`]).
    watch: Watch,
    /// Our hellos and catch-ups waiting for an answer.
    asked: HashMap<OutboundRequestId, peers::Asked>,
    /// Calls, ours to peers and peers' to our router.
    desk: CallDesk,
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
        let detector = Detector::new(timings, Instant::now());
        let watch = Watch::new(detector, ctx.activity.clone(), ctx.metrics.clone());
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
            unannounced: true,
            watch,
            asked: HashMap::new(),
            desk,
            ready: Some(ready),
            warnings: Default::default(),
            chunk_streams,
        }
    }

    /// Listens, sets up the membership `goal` asks for, then runs it until
    /// this node departs. Returns at once if the setup fails.
    pub(super) async fn run(mut self, goal: Goal, previous_port: Option<u16>) {
        let ctx = self.ctx.clone();
        let setup = Setup::new(
            &ctx,
            &mut self.swarm,
            &mut self.warnings,
            &mut self.own,
            &self.network,
        );
        match setup.run(goal, previous_port).await {
            Ok(joined) => self.take_part(joined),
            Err(error) => {
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Err(error));
                }
                return;
            }
        }
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
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
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
                _ = liveness_check.tick() => {
                    let now = Instant::now();
                    let addrs = |peer: &PeerId| self.map.addrs(peer);
                    self.desk.tick(&mut self.swarm.behaviour_mut().calls, addrs, now);
                    let (watch, around) = self.around();
                    let suspicions = watch.tick(around, now);
                    self.suspect_all(suspicions);
                    let events = self.map.tick(now, gone_after);
                    self.emit_all(events);
                }
                _ = upkeep.tick() => self.upkeep(),
                Some((peer, stream)) = self.chunk_streams.next() => self.forward_stream(peer, stream),
                reply = self.desk.next_reply() => {
                    self.desk.deliver(&mut self.swarm.behaviour_mut().calls, reply);
                }
                Ok(()) = capabilities.changed() => {
                    let current = capabilities.borrow_and_update().clone();
                    self.own.executor = current.executor;
                    self.own.images = current.images;
                    self.own.audit = current.audit;
                    self.own.datasets = current.datasets;
                    self.own_record_changed();
                }
                _ = save.tick() => self.save_if_dirty(),
            }
        }
    }

    /// The setup is done: subscribes to the map, reaches for its
    /// neighbours, announces itself (now, or once a gossip peer listens),
    /// saves the map and hands the caller its snapshot.
    fn take_part(
        &mut self,
        Joined {
            network,
            map,
            event,
        }: Joined,
    ) {
        self.topic = topic(&network);
        self.network = network;
        self.map = map;
        if let Some(event) = event {
            self.ctx.events.emit(event);
        }
        if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&self.topic) {
            tracing::error!("cannot subscribe to the map topic: {e}");
        }
        // The only connection so far is the one to a bootstrap we dialed
        // (it was made before the loop tracked dials): ours to close.
        let connected: Vec<_> = self.swarm.connected_peers().copied().collect();
        for peer in connected {
            self.watch.dialed(peer);
        }
        self.update_neighbours();
        self.upkeep();
        self.announce();
        self.dirty = true;
        self.save_if_dirty();
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Ok(self.snapshot()));
        }
    }

    /// The watch, and what it needs of the loop for a step.
    fn around(&mut self) -> (&mut Watch, Around<'_>) {
        let around = Around {
            swarm: &mut self.swarm,
            map: &self.map,
            local: self.own.peer_id,
        };
        (&mut self.watch, around)
    }

    /// The watched members' neighbours, recomputed after the map changed.
    fn update_neighbours(&mut self) {
        let (watch, around) = self.around();
        watch.update_neighbours(around);
    }

    /// Looks after the connections, and now and then catches up on the
    /// map from a neighbour.
    fn upkeep(&mut self) {
        let around = Around {
            swarm: &mut self.swarm,
            map: &self.map,
            local: self.own.peer_id,
        };
        if let Some(id) = self.watch.upkeep(around, &self.own) {
            self.asked.insert(id, peers::Asked::CatchUp);
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
                    self.watch.dialed(peer_id);
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
                let (watch, around) = self.around();
                let suspicions = watch.disconnected(around, peer_id, now);
                self.suspect_all(suspicions);
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => self.warnings.incoming_failed(&send_back_addr, &error),
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
    fn sign_own(&mut self) {
        sign_now(&mut self.own, &self.ctx.keypair);
        self.map.set_own(self.own.clone());
    }

    fn own_record_changed(&mut self) {
        self.own.version = next_version(self.own.version);
        self.map.set_own(self.own.clone());
        self.dirty = true;
        self.announce();
    }
}
