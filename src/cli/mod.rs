//! The `iris` command line: `init` and `run` work on a node directory
//! directly; every other command is a thin client of the node's REST API,
//! one file per command group, all through the typed [`ApiClient`].

mod audit;
mod containers;
mod datasets;
mod events;
mod files;
mod images;
mod init;
mod jobs;
mod network;
mod output;
mod policy;
mod ui;

pub use output::printable_lines;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::client::ApiClient;

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

impl NodeDir {
    fn client(&self) -> anyhow::Result<ApiClient> {
        ApiClient::from_dir(&self.dir)
    }
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
    Init(init::InitArgs),
    /// Run the node in the foreground (logs to stderr; RUST_LOG filters).
    Run {
        #[command(flatten)]
        dir: NodeDir,
    },
    /// Create, join, show or leave a network.
    #[command(subcommand)]
    Network(network::NetworkCommand),
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
        command: Option<images::ImagesCommand>,
        #[command(flatten)]
        dir: NodeDir,
        #[command(flatten)]
        output: Output,
    },
    /// Run containers on nodes of the network and follow them.
    #[command(subcommand)]
    Job(jobs::JobCommand),
    /// Files in nodes' public and image areas: list, put, get.
    #[command(subcommand)]
    Files(files::FilesCommand),
    /// Long-lived containers on nodes: create, exec commands in, remove.
    #[command(subcommand)]
    Container(containers::ContainerCommand),
    /// What touched this node's private data, oldest first; `verify`
    /// checks that the log was not altered.
    Audit {
        #[command(subcommand)]
        command: Option<audit::AuditCommand>,
        #[command(flatten)]
        dir: NodeDir,
        #[command(flatten)]
        output: Output,
    },
    /// This node's data policy: every setting and its value; `set`,
    /// `allow-image` and `revoke-image` change it at once.
    Policy {
        #[command(subcommand)]
        command: Option<policy::PolicyCommand>,
        #[command(flatten)]
        dir: NodeDir,
        #[command(flatten)]
        output: Output,
    },
    /// Tasks from other nodes waiting for this node's owner to approve
    /// them; `approve` or `deny` one.
    Approvals {
        #[command(subcommand)]
        command: Option<policy::ApprovalsCommand>,
        #[command(flatten)]
        dir: NodeDir,
        #[command(flatten)]
        output: Output,
    },
    /// Outputs held for this node's owner to review (release = review);
    /// `approve` or `deny` a job's.
    Releases {
        #[command(subcommand)]
        command: Option<policy::ReleasesCommand>,
        #[command(flatten)]
        dir: NodeDir,
        #[command(flatten)]
        output: Output,
    },
    /// The datasets of the network and the nodes that hold them; `add`,
    /// `reload` and `rm` are the owner's, for this node's own.
    Datasets {
        #[command(subcommand)]
        command: Option<datasets::DatasetsCommand>,
        /// Only datasets with this tag.
        #[arg(long)]
        tag: Option<String>,
        #[command(flatten)]
        dir: NodeDir,
        #[command(flatten)]
        output: Output,
    },
    /// Open the node's dashboard in a browser, logged in by a one-time
    /// link (valid for two minutes, once).
    Ui(ui::UiArgs),
    /// Follow the node's events (joined, suspect, gone, left, ...) live.
    Events {
        #[command(flatten)]
        dir: NodeDir,
        #[command(flatten)]
        output: Output,
    },
}

impl Cli {
    /// The node directory `iris run` names, if that is the command: the
    /// binary's main runs the node ([`crate::daemon`]), so the CLI, a client
    /// of the node, needs nothing of the node itself.
    pub fn node_to_run(&self) -> Option<&std::path::Path> {
        match &self.command {
            Command::Run { dir } => Some(&dir.dir),
            _ => None,
        }
    }
}

pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init(args) => init::init(args),
        // The binary's main starts the daemon itself ([`Cli::node_to_run`]).
        Command::Run { .. } => anyhow::bail!("`iris run` starts a node; this is not the place"),
        Command::Network(command) => network::network(command).await,
        Command::Nodes { dir, output } => network::nodes(&dir, &output).await,
        Command::Status { dir, output } => network::status(&dir, &output).await,
        Command::Images {
            command,
            dir,
            output,
        } => images::images(command, &dir, &output).await,
        Command::Job(command) => jobs::job(command).await,
        Command::Container(command) => containers::container(command).await,
        Command::Files(command) => files::files(command).await,
        Command::Ui(args) => ui::ui(args).await,
        Command::Datasets {
            command,
            tag,
            dir,
            output,
        } => datasets::datasets(command, tag, &dir, &output).await,
        Command::Events { dir, output } => events::follow(&dir, output.json).await,
        Command::Policy {
            command,
            dir,
            output,
        } => policy::policy(command, &dir, &output).await,
        Command::Approvals {
            command,
            dir,
            output,
        } => policy::approvals(command, &dir, &output).await,
        Command::Releases {
            command,
            dir,
            output,
        } => policy::releases(command, &dir, &output).await,
        Command::Audit {
            command,
            dir,
            output,
        } => audit::audit(command, &dir, &output),
    }
}

/// `512m`, `2g` or a plain number of MiB, as MiB.
fn parse_memory_mb(text: &str) -> Result<u64, String> {
    let text = text.trim().to_ascii_lowercase();
    let (number, unit) = split_unit(&text);
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

/// `90s`, `10m`, `2h`, `500ms` or a plain number of seconds, as seconds.
fn parse_duration_secs(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let (number, unit) = split_unit(text);
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

fn split_unit(text: &str) -> (&str, &str) {
    text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    )
}
