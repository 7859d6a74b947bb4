//! Membership: this node's place in at most one network at a time. It
//! creates, joins and leaves networks, shows the map, and tells the other
//! services who is out there: target resolution, names to peer ids, and the
//! handle to the network for requests to peers.

mod targets;
mod ticket;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use iris_behaviours::{
    libp2p::{Multiaddr, PeerId},
    Call, Departure, Liveness, MapEntry, NetworkConfig, NetworkMode, Role,
};
use tokio::sync::watch;

pub use targets::{resolve_targets, TargetError};
pub use ticket::JoinTicket;

use crate::{
    api_types::{CreateNetwork, JoinNetwork, NetworkMembership, NodeView, Removed, Status},
    events::EventKind,
    network::{self, NetworkClient, NetworkContext, NetworkError, Snapshot},
    store::{SavedMembership, StoreError},
};

/// Why a membership operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("this node is in no network: create one with `iris network create` or join one with `iris network join`")]
    NotInNetwork,
    /// The node is shutting down: its network is gone until it restarts.
    #[error("this node is shutting down: try again once it has restarted")]
    ShuttingDown,
    #[error("this node is already in network '{0}': leave it first with `iris network leave`")]
    AlreadyInNetwork(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no node named '{0}' in the network")]
    NoSuchNode(String),
    /// `--on` names no node that is there and alive.
    #[error("{0}")]
    NoTarget(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TargetError> for MembershipError {
    fn from(error: TargetError) -> Self {
        match error {
            TargetError::Invalid(e) => MembershipError::Invalid(e),
            TargetError::NoSuchTarget(e) => MembershipError::NoTarget(e),
        }
    }
}

pub struct Membership {
    ctx: Arc<NetworkContext>,
    network: watch::Sender<Option<NetworkClient>>,
    /// Serializes create, join and leave.
    change: tokio::sync::Mutex<()>,
    /// Set when the node begins to shut down: a request that fails from
    /// then on failed because of this node, not because of its peer.
    stopping: std::sync::atomic::AtomicBool,
}

impl Membership {
    pub fn new(ctx: Arc<NetworkContext>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            network: watch::Sender::new(None),
            change: tokio::sync::Mutex::new(()),
            stopping: Default::default(),
        })
    }

    /// Rejoins the network this node belonged to when it stopped.
    pub async fn resume(&self, saved: SavedMembership) -> Result<(), MembershipError> {
        let _guard = self.change.lock().await;
        let (client, _) = network::resume(self.ctx.clone(), saved).await?;
        self.network.send_replace(Some(client));
        Ok(())
    }

    pub fn local_peer(&self) -> PeerId {
        self.ctx.peer_id()
    }

    /// The handle to the network, if this node is in one.
    pub fn client(&self) -> Option<NetworkClient> {
        self.network.borrow().clone()
    }

    /// This node is shutting down: what fails now is no peer's doing.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Why there is no handle to a network: none was joined, or the node
    /// is shutting down (and not a peer's fault).
    pub fn no_network(&self) -> MembershipError {
        if self.is_stopping() {
            MembershipError::ShuttingDown
        } else {
            MembershipError::NotInNetwork
        }
    }

    /// Follows the handle as the node joins and leaves networks.
    pub fn subscribe(&self) -> watch::Receiver<Option<NetworkClient>> {
        self.network.subscribe()
    }

    /// Calls `peer` and waits for its answer. A call to this node itself
    /// goes to its own router, which answers it as it answers a peer's:
    /// a local target gets the same checks as a remote one, in a network
    /// or alone.
    pub async fn call<C: Call>(&self, peer: PeerId, call: C) -> Result<C::Answer, MembershipError> {
        let local = self.local_peer();
        if peer != local {
            let client = self.client().ok_or_else(|| self.no_network())?;
            return client.call(peer, call).await.map_err(|e| self.settled(e));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let inbound = network::Inbound {
            peer: local,
            // What only the master may ask is what it may ask of *other*
            // nodes: a node may ask it of itself.
            from_master: true,
            request: call.into_request(),
            reply,
        };
        let stopped = MembershipError::Network(NetworkError::Stopped);
        if self.ctx.inbound.send(inbound).await.is_err() {
            return Err(stopped);
        }
        let frame = answer.await.map_err(|_| stopped)?;
        Ok(network::open_answer::<C>(local, &frame)?)
    }

    pub async fn snapshot(&self) -> Result<Snapshot, MembershipError> {
        let client = self.client().ok_or_else(|| self.no_network())?;
        client.snapshot().await.map_err(|e| self.settled(e))
    }

    /// A request to a network this node has left meanwhile fails as a
    /// request made after the leave does: the event loop stops only when
    /// the node departs, and the handle is withdrawn before it does.
    fn settled(&self, error: NetworkError) -> MembershipError {
        match error {
            NetworkError::Stopped if self.client().is_none() => self.no_network(),
            other => other.into(),
        }
    }

    /// The map; alone, a node is a network of one that can still run jobs
    /// on itself.
    pub async fn map(&self) -> Result<Vec<MapEntry>, MembershipError> {
        match self.snapshot().await {
            Ok(snapshot) => Ok(snapshot.map),
            Err(MembershipError::NotInNetwork) => Ok(vec![self.own_entry()]),
            Err(e) => Err(e),
        }
    }

    /// The alive nodes `on` names (see [`resolve_targets`]), as peer ids
    /// and names.
    pub async fn targets(
        &self,
        on: &str,
        any: bool,
        load: &BTreeMap<PeerId, usize>,
    ) -> Result<Vec<(PeerId, String)>, MembershipError> {
        let map = self.map().await?;
        resolve_targets(on, any, &map, load).map_err(MembershipError::from)
    }

    pub async fn peer_named(&self, name: &str) -> Result<PeerId, MembershipError> {
        self.snapshot()
            .await?
            .map
            .iter()
            .find(|e| e.record.name == name)
            .map(|e| e.record.peer_id)
            .ok_or_else(|| MembershipError::NoSuchNode(name.to_string()))
    }

    pub fn name(&self) -> &str {
        &self.ctx.config.name
    }

    fn own_entry(&self) -> MapEntry {
        let config = &self.ctx.config;
        let capabilities = self.ctx.capabilities.borrow().clone();
        MapEntry {
            record: iris_behaviours::NodeRecord {
                name: config.name.clone(),
                peer_id: self.ctx.peer_id(),
                addrs: vec![],
                api_port: config.api_port,
                p2p_port: config.p2p_port,
                role: Role::Master,
                relay: false,
                tags: config.tags.clone(),
                executor: capabilities.executor,
                images: capabilities.images,
                version: 0,
                audit: None,
                signed_at_ms: 0,
                signature: Vec::new(),
                datasets: capabilities.datasets,
            },
            state: Liveness::Alive,
            last_seen_ms: crate::now_ms(),
        }
    }

    /// This node, as `GET /v1/status` shows it; `executor` says whether its
    /// engine answers.
    pub async fn status(&self, executor: String) -> Status {
        let snapshot = self.snapshot().await.ok();
        let config = &self.ctx.config;
        let (addrs, p2p_port) = match &snapshot {
            Some(s) => (with_peer_id(&s.own.addrs, s.own.peer_id), s.own.p2p_port),
            None => (Vec::new(), config.p2p_port),
        };
        Status {
            name: config.name.clone(),
            peer_id: self.ctx.peer_id(),
            addrs,
            p2p_port,
            api_port: config.api_port,
            tags: config.tags.clone(),
            role: snapshot.as_ref().map(|s| s.own.role),
            network: snapshot.map(|s| s.network),
            executor,
        }
    }

    pub async fn network(&self) -> Result<NetworkConfig, MembershipError> {
        Ok(self.snapshot().await?.network)
    }

    pub async fn nodes(&self) -> Result<Vec<NodeView>, MembershipError> {
        let snapshot = self.snapshot().await?;
        Ok(self.views(&snapshot))
    }

    fn views(&self, snapshot: &Snapshot) -> Vec<NodeView> {
        let (map, connected) = (snapshot.map.clone(), &snapshot.connected);
        let local = self.ctx.peer_id();
        map.into_iter()
            .map(|e| NodeView {
                addrs: with_peer_id(&e.record.addrs, e.record.peer_id),
                name: e.record.name,
                peer_id: e.record.peer_id,
                role: e.record.role,
                state: e.state,
                api_port: e.record.api_port,
                p2p_port: e.record.p2p_port,
                tags: e.record.tags,
                version: e.record.version,
                last_seen: e.last_seen_ms,
                is_self: e.record.peer_id == local,
                connected: connected.contains(&e.record.peer_id),
                relayed: snapshot.relayed.contains(&e.record.peer_id),
                relay: e.record.relay,
                executor: e.record.executor,
                images: e.record.images,
                audit: e.record.audit,
                datasets: e.record.datasets,
            })
            .collect()
    }

    fn view(&self, snapshot: Snapshot) -> NetworkMembership {
        let addrs = with_peer_id(&snapshot.own.addrs, snapshot.own.peer_id);
        let id = snapshot.network.id();
        NetworkMembership {
            role: snapshot.own.role,
            // A newcomer is no member yet, and a relay lets only members
            // through: a ticket names a direct address.
            tickets: addrs
                .iter()
                .filter(|a| !iris_behaviours::is_relayed(a))
                .map(|a| JoinTicket::new(id.clone(), a.clone()).to_string())
                .collect(),
            addrs,
            network_id: id,
            nodes: self.views(&snapshot),
            network: snapshot.network,
            master_on_trust: false,
        }
    }

    /// Creates a network with this node as genesis and master.
    pub async fn create(
        &self,
        request: &CreateNetwork,
    ) -> Result<NetworkMembership, MembershipError> {
        iris_behaviours::validate_name("network name", &request.name)
            .map_err(MembershipError::Invalid)?;
        validate_key(&request.key)?;
        let mode: NetworkMode = request.mode.parse().map_err(MembershipError::Invalid)?;
        let _guard = self.change.lock().await;
        self.refuse_if_member().await?;
        let (client, snapshot) =
            network::create(self.ctx.clone(), request.name.clone(), mode, &request.key).await?;
        self.network.send_replace(Some(client));
        Ok(self.view(snapshot))
    }

    /// Joins a network through any of its members.
    /// `request.bootstrap` is a join ticket (the network is then pinned) or
    /// a member's address (the master is then taken on trust).
    pub async fn join(&self, request: &JoinNetwork) -> Result<NetworkMembership, MembershipError> {
        validate_key(&request.key)?;
        let ticket: JoinTicket = request
            .bootstrap
            .parse()
            .map_err(MembershipError::Invalid)?;
        let _guard = self.change.lock().await;
        self.refuse_if_member().await?;
        let pinned = ticket.network_id.is_some();
        let (client, snapshot) = network::join(
            self.ctx.clone(),
            &request.key,
            ticket.bootstrap,
            ticket.network_id,
        )
        .await?;
        self.network.send_replace(Some(client));
        let mut view = self.view(snapshot);
        view.master_on_trust = !pinned;
        Ok(view)
    }

    /// Leaves the network for good: the others see it as left, and a restart
    /// does not rejoin.
    pub async fn leave(&self) -> Result<NetworkConfig, MembershipError> {
        let _guard = self.change.lock().await;
        let client = self.client().ok_or_else(|| self.no_network())?;
        let network = client.snapshot().await?.network;
        // Withdrawn first: what asks while the goodbyes go out finds no
        // network, rather than a network that stopped under it.
        self.network.send_replace(None);
        client.depart(Departure::Leave).await?;
        self.ctx.store.clear_membership()?;
        self.ctx.events.emit(EventKind::NetworkLeft {
            network: network.name.clone(),
        });
        Ok(network)
    }

    /// Removes the node named `name` for good (the master only): its name
    /// is free again, and every member refuses its peer id from now on.
    pub async fn remove(&self, name: &str) -> Result<Removed, MembershipError> {
        let client = self.client().ok_or_else(|| self.no_network())?;
        let snapshot = client.snapshot().await?;
        if snapshot.network.master != self.local_peer() {
            return Err(MembershipError::Forbidden(
                "only the network's master can remove a node".into(),
            ));
        }
        let peer = snapshot
            .map
            .iter()
            .find(|e| e.record.name == name)
            .map(|e| e.record.peer_id)
            .ok_or_else(|| MembershipError::NoSuchNode(name.to_string()))?;
        if peer == self.local_peer() {
            return Err(MembershipError::Invalid(
                "the master cannot remove itself".into(),
            ));
        }
        client.remove(peer).await?;
        Ok(Removed {
            removed: name.to_string(),
            peer_id: peer,
        })
    }

    /// Says goodbye for now: the others see the node as gone until it
    /// restarts and rejoins.
    pub async fn shut_down(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _guard = self.change.lock().await;
        if let Some(client) = self.network.send_replace(None) {
            let _ =
                tokio::time::timeout(Duration::from_secs(3), client.depart(Departure::Shutdown))
                    .await;
        }
        // Whatever the network still runs (a loop whose goodbyes ran out of
        // time, its map writer) ends before the node does.
        self.ctx.tasks.close();
        if tokio::time::timeout(Duration::from_secs(3), self.ctx.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("the network's tasks did not end within 3 s of the shutdown");
        }
    }

    async fn refuse_if_member(&self) -> Result<(), MembershipError> {
        if let Some(client) = self.client() {
            if let Ok(snapshot) = client.snapshot().await {
                return Err(MembershipError::AlreadyInNetwork(snapshot.network.name));
            }
        }
        Ok(())
    }
}

fn validate_key(key: &str) -> Result<(), MembershipError> {
    iris_behaviours::validate_key(key).map_err(MembershipError::Invalid)
}

fn with_peer_id(addrs: &[Multiaddr], peer: PeerId) -> Vec<Multiaddr> {
    addrs
        .iter()
        .map(|a| a.clone().with_p2p(peer).unwrap_or_else(|a| a))
        .collect()
}
