//! The Iris wire protocol, and nothing else.
//!
//! Everything two Iris nodes say to each other is defined here: how the
//! byte stream is secured ([`transport`], [`psk`]), the messages
//! ([`messages`]), how they are framed ([`codec`]) and the composed libp2p
//! [`behaviour`]. The node crate drives a `Swarm` built from these parts and
//! never touches bytes on the wire itself.

pub mod audit_head;
pub mod behaviour;
pub mod calls;
pub mod codec;
pub mod datasets;
pub mod files;
pub mod membership;
pub mod messages;
pub mod names;
pub mod network_config;
pub mod proxy;
pub mod psk;
pub mod reachability_server;
pub mod record;
pub mod refusal;
pub mod relay;
pub mod removals;
pub mod signed;
pub mod started_timeout;
pub mod tasks;
pub mod traffic;
pub mod transport;

pub use audit_head::AuditHead;
pub use behaviour::{build_swarm, IrisBehaviour, IrisBehaviourEvent, SwarmSettings};
pub use calls::*;
pub use codec::{
    AnswerLimit, CborCodec, CodecError, MAX_CONTROL_REQUEST, MAX_CONTROL_RESPONSE, SMALL_ANSWER,
};
pub use datasets::{Column, ColumnType, DatasetCard};
pub use files::{FileEntry, FileManifest, FileVersion, CHUNK_SIZE};
pub use membership::*;
pub use messages::*;
pub use network_config::{NetworkConfig, NetworkMode, Role};
pub use psk::{derive_psk, validate_key, PreSharedKey, MIN_KEY_LEN};
pub use record::{
    ExecutorState, ImageRef, NodeRecord, MAX_ADDRS, MAX_IMAGES, MAX_REASON, MAX_TAGS,
};
pub use refusal::{Refusal, RefusalKind, MAX_REASON_BYTES};
pub use relay::{is_relayed, RelayGate};
pub use removals::{Removals, MAX_REMOVED};
pub use tasks::*;
pub use traffic::{ProtocolTraffic, Traffic, TrafficCounts};

/// The version of the whole wire protocol, said in the clear before the
/// handshake ([`transport`]): a node of another version is refused with a
/// message naming both. Version 18: connections may go through a member
/// that serves as a relay ([`relay`]), and a record says whether its node
/// is one ([`NodeRecord::relay`]). Version 17: a task may be a round of a training
/// for a warm worker ([`TaskSpec::warm`]). Version 16: every request bounds its own answer
/// (an acknowledgement 8 KiB, a page of a sum 4 MiB, a welcome 8 MiB),
/// read no further, and a secure-sum step carries its answer's bound.
/// Version 15: the list of removed nodes that a
/// join's answer and the master's notice carry is signed by the master
/// ([`Removals`]). Version 13: each step of a secure sum is answered
/// with that step's own type (a key for a setup, a page for a fetch), not
/// one enum of every answer. Version 12: a secure sum's session carries the
/// range and resolution the job declared, and each site's count of values
/// it clipped, summed like the rest. Version 11: one type per call and per answer,
/// grouped by concern ([`calls`]), and membership on a protocol of its own
/// ([`membership`]). Version 10: a record's audit head is a signed
/// Merkle tree head, and members prove to each other that their logs only
/// grew. Version 9: a secure sum's probe names the length
/// and a site answers only whether its update fits; what a site says about
/// its data is a closed vocabulary. Version 8: requests that must not take effect
/// twice carry an id ([`Envelope::once`]) and are sent again
/// when a connection closes under them. Version 7: records carry dataset cards and tasks
/// may target a dataset. Version 6: SWIM probes and suspicions replace
/// every node's heartbeat to every other. Version 5: the noise prologue carries the network
/// key (pnet is gone), file chunks are BLAKE3 and travel on their own
/// streams.
pub const PROTOCOL_VERSION: u32 = 18;

/// Re-exported so the node and the wire agree on one libp2p version.
pub use libp2p;
pub use libp2p_stream;
