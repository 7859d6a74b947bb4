//! How the CLI prints: plain padded tables, JSON, times of day, and each
//! node's answer to a command sent to several nodes.

use anyhow::bail;
use serde::Serialize;

use crate::api_types::{Job, NodeAnswer};

pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A header row, then the rows, columns padded to their widest cell.
pub fn print_table(rows: &[Vec<String>]) {
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

pub fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// UTC wall-clock time of day with milliseconds, from Unix milliseconds.
pub fn clock(ms: u64) -> String {
    let day_ms = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

/// A line per node: node, state, exit code, duration; then any errors.
pub fn print_tasks(job: &Job) {
    let mut rows = vec![header(&["NODE", "STATE", "EXIT", "DURATION"])];
    for (node, task) in &job.tasks {
        let duration = match (task.started_ms, task.finished_ms) {
            (Some(start), Some(end)) => {
                format!("{:.2}s", end.saturating_sub(start) as f64 / 1000.0)
            }
            _ => "-".into(),
        };
        rows.push(vec![
            node.clone(),
            task.state.to_string(),
            task.exit_code.map_or("-".into(), |c| c.to_string()),
            duration,
        ]);
    }
    print_table(&rows);
    for (node, task) in &job.tasks {
        if let Some(error) = &task.error {
            println!("{node}: {error}");
        }
        if let Some(held) = &task.held {
            println!("{node}: outputs not released: {held}");
        }
    }
}

/// Prints each node's answer (`done` for a success without output) and
/// what a command printed there; fails if any node failed.
pub fn report_answers(answers: &[NodeAnswer], done: &str) -> anyhow::Result<()> {
    let mut failed = 0;
    for answer in answers {
        let node = &answer.node;
        for line in answer.stdout.as_deref().unwrap_or_default().lines() {
            println!("[{node}] {line}");
        }
        for line in answer.stderr.as_deref().unwrap_or_default().lines() {
            eprintln!("[{node}] {line}");
        }
        let outcome = match (&answer.error, answer.exit_code) {
            (Some(error), _) => format!("error: {error}"),
            (None, Some(code)) => format!("exit {code}"),
            (None, None) => done.to_string(),
        };
        if !answer.ok {
            failed += 1;
        }
        println!("{node}: {outcome}");
    }
    if failed > 0 {
        bail!("{failed} node(s) failed");
    }
    Ok(())
}
