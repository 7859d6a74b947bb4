//! The task that owns the swarm, and the only code that drives it: it
//! listens and joins ([`setup`]), keeps the members and answers their
//! membership requests ([`members`], which decides; this file carries out),
//! passes calls both ways ([`call_desk`]), announces this node, watches its
//! neighbours ([`watch`]), relays or reserves a place at a relay
//! ([`relays`]), saves the membership and says goodbye ([`goodbye`]).

mod answer;
mod call_desk;
mod chunk_streams;
mod goodbye;
mod map_topic;
mod members;
mod reachability;
mod relays;
pub(crate) mod setup;
mod warnings;
mod watch;
mod ways;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use iris_behaviours::{
    libp2p::{
        gossipsub,
        request_response::{self, OutboundRequestId},
        swarm::SwarmEvent,
        PeerId, Swarm,
    },
    AnswerFrame, Asks, Departure, Hello, IrisBehaviour, IrisBehaviourEvent, MapMessage,
    MembershipRequest, NetworkConfig, NodeRecord,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    detector::{Detector, Timings},
    saver::Saver,
    Command, NetworkContext, NetworkError, Snapshot,
};
use answer::answer;
use call_desk::{CallDesk, Sender};
use goodbye::Goodbye;
use map_topic::MapTopic;
use members::{Effect, Members, Reply};
use relays::Relays;
use setup::{Goal, Joined, Setup};
use watch::{Around, ProbeRequest, Suspicion, Watch};

/// How often probe and request timeouts are checked.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);
/// How often the connections are looked after: missing neighbours dialed,
/// a gone member tried, idle others closed.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(2);
/// At most this often the membership is written to disk.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);

pub(super) struct EventLoop {
    ctx: Arc<NetworkContext>,
    swarm: Swarm<IrisBehaviour>,
    commands: mpsc::Receiver<Command>,
    topic: MapTopic,
    /// The network, our record and the map, and the rules for changing them.
    members: Members,
    /// Writes the membership to disk; taken when the loop departs.
    saver: Option<Saver>,
    /// Our record changed, or a new session began, and not everyone has
    /// heard yet: announced as soon as a gossip peer listens.
    unannounced: bool,
    /// Whom this node watches, and the connections it keeps ([`watch`]).
    watch: Watch,
    /// Our relay, or our places at others' ([`relays`]).
    relays: Relays,
    /// Our hellos and catch-ups waiting for an answer.
    asked: HashMap<OutboundRequestId, Asked>,
    /// Calls, ours to peers and peers' to our router.
    desk: CallDesk,
    /// Told once the setup has succeeded or failed.
    ready: Option<oneshot::Sender<Result<Snapshot, NetworkError>>>,
    /// Who was turned away, logged at a bounded rate.
    warnings: warnings::Warnings,
    /// Chunk streams peers open; members' go to the router.
    chunk_streams: iris_behaviours::libp2p_stream::IncomingStreams,
}

/// What we asked a member on the membership protocol, to read its answer
/// as the answer to that (probes are kept apart, [`watch`]).
enum Asked {
    Hello,
    CatchUp,
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
        let topic = MapTopic::new(&network, ctx.settings.traffic.map.clone());
        let members = Members::new(network, own, ctx.keypair.clone());
        let saver = Saver::spawn(ctx.store.clone(), &ctx.tasks);
        let timings = Timings::new(ctx.config.probe_interval, ctx.config.suspect_after);
        let desk = CallDesk::new(
            ctx.inbound.clone(),
            ctx.activity.clone(),
            ctx.metrics.clone(),
        );
        let detector = Detector::new(timings, Instant::now());
        let watch = Watch::new(detector, ctx.activity.clone(), ctx.metrics.clone());
        let relays = Relays::new(ctx.settings.relay_gate.clone());
        Self {
            ctx,
            swarm,
            commands,
            topic,
            members,
            saver: Some(saver),
            unannounced: true,
            watch,
            relays,
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
            &mut self.members.own,
            &self.members.network,
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
        let gone_after = self.ctx.config.gone_after;
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
                        let effects = self.members.remove_as_master(peer);
                        self.apply(effects);
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
                    let addrs = |peer: &PeerId| self.members.map.addrs(peer);
                    self.desk.tick(&mut self.swarm.behaviour_mut().calls, addrs, now);
                    let (watch, around) = self.around();
                    let suspicions = watch.tick(around, now);
                    self.suspect_all(suspicions);
                    let effects = self.members.tick(now, gone_after);
                    self.apply(effects);
                }
                _ = upkeep.tick() => self.upkeep(),
                Some((peer, stream)) = self.chunk_streams.next() => {
                    let member = self.members.is_current_member(&peer);
                    chunk_streams::forward(&self.ctx, member, &mut self.warnings, peer, stream);
                }
                reply = self.desk.next_reply() => {
                    self.desk.deliver(&mut self.swarm.behaviour_mut().calls, reply);
                }
                Ok(()) = capabilities.changed() => {
                    let current = capabilities.borrow_and_update().clone();
                    let effects = self.members.change_own(|own| {
                        own.executor = current.executor;
                        own.images = current.images;
                        own.audit = current.audit;
                        own.datasets = current.datasets;
                    });
                    self.apply(effects);
                }
                _ = save.tick() => self.save(false),
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
        self.topic = MapTopic::new(&network, self.ctx.settings.traffic.map.clone());
        self.members.joined(network, map);
        if let Some(event) = event {
            self.ctx.events.emit(event);
        }
        self.topic
            .subscribe(&mut self.swarm.behaviour_mut().gossipsub);
        // The only connection so far is the one to a bootstrap we dialed
        // (it was made before the loop tracked dials): ours to close.
        let connected: Vec<_> = self.swarm.connected_peers().copied().collect();
        for peer in connected {
            self.watch.dialed(peer);
        }
        self.update_neighbours();
        self.upkeep();
        self.announce();
        self.save(false);
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Ok(self.snapshot()));
        }
    }

    /// Carries out what [`Members`] decided.
    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Changed(event) => {
                    self.ctx.events.emit(event);
                    // Who watches whom, and whom a relay serves, may
                    // change with the map.
                    self.update_neighbours();
                    let (own, map) = (&self.members.own, &self.members.map);
                    self.relays.serve(&mut self.swarm, own, map);
                }
                Effect::Announce => self.announce(),
                Effect::Publish(message) => {
                    let _ = self.publish(&message);
                }
                Effect::Disconnect(peer) => {
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
                Effect::Refuted => self.watch.refuted(),
                Effect::InUse(peer) => self.ctx.activity.touch(peer),
            }
        }
    }

    /// The watch, and what it needs of the loop for a step.
    fn around(&mut self) -> (&mut Watch, Around<'_>) {
        let around = Around {
            swarm: &mut self.swarm,
            map: &self.members.map,
            local: self.members.own.peer_id,
        };
        (&mut self.watch, around)
    }

    /// The watched members' neighbours, recomputed after the map changed.
    fn update_neighbours(&mut self) {
        let (watch, around) = self.around();
        watch.update_neighbours(around);
    }

    /// Our record lists the addresses others can reach us at now: where we
    /// listen and hold a place at a relay, and, if we found that others
    /// cannot dial us, not where we listen directly.
    fn refresh_addrs(&mut self) {
        let listening = self.swarm.listeners().cloned().collect();
        let reachable = self.relays.reachable() || self.members.own.relay;
        let addrs = super::advertised(&self.ctx, listening, reachable);
        if addrs != self.members.own.addrs {
            let effects = self.members.change_own(|own| own.addrs = addrs);
            self.apply(effects);
        }
    }

    /// Looks after the connections, relays and our addresses, and now and
    /// then catches up on the map from a neighbour.
    fn upkeep(&mut self) {
        self.refresh_addrs();
        let (own, map) = (&self.members.own, &self.members.map);
        self.relays.serve(&mut self.swarm, own, map);
        self.relays.reserve(&mut self.swarm, own, map);
        let around = Around {
            swarm: &mut self.swarm,
            map: &self.members.map,
            local: self.members.own.peer_id,
        };
        let keep = |peer: &PeerId| self.relays.keeps(peer);
        if let Some(id) = self.watch.upkeep(around, &self.members.own, keep) {
            self.asked.insert(id, Asked::CatchUp);
        }
    }

    /// Our detector gave up on these members: suspected here, and everyone
    /// told.
    fn suspect_all(&mut self, suspicions: Vec<Suspicion>) {
        let now = Instant::now();
        for Suspicion { peer, reason } in suspicions {
            let effects = self.members.suspect(peer, &reason, now);
            self.apply(effects);
        }
    }

    /// Sends a call of this node's to `peer`.
    fn call(
        &mut self,
        peer: PeerId,
        call: Box<super::OutgoingCall>,
        reply: oneshot::Sender<Result<AnswerFrame, String>>,
    ) {
        let addrs = self.members.map.addrs(&peer);
        let calls = &mut self.swarm.behaviour_mut().calls;
        let call = (call.request, call.repeatable, call.within);
        self.desk.call(calls, addrs, peer, call, reply);
    }

    fn snapshot(&self) -> Snapshot {
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let relayed_only = |p: &&PeerId| self.relays.relayed_only(p) == Some(true);
        let relayed = connected.iter().filter(relayed_only).copied().collect();
        self.members.snapshot(connected, relayed)
    }

    /// Hands the membership to the saver if it changed (or `always`): no
    /// file I/O here, on the swarm's task.
    fn save(&mut self, always: bool) {
        let Some(saver) = self.saver.as_ref() else {
            return;
        };
        if let Some(membership) = self.members.changes_to_save(always) {
            saver.save(membership);
        }
    }

    /// Publishes a freshly signed copy of our record on the map topic:
    /// when it changed, when a session begins, to refute a suspicion. If
    /// no gossip peer listens yet, it goes out when the first one does.
    fn announce(&mut self) {
        let message = self.members.announcement();
        self.unannounced = !self.publish(&message);
    }

    /// The master tells everyone which nodes it removed.
    fn publish_removed(&mut self) {
        if let Some(message) = self.members.removal_notice() {
            let _ = self.publish(&message);
        }
    }

    /// Publishes on the map topic; false if no one listens yet.
    fn publish(&mut self, message: &MapMessage) -> bool {
        self.topic
            .publish(&mut self.swarm.behaviour_mut().gossipsub, message)
    }

    /// Tells every connected member we are going, on the membership protocol
    /// (acknowledged) and on gossip (for members we reach only through
    /// others), and waits a little for the acknowledgements.
    async fn depart(&mut self, departure: Departure) {
        let _ = self.publish(&MapMessage::Leave { departure });
        let mut goodbye = Goodbye::send(&mut self.swarm, departure);
        // Goodbyes or not, the rest is handled as always.
        while let Some(event) = goodbye.next(&mut self.swarm).await {
            self.on_swarm_event(event);
        }
        if departure == Departure::Shutdown {
            self.save(true);
        }
        // Every save is on disk before the goodbye completes: after a leave
        // the membership is cleared, and no late write may bring it back.
        if let Some(saver) = self.saver.take() {
            saver.finish().await;
        }
        tracing::info!(network = %self.members.network.name, "{departure}");
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<IrisBehaviourEvent>) {
        let now = Instant::now();
        // Relaying's own events end there; it sees every connection too.
        let relays = &mut self.relays;
        let Some(event) = relays.on_event(&mut self.swarm, event, &mut self.warnings) else {
            return;
        };
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                if self.members.map.is_removed(&peer_id) {
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
                        record: self.members.own.clone(),
                        seen_as: self.members.map.get(&peer_id).map(|e| e.state),
                    };
                    let membership = &mut self.swarm.behaviour_mut().membership;
                    let id = membership.send_request(&peer_id, hello.into_request());
                    self.asked.insert(id, Asked::Hello);
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
            SwarmEvent::NewListenAddr { .. } | SwarmEvent::ExpiredListenAddr { .. } => {
                self.refresh_addrs()
            }
            SwarmEvent::Behaviour(IrisBehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(IrisBehaviourEvent::Membership(event)) => {
                self.on_membership(event)
            }
            SwarmEvent::Behaviour(IrisBehaviourEvent::Calls(event)) => {
                let (members, warnings) = (&self.members, &mut self.warnings);
                let sender = |peer: &PeerId| {
                    let sender = members.sender(peer);
                    if let Sender::Stranger = sender {
                        warnings.warn("non-member", || {
                            format!("refused a call from {peer}, which is not a current member")
                        });
                    }
                    sender
                };
                let calls = &mut self.swarm.behaviour_mut().calls;
                if let Some(peer) = self.desk.on_event(calls, event, sender) {
                    let effects = self.members.heard_from(&peer);
                    self.apply(effects);
                }
            }
            _ => {}
        }
    }

    /// A map message, or a new listener on the map topic: the first of a
    /// session hears our record, and the master tells each whom it removed.
    fn on_gossip(&mut self, event: gossipsub::Event) {
        let message = match event {
            gossipsub::Event::Message { message, .. } => message,
            gossipsub::Event::Subscribed { .. } => {
                if self.unannounced {
                    self.announce();
                }
                return self.publish_removed();
            }
            gossipsub::Event::SlowPeer { peer_id, .. } => return self.warnings.dropped(peer_id),
            _ => return,
        };
        if let Some((author, decoded)) = self.topic.open(&message) {
            let effects = self.members.on_map_message(author, decoded);
            self.apply(effects);
        }
    }

    /// The membership protocol: members' requests are answered as
    /// [`Members`] decides; answers go to the probe or question they answer.
    fn on_membership(&mut self, event: request_response::Event<MembershipRequest, AnswerFrame>) {
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
                let (reply, effects) = self.members.on_request(peer, request);
                self.apply(effects);
                match reply {
                    Reply::Now(frame) => answer(&mut self.swarm, &self.ctx.metrics, channel, frame),
                    Reply::ProbeFor(target) => {
                        let (watch, around) = self.around();
                        watch.probe_for(around, target, channel);
                    }
                }
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
                let mut effects = self.members.heard_from(&peer);
                if let Some(probe) = self.watch.take_probe(&request_id) {
                    self.apply(effects);
                    return self.probe_answered(probe, Some(response));
                }
                effects.extend(match self.asked.remove(&request_id) {
                    Some(Asked::Hello) => self.members.on_hello_back(peer, &response),
                    Some(Asked::CatchUp) => self.members.on_catch_up(peer, &response),
                    // A goodbye's acknowledgement, or a late answer.
                    None => Vec::new(),
                });
                self.apply(effects);
            }
            Event::OutboundFailure {
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
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "a membership request from a peer failed: {error}");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    /// The answer to one of our probes, or its failure (`None`).
    fn probe_answered(&mut self, probe: ProbeRequest, answer: Option<AnswerFrame>) {
        let (watch, around) = self.around();
        let suspicions = watch.on_probe_answer(around, probe, answer);
        self.suspect_all(suspicions);
    }
}
