//! `iris network create|join|show|leave`, `iris nodes` and `iris status`.

use clap::Subcommand;

use super::{
    output::{header, print_json, print_table, printable},
    NodeDir, Output,
};
use crate::api_types::{CreateNetwork, JoinNetwork, NodeView, RemoveNode, Status};

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
        /// The secret every member needs to connect, at least 16 characters.
        /// Without it, a random 256-bit key is generated and printed once.
        #[arg(long, env = "IRIS_NETWORK_KEY", hide_env_values = true)]
        key: Option<String>,
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
        /// A join ticket from `iris network create` (iris:<network id>@<address>),
        /// or a member's address ending in /p2p/<peer id> (the master is then
        /// taken on trust from that member).
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
    /// Remove a node from the network for good (master only): its name is
    /// free again, and every member refuses that node from now on. A name
    /// stays its node's while the node is gone or has left, until this.
    Remove {
        #[command(flatten)]
        dir: NodeDir,
        /// The node's name.
        name: String,
    },
}

pub async fn network(command: NetworkCommand) -> anyhow::Result<()> {
    match command {
        NetworkCommand::Create {
            dir,
            name,
            key,
            mode,
        } => {
            let generated = key.is_none();
            let key = key.unwrap_or_else(|| crate::store::random_hex(32));
            let answer = dir
                .client()?
                .create_network(&CreateNetwork {
                    name,
                    key: key.clone(),
                    mode,
                })
                .await?;
            println!(
                "created network '{}' ({}); this node is master",
                answer.network.name,
                serde_plain(&answer.network.mode)
            );
            if generated {
                // The only time it is shown: nodes keep only what it derives.
                println!("the network key (give it to those who join; it is not shown again):");
                println!("{key}");
            }
            println!(
                "others join with `iris network join --key <key> <ticket>`; the ticket pins \
                 this network and its master. One per address of this node:"
            );
            for ticket in &answer.tickets {
                println!("{ticket}");
            }
        }
        NetworkCommand::Join {
            dir,
            key,
            bootstrap,
        } => {
            let answer = dir
                .client()?
                .join_network(&JoinNetwork { key, bootstrap })
                .await?;
            println!(
                "joined network '{}' as {}; {} nodes in the map",
                printable(&answer.network.name),
                answer.role,
                answer.nodes.len()
            );
            if answer.master_on_trust {
                eprintln!(
                    "note: joined by address, so the master ({}) was taken on trust from the \
                     bootstrap; a ticket (`iris:<network id>@<address>`) pins it",
                    answer.network.master
                );
            }
        }
        NetworkCommand::Show { dir, output } => {
            let network = dir.client()?.network().await?;
            if output.json {
                return print_json(&network);
            }
            println!("name:    {}", printable(&network.name));
            println!("mode:    {}", serde_plain(&network.mode));
            println!("master:  {}", network.master);
            // What a join ticket pins: iris:<id>@<a member's address>.
            println!("id:      {}", network.id());
        }
        NetworkCommand::Leave { dir } => {
            let answer = dir.client()?.leave_network().await?;
            println!("left network '{}'", printable(&answer.left));
        }
        NetworkCommand::Remove { dir, name } => {
            let answer = dir.client()?.remove_node(&RemoveNode { name }).await?;
            println!(
                "removed {} ({}) from the network",
                answer.removed, answer.peer_id
            );
        }
    }
    Ok(())
}

/// A unit enum as its JSON name, without the quotes.
fn serde_plain(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub async fn nodes(dir: &NodeDir, output: &Output) -> anyhow::Result<()> {
    let nodes = dir.client()?.nodes().await?;
    if output.json {
        return print_json(&nodes);
    }
    print_nodes(&nodes);
    Ok(())
}

pub async fn status(dir: &NodeDir, output: &Output) -> anyhow::Result<()> {
    let status = dir.client()?.status().await?;
    if output.json {
        return print_json(&status);
    }
    print_status(&status);
    Ok(())
}

fn print_status(status: &Status) {
    println!("name:     {}", status.name);
    println!("peer id:  {}", status.peer_id);
    println!("executor: {}", status.executor);
    match &status.network {
        Some(network) => {
            println!(
                "network:  {} ({})",
                printable(&network.name),
                serde_plain(&network.mode)
            );
            let role = status.role.map_or("-".to_string(), |r| r.to_string());
            println!("role:     {role}");
        }
        None => println!("network:  none"),
    }
    for addr in &status.addrs {
        println!("address:  {addr}");
    }
}

/// A plain table: a header, then one row per node, columns padded.
fn print_nodes(nodes: &[NodeView]) {
    let now = crate::now_ms();
    let mut rows = vec![header(&[
        "NAME",
        "ROLE",
        "STATE",
        "REACHED",
        "PEER ID",
        "ADDRESS",
        "LAST SEEN",
        "TAGS",
    ])];
    for node in nodes {
        let name = if node.is_self {
            format!("{} *", node.name)
        } else {
            node.name.clone()
        };
        let last_seen = format!(
            "{:.1}s ago",
            now.saturating_sub(node.last_seen) as f64 / 1000.0
        );
        // The first address, without peer ids: a relayed one names the
        // relay's address, and says so.
        let addr = node.addrs.first().map_or("-".into(), |a| {
            let text = a.to_string();
            let at = text.split("/p2p/").next().unwrap_or(&text).to_string();
            match iris_behaviours::is_relayed(a) {
                true => format!("{at} (relay)"),
                false => at,
            }
        });
        // How the answering node reaches it now: a site behind NAT shows
        // "relayed" until hole punching opens a direct way.
        let reached = match (node.is_self, node.connected, node.relayed) {
            (true, _, _) => "-",
            (false, false, _) => "not connected",
            (false, true, true) => "relayed",
            (false, true, false) => "direct",
        };
        let role = match node.relay {
            true => format!("{}+relay", node.role),
            false => node.role.to_string(),
        };
        let tags = if node.tags.is_empty() {
            "-".into()
        } else {
            node.tags.join(",")
        };
        rows.push(vec![
            name,
            role,
            node.state.to_string(),
            reached.to_string(),
            node.peer_id.to_string(),
            addr,
            last_seen,
            tags,
        ]);
    }
    print_table(&rows);
}
