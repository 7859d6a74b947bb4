//! What the data owner's routes take and give: the policy, approvals of
//! code and command, and releases of held outputs (the `owner` tag).

use iris_behaviours::{libp2p::PeerId, TaskState};
use serde::{Deserialize, Serialize};

/// `GET /v1/policy`: the owner's policy, every setting and its value.
pub type PolicyView = crate::policy::PolicyConfig;

/// `POST /v1/policy`: set one setting.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPolicy {
    #[schema(
        pattern = r"^(images|network|sessions|release|logs|min_aggregate|max_shared_log_bytes|max_tasks_per_hour)$"
    )]
    pub key: String,
    pub value: String,
}

/// `POST /v1/policy/images`: approve an image for what may run from it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowImage {
    /// An image name (`iris-worker:latest`) or a digest (`sha256:...`).
    #[schema(value_type = super::shapes::ImageReference)]
    pub image: String,
    /// Approve it for this dataset's jobs only.
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub dataset: Option<String>,
    /// What may run from it: `{"match": "prefix", "argv": ["/iris-worker",
    /// "stats"]}`, `{"match": "exact", "argv": [...]}`, or `{"match":
    /// "any"}` for every command in the image.
    pub command: crate::policy::CommandRule,
}

/// `POST /v1/policy/images/revoke`: take back every approval of an image.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeImage {
    /// The name it was approved under, or its digest.
    #[schema(pattern = r"^\S{1,256}$")]
    pub image: String,
}

/// `POST /v1/policy/sites`: recognise a member as a co-participant of
/// secure sums, pinned to the identity it has now.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecogniseSite {
    /// The member's name, as `iris nodes` shows it.
    #[schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub node: String,
}

/// `POST /v1/policy/sites/forget`: recognise a site no more.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgetSite {
    /// The name it was recognised under, or its peer id.
    #[schema(pattern = r"^\S{1,256}$")]
    pub node: String,
}

/// A task from another node waiting for the owner's approval.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PendingApproval {
    /// The job id; `iris approvals approve ID`.
    pub id: String,
    #[schema(value_type = String)]
    pub requester: PeerId,
    /// The requester's name in the map, if it is there.
    pub requester_name: Option<String>,
    pub image: String,
    /// What the image's name means here now: what an approval approves.
    pub image_id: Option<String>,
    pub argv: Vec<String>,
    pub network: Option<String>,
    pub memory_mb: u64,
    pub cpus: f64,
    pub timeout_secs: f64,
    pub inputs: Vec<String>,
    pub requested_ms: u64,
}

/// `POST /v1/approvals/{id}/approve`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// Also approve, for later jobs, the image's digest with exactly this
    /// task's command: what the owner was shown, not the whole image.
    #[serde(default)]
    pub always: bool,
}

/// `POST /v1/approvals/{id}/deny` and `/v1/releases/{job}/deny`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deny {
    #[serde(default)]
    pub reason: Option<String>,
}

/// The answer to an approval, a denial or a release.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decided {
    pub id: String,
    pub decision: String,
    /// For a release: the files released (or denied).
    #[serde(default)]
    pub files: Vec<String>,
}

/// A task's outputs waiting for the owner's release (`release = "review"`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PendingRelease {
    pub job_id: String,
    #[schema(value_type = String)]
    pub requester: PeerId,
    pub requester_name: Option<String>,
    pub image: String,
    pub argv: Vec<String>,
    pub state: TaskState,
    pub finished_ms: Option<u64>,
    /// Relative to the task's output directory, `outputs/<job>/`.
    pub files: Vec<String>,
    pub bytes: u64,
}
