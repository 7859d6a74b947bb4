//! What happened, for whoever listens: the REST API streams these as
//! server-sent events and `iris events` prints them.

use iris_behaviours::libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// The reason of a `gone` event for a node that announced its shutdown: it
/// means to come back, so its unfinished tasks are not written off.
pub const SHUT_DOWN: &str = "shut down";

/// How many events a slow listener may fall behind before it misses some.
const CAPACITY: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A node appeared in the map for the first time.
    Joined {
        name: String,
        #[schema(value_type = String)]
        peer_id: PeerId,
    },
    /// A suspect, gone or departed node was heard from again.
    Alive {
        name: String,
        #[schema(value_type = String)]
        peer_id: PeerId,
    },
    Suspect {
        name: String,
        #[schema(value_type = String)]
        peer_id: PeerId,
        reason: String,
    },
    /// Suspect for too long, or it announced its shutdown.
    Gone {
        name: String,
        #[schema(value_type = String)]
        peer_id: PeerId,
        reason: String,
    },
    /// It left the network for good.
    Left {
        name: String,
        #[schema(value_type = String)]
        peer_id: PeerId,
    },
    /// Its audit log was rewritten: the head its record shows now does not
    /// extend the one this node kept of it (it could not prove that it
    /// does). Both heads are signed by the node.
    AuditRewritten {
        name: String,
        #[schema(value_type = String)]
        peer_id: PeerId,
        before: iris_behaviours::AuditHead,
        now: iris_behaviours::AuditHead,
    },
    /// The master removed it: its name is free, and it is refused.
    Removed {
        name: String,
        #[schema(value_type = String)]
        peer_id: PeerId,
    },
    /// This node created a network, joined one, or left one.
    NetworkCreated {
        network: String,
    },
    NetworkJoined {
        network: String,
        #[schema(value_type = String)]
        via: PeerId,
    },
    NetworkLeft {
        network: String,
    },
    /// An image tar from workspace/image was loaded into the engine.
    ImageLoaded {
        file: String,
        images: Vec<String>,
    },
    /// Every task of a job this node submitted has ended.
    JobFinished {
        job: String,
        state: String,
    },
    /// A file transfer into this node progressed.
    Transfer {
        path: String,
        bytes: u64,
        total: u64,
    },
    /// An image tar could not be loaded.
    ImageFailed {
        file: String,
        error: String,
    },
    /// Another node asked this one to run a task whose image this node's
    /// owner has not approved: `iris approvals` lists it.
    ApprovalRequested {
        job: String,
        #[schema(value_type = String)]
        from: PeerId,
        image: String,
    },
    /// A task of a job this node submitted waits for its node's owner to
    /// approve it.
    AwaitingApproval {
        job: String,
        node: String,
    },
    /// A task's outputs wait for this node's owner to release them
    /// (`iris releases`).
    ReleaseHeld {
        job: String,
    },
}

impl EventKind {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Joined { .. } => "joined",
            EventKind::Alive { .. } => "alive",
            EventKind::Suspect { .. } => "suspect",
            EventKind::Gone { .. } => "gone",
            EventKind::Left { .. } => "left",
            EventKind::Removed { .. } => "removed",
            EventKind::AuditRewritten { .. } => "audit_rewritten",
            EventKind::NetworkCreated { .. } => "network_created",
            EventKind::NetworkJoined { .. } => "network_joined",
            EventKind::NetworkLeft { .. } => "network_left",
            EventKind::ImageLoaded { .. } => "image_loaded",
            EventKind::ImageFailed { .. } => "image_failed",
            EventKind::JobFinished { .. } => "job_finished",
            EventKind::Transfer { .. } => "transfer",
            EventKind::ApprovalRequested { .. } => "approval_requested",
            EventKind::AwaitingApproval { .. } => "awaiting_approval",
            EventKind::ReleaseHeld { .. } => "release_held",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// One server-sent event of `GET /v1/events`, as the stream carries it:
/// the OpenAPI document describes this envelope, as OpenAPI 3.1 reads the
/// schema of an event stream, and says in JSON Schema's words
/// (`contentMediaType`, `contentSchema`) that its data is an `Event`.
#[derive(utoipa::ToSchema)]
pub struct EventEnvelope {
    /// The event's type: `joined`, `suspect`, `job_finished`, ...
    pub event: String,
    /// The event as JSON: an `Event`.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    sender: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Events {
    pub fn emit(&self, kind: EventKind) {
        tracing::info!(
            event = kind.name(),
            "{}",
            serde_json::to_string(&kind).unwrap_or_default()
        );
        // No listener is fine: events are for whoever is watching now.
        let _ = self.sender.send(Event {
            at_ms: crate::now_ms(),
            kind,
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}
