//! How the CLI prints: plain padded tables, JSON, times of day, and each
//! node's answer to a command sent to several nodes.

use std::{borrow::Cow, fmt::Write};

use anyhow::bail;
use serde::Serialize;

use crate::api_types::{Job, NodeAnswer};

pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// One line of words from elsewhere (a peer's names and cards, a job's
/// errors, a node's answer) as the terminal should show them: every
/// control character, and every character that reorders the text after it
/// (bidirectional overrides), as a visible escape (`\e`, `\a`, `\n`,
/// `\u{202e}`). A peer's words then cannot act on the terminal: set its
/// title, write the clipboard, clear the screen, or hide what follows.
pub fn printable(text: &str) -> Cow<'_, str> {
    escaped(text, false)
}

/// [`printable`] for text of several lines (a job's logs): newlines and
/// tabs stay as they are.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    escaped(text, true)
}

fn escaped(text: &str, keep_lines: bool) -> Cow<'_, str> {
    let acts = |c: char| {
        (c.is_control() && !(keep_lines && (c == '\n' || c == '\t')))
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    if !text.chars().any(acts) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            _ if !acts(c) => shown.push(c),
            '\u{1b}' => shown.push_str("\\e"),
            '\u{7}' => shown.push_str("\\a"),
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push_str("\\t"),
            _ => {
                let _ = write!(shown, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(shown)
}

/// A header row, then the rows, columns padded to their widest cell. Cells
/// are shown [`printable`]: most hold a peer's words.
pub fn print_table(rows: &[Vec<String>]) {
    let rows: Vec<Vec<Cow<str>>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| printable(cell)).collect())
        .collect();
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
            println!("{}: {}", printable(node), printable(error));
        }
        if let Some(held) = &task.held {
            println!(
                "{}: outputs not released: {}",
                printable(node),
                printable(held)
            );
        }
    }
}

/// Prints each node's answer (`done` for a success without output) and
/// what a command printed there; fails if any node failed.
pub fn report_answers(answers: &[NodeAnswer], done: &str) -> anyhow::Result<()> {
    let mut failed = 0;
    for answer in answers {
        let node = printable(&answer.node);
        for line in answer.stdout.as_deref().unwrap_or_default().lines() {
            println!("[{node}] {}", printable(line));
        }
        for line in answer.stderr.as_deref().unwrap_or_default().lines() {
            eprintln!("[{node}] {}", printable(line));
        }
        let outcome = match (&answer.error, answer.exit_code) {
            (Some(error), _) => format!("error: {}", printable(error)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_control_characters_show_as_escapes() {
        assert_eq!(printable("plain words, é ü"), "plain words, é ü");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
        assert_eq!(printable("a\u{1b}]0;title\u{7}b"), r"a\e]0;title\ab");
        assert_eq!(printable("x\u{1b}[2J\r\n"), r"x\e[2J\r\n");
        assert_eq!(printable("\u{202e}gpj.exe"), r"\u{202e}gpj.exe");
        assert_eq!(printable("\u{9b}31m"), r"\u{9b}31m");
        assert_eq!(
            printable_lines("one\ttwo\nthree\u{1b}[K"),
            "one\ttwo\nthree\\e[K"
        );
    }
}
