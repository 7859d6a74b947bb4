//! `iris init`: a node directory with its config, identity, API token and
//! workspace, all readable by the owner only.

use std::{net::IpAddr, path::Path, path::PathBuf};

use anyhow::{bail, Context};
use clap::Args;

use super::NodeDir;
use crate::{
    config::{NodeConfig, CONFIG_FILE},
    store::Store,
};

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

pub fn init(args: InitArgs) -> anyhow::Result<()> {
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
    // Private to the node's user and group: jobs of a root-owned node run
    // as nobody with the workspace's group, and read the data through it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        workspace.join("private"),
        std::fs::Permissions::from_mode(0o750),
    )?;

    // The audit log starts with the node: from now on a missing log was
    // deleted, and the node will not start without it.
    let store = Store::new(dir);
    store.clear_membership()?;
    store.create_secrets()?;
    crate::audit::AuditLog::create(dir.join("audit.log"), store.load_identity()?, None)?;
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
