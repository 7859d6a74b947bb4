//! What the REST API takes and gives, in one place: the axum handlers
//! serve these types and the typed client (`client.rs`) reads them, so
//! the server and the CLI cannot drift apart. docs/api.md describes each.

use iris_behaviours::{
    libp2p::{Multiaddr, PeerId},
    ExecOutput, ExecutorState, ImageRef, Liveness, NetworkConfig, Role,
};
use serde::{Deserialize, Serialize};

mod datasets;
mod jobs;
mod owner;
mod session;
pub mod shapes;
mod sums;
pub use datasets::*;
pub use jobs::*;
use jobs::{all, default_cpus, default_memory_mb};
pub use owner::*;
pub use session::*;
pub use sums::*;

/// Every error answer: `{"error": "..."}` with a status that says whose
/// fault it was.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// This node, as `GET /v1/status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Status {
    pub name: String,
    #[schema(value_type = String)]
    pub peer_id: PeerId,
    #[schema(value_type = Vec<String>)]
    pub addrs: Vec<Multiaddr>,
    pub p2p_port: u16,
    pub api_port: u16,
    pub tags: Vec<String>,
    pub network: Option<NetworkConfig>,
    pub role: Option<Role>,
    /// "available", or "unavailable (why)".
    pub executor: String,
}

/// One node of the map, as `GET /v1/nodes` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeView {
    pub name: String,
    #[schema(value_type = String)]
    pub peer_id: PeerId,
    pub role: Role,
    pub state: Liveness,
    /// Dialable addresses, each ending in `/p2p/<peer id>`.
    #[schema(value_type = Vec<String>)]
    pub addrs: Vec<Multiaddr>,
    pub api_port: u16,
    pub p2p_port: u16,
    pub tags: Vec<String>,
    pub version: u64,
    /// Unix time in milliseconds when this node last heard from it.
    pub last_seen: u64,
    /// Whether it is the node answering.
    #[serde(rename = "self")]
    pub is_self: bool,
    /// Whether the node answering has a connection to it.
    pub connected: bool,
    /// Whether that connection goes through a relay (none direct).
    #[serde(default)]
    pub relayed: bool,
    /// Whether it relays for members that cannot be dialed.
    #[serde(default)]
    pub relay: bool,
    pub executor: ExecutorState,
    pub images: Vec<ImageRef>,
    /// Where its audit log stands, as its record says.
    pub audit: Option<iris_behaviours::AuditHead>,
    /// The datasets it holds: their cards.
    #[serde(default)]
    pub datasets: Vec<iris_behaviours::DatasetCard>,
}

/// `POST /v1/network`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNetwork {
    #[schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// The network key, 16 characters or more.
    #[schema(min_length = 16)]
    pub key: String,
    #[serde(default = "default_mode")]
    #[schema(pattern = r"^master_slave$")]
    pub mode: String,
}

fn default_mode() -> String {
    "master_slave".into()
}

/// `POST /v1/network/join`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinNetwork {
    #[schema(min_length = 16)]
    pub key: String,
    /// A join ticket (`iris:<network id>@<address>`), or a member's
    /// address ending in `/p2p/<peer id>`.
    #[schema(pattern = r"^(iris:[0-9a-f]{64}@/.+|/.+/p2p/[1-9A-HJ-NP-Za-km-z]+)$")]
    pub bootstrap: String,
}

/// The answer to a create or a join.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NetworkMembership {
    pub network: NetworkConfig,
    /// The hash of the signed config, which a join ticket pins.
    pub network_id: String,
    pub role: Role,
    /// Where others can join through this node.
    #[schema(value_type = Vec<String>)]
    pub addrs: Vec<Multiaddr>,
    /// The same as join tickets: `iris network join --key K TICKET`.
    pub tickets: Vec<String>,
    pub nodes: Vec<NodeView>,
    /// Joined by a bare address: the master was taken on trust from the
    /// bootstrap.
    #[serde(default)]
    pub master_on_trust: bool,
}

/// `POST /v1/network/remove`: the master removes a node for good.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveNode {
    pub name: String,
}

/// The answer to `POST /v1/network/remove`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Removed {
    pub removed: String,
    #[schema(value_type = String)]
    pub peer_id: PeerId,
}

/// The answer to `POST /v1/network/leave`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Left {
    pub left: String,
}

/// The images this node's engine has.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Images {
    pub executor: String,
    pub images: Vec<ImageRef>,
}

/// `POST /v1/images/load`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadImage {
    /// A `docker save` tar on this machine (its name may not start with
    /// a dot).
    #[schema(pattern = r"^([^\u0000]*/)?[^./\u0000][^/\u0000]*\.tar$")]
    pub path: String,
    /// Load it even if it gives a tag this engine has to another image.
    #[serde(default)]
    pub force: bool,
}

/// The answer to an image load.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoadedImage {
    /// Where the tar now is, in workspace/image.
    pub file: String,
    pub loaded: Vec<String>,
}

/// `POST /v1/images/push`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushImage {
    /// A tar in the workspace's `image/` area.
    #[schema(pattern = r"^[^\u0000]*\.tar$")]
    pub path: String,
    #[serde(default = "all")]
    #[schema(value_type = shapes::Targets)]
    pub to: String,
}

/// `GET /v1/files`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FilesQuery {
    pub node: Option<String>,
}

/// `POST /v1/files/get`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetFile {
    #[schema(min_length = 1)]
    pub from: String,
    /// A file (not an area) in the workspace of `from`.
    #[schema(value_type = shapes::WorkspaceFile)]
    pub path: String,
    pub to: Option<String>,
    /// Where it goes, under `public/` (the default) or `image/`.
    #[schema(value_type = Option<shapes::Destination>)]
    pub dest: Option<String>,
}

/// The result of a transfer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transfer {
    pub path: String,
    pub bytes: u64,
    /// The BLAKE3 hash of the file, hex (as `b3sum` prints it).
    pub blake3: String,
    /// Chunks fetched in this run, and chunks already here from an earlier one.
    pub fetched_chunks: u64,
    pub resumed_chunks: u64,
    /// Chunks that arrived damaged and were fetched again.
    pub refetched_chunks: u64,
    pub seconds: f64,
}

/// `POST /v1/files/upload?as=PATH&to=TARGETS`, the file's bytes as the
/// body (`application/octet-stream`, at most 64 MiB).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// Where the file goes, in this node's workspace and every target's:
    /// `public/<as>`.
    #[serde(rename = "as")]
    #[param(value_type = shapes::WorkspaceFile)]
    pub dest: String,
    /// The nodes that get it too, as a job's `on` names them (default:
    /// none, this node only).
    #[param(value_type = Option<shapes::Targets>)]
    pub to: Option<String>,
}

/// `GET /v1/files/content?path=PATH`: a file of this node's own
/// workspace, its bytes.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ContentQuery {
    /// `public/...` (the default area) or `gathered/...`.
    #[param(value_type = shapes::ReadableFile)]
    pub path: String,
}

/// `POST /v1/files/put`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutFile {
    /// A file on this machine (a path has no NUL).
    #[schema(min_length = 1, pattern = r"^[^\u0000]+$")]
    pub source: String,
    /// Where it goes in every target's workspace (default public/<name>).
    #[serde(rename = "as")]
    pub dest: Option<String>,
    #[serde(default = "all")]
    #[schema(value_type = shapes::Targets)]
    pub to: String,
}

/// `POST /v1/containers`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContainers {
    #[schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    #[schema(pattern = r"^[!-~]{1,256}$")]
    pub image: String,
    #[serde(default = "all")]
    #[schema(value_type = shapes::Targets)]
    pub on: String,
    /// Empty: the image's own command, which must keep running.
    #[serde(default)]
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries.
    #[serde(default)]
    #[schema(value_type = Vec<shapes::EnvEntry>)]
    pub env: Vec<String>,
    #[serde(default)]
    #[schema(pattern = r"^(none|bridge)$")]
    pub network: Option<String>,
    #[serde(default = "default_memory_mb", deserialize_with = "shapes::whole")]
    #[schema(minimum = 6, maximum = 1048576)]
    pub memory_mb: u64,
    #[serde(default = "default_cpus")]
    #[schema(minimum = 0.001, maximum = 1024)]
    pub cpus: f64,
}

/// `POST /v1/containers/{name}/exec`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecContainers {
    #[serde(default = "all")]
    #[schema(value_type = shapes::Targets)]
    pub on: String,
    #[schema(min_items = 1, max_items = 1024)]
    pub argv: Vec<String>,
    /// Seconds, more than 0 and at most 86400.
    #[serde(default = "default_exec_timeout")]
    #[schema(exclusive_minimum = 0, maximum = 86400)]
    pub timeout_secs: f64,
}

fn default_exec_timeout() -> f64 {
    3600.0
}

/// `POST /v1/containers/{name}/rm`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveContainers {
    #[serde(default = "all")]
    #[schema(value_type = shapes::Targets)]
    pub on: String,
}

/// One node's answer to a command sent to several nodes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeAnswer {
    pub node: String,
    pub ok: bool,
    pub error: Option<String>,
    pub exit_code: Option<i64>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub truncated: bool,
}

impl NodeAnswer {
    /// What one node answered to a command: its output, or nothing but
    /// that it was done (or why it could not be asked, or refused).
    pub fn from_answer(node: String, answer: Result<Option<ExecOutput>, String>) -> Self {
        let mut out = NodeAnswer {
            node,
            ok: true,
            ..NodeAnswer::default()
        };
        match answer {
            Ok(Some(output)) => {
                out.ok = output.exit_code == Some(0);
                out.exit_code = output.exit_code;
                out.stdout = Some(String::from_utf8_lossy(&output.stdout).into_owned());
                out.stderr = Some(String::from_utf8_lossy(&output.stderr).into_owned());
                out.truncated = output.truncated;
            }
            Ok(None) => {}
            Err(reason) => {
                out.ok = false;
                out.error = Some(reason);
            }
        }
        out
    }
}
