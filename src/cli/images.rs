//! `iris images [load|push]`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use super::{
    output::{header, print_json, print_table, report_answers},
    NodeDir, Output,
};
use crate::api_types::{LoadImage, PushImage};

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
        /// Load it even if it gives a tag this engine already has to
        /// another image (refused otherwise, and always when a peer ships it).
        #[arg(long)]
        force: bool,
    },
}

pub async fn images(
    command: Option<ImagesCommand>,
    dir: &NodeDir,
    output: &Output,
) -> anyhow::Result<()> {
    match command {
        Some(ImagesCommand::Load { dir, tar, force }) => {
            let path = absolute(&tar)?;
            let answer = dir.client()?.load_image(&LoadImage { path, force }).await?;
            for image in answer.loaded {
                println!("loaded {image}");
            }
            Ok(())
        }
        Some(ImagesCommand::Push { dir, tar, to }) => {
            let path = absolute(&tar)?;
            let answers = dir.client()?.push_image(&PushImage { path, to }).await?;
            report_answers(&answers, "pushed")
        }
        None => {
            let answer = dir.client()?.images().await?;
            if output.json {
                return print_json(&answer);
            }
            println!("executor: {}", answer.executor);
            let mut rows = vec![header(&["IMAGE", "ID"])];
            for image in &answer.images {
                let id = image.id.strip_prefix("sha256:").unwrap_or(&image.id);
                let short: String = id.chars().take(12).collect();
                for tag in &image.tags {
                    rows.push(vec![tag.clone(), short.clone()]);
                }
            }
            print_table(&rows);
            Ok(())
        }
    }
}

fn absolute(path: &std::path::Path) -> anyhow::Result<String> {
    let path = std::path::absolute(path).with_context(|| format!("bad path {}", path.display()))?;
    Ok(path.display().to_string())
}
