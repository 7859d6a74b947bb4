//! Iris: a peer-to-peer network of nodes that run containers next to data
//! that must not leave its machine.
//!
//! The modules follow the architecture (docs/architecture.md):
//! [`config`] and [`store`] are what a node keeps on disk, [`network`] owns
//! the libp2p swarm, [`node`] is the node's logic behind the [`api`], and
//! [`cli`] is the thin client the `iris` binary offers on top of the API.

pub mod api;
pub mod api_types;
pub mod audit;
pub mod cli;
pub mod client;
pub mod config;
pub mod crew;
pub mod daemon;
pub mod datasets;
pub mod egress;
pub mod events;
pub mod executor;
pub mod faults;
pub mod files;
pub mod images;
pub mod jobs;
pub mod membership;
pub mod metrics;
pub mod network;
pub mod node;
pub mod peer;
pub mod policy;
pub mod privacy;
pub mod safe_fs;
pub mod secagg;
pub mod sessions;
pub mod store;
pub mod witness;
pub mod workspace;

/// Wall-clock time as Unix milliseconds (for records and people, never for
/// timeouts: those use `Instant`).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
