//! `iris ui`: the dashboard of a running node, logged in. The node gives a
//! one-time link; this prints it and, unless told not to, opens a browser
//! on it. Once opened, the link is spent and the browser holds a session
//! cookie instead, so nothing that grants access stays in its history.

use std::process::{Command, Stdio};

use clap::Args;

use super::NodeDir;

#[derive(Debug, Args)]
pub struct UiArgs {
    #[command(flatten)]
    dir: NodeDir,
    /// Only print the link; do not start a browser.
    #[arg(long)]
    no_open: bool,
}

/// Programs that open a URL in the user's browser, tried in turn.
const OPENERS: &[&str] = &["xdg-open", "open"];

pub async fn ui(args: UiArgs) -> anyhow::Result<()> {
    let url = args.dir.client()?.login_url().await?;
    println!("{url}");
    if args.no_open {
        eprintln!("open it within two minutes; it works once");
        return Ok(());
    }
    if open_browser(&url) {
        eprintln!("opened in your browser; the link works once, within two minutes");
    } else {
        eprintln!("no browser could be started here: open the link above within two minutes");
    }
    Ok(())
}

fn open_browser(url: &str) -> bool {
    OPENERS.iter().any(|opener| {
        Command::new(opener)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}
