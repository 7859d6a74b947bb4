//! `iris audit [verify]`: the node's audit log, read from its file. It
//! needs no running daemon, so the owner can check it on a stopped node.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;

use super::{
    output::{header, print_json, print_table},
    NodeDir, Output,
};
use crate::{
    audit::{self, AuditEvent},
    config::CONFIG_FILE,
    store::Store,
};
use iris_behaviours::libp2p::identity::Keypair;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every line: in order, sealed into the hash chain and signed
    /// with the node's key; exit 1 with the first bad line, and if there
    /// is no node or no log. Prints the Merkle root the members witness.
    Verify {
        #[command(flatten)]
        dir: NodeDir,
    },
    /// Start a new log, knowingly, when the old one is missing or its last
    /// line is damaged: the old one is kept as audit.log.<time>.damaged,
    /// and the new one's first entry says so. Peers see that the old chain
    /// is gone. Run it with the node stopped.
    New {
        #[command(flatten)]
        dir: NodeDir,
    },
}

pub fn audit(command: Option<AuditCommand>, dir: &NodeDir, output: &Output) -> anyhow::Result<()> {
    match command {
        Some(AuditCommand::Verify { dir }) => return verify(&dir.dir),
        Some(AuditCommand::New { dir }) => return start_new(&dir.dir),
        None => {}
    }
    node_at(&dir.dir)?;
    let entries = audit::read(&dir.dir.join("audit.log"))?;
    if output.json {
        return print_json(&entries);
    }
    let mut rows = vec![header(&["SEQ", "AT (ms)", "EVENT", "JOB", "DETAIL"])];
    for entry in entries {
        let (kind, job, detail) = describe(&entry.event);
        rows.push(vec![
            entry.seq.to_string(),
            entry.at_ms.to_string(),
            kind.into(),
            job,
            detail,
        ]);
    }
    print_table(&rows);
    Ok(())
}

/// The node in `dir`, or why there is none.
fn node_at(dir: &Path) -> anyhow::Result<()> {
    if !dir.join(CONFIG_FILE).exists() {
        return Err(crate::config::ConfigError::Missing { dir: dir.into() }.into());
    }
    Ok(())
}

/// The node's identity key, which signs its log.
fn identity(dir: &Path) -> Result<Keypair, audit::AuditError> {
    Store::new(dir)
        .load_identity()
        .map_err(|e| audit::AuditError::NoKey(e.to_string()))
}

/// `iris audit verify`: exit 1 unless there is a node and its whole log
/// verifies.
fn verify(dir: &Path) -> anyhow::Result<()> {
    node_at(dir)?;
    let path = dir.join("audit.log");
    let checked = if path.exists() {
        Ok(())
    } else {
        Err(audit::AuditError::Missing { path: path.clone() })
    };
    let checked =
        checked.and_then(|()| audit::verify(&path, &identity(dir)?.public().to_peer_id()));
    match checked {
        Ok(verified) => {
            println!(
                "the audit log verifies: {} entries, each signed by this node; tree root {}",
                verified.entries, verified.root
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("the audit log does NOT verify: {e}");
            std::process::exit(1);
        }
    }
}

/// `iris audit new`: a new log after a missing or damaged one, which is
/// kept; refused while the log is whole.
fn start_new(dir: &Path) -> anyhow::Result<()> {
    node_at(dir)?;
    let path = dir.join("audit.log");
    let after = if path.exists() {
        let problem = match audit::AuditLog::open(path.clone(), identity(dir)?) {
            Err(e) => e.to_string(),
            Ok(_) => anyhow::bail!(
                "{} is whole (its last line is an entry): there is nothing to replace; \
                 `iris audit verify` checks the rest",
                path.display()
            ),
        };
        let kept = dir.join(format!("audit.log.{}.damaged", crate::now_ms()));
        std::fs::rename(&path, &kept)
            .with_context(|| format!("cannot move {} aside", path.display()))?;
        println!("kept the old log as {}", kept.display());
        format!(
            "the old log was damaged ({problem}); kept as {}",
            kept.display()
        )
    } else {
        "there was no audit.log".to_string()
    };
    audit::AuditLog::create(path.clone(), identity(dir)?, Some(after))?;
    println!("started a new audit log at {}", path.display());
    Ok(())
}

/// An event as a kind, its job and a line for people.
fn describe(event: &AuditEvent) -> (&'static str, String, String) {
    match event {
        AuditEvent::TaskRequested {
            job_id,
            from,
            image,
            argv,
            network,
            ..
        } => (
            "requested",
            job_id.clone(),
            format!(
                "by {from}: {image} {argv:?}, network {}",
                network.as_deref().unwrap_or("none")
            ),
        ),
        AuditEvent::TaskEnded {
            job_id,
            state,
            exit_code,
            image_id,
        } => (
            "ended",
            job_id.clone(),
            format!(
                "{state}, exit {}, image {}",
                exit_code.map_or("-".into(), |c| c.to_string()),
                image_id.as_deref().unwrap_or("-")
            ),
        ),
        AuditEvent::OutputReleased {
            job_id,
            path,
            to,
            bytes,
            sha256,
            blake3,
        } => {
            let hash = match (blake3, sha256) {
                (Some(b), _) => format!("blake3 {b}"),
                (None, Some(s)) => format!("sha256 {s}"),
                (None, None) => "no hash".into(),
            };
            (
                "released",
                job_id.clone(),
                format!("{path} ({bytes} bytes, {hash}) to {to}"),
            )
        }
        AuditEvent::LogsReleased { job_id, to, bytes } => (
            "logs",
            job_id.clone(),
            format!("{bytes} bytes of logs to {to}"),
        ),
        AuditEvent::Decision {
            subject,
            from,
            image_id,
            verdict,
            by,
            reason,
        } => (
            "decision",
            subject.clone(),
            format!(
                "{} by {} for {from}: {reason} (image {})",
                crate::config::word(verdict),
                crate::config::word(by),
                image_id.as_deref().unwrap_or("-")
            ),
        ),
        AuditEvent::TaskStarted { job_id, image_id } => {
            ("started", job_id.clone(), format!("image {image_id}"))
        }
        AuditEvent::ReleaseDecided {
            job_id,
            released,
            reason,
        } => (
            "release",
            job_id.clone(),
            match (released, reason) {
                (true, _) => "outputs released by the owner".into(),
                (false, reason) => format!(
                    "outputs denied by the owner: {}",
                    reason.as_deref().unwrap_or("-")
                ),
            },
        ),
        AuditEvent::SessionRequested {
            name,
            from,
            image,
            argv,
            network,
            ..
        } => (
            "session",
            format!("session {name}"),
            format!(
                "by {from}: {image} {argv:?}, network {}",
                network.as_deref().unwrap_or("none")
            ),
        ),
        AuditEvent::ExecRequested { name, from, argv } => (
            "exec",
            format!("session {name}"),
            format!("by {from}: {argv:?}"),
        ),
        AuditEvent::ExecReleased {
            name,
            to,
            bytes,
            sha256,
        } => (
            "exec output",
            format!("session {name}"),
            format!("{bytes} bytes (sha256 {sha256}) to {to}"),
        ),
        AuditEvent::PolicyChanged { change, .. } => ("policy", "-".into(), change.clone()),
        AuditEvent::LogStarted { after } => (
            "log_started",
            "-".into(),
            after.clone().unwrap_or_else(|| "the node was made".into()),
        ),
        AuditEvent::Contribution {
            job_id,
            session,
            to,
            length,
            participants,
            threshold,
            sites,
            privacy,
        } => {
            let sites: Vec<String> = sites.iter().map(ToString::to_string).collect();
            let mut with = if sites.is_empty() {
                String::new()
            } else {
                format!(" ({})", sites.join(", "))
            };
            if let Some(p) = privacy {
                with.push_str(&format!(
                    "; noise added, clipped to norm {}, spent epsilon {} (delta {:e}) of {}",
                    p.clip, p.epsilon, p.delta, p.dataset
                ));
            }
            (
                "secure sum",
                job_id.clone(),
                format!(
                    "{length} entries, masked, to {to}: session {session}, {participants} participants{with}, unmasked with {threshold} or more"
                ),
            )
        }
    }
}
