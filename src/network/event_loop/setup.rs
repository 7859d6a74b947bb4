//! The first steps of a membership, taken in the event loop's task before
//! its loop starts, so no other code ever drives the swarm: listen, then
//! either take part at once (a new network, or one this node rejoins after
//! a restart) or dial a bootstrap member and ask to be let in. Until then
//! the node takes no part in the map: it answers peers' requests with
//! "busy" and has nothing to announce, redial or save.

use std::time::{Duration, Instant};

use futures::StreamExt;
use iris_behaviours::{
    libp2p::{
        multiaddr::Protocol,
        request_response::{self, OutboundRequestId},
        swarm::{dial_opts::DialOpts, SwarmEvent},
        Multiaddr, PeerId, Swarm,
    },
    AnswerFrame, Asks, IrisBehaviour, IrisBehaviourEvent, Join, MapEntry, MembershipRequest,
    NetworkConfig, NodeRecord, Refusal, RefusalKind, Removals, Welcome,
};

use super::{members::sign_now, warnings::Warnings};
use crate::{
    events::EventKind,
    network::{advertised, classify_dial_error, map::NetworkMap, NetworkContext, NetworkError},
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
        /// The master's signed list, checked.
        removals: Removals,
    },
    /// A network to join through the member at `bootstrap`, which sends the
    /// config and the map; with `network_id` (a ticket's), only that one.
    Join {
        bootstrap: Multiaddr,
        peer: PeerId,
        network_id: Option<String>,
    },
}

/// What a setup ends with: the network to take part in, its map, and
/// what to tell the node's listeners.
pub(super) struct Joined {
    pub network: NetworkConfig,
    pub map: NetworkMap,
    pub event: Option<EventKind>,
}

/// The setup of one membership, on the swarm it borrows from the loop.
pub(super) struct Setup<'a> {
    ctx: &'a NetworkContext,
    swarm: &'a mut Swarm<IrisBehaviour>,
    warnings: &'a mut Warnings,
    /// Our record: its addresses and port are known once listening.
    own: &'a mut NodeRecord,
    /// The config to create or resume (a stand-in while joining).
    network: &'a NetworkConfig,
    phase: Phase,
}

enum Phase {
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
        /// again, as [`super::call_desk`] sends calls again.
        attempts: u32,
        deadline: Instant,
    },
    /// Set up, or failed.
    Done(Result<Box<Joined>, NetworkError>),
}

impl<'a> Setup<'a> {
    pub(super) fn new(
        ctx: &'a NetworkContext,
        swarm: &'a mut Swarm<IrisBehaviour>,
        warnings: &'a mut Warnings,
        own: &'a mut NodeRecord,
        network: &'a NetworkConfig,
    ) -> Self {
        Self {
            ctx,
            swarm,
            warnings,
            own,
            network,
            phase: Phase::Done(Err(NetworkError::Stopped)),
        }
    }

    /// Listens, then sets up the membership `goal` asks for.
    pub(super) async fn run(
        mut self,
        goal: Goal,
        previous_port: Option<u16>,
    ) -> Result<Joined, NetworkError> {
        self.start_listening(goal, previous_port);
        loop {
            let deadline = match &self.phase {
                Phase::Done(_) => break,
                Phase::Listening {
                    deadline,
                    settled_at,
                    ..
                } => settled_at.map_or(*deadline, |s| s.min(*deadline)),
                Phase::Joining { deadline, .. } => *deadline,
            };
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                _ = tokio::time::sleep_until(deadline.into()) => self.on_timer(),
            }
        }
        match self.phase {
            Phase::Done(outcome) => outcome.map(|joined| *joined),
            _ => unreachable!("the loop ends only when the setup is done"),
        }
    }

    /// Starts listening on the configured port, or with port 0 on the port
    /// this node had before its restart (so the addresses others saved
    /// still work).
    fn start_listening(&mut self, goal: Goal, previous_port: Option<u16>) {
        let listen = |port| Multiaddr::from(self.ctx.config.listen).with(Protocol::Tcp(port));
        let reused = match previous_port {
            Some(port) if self.ctx.config.p2p_port == 0 && port != 0 => {
                self.swarm.listen_on(listen(port)).is_ok()
            }
            _ => false,
        };
        if !reused {
            let addr = listen(self.ctx.config.p2p_port);
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

    /// The setup's timer fired: the listener's burst is over, or a step
    /// took too long.
    fn on_timer(&mut self) {
        let now = Instant::now();
        match std::mem::replace(&mut self.phase, Phase::Done(Err(NetworkError::Stopped))) {
            Phase::Listening {
                goal,
                addrs,
                settled_at: Some(settled),
                ..
            } if now >= settled => self.finish_listening(goal, addrs),
            Phase::Listening { deadline, .. } if now >= deadline => {
                let addr = Multiaddr::from(self.ctx.config.listen);
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
    fn on_event(&mut self, event: SwarmEvent<IrisBehaviourEvent>) {
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
                let addr = Multiaddr::from(self.ctx.config.listen);
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
            ) => self.warnings.incoming_failed(&send_back_addr, &error),
            (_, SwarmEvent::Behaviour(IrisBehaviourEvent::Membership(event))) => {
                self.on_membership(event)
            }
            // Gossip (not subscribed yet), pings, other connections: there
            // is no map to update before this node is a member.
            _ => {}
        }
    }

    fn on_membership(&mut self, event: request_response::Event<MembershipRequest, AnswerFrame>) {
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
            .unwrap_or(self.ctx.config.p2p_port);
        // Whether others can dial us is found out later ([`super::relays`]).
        self.own.addrs = advertised(self.ctx, addrs, true);
        sign_now(self.own, &self.ctx.keypair);
        match goal {
            Goal::Create => {
                let event = EventKind::NetworkCreated {
                    network: self.network.name.clone(),
                };
                self.done(Joined {
                    network: self.network.clone(),
                    map: NetworkMap::new(self.network, self.own.clone()),
                    event: Some(event),
                })
            }
            Goal::Resume {
                map,
                removed,
                removals,
            } => {
                let mut resumed = NetworkMap::new(self.network, self.own.clone());
                resumed.load(map, removed);
                resumed.keep_removals(removals);
                tracing::info!(network = %self.network.name, "rejoining network");
                self.done(Joined {
                    network: self.network.clone(),
                    map: resumed,
                    event: None,
                })
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
        removed: Removals,
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
        // Unsigned, a bootstrap could make us refuse members of its choosing.
        if let Err(reason) = removed.verify(&config.master) {
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
        map.load(entries, removed.peers.clone());
        map.keep_removals(removed);
        if map.get(&config.master).is_none() {
            return self.fail(NetworkError::BadWelcome {
                peer,
                reason: "the map has no master".into(),
            });
        }
        tracing::info!(network = %config.name, via = %peer, "joined network");
        let event = EventKind::NetworkJoined {
            network: config.name.clone(),
            via: peer,
        };
        self.done(Joined {
            network: config,
            map,
            event: Some(event),
        })
    }

    fn done(&mut self, joined: Joined) {
        self.phase = Phase::Done(Ok(Box::new(joined)));
    }

    fn fail(&mut self, error: NetworkError) {
        self.phase = Phase::Done(Err(error));
    }
}
