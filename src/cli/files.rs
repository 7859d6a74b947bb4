//! `iris files ls|put|get`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use futures::StreamExt;

use super::{
    output::{header, print_json, print_table, report_answers},
    NodeDir, Output,
};
use crate::{
    api_types::{FilesQuery, GetFile, PutFile},
    client::ApiClient,
    config::NodeConfig,
    events::EventKind,
    workspace::user_path,
};

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

pub async fn files(command: FilesCommand) -> anyhow::Result<()> {
    match command {
        FilesCommand::Ls { dir, node, output } => {
            let entries = dir.client()?.files(&FilesQuery { node }).await?;
            if output.json {
                return print_json(&entries);
            }
            let mut rows = vec![header(&["PATH", "SIZE"])];
            for entry in entries {
                rows.push(vec![entry.path, entry.size.to_string()]);
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
            let body = PutFile {
                source: source.display().to_string(),
                dest: as_path,
                to,
            };
            let answers = dir.client()?.put_file(&body).await?;
            report_answers(&answers, "received it")
        }
        FilesCommand::Get {
            dir,
            from,
            path,
            to,
            dest,
        } => get(dir, from, path, to, dest).await,
    }
}

async fn get(
    dir: NodeDir,
    from: String,
    path: String,
    to: Option<String>,
    dest: Option<PathBuf>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        dest.is_none() || to.is_none(),
        "--dest copies to this machine; it does not go with --to"
    );
    let client = dir.client()?;
    // Progress comes as events from the node that receives the file,
    // shown while the transfer runs and dropped when it ends.
    let progress = match to {
        None => Some(show_progress(dir.client()?, user_path(&path))),
        Some(_) => None,
    };
    let body = GetFile {
        from,
        path,
        to,
        dest: None,
    };
    let transfer = match progress {
        None => client.get_file(&body).await,
        Some(progress) => {
            // A progress display that gives up waits with the transfer.
            let shown = async {
                progress.await;
                std::future::pending::<()>().await
            };
            let transfer = tokio::select! {
                transfer = client.get_file(&body) => transfer,
                () = shown => unreachable!("it never ends"),
            };
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprintln!();
            }
            transfer
        }
    };
    let transfer = transfer?;
    let seconds = transfer.seconds.max(1e-6);
    println!(
        "{}: {} bytes in {seconds:.2}s ({:.1} MiB/s), blake3 {}",
        transfer.path,
        transfer.bytes,
        transfer.bytes as f64 / seconds / (1 << 20) as f64,
        transfer.blake3
    );
    if let Some(dest) = dest {
        let config = NodeConfig::load(&dir.dir)?;
        let local = config.workspace_dir(&dir.dir).join(&transfer.path);
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

/// Follows `transfer` events for `path`: a bar with rate and ETA on a
/// terminal, plain lines otherwise.
async fn show_progress(client: ApiClient, path: String) {
    let Ok(events) = client.events().await else {
        return;
    };
    let mut events = Box::pin(events);
    let started = std::time::Instant::now();
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    while let Some(Ok(event)) = events.next().await {
        let EventKind::Transfer {
            path: moving,
            bytes,
            total,
        } = event.kind
        else {
            continue;
        };
        if moving != path {
            continue;
        }
        let total = total.max(1);
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
