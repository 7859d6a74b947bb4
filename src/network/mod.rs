//! The node's side of the overlay: setting up a membership (create, join,
//! resume) and the handle the rest of the node uses to talk to it.
//!
//! One task owns the libp2p `Swarm` ([`event_loop`]); everything else holds a
//! cloneable [`NetworkClient`] that sends it commands over a channel and
//! awaits the reply, as in rust-libp2p's file-sharing example. There are no
//! locks around the swarm.

mod event_loop;
pub mod map;
mod saver;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use iris_behaviours::{
    behaviour::BuildError,
    build_swarm,
    libp2p::{
        identity::Keypair,
        multiaddr::Protocol,
        pnet::PreSharedKey,
        request_response,
        swarm::{dial_opts::DialOpts, DialError, SwarmEvent},
        Multiaddr, PeerId, Swarm,
    },
    transport::HandshakeError,
    ControlRequest, ControlResponse, Departure, ExecutorState, ImageRef, IrisBehaviour,
    IrisBehaviourEvent, MapEntry, NetworkConfig, NetworkMode, NodeRecord, RefusalKind, Role,
    SwarmSettings,
};
use tokio::sync::{mpsc, oneshot};

use crate::{
    config::NodeConfig,
    events::{EventKind, Events},
    store::{SavedMembership, Store, StoreError},
};
use event_loop::EventLoop;
use map::NetworkMap;

/// How long a bootstrap peer may take to answer a join.
const JOIN_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What this node can run, as its map record shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub executor: ExecutorState,
    pub images: Vec<ImageRef>,
}

/// What a network session needs from the node that runs it.
pub struct NetworkContext {
    pub keypair: Keypair,
    pub config: NodeConfig,
    pub store: Store,
    pub events: Events,
    pub settings: SwarmSettings,
    /// What this node can run; its record follows every change.
    pub capabilities: tokio::sync::watch::Sender<Capabilities>,
    /// Where requests about jobs go; the event loop sends back the answer.
    pub inbound: mpsc::Sender<Inbound>,
}

/// A request from a peer that the node's router, not the event loop,
/// answers: who sent it (the connection authenticated the peer id) and
/// whether that is the network's master.
pub struct Inbound {
    pub peer: PeerId,
    pub from_master: bool,
    pub request: ControlRequest,
    pub reply: oneshot::Sender<ControlResponse>,
}

impl NetworkContext {
    pub fn peer_id(&self) -> PeerId {
        self.keypair.public().to_peer_id()
    }
}

/// Why a membership could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("cannot listen for peers on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("bootstrap address {0} must end in /p2p/<peer id>")]
    NoPeerId(Multiaddr),
    #[error("handshake with {addr} failed: wrong network key? ({detail})")]
    WrongKey { addr: Multiaddr, detail: String },
    #[error("cannot connect to {addr}: {detail}")]
    Unreachable { addr: Multiaddr, detail: String },
    #[error("join refused by {peer}: {reason}")]
    Refused { peer: PeerId, reason: String },
    #[error("peer {peer} did not answer: {detail}")]
    NoAnswer { peer: PeerId, detail: String },
    #[error("{reason}")]
    PeerRefused {
        peer: PeerId,
        kind: RefusalKind,
        reason: String,
    },
    #[error("bootstrap peer {peer} sent an invalid welcome: {reason}")]
    BadWelcome { peer: PeerId, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("the network task has stopped")]
    Stopped,
}

/// A moment's picture of the membership.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub network: NetworkConfig,
    pub own: NodeRecord,
    pub map: Vec<MapEntry>,
    /// Peers this node has a direct connection to.
    pub connected: Vec<PeerId>,
}

pub(crate) enum Command {
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
    },
    /// Say goodbye, then stop the event loop.
    Depart {
        departure: Departure,
        reply: oneshot::Sender<()>,
    },
    /// Send a request to a peer and hand back its answer.
    Request {
        peer: PeerId,
        request: Box<ControlRequest>,
        reply: oneshot::Sender<Result<ControlResponse, String>>,
    },
}

/// The handle to a running membership. Cheap to clone.
#[derive(Clone)]
pub struct NetworkClient {
    commands: mpsc::Sender<Command>,
}

impl NetworkClient {
    pub async fn snapshot(&self) -> Result<Snapshot, NetworkError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Snapshot { reply })
            .await
            .map_err(|_| NetworkError::Stopped)?;
        rx.await.map_err(|_| NetworkError::Stopped)
    }

    /// Sends `request` to `peer` and waits for the answer. A `Refused`
    /// answer comes back as an error carrying the peer's reason.
    pub async fn request(
        &self,
        peer: PeerId,
        request: ControlRequest,
    ) -> Result<ControlResponse, NetworkError> {
        let (reply, rx) = oneshot::channel();
        let command = Command::Request {
            peer,
            request: Box::new(request),
            reply,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| NetworkError::Stopped)?;
        match rx.await.map_err(|_| NetworkError::Stopped)? {
            Ok(ControlResponse::Refused { kind, reason }) => {
                Err(NetworkError::PeerRefused { peer, kind, reason })
            }
            Ok(response) => Ok(response),
            Err(detail) => Err(NetworkError::NoAnswer { peer, detail }),
        }
    }

    /// Tells the other members we are going and stops the session. Returns
    /// once the goodbyes are delivered or a short deadline passed.
    pub async fn depart(&self, departure: Departure) -> Result<(), NetworkError> {
        let (reply, rx) = oneshot::channel();
        let command = Command::Depart { departure, reply };
        self.commands
            .send(command)
            .await
            .map_err(|_| NetworkError::Stopped)?;
        rx.await.map_err(|_| NetworkError::Stopped)
    }
}

/// Creates a network with this node as its genesis and master.
pub async fn create(
    ctx: Arc<NetworkContext>,
    name: String,
    mode: NetworkMode,
    key: &str,
) -> Result<(NetworkClient, Snapshot), NetworkError> {
    let psk = iris_behaviours::derive_psk(key);
    let (mut swarm, addrs) = start_swarm(&ctx, psk, None).await?;
    let network = NetworkConfig {
        name,
        mode,
        master: ctx.peer_id(),
        created_at_ms: crate::now_ms(),
    };
    let own = own_record(&ctx, Role::Master, addrs, 0);
    let map = NetworkMap::new(&network, own.clone(), Instant::now());
    ctx.store.save_psk(&psk)?;
    subscribe(&mut swarm, &network);
    tracing::info!(network = %network.name, psk = %psk.fingerprint(), "created network");
    ctx.events.emit(EventKind::NetworkCreated {
        network: network.name.clone(),
    });
    Ok(spawn(ctx, swarm, network, own, map))
}

/// Joins the network that the node at `bootstrap` belongs to.
pub async fn join(
    ctx: Arc<NetworkContext>,
    key: &str,
    bootstrap: Multiaddr,
) -> Result<(NetworkClient, Snapshot), NetworkError> {
    let Some(Protocol::P2p(peer)) = bootstrap.iter().last() else {
        return Err(NetworkError::NoPeerId(bootstrap));
    };
    let psk = iris_behaviours::derive_psk(key);
    let (mut swarm, addrs) = start_swarm(&ctx, psk, None).await?;
    let own = own_record(&ctx, Role::Slave, addrs, 0);
    let deadline = ctx.settings.handshake_timeout + JOIN_ANSWER_TIMEOUT;
    let (network, entries) =
        ask_to_join(&mut swarm, &bootstrap, peer, own.clone(), deadline).await?;
    if network.master == ctx.peer_id() {
        return Err(NetworkError::BadWelcome {
            peer,
            reason: "it names this node as the master of a network it never created".into(),
        });
    }
    let now = Instant::now();
    let mut map = NetworkMap::new(&network, own.clone(), now);
    map.load(entries, now);
    if map.get(&network.master).is_none() {
        return Err(NetworkError::BadWelcome {
            peer,
            reason: "the map has no master".into(),
        });
    }
    ctx.store.save_psk(&psk)?;
    subscribe(&mut swarm, &network);
    tracing::info!(network = %network.name, via = %peer, psk = %psk.fingerprint(), "joined network");
    ctx.events.emit(EventKind::NetworkJoined {
        network: network.name.clone(),
        via: peer,
    });
    Ok(spawn(ctx, swarm, network, own, map))
}

/// Rejoins the network this node belonged to when it stopped.
pub async fn resume(
    ctx: Arc<NetworkContext>,
    membership: SavedMembership,
) -> Result<(NetworkClient, Snapshot), NetworkError> {
    let psk = ctx.store.load_psk()?;
    let previous_port = membership
        .map
        .iter()
        .find(|e| e.record.peer_id == ctx.peer_id())
        .map(|e| e.record.p2p_port);
    let (mut swarm, addrs) = start_swarm(&ctx, psk, previous_port).await?;
    let network = membership.network;
    let role = if network.master == ctx.peer_id() {
        Role::Master
    } else {
        Role::Slave
    };
    let own = own_record(&ctx, role, addrs, membership.own_version);
    let now = Instant::now();
    let mut map = NetworkMap::new(&network, own.clone(), now);
    map.load(membership.map, now);
    subscribe(&mut swarm, &network);
    tracing::info!(network = %network.name, psk = %psk.fingerprint(), "rejoining network");
    Ok(spawn(ctx, swarm, network, own, map))
}

fn spawn(
    ctx: Arc<NetworkContext>,
    swarm: Swarm<IrisBehaviour>,
    network: NetworkConfig,
    own: NodeRecord,
    map: NetworkMap,
) -> (NetworkClient, Snapshot) {
    let snapshot = Snapshot {
        network: network.clone(),
        own: own.clone(),
        map: map.entries(),
        connected: Vec::new(),
    };
    let (commands, receiver) = mpsc::channel(64);
    let event_loop = EventLoop::new(ctx, swarm, receiver, network, own, map);
    tokio::spawn(event_loop.run());
    (NetworkClient { commands }, snapshot)
}

fn subscribe(swarm: &mut Swarm<IrisBehaviour>, network: &NetworkConfig) {
    let topic = event_loop::topic(network);
    if let Err(e) = swarm.behaviour_mut().gossipsub.subscribe(&topic) {
        tracing::error!("cannot subscribe to the map topic: {e}");
    }
}

/// A version higher than `previous` that also keeps growing across a lost
/// state file, as long as the clock does.
fn next_version(previous: u64) -> u64 {
    (previous + 1).max(crate::now_ms())
}

fn own_record(
    ctx: &NetworkContext,
    role: Role,
    addrs: Vec<Multiaddr>,
    previous: u64,
) -> NodeRecord {
    let p2p_port = addrs
        .iter()
        .find_map(|a| {
            a.iter().find_map(|p| {
                if let Protocol::Tcp(port) = p {
                    Some(port)
                } else {
                    None
                }
            })
        })
        .unwrap_or(ctx.config.p2p.port);
    NodeRecord {
        name: ctx.config.name.clone(),
        peer_id: ctx.peer_id(),
        addrs: advertised(ctx, addrs),
        api_port: ctx.config.api.port,
        p2p_port,
        role,
        tags: ctx.config.tags.clone(),
        executor: ctx.capabilities.borrow().executor.clone(),
        images: ctx.capabilities.borrow().images.clone(),
        version: next_version(previous),
    }
}

/// The addresses to put in our record: configured external ones first, then
/// what we listen on.
fn advertised(ctx: &NetworkContext, listening: Vec<Multiaddr>) -> Vec<Multiaddr> {
    let mut addrs: Vec<Multiaddr> = ctx
        .config
        .p2p
        .external
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let any_reachable = listening.iter().any(|a| worth_announcing(ctx, a));
    for addr in listening {
        // A machine with no network but loopback still announces that.
        if !addrs.contains(&addr) && (worth_announcing(ctx, &addr) || !any_reachable) {
            addrs.push(addr);
        }
    }
    addrs.truncate(iris_behaviours::MAX_ADDRS);
    addrs
}

/// A node listening on all interfaces also listens on loopback, but
/// 127.0.0.1 on another machine (or in another container) is that peer
/// itself: announce loopback only when it is all we listen on.
pub(crate) fn worth_announcing(ctx: &NetworkContext, addr: &Multiaddr) -> bool {
    let loopback = addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    });
    !loopback || ctx.config.p2p.listen.is_loopback()
}

/// Builds the swarm and starts listening; returns the addresses it listens on.
///
/// With port 0 in the config, a node that rejoins asks for the port it had
/// before (`previous_port`), so the addresses the others saved still work.
async fn start_swarm(
    ctx: &NetworkContext,
    psk: PreSharedKey,
    previous_port: Option<u16>,
) -> Result<(Swarm<IrisBehaviour>, Vec<Multiaddr>), NetworkError> {
    let mut swarm = build_swarm(ctx.keypair.clone(), psk, &ctx.settings)?;
    let listen = |port| Multiaddr::from(ctx.config.p2p.listen).with(Protocol::Tcp(port));
    let reused = match previous_port {
        Some(port) if ctx.config.p2p.port == 0 && port != 0 => {
            swarm.listen_on(listen(port)).is_ok()
        }
        _ => false,
    };
    let addr = listen(ctx.config.p2p.port);
    if !reused {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetworkError::Listen {
                addr: addr.clone(),
                reason: error_chain(&e),
            })?;
    }
    // The listener reports its addresses (one per interface for 0.0.0.0) in
    // one burst once polled: take the first, then whatever follows at once.
    let mut addrs = Vec::new();
    let mut wait = Duration::from_secs(5);
    loop {
        match tokio::time::timeout(wait, swarm.select_next_some()).await {
            Ok(SwarmEvent::NewListenAddr { address, .. }) => {
                addrs.push(address);
                wait = Duration::from_millis(50);
            }
            Ok(SwarmEvent::ListenerClosed { reason: Err(e), .. })
            | Ok(SwarmEvent::ListenerError { error: e, .. }) => {
                return Err(NetworkError::Listen {
                    addr,
                    reason: e.to_string(),
                });
            }
            Ok(_) => {}
            Err(_) if !addrs.is_empty() => break,
            Err(_) => {
                return Err(NetworkError::Listen {
                    addr,
                    reason: "no address after 5 s".into(),
                })
            }
        }
    }
    Ok((swarm, addrs))
}

/// Dials the bootstrap peer and asks to join; returns the network config and
/// map from its welcome.
async fn ask_to_join(
    swarm: &mut Swarm<IrisBehaviour>,
    addr: &Multiaddr,
    peer: PeerId,
    record: NodeRecord,
    deadline: Duration,
) -> Result<(NetworkConfig, Vec<MapEntry>), NetworkError> {
    let dial = DialOpts::peer_id(peer)
        .addresses(vec![addr.clone()])
        .build();
    swarm
        .dial(dial)
        .map_err(|e| classify_dial_error(addr, &e))?;
    let mut join_request = None;
    let deadline = tokio::time::Instant::now() + deadline;
    loop {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| NetworkError::NoAnswer {
                peer,
                detail: "timed out".into(),
            })?;
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. }
                if peer_id == peer && join_request.is_none() =>
            {
                let request = ControlRequest::Join {
                    record: record.clone(),
                };
                join_request = Some(swarm.behaviour_mut().control.send_request(&peer, request));
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(p),
                error,
                ..
            } if p == peer => {
                return Err(classify_dial_error(addr, &error));
            }
            SwarmEvent::Behaviour(IrisBehaviourEvent::Control(event)) => match event {
                request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                } if Some(request_id) == join_request => {
                    return match response {
                        ControlResponse::Welcome { config, map } => Ok((config, map)),
                        ControlResponse::Refused { reason, .. } => {
                            Err(NetworkError::Refused { peer, reason })
                        }
                        other => Err(NetworkError::BadWelcome {
                            peer,
                            reason: format!("unexpected answer {other:?}"),
                        }),
                    };
                }
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                } if Some(request_id) == join_request => {
                    return Err(NetworkError::NoAnswer {
                        peer,
                        detail: error.to_string(),
                    });
                }
                _ => {}
            },
            _ => {}
        }
    }
}

/// Turns libp2p's dial errors into what a user can act on. A wrong network
/// key gives no error of its own: the far side reads garbage and hangs up,
/// or says nothing until our handshake timeout. Dialing with
/// multistream's lazy mode, we notice only once noise has started.
fn classify_dial_error(addr: &Multiaddr, error: &DialError) -> NetworkError {
    use iris_behaviours::transport::HandshakeStage::*;
    let addr = addr.clone();
    let DialError::Transport(errors) = error else {
        let detail = match error {
            DialError::WrongPeerId { obtained, .. } => {
                format!("the node there is {obtained}, not the peer id in the address")
            }
            other => error_chain(other),
        };
        return NetworkError::Unreachable { addr, detail };
    };
    let failures: Vec<_> = errors
        .iter()
        .filter_map(|(_, e)| HandshakeError::find(e))
        .collect();
    let detail = failures
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    let refused = |f: &&HandshakeError| {
        f.stage == Connect && f.io_kind == Some(std::io::ErrorKind::ConnectionRefused)
    };
    if failures
        .iter()
        .any(|f| matches!(f.stage, Negotiation | Authentication | Timeout))
    {
        NetworkError::WrongKey { addr, detail }
    } else if failures.iter().any(refused) {
        NetworkError::Unreachable {
            addr,
            detail: "connection refused: is a node listening there?".into(),
        }
    } else if failures.iter().any(|f| f.stage == Nonces) {
        NetworkError::Unreachable {
            addr,
            detail: format!("it hung up before the handshake: is it an Iris node? ({detail})"),
        }
    } else {
        NetworkError::Unreachable { addr, detail }
    }
}

/// Whether a failed incoming connection looks like a wrong network key:
/// garbage while negotiating over the pnet stream (the dialer speaks first,
/// so we read its garbage before it reads ours), or silence. A dialer that
/// reached us on several addresses at once hangs up on all connections but
/// one, at any stage: a hang-up is never taken for a wrong key.
pub(crate) fn looks_like_wrong_key(error: &(dyn std::error::Error + 'static)) -> bool {
    use iris_behaviours::transport::HandshakeStage::*;
    use std::io::ErrorKind::*;
    let Some(failure) = HandshakeError::find(error) else {
        return true;
    };
    let hung_up = matches!(
        failure.io_kind,
        Some(ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof)
    );
    match failure.stage {
        Negotiation => !hung_up,
        Timeout => true,
        _ => false,
    }
}

/// An error and all its sources on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}
