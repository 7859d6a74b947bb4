//! `iris container create|exec|rm`: long-lived containers on nodes.

use clap::Subcommand;

use super::{output::report_answers, parse_duration_secs, parse_memory_mb, NodeDir};
use crate::api_types::{CreateContainers, ExecContainers, RemoveContainers};

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
        /// Stop the command after this long (it restarts the container).
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

pub async fn container(command: ContainerCommand) -> anyhow::Result<()> {
    let answers = match command {
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
            let body = CreateContainers {
                name,
                image,
                on,
                argv,
                env,
                network,
                memory_mb: memory,
                cpus,
            };
            dir.client()?.create_containers(&body).await?
        }
        ContainerCommand::Exec {
            dir,
            name,
            on,
            timeout,
            argv,
        } => {
            let body = ExecContainers {
                on,
                argv,
                timeout_secs: timeout,
            };
            dir.client()?.exec_containers(&name, &body).await?
        }
        ContainerCommand::Rm { dir, name, on } => {
            dir.client()?
                .remove_containers(&name, &RemoveContainers { on })
                .await?
        }
    };
    report_answers(&answers, "ok")
}
