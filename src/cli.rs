//! The `iris` command line: `init` and `run` work on a node directory
//! directly; every other command is a thin client of the node's REST API.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::{
    client::ApiClient,
    config::{NodeConfig, CONFIG_FILE},
    store::Store,
};

#[derive(Debug, Parser)]
#[command(
    name = "iris",
    version,
    about = "Run containers next to private data, across a peer-to-peer network of nodes",
    after_help = "Start with `iris init --dir ./a --name alice`, then `iris run --dir ./a`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct NodeDir {
    /// The node directory (config, identity, token, workspace).
    #[arg(long, env = "IRIS_DIR", default_value = ".", global = true)]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct Output {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a node directory: config, identity, API token, workspace.
    Init(InitArgs),
    /// Run the node in the foreground (logs to stderr; RUST_LOG filters).
    Run {
        #[command(flatten)]
        dir: NodeDir,
    },
    /// Create, join, show or leave a network.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// List the nodes of the network map.
    Nodes {
        #[command(flatten)]
        dir: NodeDir,
        #[command(flatten)]
        output: Output,
    },
    /// Show this node: name, peer id, addresses, network, role.
    Status {
        #[command(flatten)]
        dir: NodeDir,
        #[command(flatten)]
        output: Output,
    },
    /// List the images this node's Docker engine has, or load one.
    Images {
        #[command(subcommand)]
        command: Option<ImagesCommand>,
        #[command(flatten)]
        dir: NodeDir,
        #[command(flatten)]
        output: Output,
    },
    /// Run containers on nodes of the network and follow them.
    #[command(subcommand)]
    Job(JobCommand),
    /// Files in nodes' public and image areas: list, put, get.
    #[command(subcommand)]
    Files(FilesCommand),
    /// Long-lived containers on nodes: create, exec commands in, remove.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Follow the node's events (joined, suspect, gone, left, ...) live.
    Events {
        #[command(flatten)]
        dir: NodeDir,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub dir: NodeDir,
    /// The node's name in the network (default: the directory's name).
    #[arg(long)]
    pub name: Option<String>,
    /// TCP port for peers (0: any free port).
    #[arg(long, default_value_t = 7000)]
    pub p2p_port: u16,
    /// Interface to listen on for peers.
    #[arg(long, default_value = "0.0.0.0")]
    pub p2p_listen: IpAddr,
    /// Port of the local REST API (0: any free port, written to DIR/api.port
    /// at each start).
    #[arg(long, default_value_t = 8000)]
    pub api_port: u16,
    /// Interface of the REST API; keep it on loopback unless you know why not.
    #[arg(long, default_value = "127.0.0.1")]
    pub api_bind: IpAddr,
    /// A tag for `--on tag:T` targeting; repeat for several.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Extra address to announce to peers (e.g. behind NAT); repeatable.
    #[arg(long = "external")]
    pub external: Vec<String>,
    /// The host's path of the workspace, for a node in a container.
    #[arg(long)]
    pub workspace_host_path: Option<PathBuf>,
    /// Replace an existing node in DIR (new identity and token; the
    /// workspace is kept).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub dir: NodeDir,
    /// The image to run, e.g. iris-worker:latest.
    #[arg(long)]
    pub image: String,
    /// Where: all, node names (a,b), role:slave or tag:T.
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
    /// workspace/public/jobs/<job-id>/<node>/ (`job run` only).
    #[arg(long)]
    pub gather: bool,
    /// A file or directory in each target's workspace/public to mount
    /// read-only at /workspace/in/PATH, e.g. jobs/<job-id>; repeatable.
    #[arg(long = "input", value_name = "PATH")]
    pub inputs: Vec<String>,
    /// Print the job as JSON: when it is accepted (`submit`), or finished
    /// with what was gathered (`run`).
    #[arg(long)]
    pub json: bool,
    /// The command, after `--`, as an argument list (no shell).
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

impl JobArgs {
    fn body(&self) -> Value {
        json!({
            "image": self.image, "argv": self.argv, "env": self.env, "on": self.on,
            "any": self.any, "network": self.network, "memory_mb": self.memory,
            "cpus": self.cpus, "timeout_secs": self.timeout, "inputs": self.inputs,
        })
    }
}

fn parse_memory_mb(text: &str) -> Result<u64, String> {
    let text = text.trim().to_ascii_lowercase();
    let (number, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size like 512m or 2g"))?;
    let mb = match unit {
        "" | "m" | "mb" | "mib" => value,
        "g" | "gb" | "gib" => value * 1024.0,
        _ => return Err(format!("unknown size unit '{unit}': use m or g")),
    };
    Ok(mb as u64)
}

fn parse_duration_secs(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 90s, 10m or 2h"))?;
    let factor = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown time unit '{unit}': use ms, s, m or h")),
    };
    Ok(value * factor)
}

#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// The public and image files of this node or another.
    Ls {
        #[command(flatten)]
        dir: NodeDir,
        #[arg(long)]
        node: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Copy a local file into the public workspace of every target.
    Put {
        #[command(flatten)]
        dir: NodeDir,
        file: PathBuf,
        /// all, node names, role:R or tag:T.
        #[arg(long, default_value = "all")]
        to: String,
        /// The path under public/ (default: the file's name).
        #[arg(long = "as")]
        as_path: Option<String>,
    },
    /// Fetch a file from a node's public (or image/) area.
    Get {
        #[command(flatten)]
        dir: NodeDir,
        /// The node that has the file.
        #[arg(long)]
        from: String,
        /// The file, relative to that node's public/ (or starting with image/).
        path: String,
        /// Have this node fetch it directly from the source instead.
        #[arg(long)]
        to: Option<String>,
        /// Also copy it to this local directory or file.
        #[arg(long)]
        dest: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Start a long-lived container on every target.
    Create {
        #[command(flatten)]
        dir: NodeDir,
        #[arg(long)]
        name: String,
        #[arg(long)]
        image: String,
        /// Where: all, node names (a,b), role:slave or tag:T.
        #[arg(long, default_value = "all")]
        on: String,
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        #[arg(long)]
        network: Option<String>,
        #[arg(long, default_value = "512m", value_parser = parse_memory_mb)]
        memory: u64,
        #[arg(long, default_value_t = 1.0)]
        cpus: f64,
        /// The command to keep running (default: the image's own).
        #[arg(last = true)]
        argv: Vec<String>,
    },
    /// Run a command in the container on every target; fails if any failed.
    Exec {
        #[command(flatten)]
        dir: NodeDir,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "all")]
        on: String,
        #[arg(long, default_value = "1h", value_parser = parse_duration_secs)]
        timeout: f64,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Remove the container on every target.
    Rm {
        #[command(flatten)]
        dir: NodeDir,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "all")]
        on: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Run a job and wait for it: a line per node; fails if any node failed.
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
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Ship a `docker save` tar into every target's workspace/image; each
    /// loads it.
    Push {
        #[command(flatten)]
        dir: NodeDir,
        tar: PathBuf,
        #[arg(long, default_value = "all")]
        to: String,
    },
    /// Copy a `docker save` tar into workspace/image and load it.
    Load {
        #[command(flatten)]
        dir: NodeDir,
        /// The image tar.
        tar: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network with this node as genesis and master; prints the
    /// addresses others join through.
    Create {
        #[command(flatten)]
        dir: NodeDir,
        /// The network's name.
        #[arg(long)]
        name: String,
        /// The secret every member needs to connect.
        #[arg(long, env = "IRIS_NETWORK_KEY", hide_env_values = true)]
        key: String,
        /// How the network is governed; only master_slave exists.
        #[arg(long, default_value = "master_slave")]
        mode: String,
    },
    /// Join a network through any of its members.
    Join {
        #[command(flatten)]
        dir: NodeDir,
        /// The network's secret key.
        #[arg(long, env = "IRIS_NETWORK_KEY", hide_env_values = true)]
        key: String,
        /// A member's address, ending in /p2p/<peer id>.
        bootstrap: String,
    },
    /// Show the network this node belongs to.
    Show {
        #[command(flatten)]
        dir: NodeDir,
        #[command(flatten)]
        output: Output,
    },
    /// Leave the network for good (a restart will not rejoin).
    Leave {
        #[command(flatten)]
        dir: NodeDir,
    },
}

pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init(args) => init(args),
        Command::Run { dir } => {
            init_logging();
            crate::daemon::run(&dir.dir).await
        }
        Command::Network(command) => network(command).await,
        Command::Nodes { dir, output } => {
            let nodes: Value = ApiClient::from_dir(&dir.dir)?.get("/v1/nodes").await?;
            if output.json {
                print_json(&nodes)
            } else {
                print_nodes(&nodes);
                Ok(())
            }
        }
        Command::Status { dir, output } => {
            let status: Value = ApiClient::from_dir(&dir.dir)?.get("/v1/status").await?;
            if output.json {
                print_json(&status)
            } else {
                print_status(&status);
                Ok(())
            }
        }
        Command::Images {
            command: Some(ImagesCommand::Load { dir, tar }),
            ..
        } => {
            let path =
                std::path::absolute(&tar).with_context(|| format!("bad path {}", tar.display()))?;
            let body = json!({ "path": path });
            let answer: Value = ApiClient::from_dir(&dir.dir)?
                .post("/v1/images/load", &body)
                .await?;
            for image in answer["loaded"].as_array().into_iter().flatten() {
                println!("loaded {}", image.as_str().unwrap_or_default());
            }
            Ok(())
        }
        Command::Images {
            command: None,
            dir,
            output,
        } => {
            let answer: Value = ApiClient::from_dir(&dir.dir)?.get("/v1/images").await?;
            if output.json {
                return print_json(&answer);
            }
            println!(
                "executor: {}",
                answer["executor"].as_str().unwrap_or_default()
            );
            let mut rows = vec![vec!["IMAGE".to_string(), "ID".to_string()]];
            for image in answer["images"].as_array().into_iter().flatten() {
                let id = image["id"].as_str().unwrap_or_default();
                let short: String = id
                    .strip_prefix("sha256:")
                    .unwrap_or(id)
                    .chars()
                    .take(12)
                    .collect();
                for tag in image["tags"].as_array().into_iter().flatten() {
                    rows.push(vec![
                        tag.as_str().unwrap_or_default().to_string(),
                        short.clone(),
                    ]);
                }
            }
            print_table(&rows);
            Ok(())
        }
        Command::Job(command) => job(command).await,
        Command::Container(command) => container(command).await,
        Command::Files(command) => files(command).await,
        Command::Images {
            command: Some(ImagesCommand::Push { dir, tar, to }),
            ..
        } => {
            let path =
                std::path::absolute(&tar).with_context(|| format!("bad path {}", tar.display()))?;
            let answers: Value = ApiClient::from_dir(&dir.dir)?
                .post("/v1/images/push", &json!({ "path": path, "to": to }))
                .await?;
            report_answers(&answers, "pushed")
        }
        Command::Events { dir, output } => follow_events(&dir.dir, output.json).await,
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libp2p_gossipsub=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    let dir = &args.dir.dir;
    if dir.join(CONFIG_FILE).exists() && !args.force {
        bail!(
            "{} already holds a node; use --force to replace its identity and config",
            dir.display()
        );
    }
    let name = match args.name {
        Some(name) => name,
        None => dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .context("no --name given and the directory has no usable name")?,
    };
    let mut config = NodeConfig::new(name);
    config.tags = args.tags;
    config.p2p.port = args.p2p_port;
    config.p2p.listen = args.p2p_listen;
    config.p2p.external = args.external;
    config.api.port = args.api_port;
    config.api.bind = args.api_bind;
    config.workspace.host_path = args.workspace_host_path;
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;

    create_private_dir(dir)?;
    let workspace = config.workspace_dir(dir);
    for sub in ["image", "private", "public"] {
        std::fs::create_dir_all(workspace.join(sub))
            .with_context(|| format!("cannot create {}", workspace.join(sub).display()))?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        workspace.join("private"),
        std::fs::Permissions::from_mode(0o700),
    )?;

    let store = Store::new(dir);
    store.clear_membership()?;
    store.create_secrets()?;
    crate::store::write_private(
        &dir.join(CONFIG_FILE),
        config.to_commented_toml().as_bytes(),
    )?;
    let peer_id = store.load_identity()?.public().to_peer_id();
    println!(
        "initialized node '{}' in {} (peer id {peer_id})",
        config.name,
        dir.display()
    );
    println!("start it with: iris run --dir {}", dir.display());
    Ok(())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))
}

async fn network(command: NetworkCommand) -> anyhow::Result<()> {
    match command {
        NetworkCommand::Create {
            dir,
            name,
            key,
            mode,
        } => {
            let client = ApiClient::from_dir(&dir.dir)?;
            let answer: Value = client
                .post(
                    "/v1/network",
                    &json!({ "name": name, "key": key, "mode": mode }),
                )
                .await?;
            println!(
                "created network '{}' ({}); this node is master",
                answer["network"]["name"].as_str().unwrap_or(&name),
                answer["network"]["mode"].as_str().unwrap_or(&mode)
            );
            println!("others join with `iris network join --key <key> <address>`, through one of:");
            for addr in answer["addrs"].as_array().into_iter().flatten() {
                println!("{}", addr.as_str().unwrap_or_default());
            }
            Ok(())
        }
        NetworkCommand::Join {
            dir,
            key,
            bootstrap,
        } => {
            let client = ApiClient::from_dir(&dir.dir)?;
            let answer: Value = client
                .post(
                    "/v1/network/join",
                    &json!({ "key": key, "bootstrap": bootstrap }),
                )
                .await?;
            println!(
                "joined network '{}' as {}; {} nodes in the map",
                answer["network"]["name"].as_str().unwrap_or_default(),
                answer["role"].as_str().unwrap_or_default(),
                answer["nodes"].as_array().map_or(0, Vec::len)
            );
            Ok(())
        }
        NetworkCommand::Show { dir, output } => {
            let network: Value = ApiClient::from_dir(&dir.dir)?.get("/v1/network").await?;
            if output.json {
                return print_json(&network);
            }
            println!("name:    {}", network["name"].as_str().unwrap_or_default());
            println!("mode:    {}", network["mode"].as_str().unwrap_or_default());
            println!(
                "master:  {}",
                network["master"].as_str().unwrap_or_default()
            );
            Ok(())
        }
        NetworkCommand::Leave { dir } => {
            let answer: Value = ApiClient::from_dir(&dir.dir)?
                .post("/v1/network/leave", &json!({}))
                .await?;
            println!(
                "left network '{}'",
                answer["left"].as_str().unwrap_or_default()
            );
            Ok(())
        }
    }
}

async fn job(command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Submit(args) => {
            let job: Value = ApiClient::from_dir(&args.dir.dir)?
                .post("/v1/jobs", &args.body())
                .await?;
            if args.json {
                return print_json(&job);
            }
            println!("{}", job["id"].as_str().unwrap_or_default());
            Ok(())
        }
        JobCommand::Run(args) => {
            let client = ApiClient::from_dir(&args.dir.dir)?;
            let mut job: Value = client.post("/v1/jobs", &args.body()).await?;
            let id = job["id"].as_str().unwrap_or_default().to_string();
            if !args.json {
                eprintln!(
                    "job {id} on {} node(s)",
                    job["tasks"].as_object().map_or(0, |t| t.len())
                );
            }
            while job["state"] == "running" {
                job = client.get(&format!("/v1/jobs/{id}?wait=60")).await?;
            }
            let mut gathered = json!([]);
            if args.gather {
                let answer: Value = client
                    .post(&format!("/v1/jobs/{id}/gather"), &json!({}))
                    .await?;
                gathered = answer["files"].clone();
            }
            if args.json {
                job["gathered"] = gathered;
                print_json(&job)?;
            } else {
                print_tasks(&job);
                for file in gathered.as_array().into_iter().flatten() {
                    println!("gathered {}", file.as_str().unwrap_or_default());
                }
            }
            if job["state"] != "succeeded" {
                bail!("job {id} {}", job["state"].as_str().unwrap_or("failed"));
            }
            Ok(())
        }
        JobCommand::List { dir, output } => {
            let jobs: Value = ApiClient::from_dir(&dir.dir)?.get("/v1/jobs").await?;
            if output.json {
                return print_json(&jobs);
            }
            let mut rows = vec![["JOB", "STATE", "IMAGE", "NODES", "CREATED"]
                .map(String::from)
                .to_vec()];
            for job in jobs.as_array().into_iter().flatten() {
                rows.push(vec![
                    job["id"].as_str().unwrap_or_default().into(),
                    job["state"].as_str().unwrap_or_default().into(),
                    job["request"]["image"].as_str().unwrap_or_default().into(),
                    job["tasks"].as_object().map_or(0, |t| t.len()).to_string(),
                    job["created_ms"].as_u64().map_or("-".into(), clock),
                ]);
            }
            print_table(&rows);
            Ok(())
        }
        JobCommand::Show { dir, job, output } => {
            let job: Value = ApiClient::from_dir(&dir.dir)?
                .get(&format!("/v1/jobs/{job}"))
                .await?;
            if output.json {
                return print_json(&job);
            }
            println!(
                "job {} ({}): {} {}",
                job["id"].as_str().unwrap_or_default(),
                job["state"].as_str().unwrap_or_default(),
                job["request"]["image"].as_str().unwrap_or_default(),
                job["request"]["argv"]
            );
            print_tasks(&job);
            for (node, task) in job["tasks"].as_object().into_iter().flatten() {
                for file in task["outputs"].as_array().into_iter().flatten() {
                    println!(
                        "  {node}: public/jobs/{}/{}",
                        job["id"].as_str().unwrap_or_default(),
                        file.as_str().unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        JobCommand::Logs {
            dir,
            job,
            node,
            follow,
        } => {
            let client = ApiClient::from_dir(&dir.dir)?;
            let mut offsets: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
            loop {
                let mut all_done = true;
                let nodes: Vec<String> = match &node {
                    Some(n) => vec![n.clone()],
                    None => {
                        let j: Value = client.get(&format!("/v1/jobs/{job}")).await?;
                        j["tasks"]
                            .as_object()
                            .map(|t| t.keys().cloned().collect())
                            .unwrap_or_default()
                    }
                };
                for name in nodes {
                    let (out, err) = offsets.get(&name).copied().unwrap_or((0, 0));
                    let path = format!(
                        "/v1/jobs/{job}/logs?node={name}&stdout_offset={out}&stderr_offset={err}"
                    );
                    let logs: Value = client.get(&path).await?;
                    for task in logs.as_array().into_iter().flatten() {
                        let prefix = if node.is_some() {
                            String::new()
                        } else {
                            format!("[{name}] ")
                        };
                        for line in task["stdout"].as_str().unwrap_or_default().lines() {
                            println!("{prefix}{line}");
                        }
                        for line in task["stderr"].as_str().unwrap_or_default().lines() {
                            eprintln!("{prefix}{line}");
                        }
                        let state = task["state"].as_str().unwrap_or_default();
                        all_done &= !matches!(state, "queued" | "running");
                        offsets.insert(
                            name.clone(),
                            (
                                task["stdout_offset"].as_u64().unwrap_or(out),
                                task["stderr_offset"].as_u64().unwrap_or(err),
                            ),
                        );
                    }
                }
                if !follow || all_done {
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        }
        JobCommand::Cancel { dir, job } => {
            let job: Value = ApiClient::from_dir(&dir.dir)?
                .post(&format!("/v1/jobs/{job}/cancel"), &json!({}))
                .await?;
            println!(
                "cancel sent for job {}",
                job["id"].as_str().unwrap_or_default()
            );
            Ok(())
        }
    }
}

async fn files(command: FilesCommand) -> anyhow::Result<()> {
    match command {
        FilesCommand::Ls { dir, node, output } => {
            let path = match &node {
                Some(node) => format!("/v1/files?node={node}"),
                None => "/v1/files".to_string(),
            };
            let entries: Value = ApiClient::from_dir(&dir.dir)?.get(&path).await?;
            if output.json {
                return print_json(&entries);
            }
            let mut rows = vec![vec!["PATH".to_string(), "SIZE".to_string()]];
            for entry in entries.as_array().into_iter().flatten() {
                rows.push(vec![
                    entry["path"].as_str().unwrap_or_default().to_string(),
                    entry["size"].as_u64().unwrap_or(0).to_string(),
                ]);
            }
            print_table(&rows);
            Ok(())
        }
        FilesCommand::Put {
            dir,
            file,
            to,
            as_path,
        } => {
            let source = std::path::absolute(&file)
                .with_context(|| format!("bad path {}", file.display()))?;
            let body = json!({ "source": source, "to": to, "as": as_path });
            let answers: Value = ApiClient::from_dir(&dir.dir)?
                .post("/v1/files/put", &body)
                .await?;
            report_answers(&answers, "received it")
        }
        FilesCommand::Get {
            dir,
            from,
            path,
            to,
            dest,
        } => {
            let body = json!({ "from": from, "path": path, "to": to });
            let client = ApiClient::from_dir(&dir.dir)?;
            // Progress comes as events from the node that receives the file.
            let progress = match to {
                None => Some(tokio::spawn(show_progress(
                    ApiClient::from_dir(&dir.dir)?,
                    path.clone(),
                ))),
                Some(_) => None,
            };
            let transfer: anyhow::Result<Value> = client.post("/v1/files/get", &body).await;
            if let Some(progress) = progress {
                progress.abort();
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    eprintln!();
                }
            }
            let transfer = transfer?;
            let bytes = transfer["bytes"].as_u64().unwrap_or(0);
            let seconds = transfer["seconds"].as_f64().unwrap_or(0.0).max(1e-6);
            let into = transfer["path"].as_str().unwrap_or_default();
            println!(
                "{into}: {bytes} bytes in {seconds:.2}s ({:.1} MiB/s), sha256 {}",
                bytes as f64 / seconds / (1 << 20) as f64,
                transfer["sha256"].as_str().unwrap_or_default()
            );
            if let Some(dest) = dest {
                anyhow::ensure!(
                    to.is_none(),
                    "--dest copies to this machine; it does not go with --to"
                );
                let config = NodeConfig::load(&dir.dir)?;
                let local = config.workspace_dir(&dir.dir).join(into);
                let target = if dest.is_dir() {
                    dest.join(local.file_name().unwrap_or_default())
                } else {
                    dest
                };
                std::fs::copy(&local, &target)
                    .with_context(|| format!("cannot copy to {}", target.display()))?;
                println!("copied to {}", target.display());
            }
            Ok(())
        }
    }
}

/// Follows `transfer` events for `path`: a bar with rate and ETA on a
/// terminal, plain lines otherwise.
async fn show_progress(client: ApiClient, path: String) {
    let Ok(events) = client.events().await else {
        return;
    };
    let mut events = Box::pin(events);
    let wanted = if path.starts_with("public/") || path.starts_with("image/") {
        path
    } else {
        format!("public/{path}")
    };
    let started = std::time::Instant::now();
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    while let Some(Ok(event)) = events.next().await {
        if event["type"] != "transfer" || event["path"].as_str() != Some(wanted.as_str()) {
            continue;
        }
        let (bytes, total) = (
            event["bytes"].as_u64().unwrap_or(0),
            event["total"].as_u64().unwrap_or(1).max(1),
        );
        let rate = bytes as f64 / started.elapsed().as_secs_f64().max(1e-3) / (1 << 20) as f64;
        let eta = (total - bytes.min(total)) as f64 / (rate * (1 << 20) as f64).max(1.0);
        let percent = bytes * 100 / total;
        if terminal {
            let filled = (percent / 5) as usize;
            eprint!(
                "\r[{}{}] {percent:>3}% {rate:>7.1} MiB/s ETA {eta:>4.0}s",
                "#".repeat(filled),
                "-".repeat(20 - filled)
            );
        } else {
            eprintln!("{percent}% of {total} bytes, {rate:.1} MiB/s, ETA {eta:.0}s");
        }
    }
}

/// Prints each node's answer; fails if any node failed.
fn report_answers(answers: &Value, done: &str) -> anyhow::Result<()> {
    let mut failed = 0;
    for answer in answers.as_array().into_iter().flatten() {
        let node = answer["node"].as_str().unwrap_or_default();
        match answer["error"].as_str() {
            Some(error) => {
                failed += 1;
                println!("{node}: error: {error}");
            }
            None => println!("{node}: {done}"),
        }
    }
    if failed > 0 {
        bail!("{failed} node(s) failed");
    }
    Ok(())
}

async fn container(command: ContainerCommand) -> anyhow::Result<()> {
    let (dir, path, body) = match command {
        ContainerCommand::Create {
            dir,
            name,
            image,
            on,
            env,
            network,
            memory,
            cpus,
            argv,
        } => {
            let body = json!({
                "name": name, "image": image, "on": on, "env": env, "network": network,
                "memory_mb": memory, "cpus": cpus, "argv": argv,
            });
            (dir, "/v1/containers".to_string(), body)
        }
        ContainerCommand::Exec {
            dir,
            name,
            on,
            timeout,
            argv,
        } => {
            let body = json!({ "on": on, "argv": argv, "timeout_secs": timeout });
            (dir, format!("/v1/containers/{name}/exec"), body)
        }
        ContainerCommand::Rm { dir, name, on } => (
            dir,
            format!("/v1/containers/{name}/rm"),
            json!({ "on": on }),
        ),
    };
    let answers: Value = ApiClient::from_dir(&dir.dir)?.post(&path, &body).await?;
    let mut failed = 0;
    for answer in answers.as_array().into_iter().flatten() {
        let node = answer["node"].as_str().unwrap_or_default();
        if let Some(stdout) = answer["stdout"].as_str() {
            for line in stdout.lines() {
                println!("[{node}] {line}");
            }
        }
        if let Some(stderr) = answer["stderr"].as_str() {
            for line in stderr.lines() {
                eprintln!("[{node}] {line}");
            }
        }
        let outcome = match (answer["error"].as_str(), answer["exit_code"].as_i64()) {
            (Some(error), _) => format!("error: {error}"),
            (None, Some(code)) => format!("exit {code}"),
            (None, None) => "ok".to_string(),
        };
        if answer["ok"] != true {
            failed += 1;
        }
        println!("{node}: {outcome}");
    }
    if failed > 0 {
        bail!("{failed} node(s) failed");
    }
    Ok(())
}

/// A line per node: node, state, exit code, duration.
fn print_tasks(job: &Value) {
    let mut rows = vec![["NODE", "STATE", "EXIT", "DURATION"]
        .map(String::from)
        .to_vec()];
    for (node, task) in job["tasks"].as_object().into_iter().flatten() {
        let duration = match (task["started_ms"].as_u64(), task["finished_ms"].as_u64()) {
            (Some(start), Some(end)) => {
                format!("{:.2}s", end.saturating_sub(start) as f64 / 1000.0)
            }
            _ => "-".into(),
        };
        rows.push(vec![
            node.clone(),
            task["state"].as_str().unwrap_or_default().into(),
            task["exit_code"]
                .as_i64()
                .map_or("-".into(), |c| c.to_string()),
            duration,
        ]);
    }
    print_table(&rows);
    for (node, task) in job["tasks"].as_object().into_iter().flatten() {
        if let Some(error) = task["error"].as_str() {
            println!("{node}: {error}");
        }
    }
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn print_status(status: &Value) {
    let s = |k: &str| status[k].as_str().unwrap_or("-").to_string();
    println!("name:     {}", s("name"));
    println!("peer id:  {}", s("peer_id"));
    println!("executor: {}", s("executor"));
    match status["network"].as_object() {
        Some(network) => {
            println!(
                "network:  {} ({})",
                network["name"].as_str().unwrap_or_default(),
                network["mode"].as_str().unwrap_or_default()
            );
            println!("role:     {}", s("role"));
        }
        None => println!("network:  none"),
    }
    for addr in status["addrs"].as_array().into_iter().flatten() {
        println!("address:  {}", addr.as_str().unwrap_or_default());
    }
}

/// A plain table: a header, then one row per node, columns padded.
fn print_nodes(nodes: &Value) {
    let now = crate::now_ms();
    let header = [
        "NAME",
        "ROLE",
        "STATE",
        "PEER ID",
        "ADDRESS",
        "LAST SEEN",
        "TAGS",
    ]
    .map(String::from);
    let mut rows = vec![header.to_vec()];
    for node in nodes.as_array().into_iter().flatten() {
        let text = |k: &str| node[k].as_str().unwrap_or("-").to_string();
        let name = if node["self"].as_bool() == Some(true) {
            format!("{} *", text("name"))
        } else {
            text("name")
        };
        let last_seen = node["last_seen"].as_u64().map_or("-".into(), |ms| {
            format!("{:.1}s ago", now.saturating_sub(ms) as f64 / 1000.0)
        });
        let addr = node["addrs"][0].as_str().map_or("-".into(), |a| {
            a.split("/p2p/").next().unwrap_or(a).to_string()
        });
        let tags: Vec<&str> = node["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        rows.push(vec![
            name,
            text("role"),
            text("state"),
            text("peer_id"),
            addr,
            last_seen,
            if tags.is_empty() {
                "-".into()
            } else {
                tags.join(",")
            },
        ]);
    }
    print_table(&rows);
}

fn print_table(rows: &[Vec<String>]) {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

async fn follow_events(dir: &Path, as_json: bool) -> anyhow::Result<()> {
    let client = ApiClient::from_dir(dir)?;
    let mut events = Box::pin(client.events().await?);
    while let Some(event) = events.next().await {
        let event = event?;
        if as_json {
            println!("{event}");
        } else {
            println!("{}", describe_event(&event));
        }
    }
    bail!("the node closed the event stream (did it stop?)")
}

fn describe_event(event: &Value) -> String {
    let text = |k: &str| event[k].as_str().unwrap_or_default().to_string();
    let time = event["at_ms"].as_u64().map_or("--:--:--".into(), clock);
    let what = match text("type").as_str() {
        "joined" => format!("joined   {} ({})", text("name"), text("peer_id")),
        "alive" => format!("alive    {} ({})", text("name"), text("peer_id")),
        "suspect" => format!(
            "suspect  {} ({}): {}",
            text("name"),
            text("peer_id"),
            text("reason")
        ),
        "gone" => format!(
            "gone     {} ({}): {}",
            text("name"),
            text("peer_id"),
            text("reason")
        ),
        "left" => format!("left     {} ({})", text("name"), text("peer_id")),
        "network_created" => format!("created  network '{}'", text("network")),
        "network_joined" => format!("joined   network '{}' via {}", text("network"), text("via")),
        "network_left" => format!("left     network '{}'", text("network")),
        "image_loaded" => format!("loaded   {} from {}", event["images"], text("file")),
        "image_failed" => format!("failed   to load {}: {}", text("file"), text("error")),
        "job_finished" => format!("job      {} {}", text("job"), text("state")),
        other => format!("{other} {event}"),
    };
    format!("{time}  {what}")
}

/// UTC wall-clock time of day with milliseconds, from Unix milliseconds.
fn clock(ms: u64) -> String {
    let day_ms = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_show_the_reasons_they_carry_and_no_others() {
        let gone = json!({"type": "gone", "at_ms": 0, "name": "bob", "peer_id": "P", "reason": "no heartbeat for 10 s"});
        let line = describe_event(&gone);
        assert!(
            line.contains("gone") && line.ends_with(": no heartbeat for 10 s"),
            "{line}"
        );
        let left = json!({"type": "left", "at_ms": 0, "name": "bob", "peer_id": "P"});
        let line = describe_event(&left);
        assert!(line.trim_end().ends_with("(P)"), "{line}");
    }
}
