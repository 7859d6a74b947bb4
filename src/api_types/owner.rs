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

/// `POST /v1/policy/budgets`: the privacy budget of one dataset.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBudget {
    /// A dataset of this node, or `private/` for tasks that read the
    /// whole private area.
    #[schema(pattern = r"^([A-Za-z0-9_-][A-Za-z0-9._-]{0,63}|private/)$")]
    pub dataset: String,
    /// What all its noisy secure sums may cost together.
    #[schema(exclusive_minimum = 0.0, maximum = 1000.0)]
    pub epsilon: f64,
    /// The policy's `privacy_delta` if not given.
    #[serde(default)]
    #[schema(exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    pub delta: Option<f64>,
}

/// A dataset's privacy budget and what its secure sums have spent.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BudgetView {
    /// A dataset of this node, or `private/` (the whole private area).
    pub dataset: String,
    /// The budget, as ε at δ.
    pub epsilon: f64,
    pub delta: f64,
    /// What its noisy secure sums have cost together, as ε at the same δ.
    pub spent_epsilon: f64,
    /// The ε at the same δ of the largest sum (or sums together) it may
    /// still take part in. zCDP adds up, ε does not: spent and left do not
    /// add up to the budget.
    pub left_epsilon: f64,
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
    /// Outputs whose names are not UTF-8, their bytes escaped: released,
    /// these names leave too (the files cannot be asked for).
    #[serde(default)]
    pub unnamed: Vec<String>,
    pub bytes: u64,
}
