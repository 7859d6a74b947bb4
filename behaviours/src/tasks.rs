//! Tasks on the wire: what a node is asked to run ([`TaskSpec`]), and what
//! it reports back while it runs it ([`TaskReport`]), each bounded so that
//! it always fits in a request frame.

use serde::{Deserialize, Serialize};

/// Most log bytes one `Logs` answer carries per stream.
pub const MAX_LOG_CHUNK: usize = 1024 * 1024;

/// A container to run on one node, as the wire carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub job_id: String,
    pub image: String,
    /// The command as an array: no shell ever sees it.
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// `None`: no network; `Some("bridge")`: Docker's default bridge.
    #[serde(default)]
    pub network: Option<String>,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    pub timeout_ms: u64,
    /// Paths in the node's own `public` workspace area, mounted read-only
    /// at `/workspace/in/<path>`: how one job reads what an earlier one
    /// wrote or gathered.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The dataset the task reads, by its name on the node that runs it:
    /// mounted alone, read-only, at `/workspace/data`, instead of the
    /// whole private area at `/workspace/private`.
    #[serde(default)]
    pub dataset: Option<String>,
    /// A dry run: the dataset is the mock sample its node fetched into
    /// `gathered/mock/<dataset>/`. Only a node's own tasks may be.
    #[serde(default)]
    pub dry_run: bool,
    /// A round of this training, run by a warm worker: the node may keep
    /// the container of the training's last round running, and hand it
    /// this round through its inputs, instead of starting a new one.
    #[serde(default)]
    pub warm: Option<String>,
}

/// The longest input path, in characters (at most 1 KiB of UTF-8).
pub const MAX_INPUT_CHARS: usize = 256;

/// Most inputs one task may mount.
pub const MAX_INPUTS: usize = 16;

impl TaskSpec {
    /// Checks what a peer or a user could get wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.argv.is_empty() {
            return Err("the command is empty: give it after `--`".into());
        }
        self.validate_allowing_image_command()
    }

    /// As [`TaskSpec::validate`], but an empty `argv` means the image's own
    /// command (for long-lived containers).
    pub fn validate_allowing_image_command(&self) -> Result<(), String> {
        validate_job_id(&self.job_id)?;
        if !crate::names::is_image_reference(&self.image) {
            return Err(format!(
                "image '{}' is not a valid image reference",
                self.image
            ));
        }
        if self.argv.len() > 1024 || self.argv.iter().any(|a| a.len() > 64 * 1024) {
            return Err("the command is too long".into());
        }
        for (key, _) in &self.env {
            let mut chars = key.chars();
            let first_ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("environment variable name '{key}' is not valid"));
            }
        }
        match self.network.as_deref() {
            None | Some("bridge") => {}
            Some(other) => {
                return Err(format!(
                    "network '{other}' is not allowed: use none or bridge"
                ))
            }
        }
        if let Some(dataset) = &self.dataset {
            crate::names::validate_name("dataset name", dataset)?;
        }
        if let Some(training) = &self.warm {
            crate::names::validate_name("a training's name", training)?;
        }
        if !(6 << 20..=1 << 40).contains(&self.memory_bytes) {
            return Err("memory must be between 6 MiB and 1 TiB".into());
        }
        if !(1_000_000..=1024 * 1_000_000_000).contains(&self.nano_cpus) {
            return Err("cpus must be between 0.001 and 1024".into());
        }
        if !(1..=1_000_000).contains(&self.pids_limit) {
            return Err("the pid limit must be between 1 and 1000000".into());
        }
        if !(1..=7 * 24 * 3600 * 1000).contains(&self.timeout_ms) {
            return Err("the timeout must be between 1 ms and 7 days".into());
        }
        if self.inputs.len() > MAX_INPUTS {
            return Err(format!("at most {MAX_INPUTS} inputs"));
        }
        for input in &self.inputs {
            validate_input(input)?;
        }
        // What runs here must also run on any other node: the spec travels
        // in one request frame, with room to spare for the envelope.
        let size = crate::codec::encode(self, usize::MAX)
            .map_err(|e| e.to_string())?
            .len();
        if size > MAX_SPEC_BYTES {
            return Err(format!(
                "the job is too large to send to another node: its command, \
                 environment and inputs take {size} bytes, at most {MAX_SPEC_BYTES}"
            ));
        }
        Ok(())
    }
}

/// The most a [`TaskSpec`] may take on the wire: a request frame less room
/// for the request around it (a session's name, the enum tag).
pub const MAX_SPEC_BYTES: usize = crate::codec::MAX_CONTROL_REQUEST - 1024;

/// An input is a plain relative path: its parts are names, never `..`,
/// `.` or empty, so `/workspace/in/<path>` stays under `/workspace/in`.
fn validate_input(path: &str) -> Result<(), String> {
    // Counted in characters, as the REST document counts them.
    let plain = path.chars().count() <= MAX_INPUT_CHARS && is_relative_path(path);
    if plain {
        Ok(())
    } else {
        Err(format!(
            "input '{path}' must be a relative path inside the public workspace, like jobs/<id>"
        ))
    }
}

/// Job ids name directories and container labels: keep them plain.
pub fn validate_job_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(format!(
            "job id '{id}' may hold only 1 to 64 letters, digits and '-'"
        ));
    }
    Ok(())
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for the node's owner to approve its image (the owner's
    /// policy: `images = "approve"`).
    AwaitingApproval,
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    /// Its node went away (or restarted) before it finished.
    Lost,
    /// Its job's deadline passed first, with the job's quorum met or
    /// not: the master cancelled it and uses nothing it says later. Only
    /// the master records it; no node reports it.
    Late,
}

impl TaskState {
    /// Every state, for counts by state.
    pub const ALL: [TaskState; 9] = [
        TaskState::AwaitingApproval,
        TaskState::Queued,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::TimedOut,
        TaskState::Cancelled,
        TaskState::Lost,
        TaskState::Late,
    ];

    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            TaskState::AwaitingApproval | TaskState::Queued | TaskState::Running
        )
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskState::AwaitingApproval => "awaiting_approval",
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::TimedOut => "timed_out",
            TaskState::Cancelled => "cancelled",
            TaskState::Lost => "lost",
            TaskState::Late => "late",
        })
    }
}

/// A task's state as the node running it reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    pub job_id: String,
    pub state: TaskState,
    pub exit_code: Option<i64>,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    /// Files the task wrote, relative to its output directory; the first
    /// of them if there were more than a report carries.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Some outputs are not listed: see [`TaskReport::set_outputs`].
    #[serde(default)]
    pub outputs_truncated: bool,
    pub error: Option<String>,
    /// The image the task ran, as the engine's id (`sha256:...`): what a
    /// tag meant when it ran.
    #[serde(default)]
    pub image_id: Option<String>,
    /// Why `outputs` lists nothing although the task wrote files: the
    /// node's owner holds them (`release = "review"`), denied them, or lets
    /// them leave only through secure aggregation.
    #[serde(default)]
    pub held: Option<String>,
    /// Files the task wrote whose names are not UTF-8, with their bytes
    /// escaped: refused one by one, so the others still leave.
    #[serde(default)]
    pub unnamed_outputs: Vec<String>,
}

/// The most names of unnamed outputs a report lists, and the longest.
pub const MAX_UNNAMED_OUTPUTS: usize = 16;
pub const MAX_UNNAMED_OUTPUT_BYTES: usize = 255;

/// The most the output names of one report may take, so that a report
/// always fits in a request frame however many files a task wrote.
pub const MAX_REPORT_OUTPUT_BYTES: usize = 32 * 1024;
/// The longest error text a report carries.
pub const MAX_REPORT_ERROR_BYTES: usize = 4 * 1024;
/// The longest image id a report names (`sha256:` and 64 hex digits, with
/// room to spare).
const MAX_IMAGE_ID_BYTES: usize = 128;

/// Whether `name` is a path below a directory: not empty, not absolute,
/// no `.` or `..` or empty component, no NUL.
fn is_relative_path(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\0')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

impl TaskReport {
    /// The first report of a task: queued, nothing else known yet.
    pub fn queued(job_id: String) -> Self {
        Self {
            job_id,
            state: TaskState::Queued,
            exit_code: None,
            started_ms: None,
            finished_ms: None,
            outputs: Vec::new(),
            outputs_truncated: false,
            error: None,
            image_id: None,
            held: None,
            unnamed_outputs: Vec::new(),
        }
    }

    /// Lists the first [`MAX_UNNAMED_OUTPUTS`] of `names` (escaped, so
    /// ASCII), each cut to [`MAX_UNNAMED_OUTPUT_BYTES`].
    pub fn set_unnamed_outputs(&mut self, names: Vec<String>) {
        self.unnamed_outputs = names
            .into_iter()
            .take(MAX_UNNAMED_OUTPUTS)
            .map(|name| {
                let name: String = name.chars().filter(|c| !c.is_control()).collect();
                match name.char_indices().nth(MAX_UNNAMED_OUTPUT_BYTES) {
                    Some((cut, _)) => name[..cut].to_string(),
                    None => name,
                }
            })
            .collect();
    }

    /// Lists as many of `outputs` as fit in [`MAX_REPORT_OUTPUT_BYTES`], in
    /// order, and says whether any were left out.
    pub fn set_outputs(&mut self, outputs: Vec<String>) {
        let mut room = MAX_REPORT_OUTPUT_BYTES;
        let total = outputs.len();
        self.outputs = outputs
            .into_iter()
            // A name costs its bytes and a few more for its CBOR header.
            .take_while(|name| match room.checked_sub(name.len() + 8) {
                Some(left) => {
                    room = left;
                    true
                }
                None => false,
            })
            .collect();
        self.outputs_truncated = self.outputs.len() < total;
    }

    /// Checks a report that came from another node: every field within
    /// the bounds a node makes its reports with, so that a member cannot
    /// grow a job's record with a report no node would send, nor name an
    /// output that is not a path inside the task's output directory. The
    /// reasons name the field, never its content.
    pub fn validate(&self) -> Result<(), String> {
        validate_job_id(&self.job_id)?;
        if self.state == TaskState::Late {
            return Err("the report's state: only the master records a task as late".into());
        }
        let listed: usize = self.outputs.iter().map(|name| name.len() + 8).sum();
        if listed > MAX_REPORT_OUTPUT_BYTES {
            return Err(format!(
                "the report's output names take over {} KiB",
                MAX_REPORT_OUTPUT_BYTES / 1024
            ));
        }
        if !self.outputs.iter().all(|name| is_relative_path(name)) {
            return Err("the report names an output that is not a relative path".into());
        }
        let unnamed_fit = |name: &String| {
            name.len() <= MAX_UNNAMED_OUTPUT_BYTES && !name.chars().any(char::is_control)
        };
        if self.unnamed_outputs.len() > MAX_UNNAMED_OUTPUTS
            || !self.unnamed_outputs.iter().all(unnamed_fit)
        {
            return Err(format!(
                "the report lists more than {MAX_UNNAMED_OUTPUTS} unnamed outputs, or one over {MAX_UNNAMED_OUTPUT_BYTES} bytes"
            ));
        }
        // The cut text and the mark that says it was cut.
        let longest = MAX_REPORT_ERROR_BYTES + " [...]".len();
        if [&self.error, &self.held]
            .into_iter()
            .flatten()
            .any(|text| text.len() > longest)
        {
            return Err(format!(
                "the report's error or hold reason is over {} KiB",
                MAX_REPORT_ERROR_BYTES / 1024
            ));
        }
        if self
            .image_id
            .as_ref()
            .is_some_and(|id| id.len() > MAX_IMAGE_ID_BYTES || id.chars().any(char::is_control))
        {
            return Err("the report's image id is not one".into());
        }
        Ok(())
    }

    /// Keeps the error text within [`MAX_REPORT_ERROR_BYTES`].
    pub fn set_error(&mut self, error: Option<String>) {
        self.error = error.map(|mut text| {
            if text.len() > MAX_REPORT_ERROR_BYTES {
                let mut end = MAX_REPORT_ERROR_BYTES;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
                text.push_str(" [...]");
            }
            text
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Call, Envelope, RunTask, TaskUpdate};

    /// What a node sends passes; what no node sends is refused.
    #[test]
    fn a_report_from_a_peer_is_checked_field_by_field() {
        let mut report = TaskReport::queued("job-1".into());
        report.set_outputs(vec!["stats.json".into(), "plots/a.png".into()]);
        report.set_unnamed_outputs(vec!["x\\xff".into()]);
        report.set_error(Some("e".repeat(MAX_REPORT_ERROR_BYTES * 2)));
        report.image_id = Some(format!("sha256:{}", "a".repeat(64)));
        report.validate().unwrap();

        for name in [
            "",
            "/etc/passwd",
            "../up",
            "a/../../b",
            "a//b",
            "./a",
            "a\0b",
        ] {
            let mut bad = report.clone();
            bad.outputs = vec![name.into()];
            assert!(bad.validate().is_err(), "{name:?} passed");
        }
        let mut bad = report.clone();
        bad.outputs = vec!["a".repeat(1000); 40];
        assert!(bad.validate().unwrap_err().contains("KiB"));
        let mut bad = report.clone();
        bad.unnamed_outputs = vec!["x".into(); MAX_UNNAMED_OUTPUTS + 1];
        assert!(bad.validate().is_err());
        let mut bad = report.clone();
        bad.held = Some("h".repeat(MAX_REPORT_ERROR_BYTES + 100));
        assert!(bad.validate().is_err());
        let mut bad = report.clone();
        bad.job_id = "../x".into();
        assert!(bad.validate().is_err());
        let mut bad = report;
        bad.image_id = Some("i".repeat(200));
        assert!(bad.validate().is_err());
    }

    /// A call as it travels, with an id as if at most once.
    fn envelope(call: impl Call) -> Envelope {
        Envelope {
            once: Some(u64::MAX),
            request: call.into_request(),
        }
    }

    fn spec(argv: Vec<String>) -> TaskSpec {
        TaskSpec {
            job_id: "job-1".into(),
            image: "iris-worker:latest".into(),
            argv,
            env: vec![],
            network: None,
            memory_bytes: 256 << 20,
            nano_cpus: 1_000_000_000,
            pids_limit: 64,
            timeout_ms: 1000,
            inputs: vec![],
            dataset: None,
            dry_run: false,
            warm: None,
        }
    }

    #[test]
    fn a_spec_too_large_for_a_request_frame_is_refused() {
        // Each argument is within its own limit; together they are not.
        let big = spec(vec!["x".repeat(30 * 1024); 3]);
        let err = big.validate().unwrap_err();
        assert!(err.contains("too large"), "{err}");
        let request = envelope(RunTask {
            spec: spec(vec!["x".repeat(40 * 1024)]),
        });
        assert!(crate::codec::encode(&request, crate::codec::MAX_CONTROL_REQUEST).is_ok());
        spec(vec!["x".repeat(40 * 1024)]).validate().unwrap();
    }

    #[test]
    fn a_report_of_a_task_with_many_outputs_fits_a_request_frame() {
        let mut report = TaskReport {
            job_id: "job-1".into(),
            state: TaskState::Succeeded,
            exit_code: Some(0),
            started_ms: Some(1),
            finished_ms: Some(2),
            outputs: vec![],
            outputs_truncated: false,
            error: None,
            image_id: Some(format!("sha256:{}", "a".repeat(64))),
            held: None,
            unnamed_outputs: vec![],
        };
        let names: Vec<String> = (0..20_000).map(|i| format!("out/{i:0>60}")).collect();
        report.set_outputs(names.clone());
        report.set_error(Some("é".repeat(10_000)));
        assert!(report.outputs_truncated);
        assert_eq!(report.outputs[..], names[..report.outputs.len()]);
        let request = envelope(TaskUpdate {
            report: report.clone(),
        });
        assert!(crate::codec::encode(&request, crate::codec::MAX_CONTROL_REQUEST).is_ok());
        report.set_outputs(names[..3].to_vec());
        assert!(!report.outputs_truncated && report.outputs.len() == 3);
    }
}
