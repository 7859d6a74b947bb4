//! A rogue peer: a member of a network, with the key and a record of its
//! own, built on iris-behaviours like a node, that says whatever a test
//! tells it to. It drives its own swarm, so a test can send many requests
//! and calls at once and see every answer.

use std::time::Duration;

use futures::StreamExt;
use iris_behaviours::{
    build_swarm, derive_psk,
    libp2p::{
        identity::Keypair,
        multiaddr::Protocol,
        request_response::{self, OutboundRequestId},
        swarm::{dial_opts::DialOpts, SwarmEvent},
        Multiaddr, PeerId, StreamProtocol, Swarm,
    },
    Accepted, AnswerFrame, Asks, Call, Envelope, FileVersion, Hello, IrisBehaviour,
    IrisBehaviourEvent, Join, MapEntry, MembershipRequest, NetworkConfig, NodeRecord, Probed,
    Refusal, Role, SwarmSettings, Welcome, MAX_CONTROL_RESPONSE,
};

mod incoming;
mod relay;
use incoming::Incoming;

pub struct RoguePeer {
    swarm: Swarm<IrisBehaviour>,
    /// Its identity, to sign what it says (or to sign lies).
    pub keypair: Keypair,
    pub peer_id: PeerId,
    /// The record it joined with, which it introduces itself with.
    pub record: NodeRecord,
    /// Where others can dial it, ending in /p2p/<its peer id>.
    pub address: String,
    /// The map its welcome brought.
    pub map: Vec<MapEntry>,
    pub network: NetworkConfig,
}

impl RoguePeer {
    /// Joins the network of the node at `bootstrap` (ending in /p2p/<id>)
    /// as `name`, with the right key.
    pub async fn join(key: &str, bootstrap: &str, name: &str) -> Self {
        let mut rogue = Self::stranger(key, bootstrap, name).await;
        let member = rogue.network.master;
        let record = rogue.record.clone();
        match rogue.ask(member, Join { record }).await {
            Ok(Ok(Welcome { config, map, .. })) => {
                rogue.network = config;
                rogue.map = map;
            }
            other => panic!("the rogue was not let in: {other:?}"),
        }
        rogue
    }

    /// A key holder connected to the node at `bootstrap` (ending in
    /// /p2p/<id>, taken for the master) that never joined.
    pub async fn stranger(key: &str, bootstrap: &str, name: &str) -> Self {
        let keypair = Keypair::generate_ed25519();
        let peer_id = keypair.public().to_peer_id();
        // A rogue keeps no bounds of its own: it tests the node's.
        let settings = SwarmSettings {
            max_connections_per_peer: 1000,
            ..SwarmSettings::default()
        };
        let mut swarm = build_swarm(keypair.clone(), &derive_psk(key), &settings)
            .expect("the rogue's swarm builds");
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        let listening = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        };
        let bootstrap: Multiaddr = bootstrap.parse().unwrap();
        let Some(Protocol::P2p(member)) = bootstrap.iter().last() else {
            panic!("{bootstrap} has no peer id");
        };
        swarm
            .dial(DialOpts::peer_id(member).addresses(vec![bootstrap]).build())
            .unwrap();
        let mut record = NodeRecord {
            name: name.to_string(),
            peer_id,
            addrs: vec![listening.clone()],
            api_port: 0,
            p2p_port: 0,
            role: Role::Slave,
            relay: false,
            tags: vec![],
            executor: iris_behaviours::ExecutorState::Available,
            // It claims the worker image, so nobody ships it one.
            images: vec![iris_behaviours::ImageRef {
                id: "sha256:rogue".into(),
                tags: vec!["iris-probe:latest".into()],
            }],
            version: 1,
            audit: None,
            signed_at_ms: 0,
            signature: vec![],
            datasets: Vec::new(),
        };
        record.sign(&keypair, 1);
        let mut rogue = Self {
            map: Vec::new(),
            address: format!("{listening}/p2p/{peer_id}"),
            swarm,
            keypair,
            peer_id,
            record,
            network: NetworkConfig {
                name: String::new(),
                mode: iris_behaviours::NetworkMode::MasterSlave,
                master: member,
                created_at_ms: 0,
                signature: vec![],
            },
        };
        loop {
            match rogue.swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == member => break,
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    panic!("the rogue cannot connect: {error}")
                }
                _ => {}
            }
        }
        rogue
    }

    /// Connects to another member at `address` (ending in /p2p/<id>) and
    /// says hello with its record, as a node does, so requests can go to it
    /// directly; returns its peer id.
    pub async fn connect(&mut self, address: &str) -> PeerId {
        let address: Multiaddr = address.parse().unwrap();
        let Some(Protocol::P2p(peer)) = address.iter().last() else {
            panic!("{address} has no peer id");
        };
        if self.swarm.is_connected(&peer) {
            return peer;
        }
        self.swarm
            .dial(DialOpts::peer_id(peer).addresses(vec![address]).build())
            .unwrap();
        loop {
            match self.swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer => break,
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    panic!("the rogue cannot connect: {error}")
                }
                _ => {}
            }
        }
        let hello = Hello {
            seen_as: None,
            record: self.record.clone(),
        };
        match self.ask(peer, hello).await {
            Ok(Ok(_)) => peer,
            other => panic!("{peer} did not take the rogue's hello: {other:?}"),
        }
    }

    /// Opens `count` more connections to `peer` at `address` at once, as a
    /// flood would; returns how many the peer let stand.
    pub async fn flood_connections(&mut self, address: &str, count: usize) -> usize {
        use iris_behaviours::libp2p::swarm::dial_opts::PeerCondition;
        let address: Multiaddr = address.parse().unwrap();
        let Some(Protocol::P2p(peer)) = address.iter().last() else {
            panic!("{address} has no peer id");
        };
        for _ in 0..count {
            let dial = DialOpts::peer_id(peer)
                .condition(PeerCondition::Always)
                .addresses(vec![address.clone()])
                .build();
            self.swarm.dial(dial).unwrap();
        }
        let mut open = 0usize;
        let mut settled = 0;
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        while settled < count {
            let Ok(event) = tokio::time::timeout_at(until, self.swarm.select_next_some()).await
            else {
                break;
            };
            match event {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer => {
                    open += 1;
                    settled += 1;
                }
                SwarmEvent::ConnectionClosed { peer_id, .. } if peer_id == peer => {
                    open = open.saturating_sub(1);
                }
                SwarmEvent::OutgoingConnectionError { .. } => settled += 1,
                _ => {}
            }
        }
        // Whatever the peer closes right after the handshake, closes now.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                if let SwarmEvent::ConnectionClosed { peer_id, .. } =
                    self.swarm.select_next_some().await
                {
                    if peer_id == peer {
                        open = open.saturating_sub(1);
                    }
                }
            }
        })
        .await;
        open + usize::from(self.swarm.is_connected(&peer) && open == 0)
    }

    /// Acts as a bootstrap for one joiner: answers its join with
    /// `welcome` (whatever lie the test tells), until the join is answered
    /// (and half a second more, for the answer to go out) or `period` ends.
    /// Members are answered as a member would: their catch-up joins with
    /// the honest map (taking one for the joiner's once failed a test
    /// whose joiner's own join was then dropped), probes with an ack.
    pub async fn welcome_one(&mut self, welcome: Welcome, period: Duration) {
        let mut until = tokio::time::Instant::now() + period;
        let mut answered = false;
        while let Ok(event) = tokio::time::timeout_at(until, self.swarm.select_next_some()).await {
            match Incoming::from(event) {
                Some(Incoming::Membership {
                    peer,
                    request,
                    channel,
                    ..
                }) => {
                    let member = self.map.iter().any(|e| e.record.peer_id == peer);
                    let answer = match request {
                        MembershipRequest::Join(_) if !member => {
                            if !answered {
                                answered = true;
                                until = tokio::time::Instant::now() + Duration::from_millis(500);
                            }
                            sealed(welcome.clone())
                        }
                        request => self.as_a_member_would(request),
                    };
                    let membership = &mut self.swarm.behaviour_mut().membership;
                    let _ = membership.send_response(channel, answer);
                }
                Some(Incoming::Call { channel, .. }) => self.turn_away(channel),
                None => {}
            }
        }
    }

    /// The honest answer to a membership request: the map to a join, an
    /// ack to a probe, the rogue's record to a hello.
    fn as_a_member_would(&self, request: MembershipRequest) -> AnswerFrame {
        match request {
            MembershipRequest::Join(_) => sealed(Welcome {
                config: self.network.clone(),
                map: self.map.clone(),
                removed: Default::default(),
            }),
            MembershipRequest::Probe(_) | MembershipRequest::Leave(_) => sealed(Accepted),
            MembershipRequest::ProbeFor(_) => sealed(Probed { reached: true }),
            MembershipRequest::Hello(_) => sealed(Hello {
                seen_as: None,
                record: self.record.clone(),
            }),
        }
    }

    /// Refuses a call made to the rogue: it serves nothing.
    fn turn_away(&mut self, channel: request_response::ResponseChannel<AnswerFrame>) {
        let refusal = Refusal::failed("the rogue serves nothing");
        let calls = &mut self.swarm.behaviour_mut().calls;
        let _ = calls.send_response(channel, AnswerFrame::refused(refusal));
    }

    /// Closes the connection under the first call from `peer`, the moment
    /// it arrives and before answering it, as a node that closes an idle
    /// connection just then would; the calls after it get `answer`'s
    /// answer. Returns every call seen from `peer`, once `count` came or
    /// `period` ended. Membership requests are answered as a member would.
    pub async fn cut_the_first_call(
        &mut self,
        peer: PeerId,
        count: usize,
        period: Duration,
        answer: impl Fn(&Envelope) -> AnswerFrame,
    ) -> Vec<Envelope> {
        let first_cut = |seen: usize, call: &Envelope| (seen > 0).then(|| answer(call));
        self.answer_calls(peer, count, period, first_cut).await
    }

    /// Answers the calls from `peer` with what `answer` says, given how
    /// many came before and the call; `None` closes the connection under
    /// the call instead. Returns every call seen from `peer`, once `count`
    /// came or `period` ended. Calls from others are turned away,
    /// membership requests answered as a member would.
    pub async fn answer_calls(
        &mut self,
        peer: PeerId,
        count: usize,
        period: Duration,
        answer: impl Fn(usize, &Envelope) -> Option<AnswerFrame>,
    ) -> Vec<Envelope> {
        let mut seen = Vec::new();
        let until = tokio::time::Instant::now() + period;
        while seen.len() < count {
            let Ok(event) = tokio::time::timeout_at(until, self.swarm.select_next_some()).await
            else {
                break;
            };
            match Incoming::from(event) {
                Some(Incoming::Membership {
                    request, channel, ..
                }) => {
                    let answer = self.as_a_member_would(request);
                    let membership = &mut self.swarm.behaviour_mut().membership;
                    let _ = membership.send_response(channel, answer);
                }
                Some(Incoming::Call {
                    peer: from,
                    channel,
                    ..
                }) if from != peer => self.turn_away(channel),
                Some(Incoming::Call {
                    connection,
                    envelope,
                    channel,
                    ..
                }) => {
                    let answer = answer(seen.len(), &envelope);
                    seen.push(envelope);
                    let Some(answer) = answer else {
                        self.swarm.close_connection(connection);
                        continue;
                    };
                    let calls = &mut self.swarm.behaviour_mut().calls;
                    let _ = calls.send_response(channel, answer);
                }
                None => {}
            }
        }
        seen
    }

    /// Stays connected for `period`, answering probes (so it looks alive)
    /// and taking every other request and call without ever answering it.
    pub async fn stay_silent(&mut self, period: Duration) {
        let mut unanswered_calls = Vec::new();
        let mut unanswered = Vec::new();
        let until = tokio::time::Instant::now() + period;
        while let Ok(event) = tokio::time::timeout_at(until, self.swarm.select_next_some()).await {
            // Held, not dropped: a dropped channel tells the asker at once.
            match Incoming::from(event) {
                Some(Incoming::Membership {
                    request: MembershipRequest::Probe(_),
                    channel,
                    ..
                }) => {
                    let membership = &mut self.swarm.behaviour_mut().membership;
                    let _ = membership.send_response(channel, sealed(Accepted));
                }
                Some(Incoming::Membership { channel, .. }) => unanswered.push(channel),
                Some(Incoming::Call { channel, .. }) => unanswered_calls.push(channel),
                None => {}
            }
        }
    }

    /// Sends one membership request and waits for its answer: what was
    /// asked for, or the node's refusal; an error if no answer came.
    pub async fn ask<A: Asks>(&mut self, peer: PeerId, request: A) -> Answered<A::Answer> {
        let membership = &mut self.swarm.behaviour_mut().membership;
        let id = membership.send_request(&peer, request.into_request());
        loop {
            if let Answer::Membership(answered, answer) = self.next_answer().await {
                if answered == id {
                    return answer.and_then(|frame| A::open(&frame).map_err(|e| e.to_string()));
                }
            }
        }
    }

    /// Makes one call and waits for its answer: what was asked for, or the
    /// node's refusal; an error if no answer came.
    pub async fn call<C: Call>(&mut self, peer: PeerId, call: C) -> Answered<C::Answer> {
        self.calls(peer, vec![call]).await.remove(0)
    }

    /// Makes every call at once and returns the answers in order.
    pub async fn calls<C: Call>(
        &mut self,
        peer: PeerId,
        calls: Vec<C>,
    ) -> Vec<Answered<C::Answer>> {
        let ids: Vec<OutboundRequestId> = calls
            .into_iter()
            .map(|call| {
                let envelope = Envelope {
                    once: None,
                    request: call.into_request(),
                };
                self.swarm
                    .behaviour_mut()
                    .calls
                    .send_request(&peer, envelope)
            })
            .collect();
        let mut answers: Vec<Option<Answered<C::Answer>>> = (0..ids.len()).map(|_| None).collect();
        while answers.iter().any(Option::is_none) {
            let Answer::Call(id, answer) = self.next_answer().await else {
                continue;
            };
            let answer = answer.and_then(|frame| frame.open::<C>().map_err(|e| e.to_string()));
            if let Some(i) = ids.iter().position(|r| *r == id) {
                answers[i] = Some(answer);
            }
        }
        answers.into_iter().map(Option::unwrap).collect()
    }

    /// The next answer to a membership request or a call of the rogue's,
    /// within 2 minutes. Meanwhile members introduce themselves and probe
    /// it: it answers as a member would, so no one suspects it.
    async fn next_answer(&mut self) -> Answer {
        use request_response::{Event, Message};
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let event = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .expect("the node answered within 2 minutes");
            let event = match event {
                SwarmEvent::Behaviour(IrisBehaviourEvent::Membership(Event::Message {
                    message:
                        Message::Response {
                            request_id,
                            response,
                        },
                    ..
                })) => return Answer::Membership(request_id, Ok(response)),
                SwarmEvent::Behaviour(IrisBehaviourEvent::Membership(Event::OutboundFailure {
                    request_id,
                    error,
                    ..
                })) => return Answer::Membership(request_id, Err(error.to_string())),
                SwarmEvent::Behaviour(IrisBehaviourEvent::Calls(Event::Message {
                    message:
                        Message::Response {
                            request_id,
                            response,
                        },
                    ..
                })) => return Answer::Call(request_id, Ok(response)),
                SwarmEvent::Behaviour(IrisBehaviourEvent::Calls(Event::OutboundFailure {
                    request_id,
                    error,
                    ..
                })) => return Answer::Call(request_id, Err(error.to_string())),
                event => event,
            };
            match Incoming::from(event) {
                Some(Incoming::Membership {
                    request, channel, ..
                }) => {
                    let answer = self.as_a_member_would(request);
                    let membership = &mut self.swarm.behaviour_mut().membership;
                    let _ = membership.send_response(channel, answer);
                }
                Some(Incoming::Call { channel, .. }) => self.turn_away(channel),
                None => {}
            }
        }
    }

    /// Says `message` on the network's map topic, signed as itself, once
    /// a member listens; then stays a while so it goes out.
    pub async fn publish(&mut self, message: &iris_behaviours::MapMessage) {
        use iris_behaviours::libp2p::gossipsub::IdentTopic;
        let topic = IdentTopic::new(iris_behaviours::map_topic(&self.network.name));
        let gossip = &mut self.swarm.behaviour_mut().gossipsub;
        gossip.subscribe(&topic).unwrap();
        let bytes = iris_behaviours::codec::encode(message, 64 * 1024).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let gossip = &mut self.swarm.behaviour_mut().gossipsub;
            if gossip.publish(topic.clone(), bytes.clone()).is_ok() {
                break;
            }
            let _ = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .expect("a member subscribed within 30 s");
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                self.swarm.select_next_some().await;
            }
        })
        .await;
    }

    /// Asks `peer` for one chunk of `path` on a chunk stream of its own:
    /// the bytes, or why not (a refusal's reason, or a reset stream).
    pub async fn chunk(
        &mut self,
        peer: PeerId,
        path: &str,
        version: FileVersion,
        index: u64,
    ) -> Result<Vec<u8>, String> {
        use futures::AsyncWriteExt;
        use iris_behaviours::files::{read_chunk, write_chunk_request, ChunkRequest};
        let mut control = self.swarm.behaviour().streams.new_control();
        let request = ChunkRequest {
            path: path.to_string(),
            version,
            indices: vec![index],
        };
        let fetch = async move {
            let protocol = StreamProtocol::new(iris_behaviours::files::CHUNKS_PROTOCOL);
            let mut stream = control
                .open_stream(peer, protocol)
                .await
                .map_err(|e| e.to_string())?;
            write_chunk_request(&mut stream, &request)
                .await
                .map_err(|e| e.to_string())?;
            stream.flush().await.map_err(|e| e.to_string())?;
            let mut buf = Vec::new();
            let len = version.chunk_len(index).unwrap_or(0);
            match read_chunk(&mut stream, &mut buf, len).await {
                Ok(Ok(())) => Ok(buf),
                Ok(Err(refusal)) => Err(refusal.reason),
                Err(e) => Err(format!("stream ended: {e}")),
            }
        };
        tokio::pin!(fetch);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            tokio::select! {
                answer = &mut fetch => return answer,
                _ = self.swarm.select_next_some() => {}
                _ = tokio::time::sleep_until(deadline) => panic!("no answer to a chunk in 2 minutes"),
            }
        }
    }
}

/// What the rogue was answered: what it asked for, or the node's refusal;
/// an error if no answer came.
pub type Answered<A> = Result<Result<A, Refusal>, String>;

/// An answer to the rogue: to a membership request or to a call.
enum Answer {
    Membership(OutboundRequestId, Result<AnswerFrame, String>),
    Call(OutboundRequestId, Result<AnswerFrame, String>),
}

/// The frame of an answer the rogue gives.
fn sealed(answer: impl serde::Serialize) -> AnswerFrame {
    AnswerFrame::seal(Ok(answer), MAX_CONTROL_RESPONSE)
}

/// A file's version as the node that serves it sees it.
pub fn version_on_disk(path: &std::path::Path) -> Option<iris_behaviours::FileVersion> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(iris_behaviours::FileVersion {
        size: meta.len(),
        modified_ns: modified.as_nanos(),
        inode: meta.ino(),
    })
}
