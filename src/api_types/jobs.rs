//! Jobs: what a researcher asks for, and the job and its tasks as the
//! node that submitted it keeps them.

use std::collections::BTreeMap;

use iris_behaviours::{libp2p::PeerId, TaskSpec, TaskState};
use serde::{Deserialize, Serialize};

use super::shapes;

/// What the user asked for in `POST /v1/jobs`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    #[schema(pattern = r"^[!-~]{1,256}$")]
    pub image: String,
    #[schema(min_items = 1, max_items = 1024)]
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries.
    #[serde(default)]
    #[schema(value_type = Vec<shapes::EnvEntry>)]
    pub env: Vec<String>,
    /// `all`, `name,name`, `role:R` or `tag:T`.
    #[serde(default = "all")]
    #[schema(value_type = shapes::Targets)]
    pub on: String,
    /// Run on one target only, the least loaded.
    #[serde(default)]
    pub any: bool,
    /// `none` (default) or `bridge`.
    #[serde(default)]
    #[schema(pattern = r"^(none|bridge)$")]
    pub network: Option<String>,
    #[serde(default = "default_memory_mb", deserialize_with = "shapes::whole")]
    #[schema(minimum = 6, maximum = 1048576)]
    pub memory_mb: u64,
    #[serde(default = "default_cpus")]
    #[schema(minimum = 0.001, maximum = 1024)]
    pub cpus: f64,
    #[serde(default = "default_timeout")]
    #[schema(minimum = 0.001, maximum = 604800)]
    pub timeout_secs: f64,
    /// Paths in each target's public workspace, mounted read-only at
    /// `/workspace/in/<path>`.
    #[serde(default)]
    #[schema(value_type = Vec<shapes::InputPath>, max_items = 16)]
    pub inputs: Vec<String>,
    /// With `on: "dataset:NAME"`: run on this node alone, on the dataset's
    /// mock sample, fetched from a node that holds it.
    #[serde(default)]
    pub dry_run: bool,
    /// How many tasks must succeed for the job to succeed (default: every
    /// target). With `deadline_secs`, the job ends at the deadline with
    /// whatever succeeded by then.
    #[serde(default, deserialize_with = "shapes::maybe_whole")]
    #[schema(minimum = 1, maximum = 1024)]
    pub quorum: Option<u32>,
    /// Seconds after submission when the job ends: the tasks still going
    /// (running, queued, awaiting approval) are cancelled and recorded as
    /// `late`, and nothing they say later counts. The job succeeded if its
    /// quorum did.
    #[serde(default)]
    #[schema(minimum = 0.001, maximum = 604800)]
    pub deadline_secs: Option<f64>,
    /// The round of a training this job is: one job per round, so a
    /// round submitted again (a driver resuming after a lost connection
    /// or a restart of this node) is refused with the job that has it,
    /// and a site never answers the same round twice.
    #[serde(default)]
    pub round: Option<RoundId>,
    /// With `round`: each site may keep this training's container running
    /// from one round to the next (a warm worker), so that start-up and
    /// imports are paid once; the program takes each round from
    /// `IRIS_ROUND_FILE` (docs/warm-workers.md). Everything else is as for
    /// any job: approval, the egress gate, differential privacy, audit.
    #[serde(default)]
    pub warm: bool,
}

/// A round of a training, as the researcher's driver names it. The round
/// is the job: every contribution to it (a task's report, a secure sum's
/// keys, shares and masked vector) is bound to the job's id, so an answer
/// for an earlier round never counts in a later one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoundId {
    /// The training's name, the same for each of its rounds.
    #[schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub training: String,
    /// The round's number, from 1.
    #[serde(deserialize_with = "shapes::whole")]
    #[schema(minimum = 1, maximum = 1000000)]
    pub number: u32,
}

/// The most rounds a training has.
pub const MAX_ROUNDS: u32 = 1_000_000;

impl RoundId {
    pub fn validate(&self) -> Result<(), String> {
        iris_behaviours::names::validate_name("a training's name", &self.training)?;
        if !(1..=MAX_ROUNDS).contains(&self.number) {
            return Err(format!(
                "round {}: a round's number is 1 to {MAX_ROUNDS}",
                self.number
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for RoundId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} round {}", self.training, self.number)
    }
}

impl JobRequest {
    /// Validates a request and turns it into the spec every target runs.
    pub fn task_spec(&self, job_id: &str) -> Result<TaskSpec, String> {
        let request = self;
        let mut env = Vec::new();
        for pair in &request.env {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("environment entry '{pair}' must be KEY=VALUE"))?;
            env.push((key.to_string(), value.to_string()));
        }
        let network = match request.network.as_deref() {
            None | Some("none") => None,
            Some(other) => Some(other.to_string()),
        };
        if let Some(round) = &request.round {
            round.validate()?;
        }
        if !request.cpus.is_finite() || !request.timeout_secs.is_finite() {
            return Err("cpus and timeout must be finite numbers".into());
        }
        let spec =
            TaskSpec {
                job_id: job_id.to_string(),
                image: request.image.clone(),
                argv: request.argv.clone(),
                env,
                network,
                memory_bytes: i64::try_from(request.memory_mb.saturating_mul(1 << 20))
                    .unwrap_or(i64::MAX),
                nano_cpus: (request.cpus * 1e9) as i64,
                pids_limit: 256,
                timeout_ms: (request.timeout_secs * 1000.0) as u64,
                inputs: request.inputs.clone(),
                dataset: request.on.strip_prefix("dataset:").map(String::from),
                dry_run: request.dry_run,
                warm: match (&request.round, request.warm) {
                    (Some(round), true) => Some(round.training.clone()),
                    (None, true) => return Err(
                        "warm: a warm worker serves a training's rounds; give the job its round"
                            .into(),
                    ),
                    (_, false) => None,
                },
            };
        spec.validate_allowing_image_command()?;
        Ok(spec)
    }
}

pub(super) fn all() -> String {
    "all".into()
}
pub(super) fn default_memory_mb() -> u64 {
    512
}
pub(super) fn default_cpus() -> f64 {
    1.0
}
pub(super) fn default_timeout() -> f64 {
    3600.0
}

/// Where a job stands: running until every task has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    #[default]
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub const ALL: [JobState; 3] = [JobState::Running, JobState::Succeeded, JobState::Failed];
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        })
    }
}

/// One node's part of a job.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    pub node: String,
    #[schema(value_type = String)]
    pub peer_id: PeerId,
    pub state: TaskState,
    pub exit_code: Option<i64>,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub outputs: Vec<String>,
    /// The task wrote more files than a report carries; `outputs` lists
    /// the first of them.
    #[serde(default)]
    pub outputs_truncated: bool,
    pub error: Option<String>,
    /// The image it ran, as the engine's id (`sha256:...`).
    #[serde(default)]
    pub image_id: Option<String>,
    /// Why its outputs are not listed: the node's owner holds them for
    /// review, denied them, or releases them only through secure aggregation.
    #[serde(default)]
    pub held: Option<String>,
    /// Files the task wrote whose names are not UTF-8, with their bytes
    /// escaped (`\\xff`): refused one by one, never gathered.
    #[serde(default)]
    pub unnamed_outputs: Vec<String>,
}

/// A job and every task's last known state, as the API shows it (the
/// node keeps it as a `jobs::JobRecord`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    pub id: String,
    /// Derived from the tasks: running until every task has ended.
    pub state: JobState,
    pub request: JobRequest,
    pub created_ms: u64,
    /// By node name.
    pub tasks: BTreeMap<String, Task>,
}

/// `GET /v1/jobs/{id}?wait=S`: answer once the job has ended, or after S
/// seconds with the job as it stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Seconds to wait for the job to end, at most 600.
    #[serde(default)]
    #[param(minimum = 0, maximum = 600)]
    pub wait: Option<f64>,
}

/// The longest wait one request may ask for.
pub const MAX_WAIT_SECS: f64 = 600.0;

/// `GET /v1/jobs/{id}/logs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    pub node: Option<String>,
    #[serde(default)]
    pub stdout_offset: u64,
    #[serde(default)]
    pub stderr_offset: u64,
}

/// One task's output, as `GET /v1/jobs/{id}/logs` returns it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskLogs {
    pub node: String,
    pub state: TaskState,
    pub stdout: String,
    pub stderr: String,
    /// Offsets to ask from next time (for `--follow`).
    pub stdout_offset: u64,
    pub stderr_offset: u64,
    /// Why the node sent none: its owner's policy withholds logs.
    #[serde(default)]
    pub withheld: Option<String>,
}

/// The answer to `POST /v1/jobs/{id}/gather`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Gathered {
    pub files: Vec<String>,
    /// Nodes whose outputs were not released, each with the reason.
    #[serde(default)]
    pub held: Vec<String>,
    /// Outputs refused because their names are not UTF-8, as `node: name`
    /// with the name's bytes escaped; the rest were gathered.
    #[serde(default)]
    pub unnamed: Vec<String>,
}
