//! The node's side of the overlay: setting up a membership (create, join,
//! resume) and the handle the rest of the node uses to talk to it.
//!
//! One task owns the libp2p `Swarm` ([`event_loop`]); everything else holds a
//! cloneable [`NetworkClient`] that sends it commands over a channel and
//! awaits the reply, as in rust-libp2p's file-sharing example. There are no
//! locks around the swarm.

mod activity;
mod answers;
pub mod detector;
mod event_loop;
pub mod map;
pub mod neighbours;
mod node_settings;
mod saver;

pub use activity::{Activity, Busy, InUse};
pub use node_settings::NodeSettings;

use std::{sync::Arc, time::Duration};

use iris_behaviours::{
    behaviour::BuildError,
    build_swarm,
    libp2p::{
        identity::Keypair, multiaddr::Protocol, swarm::DialError, Multiaddr, PeerId, StreamProtocol,
    },
    transport::HandshakeError,
    AnswerFrame, Call, Departure, ExecutorState, ImageRef, MapEntry, NetworkConfig, NetworkMode,
    NodeRecord, PeerRequest, PreSharedKey, Refusal, RefusalKind, Removals, Role, SwarmSettings,
};
use tokio::sync::{mpsc, oneshot};

use crate::{
    events::Events,
    store::{SavedMembership, Store, StoreError},
};
use event_loop::{setup::Goal, EventLoop};

/// How long a bootstrap peer may take to answer a join.
pub(crate) const JOIN_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What this node can run, as its map record shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub executor: ExecutorState,
    pub images: Vec<ImageRef>,
    /// Where this node's audit log stands.
    pub audit: Option<iris_behaviours::AuditHead>,
    /// The cards of the datasets its owner declared.
    pub datasets: Vec<iris_behaviours::DatasetCard>,
}

/// What a network session needs from the node that runs it.
pub struct NetworkContext {
    pub keypair: Keypair,
    pub config: NodeSettings,
    pub store: Store,
    pub events: Events,
    pub settings: SwarmSettings,
    /// What this node can run; its record follows every change.
    pub capabilities: tokio::sync::watch::Sender<Capabilities>,
    /// Where requests about jobs go; the event loop sends back the answer.
    pub inbound: mpsc::Sender<Inbound>,
    /// Where chunk streams that current members opened go, to the router.
    pub inbound_streams: mpsc::Sender<InboundStream>,
    /// What uses each peer's connection, so idle ones can be closed.
    pub activity: Activity,
    /// Requests answered, for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// The network's own tasks (each session's event loop and map writer):
    /// awaited by a departure, and all of them at the node's shutdown.
    pub tasks: tokio_util::task::TaskTracker,
}

/// A stream of [`iris_behaviours::files::CHUNKS_PROTOCOL`] that a current
/// member opened; the router reads its requests and serves them.
pub struct InboundStream {
    pub peer: PeerId,
    pub stream: Busy<iris_behaviours::libp2p::Stream>,
}

/// A call from a peer (or from this node itself), which the node's router
/// answers: who sent it (the connection authenticated the peer id) and
/// whether that is the network's master.
pub struct Inbound {
    pub peer: PeerId,
    pub from_master: bool,
    pub request: PeerRequest,
    pub reply: oneshot::Sender<AnswerFrame>,
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
    #[error("peer {peer} answered with something else than was asked for: {detail}")]
    Malformed { peer: PeerId, detail: String },
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
    /// Peers this node has a connection to.
    pub connected: Vec<PeerId>,
    /// Those of them it reaches only through a relay.
    pub relayed: Vec<PeerId>,
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
    /// Remove a node from the network (the master only): its name is
    /// freed and every member refuses it from then on.
    Remove {
        peer: PeerId,
        reply: oneshot::Sender<()>,
    },
    /// Send a call to a peer and hand back its answer.
    Call {
        peer: PeerId,
        call: Box<OutgoingCall>,
        reply: oneshot::Sender<Result<AnswerFrame, String>>,
    },
}

/// A call on its way out, with what the event loop needs to know of it.
pub(crate) struct OutgoingCall {
    request: PeerRequest,
    /// Whether it may be sent again as it is ([`Call::REPEATABLE`]).
    repeatable: bool,
    /// How long its answer may take ([`Call::answer_within`]).
    within: Duration,
}

/// The handle to a running membership. Cheap to clone.
#[derive(Clone)]
pub struct NetworkClient {
    commands: mpsc::Sender<Command>,
    /// Opens raw streams to peers (file chunks).
    streams: iris_behaviours::libp2p_stream::Control,
    activity: Activity,
    /// The event loop's task, awaited when the node departs.
    event_loop: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
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

    /// Calls `peer`, another node, and waits for the answer: what was
    /// asked for, or the peer's refusal as [`NetworkError::PeerRefused`].
    pub async fn call<C: Call>(&self, peer: PeerId, call: C) -> Result<C::Answer, NetworkError> {
        let (reply, rx) = oneshot::channel();
        let call = Box::new(OutgoingCall {
            within: call.answer_within(),
            repeatable: C::REPEATABLE,
            request: call.into_request(),
        });
        let command = Command::Call { peer, call, reply };
        self.commands
            .send(command)
            .await
            .map_err(|_| NetworkError::Stopped)?;
        let frame = rx
            .await
            .map_err(|_| NetworkError::Stopped)?
            .map_err(|detail| NetworkError::NoAnswer { peer, detail })?;
        open_answer::<C>(peer, &frame)
    }

    /// Removes `peer` from the network (the caller checked that this node
    /// is the master): pruned from the map, announced, disconnected.
    pub async fn remove(&self, peer: PeerId) -> Result<(), NetworkError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Remove { peer, reply })
            .await
            .map_err(|_| NetworkError::Stopped)?;
        rx.await.map_err(|_| NetworkError::Stopped)
    }

    /// Opens a stream for file chunks to `peer`, which must be connected
    /// (a transfer asked it for a manifest first).
    /// The connection stays open while the stream lives.
    pub async fn open_chunk_stream(
        &self,
        peer: PeerId,
    ) -> Result<Busy<iris_behaviours::libp2p::Stream>, NetworkError> {
        let protocol = StreamProtocol::new(iris_behaviours::files::CHUNKS_PROTOCOL);
        let in_use = self.activity.begin(peer);
        let stream = self
            .streams
            .clone()
            .open_stream(peer, protocol)
            .await
            .map_err(|e| NetworkError::NoAnswer {
                peer,
                detail: format!("cannot open a chunk stream: {e}"),
            })?;
        Ok(Busy::new(stream, in_use))
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
        rx.await.map_err(|_| NetworkError::Stopped)?;
        // The loop returns right after it answered: wait until it has, so
        // that nothing of it outlives the session.
        let running = self.event_loop.lock().expect("lock").take();
        if let Some(running) = running {
            let _ = running.await;
        }
        Ok(())
    }
}

/// The answer `peer` gave to a call of type `C`: what was asked for, or
/// its refusal as [`NetworkError::PeerRefused`].
pub fn open_answer<C: Call>(peer: PeerId, frame: &AnswerFrame) -> Result<C::Answer, NetworkError> {
    match frame.open::<C>() {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(Refusal { kind, reason })) => Err(NetworkError::PeerRefused { peer, kind, reason }),
        Err(e) => Err(NetworkError::Malformed {
            peer,
            detail: e.to_string(),
        }),
    }
}

/// Creates a network with this node as its genesis and master.
pub async fn create(
    ctx: Arc<NetworkContext>,
    name: String,
    mode: NetworkMode,
    key: &str,
) -> Result<(NetworkClient, Snapshot), NetworkError> {
    let psk = derive_psk(key).await?;
    let mut network = NetworkConfig {
        name,
        mode,
        master: ctx.peer_id(),
        created_at_ms: crate::now_ms(),
        signature: Vec::new(),
    };
    // Signed by its founder: no bootstrap can change it unnoticed.
    network.sign(&ctx.keypair);
    let own = own_record(&ctx, Role::Master, 0);
    let started = start(ctx.clone(), &psk, network, own, Goal::Create, None).await?;
    ctx.store.save_psk(&psk)?;
    tracing::info!(network = %started.1.network.name, "created network");
    Ok(started)
}

/// Joins the network that the node at `bootstrap` belongs to; with
/// `network_id` (from a join ticket), only if it is that network.
pub async fn join(
    ctx: Arc<NetworkContext>,
    key: &str,
    bootstrap: Multiaddr,
    network_id: Option<String>,
) -> Result<(NetworkClient, Snapshot), NetworkError> {
    let Some(Protocol::P2p(peer)) = bootstrap.iter().last() else {
        return Err(NetworkError::NoPeerId(bootstrap));
    };
    let psk = derive_psk(key).await?;
    // A stand-in until the bootstrap's welcome brings the real config.
    let joining = NetworkConfig {
        name: String::new(),
        mode: NetworkMode::MasterSlave,
        master: ctx.peer_id(),
        created_at_ms: 0,
        signature: Vec::new(),
    };
    let own = own_record(&ctx, Role::Slave, 0);
    let goal = Goal::Join {
        bootstrap,
        peer,
        network_id,
    };
    let started = start(ctx.clone(), &psk, joining, own, goal, None).await?;
    ctx.store.save_psk(&psk)?;
    Ok(started)
}

/// Rejoins the network this node belonged to when it stopped.
pub async fn resume(
    ctx: Arc<NetworkContext>,
    saved: SavedMembership,
) -> Result<(NetworkClient, Snapshot), NetworkError> {
    let psk = ctx.store.load_psk()?;
    let previous_port = saved
        .map
        .iter()
        .find(|e| e.record.peer_id == ctx.peer_id())
        .map(|e| e.record.p2p_port);
    let mut network = saved.network;
    if network.master == ctx.peer_id() && network.verify().is_err() {
        // Founded by a version that did not sign configs: sign it now.
        network.sign(&ctx.keypair);
    }
    let role = if network.master == ctx.peer_id() {
        Role::Master
    } else {
        Role::Slave
    };
    let own = own_record(&ctx, role, saved.own_version);
    let removals = if network.master == ctx.peer_id() {
        // Ours to sign, from what we removed (a state saved before lists
        // were signed has no signed copy).
        let removed = saved.removed.clone();
        let at = crate::now_ms().max(saved.removals.signed_at_ms + 1);
        match removed.is_empty() {
            true => Removals::default(),
            false => Removals::sign(removed, at, &ctx.keypair),
        }
    } else if saved.removals.verify(&network.master).is_ok() {
        saved.removals
    } else {
        Removals::default()
    };
    let goal = Goal::Resume {
        map: saved.map,
        removed: saved.removed,
        removals,
    };
    start(ctx, &psk, network, own, goal, previous_port).await
}

/// The PSK of `key`, derived on a blocking thread: Argon2id takes a
/// fraction of a second on purpose.
async fn derive_psk(key: &str) -> Result<PreSharedKey, NetworkError> {
    let key = key.to_string();
    tokio::task::spawn_blocking(move || iris_behaviours::derive_psk(&key))
        .await
        .map_err(|_| NetworkError::Stopped)
}

/// Builds the swarm and hands it to a new event loop, which listens and
/// sets up the membership; returns once it is set up (or failed).
async fn start(
    ctx: Arc<NetworkContext>,
    psk: &PreSharedKey,
    network: NetworkConfig,
    own: NodeRecord,
    goal: Goal,
    previous_port: Option<u16>,
) -> Result<(NetworkClient, Snapshot), NetworkError> {
    let swarm = build_swarm(ctx.keypair.clone(), psk, &ctx.settings)?;
    let mut streams = swarm.behaviour().streams.new_control();
    let chunk_streams = streams
        .accept(StreamProtocol::new(iris_behaviours::files::CHUNKS_PROTOCOL))
        .expect("a new swarm accepts chunk streams once");
    let (commands, receiver) = mpsc::channel(64);
    let (ready, setup) = oneshot::channel();
    let activity = ctx.activity.clone();
    let tasks = ctx.tasks.clone();
    let event_loop = EventLoop::new(ctx, swarm, receiver, network, own, ready, chunk_streams);
    // The client keeps the handle and a departure awaits it; the node's
    // shutdown waits for the tracker. A JoinSet would abort the loop when
    // dropped, before its goodbyes and last save.
    let running = tasks.spawn(event_loop.run(goal, previous_port));
    let snapshot = match setup
        .await
        .map_err(|_| NetworkError::Stopped)
        .and_then(|s| s)
    {
        Ok(snapshot) => snapshot,
        Err(e) => {
            // A failed setup ends the loop: wait for it to let go.
            let _ = running.await;
            return Err(e);
        }
    };
    Ok((
        NetworkClient {
            commands,
            streams,
            activity,
            event_loop: Arc::new(std::sync::Mutex::new(Some(running))),
        },
        snapshot,
    ))
}

/// A version higher than `previous` that also keeps growing across a lost
/// state file, as long as the clock does.
fn next_version(previous: u64) -> u64 {
    (previous + 1).max(crate::now_ms())
}

/// This node's record before it listens: the event loop adds the
/// addresses and port once the listener reports them.
fn own_record(ctx: &NetworkContext, role: Role, previous: u64) -> NodeRecord {
    NodeRecord {
        name: ctx.config.name.clone(),
        peer_id: ctx.peer_id(),
        addrs: Vec::new(),
        api_port: ctx.config.api_port,
        p2p_port: ctx.config.p2p_port,
        relay: ctx.config.serve_relay.unwrap_or(role == Role::Master),
        role,
        tags: ctx.config.tags.clone(),
        executor: ctx.capabilities.borrow().executor.clone(),
        images: ctx.capabilities.borrow().images.clone(),
        version: next_version(previous),
        audit: ctx.capabilities.borrow().audit.clone(),
        // Signed by the event loop whenever it sends it.
        signed_at_ms: 0,
        signature: Vec::new(),
        datasets: ctx.capabilities.borrow().datasets.clone(),
    }
}

/// The addresses to put in our record: configured external ones first, then
/// what we listen on (a place at a relay included). A node that found it
/// cannot be dialed (`direct` false: behind NAT, say) leaves out the
/// addresses it listens on directly, which nobody else could reach.
fn advertised(ctx: &NetworkContext, mut listening: Vec<Multiaddr>, direct: bool) -> Vec<Multiaddr> {
    listening.retain(|a| direct || iris_behaviours::is_relayed(a));
    // Direct first: the first address is the one tickets and status show.
    listening.sort_by_key(iris_behaviours::is_relayed);
    let mut addrs: Vec<Multiaddr> = ctx
        .config
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
    !loopback || ctx.config.listen.is_loopback()
}

/// Turns libp2p's dial errors into what a user can act on. A wrong network
/// key fails noise (the prologues differ); a node of another release fails
/// the version preamble before it, with both versions named.
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
    if let Some(why) = failures.iter().find_map(|f| f.incompatibility()) {
        NetworkError::Unreachable { addr, detail: why }
    } else if failures
        .iter()
        .any(|f| matches!(f.stage, Authentication | Timeout))
    {
        NetworkError::WrongKey { addr, detail }
    } else if failures.iter().any(refused) {
        NetworkError::Unreachable {
            addr,
            detail: "connection refused: is a node listening there?".into(),
        }
    } else if failures
        .iter()
        .any(|f| matches!(f.stage, Preamble | Negotiation))
    {
        NetworkError::Unreachable {
            addr,
            detail: format!("it hung up before the handshake: is it an Iris node? ({detail})"),
        }
    } else {
        NetworkError::Unreachable { addr, detail }
    }
}

/// What a failed incoming connection was, for the owner's log.
pub(crate) enum IncomingFailure {
    /// It failed noise (the dialer, holding another key, hung up on our
    /// second message).
    WrongKey,
    /// The handshake did not finish in time: a stuck or very slow peer,
    /// or one that went silent in noise.
    TimedOut,
    /// A node of another protocol version, or not an Iris node: the text
    /// says which, naming both versions.
    Incompatible(String),
    /// Anything else (a dialer that hung up before noise, a connection
    /// aborted once set up): not worth a warning, and no sign of a key.
    Other,
}

pub(crate) fn classify_incoming(error: &(dyn std::error::Error + 'static)) -> IncomingFailure {
    use iris_behaviours::transport::HandshakeStage::*;
    match HandshakeError::find(error) {
        None => IncomingFailure::Other,
        Some(f) if f.stage == Authentication => IncomingFailure::WrongKey,
        Some(f) if f.stage == Timeout => IncomingFailure::TimedOut,
        Some(f) => f
            .incompatibility()
            .map_or(IncomingFailure::Other, IncomingFailure::Incompatible),
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
