//! The control protocol: requests one node sends another and the answers
//! it gets back, on libp2p's request-response with the CBOR codec
//! (`codec.rs`). Membership requests (join, hello, leave, probes)
//! are answered by the receiver's event loop; the rest by its router.

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::{
    files::{FileEntry, FileManifest},
    messages::{Departure, Liveness, MapEntry, NetworkConfig, NodeRecord},
    refusal::{Refusal, RefusalKind},
    tasks::{TaskReport, TaskSpec},
};

/// The request-response protocol for commands between nodes. Version 9:
/// members ask each other for proofs that their audit logs only grew
/// ([`ControlRequest::AuditProof`]). Version 8
/// (with [`crate::PROTOCOL_VERSION`]): requests that must not take effect
/// twice travel as [`ControlRequest::AtMostOnce`], so a sender can repeat
/// them after a connection closed under them. Version 6: SWIM probes,
/// direct and indirect.
/// Version 5: BLAKE3 manifests, and chunks on their own stream protocol.
/// Version 4:
/// a task may await its owner's approval, and a report says why outputs are
/// held; version 3 signed records and the network config
/// ([`crate::signed`]); version 2 gave refusals a [`RefusalKind`].
pub const CONTROL_PROTOCOL: &str = "/iris/control/9";

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
    /// "Prove that your audit log extends these sizes": a member that
    /// kept an older head of the receiver's log, and sees a newer one,
    /// asks for consistency proofs from each of `sizes` (at most
    /// [`MAX_PROOF_SIZES`]) to the receiver's current tree. Answered with
    /// [`ControlResponse::AuditProof`], or refused when a size is beyond
    /// the log: a log that shrank.
    AuditProof { sizes: Vec<u64> },
    /// `request`, to be carried out at most once: its sender may send it
    /// again, with the same `id`, when the connection closed before the
    /// answer came back, and the receiver answers a repeat with the first
    /// answer (waiting for it if it is still being worked out) instead of
    /// doing the work twice. Ids are the sender's, kept apart per sender.
    /// Wraps only requests that are not [`ControlRequest::is_repeatable`].
    AtMostOnce {
        id: u64,
        request: Box<ControlRequest>,
    },
}

/// Most sizes one [`ControlRequest::AuditProof`] asks about: the head the
/// asker kept and the one it was just shown.
pub const MAX_PROOF_SIZES: usize = 2;

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
            ControlRequest::AtMostOnce { request, .. } => request.answer_within(),
            ControlRequest::ContainerExec { timeout_ms, .. } => {
                Duration::from_millis(*timeout_ms).saturating_add(ANSWER_WITHIN)
            }
            ControlRequest::ContainerCreate { .. } => 4 * ANSWER_WITHIN,
            ControlRequest::FileManifest { .. } => 20 * ANSWER_WITHIN,
            _ => ANSWER_WITHIN,
        }
    }

    /// Whether sending this request twice does what sending it once does,
    /// so that it may be sent again as it is when its connection closed
    /// before the answer came. Reads are; so are records, goodbyes and
    /// reports, which their receivers merge. Starting work (a task, an
    /// exec, a fetch, a step of a secure sum) is not, nor is a fetch's
    /// final status, which is told once: those travel as
    /// [`ControlRequest::AtMostOnce`].
    pub fn is_repeatable(&self) -> bool {
        match self {
            ControlRequest::Join { .. }
            | ControlRequest::Hello { .. }
            | ControlRequest::Leave { .. }
            | ControlRequest::Probe
            | ControlRequest::ProbeFor { .. }
            | ControlRequest::CancelTask { .. }
            | ControlRequest::TaskUpdate { .. }
            | ControlRequest::FetchLogs { .. }
            | ControlRequest::ListFiles
            | ControlRequest::FileManifest { .. }
            | ControlRequest::AuditProof { .. }
            | ControlRequest::AtMostOnce { .. } => true,
            ControlRequest::RunTask { .. }
            | ControlRequest::ContainerCreate { .. }
            | ControlRequest::ContainerExec { .. }
            | ControlRequest::ContainerRemove { .. }
            | ControlRequest::SecureSum { .. }
            | ControlRequest::FetchFile { .. }
            | ControlRequest::FetchStatus { .. } => false,
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
    /// The answer to [`ControlRequest::AuditProof`]: the log's current
    /// signed head, and for each size asked about the RFC 6962 consistency
    /// proof from that size to `head` (empty for `head`'s own size).
    AuditProof {
        head: crate::AuditHead,
        proofs: Vec<serde_bytes::ByteBuf>,
    },
    /// The answer to a step of a secure sum.
    SecureSum {
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
}

impl From<Refusal> for ControlResponse {
    fn from(refusal: Refusal) -> Self {
        ControlResponse::Refused {
            kind: refusal.kind,
            reason: refusal.reason,
        }
    }
}
