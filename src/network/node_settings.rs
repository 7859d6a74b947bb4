//! What the network part needs of the node's config (`iris.toml`): copied
//! in by the node, so that the network depends on nothing of the config
//! file and its parsing.

use std::{net::IpAddr, time::Duration};

#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// This node's name in the network map.
    pub name: String,
    /// Tags other nodes can target with `--on tag:T`.
    pub tags: Vec<String>,
    /// The REST API's port, as the map shows it.
    pub api_port: u16,
    /// The interface to listen on for peers.
    pub listen: IpAddr,
    /// The TCP port for peers; 0 picks a free one at start.
    pub p2p_port: u16,
    /// Addresses to announce besides the listening ones, e.g. behind NAT.
    pub external: Vec<String>,
    /// Whether this node relays for members that cannot be dialed: `None`
    /// when it is the master, and only then.
    pub serve_relay: Option<bool>,
    /// How often this node probes one of its neighbours.
    pub probe_interval: Duration,
    /// How long a probe may go unanswered before the neighbour is suspect.
    pub suspect_after: Duration,
    /// Time as suspect after which a member is gone.
    pub gone_after: Duration,
}
