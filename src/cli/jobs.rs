//! `iris job run|submit|list|show|logs|cancel`.

use std::{collections::BTreeMap, time::Duration};

use anyhow::bail;
use clap::{Args, Subcommand};

use super::{
    output::{clock, header, print_json, print_table, print_tasks, printable, printable_lines},
    parse_duration_secs, parse_memory_mb, NodeDir, Output,
};
use crate::api_types::{Gathered, Job, JobRequest, JobState, LogsQuery, RoundId, SecureSumRequest};
use iris_behaviours::TaskState;

/// How long one wait for a running job lasts before `job run` asks again.
const WAIT_PER_REQUEST: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub dir: NodeDir,
    /// The image to run, e.g. iris-worker:latest.
    #[arg(long)]
    pub image: String,
    /// Where: all, node names (a,b), role:slave, tag:T or dataset:NAME.
    #[arg(long, default_value = "all")]
    pub on: String,
    /// Run on just one of the targets, the least loaded.
    #[arg(long)]
    pub any: bool,
    /// An environment variable for the container; repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// `bridge` gives the container Docker's default network; none by default.
    #[arg(long)]
    pub network: Option<String>,
    /// Memory limit, e.g. 512m or 2g.
    #[arg(long, default_value = "512m", value_parser = parse_memory_mb)]
    pub memory: u64,
    /// CPU limit, e.g. 0.5 or 2.
    #[arg(long, default_value_t = 1.0)]
    pub cpus: f64,
    /// Kill the container after this long, e.g. 90s, 10m, 2h.
    #[arg(long, default_value = "1h", value_parser = parse_duration_secs)]
    pub timeout: f64,
    /// When the job ends, pull every task's outputs to this node, under
    /// workspace/gathered/<job-id>/<node>/, which no peer can read (`job run`
    /// only).
    #[arg(long)]
    pub gather: bool,
    /// When the job ends, the secure sum of this update file of every task
    /// (`{"vector": [numbers], "weight": w}` in its outputs): this node
    /// learns Σ w·vector and Σ w, in workspace/gathered/<job-id>/sum.json,
    /// and no site's own vector (`job run` only).
    #[arg(long, value_name = "FILE", requires = "sum_length")]
    pub secure_sum: Option<String>,
    /// With --secure-sum: how many numbers each update's vector holds. A
    /// site only says whether its update fits, never its length.
    #[arg(long, value_name = "N", requires = "secure_sum")]
    pub sum_length: Option<u64>,
    /// With --secure-sum: the largest magnitude of any number summed,
    /// each weight·entry and the weight (default 1e6); sites clip what
    /// lies beyond it, and the sum says how many they clipped in all.
    #[arg(long, value_name = "X", requires = "secure_sum")]
    pub sum_range: Option<f64>,
    /// With --secure-sum: the finest step the sum keeps (default 2^-32).
    #[arg(long, value_name = "X", requires = "secure_sum")]
    pub sum_resolution: Option<f64>,
    /// With --secure-sum: differential privacy. Each site clips its
    /// vector (weight·entries and the weight) to this L2 norm and adds
    /// noise; give --epsilon with it. Sites whose owners have not allowed
    /// noise-free sums take part only with these.
    #[arg(long, value_name = "C", requires_all = ["secure_sum", "epsilon"])]
    pub clip: Option<f64>,
    /// With --clip: what the sum costs each site's dataset, as epsilon.
    #[arg(long, value_name = "E", requires = "clip")]
    pub epsilon: Option<f64>,
    /// With --epsilon: the delta it is stated at (default 1e-6).
    #[arg(long, value_name = "D", requires = "epsilon")]
    pub delta: Option<f64>,
    /// A file or directory in each target's workspace/public to mount
    /// read-only at /workspace/in/PATH; on this node itself, also
    /// gathered/<job-id> (what it gathered); repeatable.
    #[arg(long = "input", value_name = "PATH")]
    pub inputs: Vec<String>,
    /// With --on dataset:NAME: run on this node alone, on the dataset's
    /// mock sample (fetched from a node that holds it), so that a mistake
    /// shows before any site runs anything.
    #[arg(long)]
    pub dry_run: bool,
    /// The job succeeds once this many tasks succeeded (default: every
    /// target); the rest may fail. With --deadline, the job ends at the
    /// deadline with whatever succeeded by then.
    #[arg(long, value_name = "N")]
    pub quorum: Option<u32>,
    /// End the job this long after it was submitted, e.g. 90s or 10m: the
    /// tasks still going are cancelled and shown as late, and nothing
    /// they say later counts. The job succeeded if its quorum did.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_secs)]
    pub deadline: Option<f64>,
    /// The round of a training this job is, as TRAINING/N (e.g.
    /// cancer-lr/3): a round runs once, and submitting it again is
    /// refused with the job that has it.
    #[arg(long, value_name = "TRAINING/N", value_parser = parse_round)]
    pub round: Option<RoundId>,
    /// With --round: each site may keep the training's container running
    /// from round to round (a warm worker, docs/warm-workers.md).
    #[arg(long, requires = "round")]
    pub warm: bool,
    /// Print the job as JSON: when it is accepted (`submit`), or finished
    /// with what was gathered (`run`).
    #[arg(long)]
    pub json: bool,
    /// The command, after `--`, as an argument list (no shell).
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

impl JobArgs {
    fn request(&self) -> JobRequest {
        JobRequest {
            image: self.image.clone(),
            argv: self.argv.clone(),
            env: self.env.clone(),
            on: self.on.clone(),
            any: self.any,
            network: self.network.clone(),
            memory_mb: self.memory,
            cpus: self.cpus,
            timeout_secs: self.timeout,
            inputs: self.inputs.clone(),
            dry_run: self.dry_run,
            quorum: self.quorum,
            deadline_secs: self.deadline,
            round: self.round.clone(),
            warm: self.warm,
        }
    }
}

/// `TRAINING/N`, checked as the node checks it.
fn parse_round(text: &str) -> Result<RoundId, String> {
    let (training, number) = text
        .rsplit_once('/')
        .ok_or("a round is TRAINING/N, e.g. cancer-lr/3")?;
    let number = number
        .parse()
        .map_err(|_| format!("'{number}' is not a round's number"))?;
    let round = RoundId {
        training: training.to_string(),
        number,
    };
    round.validate()?;
    Ok(round)
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Run a job and wait for it: a line per node; fails if the job failed
    /// (any task, or fewer than --quorum succeeded).
    Run(JobArgs),
    /// Submit a job and print its id at once.
    Submit(JobArgs),
    /// List the jobs this node submitted.
    List {
        #[command(flatten)]
        dir: NodeDir,
        #[command(flatten)]
        output: Output,
    },
    /// A job's tasks: state, exit code, times, output files.
    Show {
        #[command(flatten)]
        dir: NodeDir,
        job: String,
        #[command(flatten)]
        output: Output,
    },
    /// A job's stdout and stderr, per node.
    Logs {
        #[command(flatten)]
        dir: NodeDir,
        job: String,
        /// Only this node's task.
        #[arg(long)]
        node: Option<String>,
        /// Keep printing new output until the tasks end.
        #[arg(long)]
        follow: bool,
    },
    /// Stop a job's unfinished tasks.
    Cancel {
        #[command(flatten)]
        dir: NodeDir,
        job: String,
    },
    /// Pull a job's released outputs to workspace/gathered/<job>/<node>/;
    /// again later for outputs their owners released after the job ended.
    Gather {
        #[command(flatten)]
        dir: NodeDir,
        job: String,
        #[command(flatten)]
        output: Output,
    },
}

/// `job run --json` prints the job with what was gathered.
#[derive(serde::Serialize)]
struct RunOutcome<'a> {
    #[serde(flatten)]
    job: &'a Job,
    gathered: &'a [String],
    /// Nodes whose owners did not release their outputs, with the reason.
    held: &'a [String],
    /// Outputs refused because their names are not UTF-8.
    unnamed: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    secure_sum: Option<&'a crate::api_types::SumOutcome>,
}

pub async fn job(command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Submit(args) => {
            let job = args.dir.client()?.submit_job(&args.request()).await?;
            if args.json {
                return print_json(&job);
            }
            println!("{}", job.id);
        }
        JobCommand::Run(args) => run(args).await?,
        JobCommand::List { dir, output } => {
            let jobs = dir.client()?.jobs().await?;
            if output.json {
                return print_json(&jobs);
            }
            let mut rows = vec![header(&["JOB", "STATE", "IMAGE", "NODES", "CREATED"])];
            for job in &jobs {
                rows.push(vec![
                    job.id.clone(),
                    job.state.to_string(),
                    job.request.image.clone(),
                    job.tasks.len().to_string(),
                    clock(job.created_ms),
                ]);
            }
            print_table(&rows);
        }
        JobCommand::Show { dir, job, output } => {
            let job = dir.client()?.job(&job, None).await?;
            if output.json {
                return print_json(&job);
            }
            let request = format!("{} {:?}", job.request.image, job.request.argv);
            println!("job {} ({}): {}", job.id, job.state, printable(&request));
            print_tasks(&job);
            for (node, task) in &job.tasks {
                let node = printable(node);
                for file in &task.outputs {
                    println!("  {node}: outputs/{}/{}", job.id, printable(file));
                }
                if task.outputs_truncated {
                    println!("  {node}: (more outputs than a report lists)");
                }
                for name in &task.unnamed_outputs {
                    println!(
                        "  {node}: refused, its name is not UTF-8: {}",
                        printable(name)
                    );
                }
            }
        }
        JobCommand::Logs {
            dir,
            job,
            node,
            follow,
        } => logs(&dir, &job, node, follow).await?,
        JobCommand::Cancel { dir, job } => {
            let job = dir.client()?.cancel_job(&job).await?;
            println!("cancel sent for job {}", job.id);
        }
        JobCommand::Gather { dir, job, output } => {
            let gathered = dir.client()?.gather(&job).await?;
            if output.json {
                return print_json(&gathered);
            }
            print_gathered(&gathered);
        }
    }
    Ok(())
}

fn print_gathered(gathered: &Gathered) {
    for file in &gathered.files {
        println!("gathered {}", printable(file));
    }
    for held in &gathered.held {
        println!("not released: {}", printable(held));
    }
    for unnamed in &gathered.unnamed {
        println!("refused (its name is not UTF-8): {}", printable(unnamed));
    }
}

/// Submits, then waits on the node until the job has ended: one request a
/// minute, no polling in between. A task that still awaits its owner's
/// approval when `--timeout` has passed is given up: the job is cancelled.
async fn run(args: JobArgs) -> anyhow::Result<()> {
    // Checked before anything runs: the sum would be one site's vector,
    // which no site takes part in.
    if args.secure_sum.is_some() && args.quorum.is_some_and(|q| q < 2) {
        bail!(
            "--quorum with --secure-sum is at least 2: a sum over one site is that site's vector"
        );
    }
    let client = args.dir.client()?;
    let mut job = client.submit_job(&args.request()).await?;
    if !args.json {
        eprintln!("job {} on {} node(s)", job.id, job.tasks.len());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs_f64(args.timeout);
    let mut told = std::collections::BTreeSet::new();
    while job.state == JobState::Running {
        let awaiting: Vec<&String> = job
            .tasks
            .iter()
            .filter(|(_, t)| t.state == TaskState::AwaitingApproval)
            .map(|(node, _)| node)
            .collect();
        for node in &awaiting {
            if told.insert(node.to_string()) && !args.json {
                let node = printable(node);
                eprintln!("{node}: awaiting approval by {node}'s owner");
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if !awaiting.is_empty() && left.is_zero() {
            let nodes: Vec<String> = awaiting.iter().map(|n| n.to_string()).collect();
            client.cancel_job(&job.id).await?;
            bail!(
                "job {}: not approved within --timeout by the owner of {}; cancelled",
                job.id,
                nodes.join(", ")
            );
        }
        // A task may still come to await an approval: ask again each second
        // until every task runs, so the wait is shown as it starts.
        let undecided = job
            .tasks
            .values()
            .any(|t| matches!(t.state, TaskState::Queued | TaskState::AwaitingApproval));
        let wait = match undecided {
            false => WAIT_PER_REQUEST,
            true => Duration::from_secs(1)
                .min(left)
                .max(Duration::from_millis(100)),
        };
        job = client.job(&job.id, Some(wait)).await?;
    }
    let gathered = match args.gather {
        true => client.gather(&job.id).await?,
        false => Gathered {
            files: Vec::new(),
            held: Vec::new(),
            unnamed: Vec::new(),
        },
    };
    let sum = match &args.secure_sum {
        Some(file) => {
            let body = SecureSumRequest {
                file: file.clone(),
                length: args.sum_length.unwrap_or_default(),
                range: args.sum_range,
                resolution: args.sum_resolution,
                clip: args.clip,
                epsilon: args.epsilon,
                delta: args.delta,
            };
            Some(client.secure_sum(&job.id, &body).await?)
        }
        None => None,
    };
    if args.json {
        print_json(&RunOutcome {
            job: &job,
            gathered: &gathered.files,
            held: &gathered.held,
            unnamed: &gathered.unnamed,
            secure_sum: sum.as_ref(),
        })?;
    } else {
        print_tasks(&job);
        print_gathered(&gathered);
        if let Some(sum) = &sum {
            println!(
                "secure sum of {} nodes ({}) -> {}",
                sum.nodes.len(),
                printable(&sum.nodes.join(", ")),
                sum.path
            );
            for dropped in &sum.dropped {
                println!("not in the sum: {}", printable(dropped));
            }
            if sum.clipped > 0 {
                println!(
                    "{} numbers, over all sites, lay beyond the range and were clipped to it \
                     (--sum-range)",
                    sum.clipped
                );
            }
            if let Some(privacy) = &sum.privacy {
                println!(
                    "differential privacy: each site clipped to norm {} and added noise; it \
                     cost each site's dataset epsilon {} (delta {:e}); noise sd in each \
                     number: {:.4e}",
                    privacy.clip, privacy.epsilon, privacy.delta, privacy.noise_sd
                );
            }
        }
    }
    if job.state != JobState::Succeeded {
        bail!("job {} {}", job.id, job.state);
    }
    Ok(())
}

async fn logs(dir: &NodeDir, job: &str, node: Option<String>, follow: bool) -> anyhow::Result<()> {
    let client = dir.client()?;
    let mut offsets: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    loop {
        let nodes: Vec<String> = match &node {
            Some(n) => vec![n.clone()],
            None => client.job(job, None).await?.tasks.into_keys().collect(),
        };
        let mut all_done = true;
        for name in nodes {
            let (out, err) = offsets.get(&name).copied().unwrap_or((0, 0));
            let query = LogsQuery {
                node: Some(name.clone()),
                stdout_offset: out,
                stderr_offset: err,
            };
            for task in client.job_logs(job, &query).await? {
                let prefix = match node {
                    Some(_) => String::new(),
                    None => format!("[{}] ", printable(&name)),
                };
                if let Some(withheld) = &task.withheld {
                    if !offsets.contains_key(&name) {
                        eprintln!("{prefix}logs {}", printable(withheld));
                    }
                }
                // A job's output is its code's words: shown, never obeyed
                // by the terminal (tabs kept).
                for line in task.stdout.lines() {
                    println!("{prefix}{}", printable_lines(line));
                }
                for line in task.stderr.lines() {
                    eprintln!("{prefix}{}", printable_lines(line));
                }
                all_done &= task.state.is_terminal();
                offsets.insert(name.clone(), (task.stdout_offset, task.stderr_offset));
            }
        }
        if !follow || all_done {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
