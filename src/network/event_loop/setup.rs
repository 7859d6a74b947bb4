//! The first steps of a membership, taken by the event loop itself, so no
//! other code ever drives the swarm: listen, then either take part at once
//! (a new network, or one this node rejoins after a restart) or dial a
//! bootstrap member and ask to be let in. Until then the loop takes no part
//! in the map: it answers peers' requests with "busy" and has nothing to
//! announce, redial or save.

use std::time::{Duration, Instant};

use iris_behaviours::{
    libp2p::{
        multiaddr::Protocol,
        request_response::{self, OutboundRequestId},
        swarm::{dial_opts::DialOpts, SwarmEvent},
        Multiaddr, PeerId,
    },
    AnswerFrame, Asks, IrisBehaviourEvent, Join, MapEntry, MembershipRequest, NetworkConfig,
    Refusal, RefusalKind, Welcome,
};

use super::{topic, EventLoop};
use crate::{
    events::EventKind,
    network::{advertised, classify_dial_error, map::NetworkMap, NetworkError},
};

/// How long the listener may take to report its addresses.
const LISTEN_DEADLINE: Duration = Duration::from_secs(5);
/// A listener on 0.0.0.0 reports an address per interface in one burst:
/// once none came for this long, the burst is over.
const LISTEN_SETTLE: Duration = Duration::from_millis(50);

/// What the new membership is for.
pub(crate) enum Goal {
    /// A network this node creates: its config is known.
    Create,
    /// A network this node belonged to when it stopped, with the map it saved.
    Resume {
        map: Vec<MapEntry>,
        removed: Vec<PeerId>,
    },
    /// A network to join through the member at `bootstrap`, which sends the
    /// config and the map; with `network_id` (a ticket's), only that one.
    Join {
        bootstrap: Multiaddr,
        peer: PeerId,
        network_id: Option<String>,
    },
}

pub(super) enum Phase {
    /// Listening was asked for; the addresses are coming in.
    Listening {
        goal: Goal,
        addrs: Vec<Multiaddr>,
        deadline: Instant,
        settled_at: Option<Instant>,
    },
    /// Dialed the bootstrap; waiting to connect, then for its welcome.
    Joining {
        bootstrap: Multiaddr,
        peer: PeerId,
        network_id: Option<String>,
        request: Option<OutboundRequestId>,
        /// Joins sent so far: one whose connection closed under it is sent
        /// again ([`super::resend`]).
        attempts: u32,
        deadline: Instant,
    },
    /// In the network.
    Member,
    /// Setting up failed and the caller has been told why.
    Failed,
}

impl EventLoop {
    /// Starts listening on the configured port, or with port 0 on the port
    /// this node had before its restart (so the addresses others saved
    /// still work).
    pub(super) fn start_listening(&mut self, goal: Goal, previous_port: Option<u16>) {
        let listen = |port| Multiaddr::from(self.ctx.config.p2p.listen).with(Protocol::Tcp(port));
        let reused = match previous_port {
            Some(port) if self.ctx.config.p2p.port == 0 && port != 0 => {
                self.swarm.listen_on(listen(port)).is_ok()
            }
            _ => false,
        };
        if !reused {
            let addr = listen(self.ctx.config.p2p.port);
            if let Err(e) = self.swarm.listen_on(addr.clone()) {
                return self.fail(NetworkError::Listen {
                    addr,
                    reason: crate::network::error_chain(&e),
                });
            }
        }
        self.phase = Phase::Listening {
            goal,
            addrs: Vec::new(),
            deadline: Instant::now() + LISTEN_DEADLINE,
            settled_at: None,
        };
    }

    pub(super) fn is_member(&self) -> bool {
        matches!(self.phase, Phase::Member)
    }

    pub(super) fn has_failed(&self) -> bool {
        matches!(self.phase, Phase::Failed)
    }

    /// When the setup's next step is due, if it is under way.
    pub(super) fn setup_deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Listening {
                deadline,
                settled_at,
                ..
            } => Some(settled_at.map_or(*deadline, |s| s.min(*deadline))),
            Phase::Joining { deadline, .. } => Some(*deadline),
            Phase::Member | Phase::Failed => None,
        }
    }

    /// The setup's timer fired: the listener's burst is over, or a step
    /// took too long.
    pub(super) fn on_setup_timer(&mut self) {
        let now = Instant::now();
        match std::mem::replace(&mut self.phase, Phase::Failed) {
            Phase::Listening {
                goal,
                addrs,
                settled_at: Some(settled),
                ..
            } if now >= settled => self.finish_listening(goal, addrs),
            Phase::Listening { deadline, .. } if now >= deadline => {
                let addr = Multiaddr::from(self.ctx.config.p2p.listen);
                self.fail(NetworkError::Listen {
                    addr,
                    reason: "no address after 5 s".into(),
                })
            }
            Phase::Joining { peer, deadline, .. } if now >= deadline => {
                self.fail(NetworkError::NoAnswer {
                    peer,
                    detail: "timed out".into(),
                })
            }
            // Not due yet.
            phase => self.phase = phase,
        }
    }

    /// Events before this node is a member: only the setup's own matter.
    pub(super) fn on_setup_event(&mut self, event: SwarmEvent<IrisBehaviourEvent>) {
        match (&mut self.phase, event) {
            (
                Phase::Listening {
                    addrs, settled_at, ..
                },
                SwarmEvent::NewListenAddr { address, .. },
            ) => {
                addrs.push(address);
                *settled_at = Some(Instant::now() + LISTEN_SETTLE);
            }
            (
                Phase::Listening { .. },
                SwarmEvent::ListenerError { error, .. }
                | SwarmEvent::ListenerClosed {
                    reason: Err(error), ..
                },
            ) => {
                let addr = Multiaddr::from(self.ctx.config.p2p.listen);
                self.fail(NetworkError::Listen {
                    addr,
                    reason: error.to_string(),
                })
            }
            (
                Phase::Joining {
                    peer,
                    request: None,
                    ..
                },
                SwarmEvent::ConnectionEstablished { peer_id, .. },
            ) if peer_id == *peer => self.send_join(),
            (
                Phase::Joining {
                    bootstrap, peer, ..
                },
                SwarmEvent::OutgoingConnectionError {
                    peer_id: Some(p),
                    error,
                    ..
                },
            ) if p == *peer => {
                let error = classify_dial_error(bootstrap, &error);
                self.fail(error)
            }
            (
                _,
                SwarmEvent::IncomingConnectionError {
                    send_back_addr,
                    error,
                    ..
                },
            ) => self.incoming_failed(&send_back_addr, &error),
            (_, SwarmEvent::Behaviour(IrisBehaviourEvent::Membership(event))) => {
                self.on_setup_membership(event)
            }
            // Gossip (not subscribed yet), pings, other connections: there
            // is no map to update before this node is a member.
            _ => {}
        }
    }

    fn on_setup_membership(
        &mut self,
        event: request_response::Event<MembershipRequest, AnswerFrame>,
    ) {
        use request_response::{Event, Message};
        let Phase::Joining {
            peer,
            request,
            network_id,
            ..
        } = &self.phase
        else {
            if let Event::Message {
                message: Message::Request { channel, .. },
                ..
            } = event
            {
                let busy = Refusal::new(RefusalKind::Busy, "this node is not in the network yet");
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .membership
                    .send_response(channel, AnswerFrame::refused(busy));
            }
            return;
        };
        let (peer, request, network_id) = (*peer, *request, network_id.clone());
        match event {
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } if Some(request_id) == request => match Join::open(&response) {
                Ok(Ok(Welcome {
                    config,
                    map,
                    removed,
                })) => self.welcomed(peer, config, map, removed, network_id),
                Ok(Err(refusal)) => self.fail(NetworkError::Refused {
                    peer,
                    reason: refusal.reason,
                }),
                Err(e) => self.fail(NetworkError::BadWelcome {
                    peer,
                    reason: format!("not a welcome: {e}"),
                }),
            },
            Event::OutboundFailure {
                request_id, error, ..
            } if Some(request_id) == request => self.join_failed(&error),
            Event::Message {
                message: Message::Request { channel, .. },
                ..
            } => {
                let busy = Refusal::new(RefusalKind::Busy, "this node is still joining");
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .membership
                    .send_response(channel, AnswerFrame::refused(busy));
            }
            _ => {}
        }
    }

    /// The listener's addresses are in: announce them, then take part or
    /// go and ask to.
    fn finish_listening(&mut self, goal: Goal, addrs: Vec<Multiaddr>) {
        self.own.p2p_port = addrs
            .iter()
            .flat_map(|a| a.iter())
            .find_map(|p| match p {
                Protocol::Tcp(port) => Some(port),
                _ => None,
            })
            .unwrap_or(self.ctx.config.p2p.port);
        self.own.addrs = advertised(&self.ctx, addrs);
        self.sign_own();
        match goal {
            Goal::Create => {
                self.map = NetworkMap::new(&self.network, self.own.clone());
                let event = EventKind::NetworkCreated {
                    network: self.network.name.clone(),
                };
                self.become_member(event)
            }
            Goal::Resume { map, removed } => {
                self.map = NetworkMap::new(&self.network, self.own.clone());
                self.map.load(map, removed);
                tracing::info!(network = %self.network.name, "rejoining network");
                self.phase = Phase::Member;
                self.take_part();
            }
            Goal::Join {
                bootstrap,
                peer,
                network_id,
            } => {
                let dial = DialOpts::peer_id(peer)
                    .addresses(vec![bootstrap.clone()])
                    .build();
                if let Err(e) = self.swarm.dial(dial) {
                    return self.fail(classify_dial_error(&bootstrap, &e));
                }
                self.phase = Phase::Joining {
                    bootstrap,
                    peer,
                    network_id,
                    request: None,
                    attempts: 0,
                    deadline: Instant::now()
                        + self.ctx.settings.handshake_timeout
                        + crate::network::JOIN_ANSWER_TIMEOUT,
                };
            }
        }
    }

    /// Asks the bootstrap, now connected, to let us in.
    fn send_join(&mut self) {
        let join = Join {
            record: self.own.clone(),
        }
        .into_request();
        if let Phase::Joining {
            peer,
            request,
            attempts,
            ..
        } = &mut self.phase
        {
            *request = Some(
                self.swarm
                    .behaviour_mut()
                    .membership
                    .send_request(peer, join),
            );
            *attempts += 1;
        }
    }

    /// Our join failed without an answer. If its connection closed under
    /// it, it is sent again (a join is safe to repeat): at once on another
    /// connection, or once a new one is dialed.
    fn join_failed(&mut self, error: &request_response::OutboundFailure) {
        let Phase::Joining {
            bootstrap,
            peer,
            request,
            attempts,
            ..
        } = &mut self.phase
        else {
            return;
        };
        let (bootstrap, peer) = (bootstrap.clone(), *peer);
        if !super::call_desk::lost_with_its_connection(error)
            || *attempts >= super::call_desk::MAX_ATTEMPTS
        {
            let detail = match *attempts {
                1 => error.to_string(),
                n => format!("{error} (sent {n} times)"),
            };
            return self.fail(NetworkError::NoAnswer { peer, detail });
        }
        tracing::debug!(%peer, "the join's connection closed under it ({error}); asking again");
        *request = None;
        if self.swarm.is_connected(&peer) {
            return self.send_join();
        }
        let dial = DialOpts::peer_id(peer)
            .addresses(vec![bootstrap.clone()])
            .build();
        if let Err(e) = self.swarm.dial(dial) {
            self.fail(classify_dial_error(&bootstrap, &e));
        }
    }

    /// The bootstrap let us in. Its config must be signed by the master it
    /// names, and be the ticket's network if there is a ticket; without
    /// one, who the master is was taken on trust from the bootstrap. Member
    /// records count only as their own nodes signed them.
    fn welcomed(
        &mut self,
        peer: PeerId,
        config: NetworkConfig,
        entries: Vec<MapEntry>,
        removed: Vec<PeerId>,
        network_id: Option<String>,
    ) {
        if config.master == self.ctx.peer_id() {
            return self.fail(NetworkError::BadWelcome {
                peer,
                reason: "it names this node as the master of a network it never created".into(),
            });
        }
        if let Err(reason) = config.verify() {
            return self.fail(NetworkError::BadWelcome { peer, reason });
        }
        match network_id {
            Some(pinned) if pinned != config.id() => {
                return self.fail(NetworkError::BadWelcome {
                    peer,
                    reason: format!(
                        "it describes network {} (master {}), not the network {pinned} that \
                         the ticket names",
                        config.id(),
                        config.master
                    ),
                });
            }
            Some(_) => {}
            None => tracing::warn!(
                master = %config.master,
                "joined by address, not by ticket: who the master is was taken on trust from the bootstrap"
            ),
        }
        let entries: Vec<MapEntry> = entries
            .into_iter()
            .filter(|e| match e.record.verify() {
                Ok(()) => true,
                Err(reason) => {
                    tracing::warn!(%peer, "the welcome holds a record that does not verify: {reason}");
                    false
                }
            })
            .collect();
        let mut map = NetworkMap::new(&config, self.own.clone());
        map.load(entries, removed);
        if map.get(&config.master).is_none() {
            return self.fail(NetworkError::BadWelcome {
                peer,
                reason: "the map has no master".into(),
            });
        }
        self.topic = topic(&config);
        self.network = config;
        self.map = map;
        tracing::info!(network = %self.network.name, via = %peer, "joined network");
        let event = EventKind::NetworkJoined {
            network: self.network.name.clone(),
            via: peer,
        };
        self.become_member(event)
    }

    fn become_member(&mut self, event: EventKind) {
        self.phase = Phase::Member;
        self.ctx.events.emit(event);
        self.take_part();
    }

    /// Subscribes to the map, reaches for its neighbours, announces itself
    /// (now, or once a gossip peer listens), saves the map and hands the
    /// caller its snapshot.
    fn take_part(&mut self) {
        if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&self.topic) {
            tracing::error!("cannot subscribe to the map topic: {e}");
        }
        // The only connection so far is the one to a bootstrap we dialed
        // (it was made before the loop tracked dials): ours to close.
        let connected: Vec<_> = self.swarm.connected_peers().copied().collect();
        self.dialed.extend(connected);
        self.update_neighbours();
        self.maintain_connections();
        self.announce();
        self.dirty = true;
        self.save_if_dirty();
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Ok(self.snapshot()));
        }
    }

    fn fail(&mut self, error: NetworkError) {
        self.phase = Phase::Failed;
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Err(error));
        }
    }
}
