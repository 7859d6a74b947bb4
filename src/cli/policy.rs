//! `iris policy`, `iris approvals` and `iris releases`: the data owner's
//! commands. Each acts on this node alone, through its running daemon, so a
//! change takes effect at once and is in the audit log.

use clap::Subcommand;

use super::{
    output::{clock, header, print_json, print_table},
    NodeDir, Output,
};
use crate::{
    api_types::{
        AllowImage, Approve, BudgetView, Deny, ForgetSite, PolicyView, RecogniseSite, RevokeImage,
        SetBudget, SetPolicy,
    },
    config::word,
    policy::{CommandRule, SETTINGS},
};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Change one setting, at once: images approve|any, network deny|allow,
    /// sessions deny|allow, release auto|review|aggregate, logs
    /// withhold|share, min_aggregate N, max_shared_log_bytes N,
    /// max_tasks_per_hour N.
    Set {
        #[command(flatten)]
        dir: NodeDir,
        key: String,
        value: String,
    },
    /// Approve an image ahead of time, pinned to the digest it has now,
    /// with the commands it may run: `--prefix -- /iris-worker stats`
    /// (that command with any arguments), `--exact -- ARGV...` (only
    /// that), or `--whole-image` (every program in the image: only for
    /// an image you trust as a whole).
    #[command(group(clap::ArgGroup::new("what").required(true).args(["prefix", "exact", "whole_image"])))]
    AllowImage {
        #[command(flatten)]
        dir: NodeDir,
        /// An image this node's engine has, e.g. iris-worker:latest.
        image: String,
        /// Only for jobs that read this dataset (--on dataset:NAME).
        #[arg(long)]
        dataset: Option<String>,
        /// Commands that start with the words after `--`.
        #[arg(long, requires = "argv")]
        prefix: bool,
        /// Exactly the command after `--`.
        #[arg(long)]
        exact: bool,
        /// Every command in the image, whatever it does.
        #[arg(long, conflicts_with = "argv")]
        whole_image: bool,
        /// The command, after `--`.
        #[arg(last = true, value_name = "ARGV")]
        argv: Vec<String>,
    },
    /// Take back an approval, by the name it was approved under or its digest.
    RevokeImage {
        #[command(flatten)]
        dir: NodeDir,
        image: String,
    },
    /// Recognise members as co-participants of secure sums, each pinned to
    /// the identity it has now. This node takes part in a secure sum only
    /// when at least min_aggregate of its sites (this node included, the
    /// master's own node never) are recognised. `iris policy` lists the
    /// members not recognised yet.
    Recognise {
        #[command(flatten)]
        dir: NodeDir,
        /// Member names, as `iris nodes` shows them.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Recognise a site no more, by its name or peer id.
    Forget {
        #[command(flatten)]
        dir: NodeDir,
        node: String,
    },
    /// Give one dataset (or private/, the whole private area) a privacy
    /// budget of its own: what all its noisy secure sums may cost
    /// together, as epsilon. The others have privacy_epsilon.
    Budget {
        #[command(flatten)]
        dir: NodeDir,
        /// A dataset of this node, or private/.
        dataset: String,
        epsilon: f64,
        /// The delta it is stated at (privacy_delta if not given).
        #[arg(long)]
        delta: Option<f64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Run a waiting task; --always also approves, for later jobs, its
    /// image digest with exactly this command (never the whole image).
    Approve {
        #[command(flatten)]
        dir: NodeDir,
        id: String,
        /// Approve this digest with exactly this task's command from now on.
        #[arg(long)]
        always: bool,
    },
    /// Refuse a waiting task; the requester sees the reason.
    Deny {
        #[command(flatten)]
        dir: NodeDir,
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReleasesCommand {
    /// Let a job's held outputs go to the node that asked for the job.
    Approve {
        #[command(flatten)]
        dir: NodeDir,
        job: String,
    },
    /// Keep a job's held outputs here for good; the requester sees the reason.
    Deny {
        #[command(flatten)]
        dir: NodeDir,
        job: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

pub async fn policy(
    command: Option<PolicyCommand>,
    dir: &NodeDir,
    output: &Output,
) -> anyhow::Result<()> {
    let policy = match command {
        None => dir.client()?.policy().await?,
        Some(PolicyCommand::Set { dir, key, value }) => {
            let body = SetPolicy { key, value };
            dir.client()?.set_policy(&body).await?
        }
        Some(PolicyCommand::AllowImage {
            dir,
            image,
            dataset,
            prefix,
            exact,
            whole_image: _,
            argv,
        }) => {
            let command = if prefix {
                CommandRule::Prefix { argv }
            } else if exact {
                CommandRule::Exact { argv }
            } else {
                CommandRule::Any
            };
            let body = AllowImage {
                image,
                dataset,
                command,
            };
            dir.client()?.allow_image(&body).await?
        }
        Some(PolicyCommand::RevokeImage { dir, image }) => {
            dir.client()?.revoke_image(&RevokeImage { image }).await?
        }
        Some(PolicyCommand::Recognise { dir, nodes }) => {
            let client = dir.client()?;
            let mut policy = None;
            for node in nodes {
                policy = Some(client.recognise_site(&RecogniseSite { node }).await?);
            }
            policy.expect("clap asks for one node or more")
        }
        Some(PolicyCommand::Forget { dir, node }) => {
            dir.client()?.forget_site(&ForgetSite { node }).await?
        }
        Some(PolicyCommand::Budget {
            dir,
            dataset,
            epsilon,
            delta,
        }) => {
            let body = SetBudget {
                dataset,
                epsilon,
                delta,
            };
            dir.client()?.set_budget(&body).await?
        }
    };
    if output.json {
        return print_json(&policy);
    }
    print_policy(&policy);
    if let Ok(budgets) = dir.client()?.budgets().await {
        println!();
        print_budgets(&budgets);
    }
    // The members to pick from, when the node can say.
    if let Ok(nodes) = dir.client()?.nodes().await {
        let unknown: Vec<String> = nodes
            .into_iter()
            .filter(|n| !n.is_self && !policy.recognised.iter().any(|k| k.peer_id == n.peer_id))
            .map(|n| n.name)
            .collect();
        if !unknown.is_empty() {
            println!(
                "members not recognised: {} (iris policy recognise NAME)",
                unknown.join(", ")
            );
        }
    }
    Ok(())
}

fn print_policy(policy: &PolicyView) {
    let value = |key: &str| -> String {
        match key {
            "images" => word(&policy.images),
            "network" => word(&policy.network),
            "sessions" => word(&policy.sessions),
            "release" => word(&policy.release),
            "logs" => word(&policy.logs),
            "min_aggregate" => policy.min_aggregate.to_string(),
            "max_tasks_per_hour" => policy.max_tasks_per_hour.to_string(),
            "noise_free_sums" => word(&policy.noise_free_sums),
            "privacy_epsilon" => policy.privacy_epsilon.to_string(),
            "privacy_delta" => format!("{:e}", policy.privacy_delta),
            _ => policy.max_shared_log_bytes.to_string(),
        }
    };
    let mut rows = vec![header(&["SETTING", "VALUE", "ACCEPTS"])];
    for (key, accepts) in SETTINGS {
        rows.push(vec![key.to_string(), value(key), accepts.to_string()]);
    }
    print_table(&rows);
    println!();
    if policy.approved.is_empty() {
        println!("approved images: none");
    } else {
        let mut rows = vec![header(&["APPROVED IMAGE", "MAY RUN", "DATASET", "DIGEST"])];
        for image in &policy.approved {
            rows.push(vec![
                image.name.clone(),
                image.command.to_string(),
                image.dataset.clone().unwrap_or_else(|| "any".into()),
                image.digest.clone(),
            ]);
        }
        print_table(&rows);
    }
    println!();
    if policy.recognised.is_empty() {
        println!("recognised sites: none, so this node takes part in no secure sum");
        return;
    }
    let mut rows = vec![header(&["RECOGNISED SITE", "PEER ID"])];
    for site in &policy.recognised {
        rows.push(vec![site.name.clone(), site.peer_id.to_string()]);
    }
    print_table(&rows);
}

/// Each dataset's privacy budget, what its noisy secure sums spent and
/// what is left.
pub fn print_budgets(budgets: &[BudgetView]) {
    let mut rows = vec![header(&[
        "PRIVACY BUDGET",
        "EPSILON",
        "DELTA",
        "SPENT",
        "LEFT",
    ])];
    for b in budgets {
        rows.push(vec![
            b.dataset.clone(),
            b.epsilon.to_string(),
            format!("{:e}", b.delta),
            format!("{:.3}", b.spent_epsilon),
            format!("{:.3}", b.left_epsilon),
        ]);
    }
    print_table(&rows);
}

pub async fn approvals(
    command: Option<ApprovalsCommand>,
    dir: &NodeDir,
    output: &Output,
) -> anyhow::Result<()> {
    let decided = match command {
        Some(ApprovalsCommand::Approve { dir, id, always }) => {
            dir.client()?.approve(&id, &Approve { always }).await?
        }
        Some(ApprovalsCommand::Deny { dir, id, reason }) => {
            dir.client()?.deny(&id, &Deny { reason }).await?
        }
        None => {
            let pending = dir.client()?.approvals().await?;
            if output.json {
                return print_json(&pending);
            }
            if pending.is_empty() {
                println!("no request awaits approval");
                return Ok(());
            }
            let mut rows = vec![header(&[
                "ID",
                "REQUESTER",
                "IMAGE",
                "DIGEST",
                "COMMAND",
                "NETWORK",
                "RESOURCES",
                "SINCE",
            ])];
            for p in &pending {
                rows.push(vec![
                    p.id.clone(),
                    p.requester_name.clone().unwrap_or(p.requester.to_string()),
                    p.image.clone(),
                    p.image_id.clone().unwrap_or("-".into()),
                    format!("{:?}", p.argv),
                    p.network.clone().unwrap_or("none".into()),
                    format!("{} MiB, {} cpu, {} s", p.memory_mb, p.cpus, p.timeout_secs),
                    clock(p.requested_ms),
                ]);
            }
            print_table(&rows);
            return Ok(());
        }
    };
    if output.json {
        return print_json(&decided);
    }
    println!("{}: {}", decided.id, decided.decision);
    Ok(())
}

pub async fn releases(
    command: Option<ReleasesCommand>,
    dir: &NodeDir,
    output: &Output,
) -> anyhow::Result<()> {
    let decided = match command {
        Some(ReleasesCommand::Approve { dir, job }) => dir.client()?.release(&job).await?,
        Some(ReleasesCommand::Deny { dir, job, reason }) => {
            dir.client()?.withhold(&job, &Deny { reason }).await?
        }
        None => {
            let pending = dir.client()?.releases().await?;
            if output.json {
                return print_json(&pending);
            }
            if pending.is_empty() {
                println!("no outputs await release");
                return Ok(());
            }
            let mut rows = vec![header(&[
                "JOB",
                "REQUESTER",
                "IMAGE",
                "STATE",
                "FILES",
                "BYTES",
            ])];
            for p in &pending {
                rows.push(vec![
                    p.job_id.clone(),
                    p.requester_name.clone().unwrap_or(p.requester.to_string()),
                    p.image.clone(),
                    p.state.to_string(),
                    p.files
                        .iter()
                        .chain(&p.unnamed)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    p.bytes.to_string(),
                ]);
            }
            print_table(&rows);
            println!("(the files are in workspace/outputs/<job>/ on this node: read them before you release them)");
            return Ok(());
        }
    };
    if output.json {
        return print_json(&decided);
    }
    println!(
        "{}: {} ({} files)",
        decided.id,
        decided.decision,
        decided.files.len()
    );
    Ok(())
}
