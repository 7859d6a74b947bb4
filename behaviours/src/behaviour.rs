//! The composed libp2p behaviour of an Iris node, and the swarm around it.

use std::time::Duration;

use libp2p::{
    autonat,
    connection_limits::{self, ConnectionLimits},
    dcutr, gossipsub, identify,
    identity::Keypair,
    request_response::{self, ProtocolSupport},
    swarm::NetworkBehaviour,
    StreamProtocol, Swarm, SwarmBuilder,
};

use crate::{
    calls::{AnswerFrame, Envelope, CALLS_PROTOCOL},
    codec::CborCodec,
    membership::{MembershipRequest, MEMBERSHIP_PROTOCOL},
    psk::PreSharedKey,
    reachability_server::ReachabilityServer,
    relay::{relay_config, RelayGate},
    transport::build_transport,
};

pub use crate::codec::{MAX_CONTROL_REQUEST, MAX_CONTROL_RESPONSE, MAX_GOSSIP_MESSAGE};
/// Connections to one peer at once: two for when both sides dial at the
/// same moment, one for a hole punch's direct connection beside the relayed
/// one it replaces, one for a reachability test's dial-back.
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Connections at once, to every peer together.
pub const MAX_CONNECTIONS: u32 = 1024;

/// How long a gossip message may wait for its connection before it is
/// dropped.
const GOSSIP_QUEUE_WAIT: Duration = Duration::from_secs(30);
/// How many addresses of a peer one dial tries, at a handshake's timeout
/// each, before the dial gives up: a record lists its best first (its
/// reachable addresses, then its places at relays).
const DIAL_ADDRESSES: u32 = 4;
/// Incoming connections still in their handshake at once.
pub const MAX_PENDING_INCOMING: u32 = 64;

/// Everything a node speaks.
#[derive(NetworkBehaviour)]
pub struct IrisBehaviour {
    /// Refuses connections past the bounds above, before any protocol runs.
    pub limits: connection_limits::Behaviour,
    /// The network map: records when they change, suspicions, departures.
    pub gossipsub: gossipsub::Behaviour,
    /// Join, hello, leave and probes, answered by the peer's event loop.
    pub membership: request_response::Behaviour<CborCodec<MembershipRequest, AnswerFrame>>,
    /// Calls ([`crate::calls`]), answered by the peer's router.
    pub calls: request_response::Behaviour<CborCodec<Envelope, AnswerFrame>>,
    /// Tells each peer the addresses we see it at.
    pub identify: identify::Behaviour,
    /// Raw streams: file chunks ([`crate::files::CHUNKS_PROTOCOL`]).
    pub streams: libp2p_stream::Behaviour,
    /// The relay this node serves to members that cannot be dialed, when
    /// its owner chose it to ([`crate::relay`]).
    pub relay: libp2p::relay::Behaviour,
    /// Our side of other nodes' relays: a place reserved at one, and
    /// circuits through them.
    pub relay_client: libp2p::relay::client::Behaviour,
    /// Hole punching: two members on a relayed connection try to open a
    /// direct one, and move to it if they can.
    pub dcutr: dcutr::Behaviour,
    /// Asks members to dial us back (AutoNAT v2), to learn whether others
    /// can reach us directly.
    pub reachability: autonat::v2::client::Behaviour,
    /// Dials members back when they ask, at their own address only
    /// ([`ReachabilityServer`]).
    pub reachability_server: ReachabilityServer,
}

/// Timings of the swarm; the node's config fills them in.
#[derive(Debug, Clone)]
pub struct SwarmSettings {
    /// Bounds the TCP + preamble + noise + yamux upgrade (a peer that says
    /// nothing fails it).
    pub handshake_timeout: Duration,
    /// Gossipsub's mesh upkeep. Messages go out at once whatever it is;
    /// it only repairs the mesh and offers recent messages to peers that
    /// may have missed them.
    pub gossip_heartbeat: Duration,
    /// Bounds a whole request-response exchange. Long, because a command
    /// run in a container answers when it ends; a dead or hung peer is
    /// caught sooner by liveness, which closes its connection.
    pub request_timeout: Duration,
    /// Connections to one peer at once ([`MAX_CONNECTIONS_PER_PEER`]).
    pub max_connections_per_peer: u32,
    /// What each protocol carried, for the node's metrics.
    pub traffic: crate::traffic::ProtocolTraffic,
    /// Whom this node's relay serves; the node keeps it up to date.
    pub relay_gate: RelayGate,
    /// An HTTP proxy every dial goes through ([`crate::proxy`]).
    pub proxy: Option<crate::proxy::Proxy>,
}

impl Default for SwarmSettings {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(3),
            gossip_heartbeat: Duration::from_millis(500),
            request_timeout: Duration::from_secs(24 * 3600),
            max_connections_per_peer: MAX_CONNECTIONS_PER_PEER,
            traffic: Default::default(),
            relay_gate: RelayGate::default(),
            proxy: None,
        }
    }
}

/// Why a swarm could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("noise setup failed: {0}")]
    Noise(#[from] libp2p::noise::Error),
    #[error("gossipsub setup failed: {0}")]
    Gossipsub(String),
}

/// Builds a swarm for a network protected by `psk`.
pub fn build_swarm(
    keypair: Keypair,
    psk: &PreSharedKey,
    settings: &SwarmSettings,
) -> Result<Swarm<IrisBehaviour>, BuildError> {
    let local = keypair.public().to_peer_id();
    let (relayed, relay_client) = libp2p::relay::client::new(local);
    let timeout = settings.handshake_timeout;
    let proxy = settings.proxy.clone();
    let transport = build_transport(&keypair, psk, timeout, relayed, proxy)?;
    let behaviour = build_behaviour(&keypair, settings, relay_client)?;
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|_| transport)
        .expect("an infallible constructor")
        .with_behaviour(|_| behaviour)
        .expect("an infallible constructor")
        // Which connections stay open is the node's business (a few
        // neighbours kept, the rest closed when idle): libp2p must not
        // drop one behind its back. Gossipsub's streams keep every
        // connection busy anyway.
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(24 * 3600))
                // One address of a peer at a time: dialing all at once and
                // dropping the losers mid-handshake looks, to the peer, like
                // a wrong key. A record lists its best addresses first.
                .with_dial_concurrency_factor(std::num::NonZeroU8::MIN)
        })
        // The swarm's own limit starts for every address of a dial at
        // once (libp2p creates them together), so it bounds the whole dial
        // of a peer, address after address: a few handshakes' worth. Each
        // address has handshake_timeout from its own start (transport.rs).
        .with_connection_timeout(settings.handshake_timeout * DIAL_ADDRESSES)
        .build();
    Ok(swarm)
}

fn build_behaviour(
    keypair: &Keypair,
    settings: &SwarmSettings,
    relay_client: libp2p::relay::client::Behaviour,
) -> Result<IrisBehaviour, BuildError> {
    let local = keypair.public().to_peer_id();
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(settings.gossip_heartbeat)
        .heartbeat_initial_delay(Duration::from_millis(100))
        .validation_mode(gossipsub::ValidationMode::Strict)
        .max_transmit_size(MAX_GOSSIP_MESSAGE)
        // Keep 2 * outbound_min <= mesh_n_low <= mesh_n <= mesh_n_high:
        // build() does not check it for us.
        .mesh_n_low(4)
        .mesh_n(6)
        .mesh_n_high(12)
        .mesh_outbound_min(2)
        // A map message waits for a busy connection rather than being
        // dropped after gossipsub's 1 s (5 s for our own): they are few and
        // small, and a late record is still ordered right by its stamp,
        // while a dropped one is missing until the next catch-up.
        .forward_queue_duration(GOSSIP_QUEUE_WAIT)
        .publish_queue_duration(GOSSIP_QUEUE_WAIT)
        .build()
        .map_err(|e| BuildError::Gossipsub(e.to_string()))?;
    let gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(keypair.clone()),
        gossip_config,
    )
    .map_err(|e| BuildError::Gossipsub(e.to_string()))?;

    // Both count their frames as the control traffic.
    let traffic = &settings.traffic.control;
    let config = request_response::Config::default().with_request_timeout(settings.request_timeout);
    let membership = request_response::Behaviour::with_codec(
        CborCodec::counted(MAX_CONTROL_REQUEST, MAX_CONTROL_RESPONSE, traffic.clone()),
        [(
            StreamProtocol::new(MEMBERSHIP_PROTOCOL),
            ProtocolSupport::Full,
        )],
        config.clone(),
    );
    let calls = request_response::Behaviour::with_codec(
        CborCodec::counted(MAX_CONTROL_REQUEST, MAX_CONTROL_RESPONSE, traffic.clone()),
        [(StreamProtocol::new(CALLS_PROTOCOL), ProtocolSupport::Full)],
        config,
    );
    let identify = identify::Behaviour::new(identify::Config::new(
        "/iris/1".to_string(),
        keypair.public(),
    ));
    Ok(IrisBehaviour {
        limits: connection_limits::Behaviour::new(
            ConnectionLimits::default()
                .with_max_established_per_peer(Some(settings.max_connections_per_peer))
                .with_max_established(Some(MAX_CONNECTIONS))
                .with_max_pending_incoming(Some(MAX_PENDING_INCOMING)),
        ),
        gossipsub,
        membership,
        calls,
        identify,
        streams: libp2p_stream::Behaviour::new(),
        relay: libp2p::relay::Behaviour::new(local, relay_config(&settings.relay_gate)),
        relay_client,
        dcutr: dcutr::Behaviour::new(local),
        reachability: Default::default(),
        reachability_server: ReachabilityServer::default(),
    })
}
