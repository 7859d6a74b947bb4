//! What an entry of the audit log records.

use iris_behaviours::{libp2p::PeerId, TaskState};
use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditEvent {
    /// A node asked this one to run a task.
    TaskRequested {
        job_id: String,
        #[schema(value_type = String)]
        from: PeerId,
        image: String,
        argv: Vec<String>,
        network: Option<String>,
        memory_bytes: i64,
        nano_cpus: i64,
        inputs: Vec<String>,
        /// What the image's name meant here when the request came.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image_id: Option<String>,
        /// The dataset it reads; none: the whole private area.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dataset: Option<String>,
    },
    /// What was decided about a request: by the policy, or by the owner.
    Decision {
        /// The job id, or `session NAME`.
        subject: String,
        #[schema(value_type = String)]
        from: PeerId,
        image_id: Option<String>,
        verdict: Verdict,
        by: DecidedBy,
        reason: String,
    },
    /// A task's container is about to start, from exactly this image.
    TaskStarted { job_id: String, image_id: String },
    /// Its container ended (or never started).
    TaskEnded {
        job_id: String,
        state: TaskState,
        exit_code: Option<i64>,
        image_id: Option<String>,
    },
    /// A file of a task's outputs went to the node that asked for the job.
    OutputReleased {
        job_id: String,
        path: String,
        #[schema(value_type = String)]
        to: PeerId,
        bytes: u64,
        /// Written by releases before BLAKE3 (kept so their entries
        /// still verify).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
        /// The file's BLAKE3 hash, as its manifest named it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        blake3: Option<String>,
    },
    /// A task's logs went to the node that asked for the job.
    LogsReleased {
        job_id: String,
        #[schema(value_type = String)]
        to: PeerId,
        bytes: u64,
    },
    /// The owner released a task's held outputs, or refused to.
    ReleaseDecided {
        job_id: String,
        released: bool,
        reason: Option<String>,
    },
    /// A node asked to start a session (a long-lived container) here.
    SessionRequested {
        name: String,
        #[schema(value_type = String)]
        from: PeerId,
        image: String,
        image_id: Option<String>,
        argv: Vec<String>,
        network: Option<String>,
    },
    /// A node asked to run a command in a session here.
    ExecRequested {
        name: String,
        #[schema(value_type = String)]
        from: PeerId,
        argv: Vec<String>,
    },
    /// A command's output in a session went to the node that ran it.
    ExecReleased {
        name: String,
        #[schema(value_type = String)]
        to: PeerId,
        bytes: u64,
        sha256: String,
    },
    /// The owner changed the policy (or the declared datasets).
    PolicyChanged {
        change: String,
        /// The files the change wrote, each with the hash of its new
        /// content: what a restart after a crash puts in place (none in
        /// entries written before they were named, which seal as they
        /// were).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        saved: Vec<SavedFile>,
    },
    /// This log begins: at `iris init`, or when the owner started a new
    /// one knowingly (`iris audit new`), after what became of the old one.
    LogStarted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    /// A task's output left, masked, as an input of a secure sum: the sum
    /// unmasks only with `threshold` of the `participants` inputs in it.
    Contribution {
        job_id: String,
        session: String,
        #[schema(value_type = String)]
        to: PeerId,
        length: u64,
        participants: u64,
        threshold: u64,
        /// Every site of the sum (none in entries written before they
        /// were named, which seal as they were).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[schema(value_type = Vec<String>)]
        sites: Vec<PeerId>,
        /// With differential privacy: the noise added and what it cost the
        /// dataset's budget (none for a noise-free sum).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        privacy: Option<ContributionPrivacy>,
    },
}

/// What a contribution with differential privacy spent: the job's clip
/// and (ε, δ), and the zCDP ρ charged to the dataset's budget. The
/// ledger of spends is the sum of these entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContributionPrivacy {
    /// The dataset the task read (`private/` for the whole area).
    pub dataset: String,
    pub clip: f64,
    pub epsilon: f64,
    pub delta: f64,
    pub rho: f64,
}

/// A file an owner's change wrote: its path (absolute) and the BLAKE3
/// hash of its new content, in hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SavedFile {
    pub file: String,
    pub blake3: String,
}

impl SavedFile {
    /// The record of `path`'s new content, of hash `blake3`.
    pub fn new(path: &std::path::Path, blake3: String) -> std::io::Result<Self> {
        Ok(Self {
            file: Self::name_of(path)?,
            blake3,
        })
    }

    /// How a record names the file at `path`: its directory's canonical
    /// path, and its name, whatever directory the node was started from.
    pub fn name_of(path: &std::path::Path) -> std::io::Result<String> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => std::path::Path::new("."),
        };
        let name = path.file_name().unwrap_or_default();
        Ok(std::fs::canonicalize(dir)?.join(name).display().to_string())
    }
}

/// What a decision was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approved,
    AwaitingApproval,
    Denied,
}

/// Who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    Policy,
    Owner,
}
