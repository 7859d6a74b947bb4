//! Every message Iris nodes exchange, and the records they describe.
//!
//! Two channels carry them:
//! - the **control** request-response protocol ([`ControlRequest`] /
//!   [`ControlResponse`]): joining, introductions between two nodes, and
//!   graceful leaves, all answered by the peer that was asked;
//! - the **map** gossipsub topic ([`MapMessage`]): every node announces its
//!   own [`NodeRecord`] there when it changes, and watchers spread their
//!   suspicions there (a member is probed only by its few neighbours, see
//!   the node's `network::detector`).
//!
//! A record is only ever accepted from the node it describes: receivers check
//! the record's `peer_id` against the authenticated sender.

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::{
    files::{FileEntry, FileManifest},
    tasks::{TaskReport, TaskSpec},
};

/// The request-response protocol for commands between nodes. Version 6
/// (with [`crate::PROTOCOL_VERSION`]): SWIM probes, direct and indirect.
/// Version 5: BLAKE3 manifests, and chunks on their own stream protocol.
/// Version 4:
/// a task may await its owner's approval, and a report says why outputs are
/// held; version 3 signed records and the network config
/// ([`crate::signed`]); version 2 gave refusals a [`RefusalKind`].
pub const CONTROL_PROTOCOL: &str = "/iris/control/7";

/// Longest node or network name we accept, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Most tags a node may carry, and the longest tag.
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_LEN: usize = 64;
/// Most addresses a record may list.
pub const MAX_ADDRS: usize = 32;
/// The longest image id or tag a record may hold.
pub const MAX_FIELD: usize = 256;
/// The longest reason a record may give for an unavailable executor.
pub const MAX_REASON: usize = 1024;

/// How a network is governed. Only one mode exists today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The genesis node is master: only it may run jobs on, or push files to,
    /// other nodes.
    MasterSlave,
}

impl std::str::FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "master_slave" => Ok(Self::MasterSlave),
            other => Err(format!(
                "unsupported network mode '{other}': the only mode is 'master_slave'"
            )),
        }
    }
}

/// What every member knows about the network it belongs to. The key is not
/// here: it never leaves the node it was typed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkConfig {
    pub name: String,
    pub mode: NetworkMode,
    /// The genesis node, master in `master_slave` mode.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub master: PeerId,
    /// Unix time in milliseconds when the network was created.
    pub created_at_ms: u64,
    /// The master's signature over the rest ([`crate::signed`]).
    #[serde(default, with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// A node's part in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Master,
    Slave,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Slave => "slave",
        })
    }
}

/// What a node says about itself. Only the node itself writes its record;
/// a higher `version` replaces a lower one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub peer_id: PeerId,
    /// Addresses others can dial, without the `/p2p/` suffix.
    pub addrs: Vec<Multiaddr>,
    pub api_port: u16,
    pub p2p_port: u16,
    pub role: Role,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Whether this node can run containers, and why not.
    #[serde(default)]
    pub executor: ExecutorState,
    /// The tagged images its Docker engine has.
    #[serde(default)]
    pub images: Vec<ImageRef>,
    /// The datasets its owner declared: their cards, never their data.
    #[serde(default)]
    pub datasets: Vec<crate::datasets::DatasetCard>,
    /// Grows with every change of the record, across restarts too.
    pub version: u64,
    /// The length and head hash of its audit log, so other members can
    /// tell when it shrinks or is rewritten.
    #[serde(default)]
    pub audit: Option<AuditHead>,
    /// When its node signed it (unix ms, growing within a version): a copy
    /// no newer than one already seen is no sign of life.
    #[serde(default)]
    pub signed_at_ms: u64,
    /// Its node's signature over the rest ([`crate::signed`]).
    #[serde(default, with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Where a node's audit log stands: its length and the hash of its last
/// line (see the node's `audit` module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditHead {
    pub entries: u64,
    pub head: String,
}

impl AuditHead {
    /// Whether `later` can follow this head: a log only grows, and one of
    /// the same length has the same head. (A longer log that does not
    /// extend this one is caught only by whoever holds the lines.)
    pub fn is_followed_by(&self, later: &AuditHead) -> bool {
        later.entries > self.entries || later == self
    }
}

/// Most images a record may list.
pub const MAX_IMAGES: usize = 256;

/// Whether a node's Docker engine answers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum ExecutorState {
    Available,
    #[default]
    Unknown,
    Unavailable(String),
}

impl std::fmt::Display for ExecutorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecutorState::Available => f.write_str("available"),
            ExecutorState::Unknown => f.write_str("unknown"),
            ExecutorState::Unavailable(reason) => write!(f, "unavailable ({reason})"),
        }
    }
}

/// An image a node has: its content id and tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageRef {
    pub id: String,
    pub tags: Vec<String>,
}

impl NodeRecord {
    /// Checks what a peer could get wrong on purpose or by accident.
    pub fn validate(&self) -> Result<(), String> {
        validate_name("node name", &self.name)?;
        if self.addrs.len() > MAX_ADDRS {
            return Err(format!(
                "record lists {} addresses, at most {MAX_ADDRS}",
                self.addrs.len()
            ));
        }
        if self.tags.len() > MAX_TAGS {
            return Err(format!(
                "record has {} tags, at most {MAX_TAGS}",
                self.tags.len()
            ));
        }
        for tag in &self.tags {
            validate_tag(tag)?;
        }
        if self.images.len() > MAX_IMAGES {
            return Err(format!(
                "record lists {} images, at most {MAX_IMAGES}",
                self.images.len()
            ));
        }
        // Every field is bounded, so a record cannot grow a member's map.
        let image_too_big = |i: &ImageRef| {
            i.id.len() > MAX_FIELD
                || i.tags.len() > MAX_TAGS
                || i.tags.iter().any(|t| t.len() > MAX_FIELD)
        };
        if self.images.iter().any(image_too_big) {
            return Err(format!(
                "record lists an image with more than {MAX_TAGS} tags or a name over {MAX_FIELD} bytes"
            ));
        }
        crate::datasets::validate_cards(&self.datasets)?;
        if self.audit.as_ref().is_some_and(|a| a.head.len() > 64) {
            return Err("record's audit head is longer than a hash".into());
        }
        if let ExecutorState::Unavailable(reason) = &self.executor {
            if reason.len() > MAX_REASON {
                return Err(format!(
                    "record's executor reason is over {MAX_REASON} bytes"
                ));
            }
        }
        Ok(())
    }
}

/// A name must be short, printable and free of separators, so that it can be
/// used in tables, file paths and `--on` lists without quoting.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{what} '{name}' is longer than {MAX_NAME_LEN} bytes"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        || name.starts_with('.')
    {
        return Err(format!(
            "{what} '{name}' may hold only letters, digits, '-', '_' and '.', and may not start with '.'"
        ));
    }
    Ok(())
}

/// Tags follow the name rules, with ':' and '=' allowed as well (`site=paris`).
pub fn validate_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() || tag.len() > MAX_TAG_LEN {
        return Err(format!("tag '{tag}' must be 1 to {MAX_TAG_LEN} bytes"));
    }
    if !tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:=".contains(c))
    {
        return Err(format!(
            "tag '{tag}' may hold only letters, digits and '-', '_', '.', ':', '='"
        ));
    }
    Ok(())
}

/// How a node looks to the node that holds the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    Alive,
    /// Its connection dropped or it stopped answering; it may come back.
    Suspect,
    /// Suspect for too long.
    Gone,
    /// It said goodbye.
    Left,
}

impl std::fmt::Display for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Liveness::Alive => "alive",
            Liveness::Suspect => "suspect",
            Liveness::Gone => "gone",
            Liveness::Left => "left",
        })
    }
}

/// One line of the network map: a record and what the holder makes of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapEntry {
    pub record: NodeRecord,
    pub state: Liveness,
    /// Unix time in milliseconds when the holder last heard from the node.
    pub last_seen_ms: u64,
}

/// Why a node says goodbye.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Departure {
    /// It left the network for good (`iris network leave`).
    Leave,
    /// It is shutting down and will rejoin when it restarts.
    Shutdown,
}

impl std::fmt::Display for Departure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Departure::Leave => "left the network",
            Departure::Shutdown => "shut down",
        })
    }
}

/// Requests on the control protocol.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlRequest {
    /// "Let me in": answered with [`ControlResponse::Welcome`] or
    /// [`ControlResponse::Refused`].
    Join { record: NodeRecord },
    /// Sent on every new connection so both sides know each other at once,
    /// without waiting for gossip. Answered with the peer's own record.
    /// `seen_as` is how the sender's map shows the receiver: one that
    /// finds itself suspect or gone there refutes it with a newer record,
    /// which reaches everyone (a partition that heals, a node that hung).
    Hello {
        record: NodeRecord,
        #[serde(default)]
        seen_as: Option<Liveness>,
    },
    /// "I am going": sent to every connected member before leaving or
    /// shutting down.
    Leave { departure: Departure },
    /// "Are you there?": a watcher's direct probe, answered with `Ack`.
    Probe,
    /// "Is `target` there?": a watcher whose own probe of `target` failed
    /// asks another member to probe it (SWIM's ping-req). Answered with
    /// [`ControlResponse::Probed`], a no as well as a yes, so the asker
    /// can tell a dead target from its own slowness (Lifeguard's nack).
    ProbeFor { target: PeerId },
    /// Run a task here; only the network's master may ask another node.
    /// Answered with `Ack` once queued; progress comes as `TaskUpdate`s.
    RunTask { spec: TaskSpec },
    /// Stop a task this node runs for the asker.
    CancelTask { job_id: String },
    /// A task's new state, sent by the node running it to the node that
    /// asked for it.
    TaskUpdate { report: TaskReport },
    /// The task's output from the given offsets on; only the master asks.
    FetchLogs {
        job_id: String,
        stdout_offset: u64,
        stderr_offset: u64,
    },
    /// Start a long-lived container (a session) named `name`; `spec.argv`
    /// must keep running. Master only.
    ContainerCreate { name: String, spec: TaskSpec },
    /// Run a command in a session and answer with its output. Master only.
    ContainerExec {
        name: String,
        argv: Vec<String>,
        timeout_ms: u64,
    },
    /// Remove a session. Master only.
    ContainerRemove { name: String },
    /// A step of a secure sum (the node's `secagg` module reads the body):
    /// from the master, or a site's shares sent to another site.
    SecureSum {
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    /// The public and image files this node serves.
    ListFiles,
    /// Describe a file for a transfer: size, version and chunk hashes. The
    /// chunks themselves travel on their own streams
    /// ([`crate::files::CHUNKS_PROTOCOL`]).
    /// `path` is relative to the workspace and starts with `public/` or
    /// `image/`: nothing else is ever served.
    FileManifest { path: String },
    /// Pull `path` from `from` into this node's workspace at `dest`
    /// (`public/...` or `image/...`; an image is loaded once it is here).
    /// Answered at once with [`ControlResponse::Fetching`]; the asker then
    /// follows it with `FetchStatus`. Master only.
    FetchFile {
        from: PeerId,
        path: String,
        dest: String,
    },
    /// How is fetch `id` going? `Fetching` while it runs, then `Fetched` or
    /// the refusal it ended with (told once). Only its asker may ask.
    FetchStatus { id: u64 },
}

/// How long an asker waits for a plain answer (an acknowledgement, a
/// record, a chunk): a member that says nothing for this long is not going
/// to, and a command must not hang on it.
pub const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

impl ControlRequest {
    /// How long the asker waits for the answer to this request. Work that
    /// runs before the answer has a deadline of its own: an exec its
    /// timeout, a manifest a whole-file hash. A fetch answers at once.
    pub fn answer_within(&self) -> std::time::Duration {
        use std::time::Duration;
        match self {
            ControlRequest::ContainerExec { timeout_ms, .. } => {
                Duration::from_millis(*timeout_ms).saturating_add(ANSWER_WITHIN)
            }
            ControlRequest::ContainerCreate { .. } => 4 * ANSWER_WITHIN,
            ControlRequest::FileManifest { .. } => 20 * ANSWER_WITHIN,
            _ => ANSWER_WITHIN,
        }
    }
}

/// Responses on the control protocol.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlResponse {
    Welcome {
        config: NetworkConfig,
        map: Vec<MapEntry>,
        /// Nodes the master removed, which the joiner refuses too.
        #[serde(default)]
        removed: Vec<PeerId>,
    },
    Hello {
        record: NodeRecord,
        #[serde(default)]
        seen_as: Option<Liveness>,
    },
    Ack,
    /// The answer to [`ControlRequest::ProbeFor`].
    Probed {
        reached: bool,
    },
    Refused {
        kind: RefusalKind,
        reason: String,
    },
    Logs {
        #[serde(with = "serde_bytes")]
        stdout: Vec<u8>,
        #[serde(with = "serde_bytes")]
        stderr: Vec<u8>,
    },
    Files {
        entries: Vec<FileEntry>,
    },
    Manifest(FileManifest),
    /// A fetch this node runs for the asker, still going.
    Fetching {
        id: u64,
    },
    Fetched {
        bytes: u64,
        blake3: String,
    },
    Exec {
        exit_code: Option<i64>,
        #[serde(with = "serde_bytes")]
        stdout: Vec<u8>,
        #[serde(with = "serde_bytes")]
        stderr: Vec<u8>,
        truncated: bool,
    },
    /// The answer to a step of a secure sum.
    SecureSum {
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
}

/// Why a node refused a request, so the asker can act on the cause (and
/// the REST API answer with the right status) without reading the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// The asker may not ask this (not the master, not its job).
    Forbidden,
    /// Too much is going on; try again later.
    Busy,
    /// The request itself is wrong.
    Invalid,
    /// What it names does not exist here.
    NotFound,
    /// The request was fine, but carrying it out failed here.
    Failed,
}

/// A refusal: its kind and a reason for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub reason: String,
}

impl Refusal {
    pub fn new(kind: RefusalKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }

    pub fn invalid(reason: impl Into<String>) -> Self {
        Self::new(RefusalKind::Invalid, reason)
    }

    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(RefusalKind::Forbidden, reason)
    }

    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(RefusalKind::NotFound, reason)
    }

    pub fn failed(reason: impl Into<String>) -> Self {
        Self::new(RefusalKind::Failed, reason)
    }
}

impl From<Refusal> for ControlResponse {
    fn from(refusal: Refusal) -> Self {
        ControlResponse::Refused {
            kind: refusal.kind,
            reason: refusal.reason,
        }
    }
}

/// Messages on the network's gossipsub topic.
// Announcements are the common case and live only until they are encoded or
// merged, so boxing the record would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MapMessage {
    /// The sender's own record, when it changes or to refute a suspicion.
    Announce { record: NodeRecord },
    /// The sender, a watcher of `peer`, could not reach it directly nor
    /// through others. It names the copy of `peer`'s record it holds
    /// (version and signing time): a newer copy refutes the suspicion.
    Suspect {
        peer: PeerId,
        version: u64,
        signed_at_ms: u64,
    },
    /// The sender leaves the network or shuts down.
    Leave { departure: Departure },
    /// Only from the master: these nodes are removed from the network.
    /// Sent when it removes one and whenever someone new subscribes.
    Removed { peers: Vec<PeerId> },
}

/// The gossipsub topic of a network.
pub fn map_topic(network_name: &str) -> String {
    format!("iris/{network_name}/map/2")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("node name", "alice-1.b_c").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "../x", &"x".repeat(65)] {
            assert!(validate_name("node name", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn modes_other_than_master_slave_are_refused() {
        assert_eq!(
            "master_slave".parse::<NetworkMode>(),
            Ok(NetworkMode::MasterSlave)
        );
        let err = "fully_distributed".parse::<NetworkMode>().unwrap_err();
        assert!(err.contains("master_slave"), "{err}");
    }
}
