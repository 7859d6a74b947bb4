//! Overlay benchmark: N real nodes on loopback (N = 5, 10, 25).
//!
//! For each N it prints
//! - convergence: from the moment the last node asks to join until every
//!   other node has it in its map (their `joined` events);
//! - SIGKILL detection: from the kill until every other node reports the
//!   victim suspect;
//! - SIGSTOP detection: the same for a node that hangs with its sockets open.
//!
//! Times come from the nodes' own event timestamps, so polling adds nothing.
//! Targets (issue 2): SIGKILL within 0.5 s, SIGSTOP within 3 s; the seed's
//! Iris Network took 10.5 s for a hung node, serf about 6 s.
//!
//! Run: `cargo bench --bench overlay` (or `-- 5 10` for chosen sizes).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::sync::mpsc;

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![5, 10, 25]
    } else {
        sizes
    };
    println!("overlay benchmark: liveness heartbeat 500 ms, suspect after 2000 ms of silence");
    println!(
        "{:>4}  {:>15}  {:>22}  {:>22}",
        "N", "converge (ms)", "SIGKILL max/med (ms)", "SIGSTOP max/med (ms)"
    );
    for n in sizes {
        let (converge, kill, stop) = run(n).await;
        println!(
            "{n:>4}  {converge:>15}  {:>22}  {:>22}",
            format!("{} / {}", kill.0, kill.1),
            format!("{} / {}", stop.0, stop.1)
        );
    }
}

async fn run(n: usize) -> (u64, (u64, u64), (u64, u64)) {
    let names: Vec<String> = (0..n).map(|i| format!("node{i:02}")).collect();
    let mut nodes: Vec<TestNode> = names.iter().map(|name| TestNode::init(name)).collect();
    for node in nodes.iter_mut() {
        node.set_liveness(500, 2000, 10_000);
        node.start().await;
    }
    nodes[0].create_network("bench-network-key-0123").await;
    // Everyone but the last joins through a member picked in turn, then the
    // network settles.
    for i in 1..n - 1 {
        let via = &nodes[(i * 7) % i];
        let (code, body) = nodes[i].join("bench-network-key-0123", via).await;
        assert_eq!(code, 200, "{body}");
    }
    let settled: Vec<&str> = names[..n - 1].iter().map(String::as_str).collect();
    for node in &nodes[..n - 1] {
        node.wait_all_alive(&settled).await;
    }

    let (tx, mut events) = mpsc::unbounded_channel();
    for node in &nodes {
        node.forward_events(tx.clone()).await;
    }

    // Convergence after the last join, through a non-genesis member.
    let last = &nodes[n - 1];
    let started = iris::now_ms();
    let (code, body) = last.join("bench-network-key-0123", &nodes[n / 2]).await;
    assert_eq!(code, 200, "{body}");
    let seen = collect(&mut events, "joined", &last.name, n - 2).await;
    let converge = seen.iter().max().unwrap() - started;
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    for node in &nodes {
        node.wait_all_alive(&all).await;
    }

    // Steady state: every node holds a direct connection to every other.
    for node in &nodes {
        wait_for(
            "a full mesh of connections",
            Duration::from_secs(60),
            || async {
                let (_, map) = node.get("/v1/nodes").await.ok()?;
                let all = map
                    .as_array()?
                    .iter()
                    .all(|e| e["self"] == true || e["connected"] == true);
                all.then_some(())
            },
        )
        .await;
    }

    // A crash: the connections reset.
    let victim = n - 1;
    let killed_at = iris::now_ms();
    nodes[victim].kill();
    let kill = spread(
        collect(&mut events, "suspect", &names[victim], n - 1).await,
        killed_at,
    );

    // A hang: the sockets stay open and nothing answers.
    let hung = n / 2;
    let stopped_at = iris::now_ms();
    nodes[hung].pause();
    let stop = spread(
        collect(&mut events, "suspect", &names[hung], n - 2).await,
        stopped_at,
    );
    nodes[hung].resume();
    (converge, kill, stop)
}

/// Waits for `count` nodes to report `kind` about `about`; returns the
/// nodes' timestamps.
async fn collect(
    events: &mut mpsc::UnboundedReceiver<(String, Value)>,
    kind: &str,
    about: &str,
    count: usize,
) -> Vec<u64> {
    let mut stamps = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while stamps.len() < count {
        let (reporter, event) = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {count} nodes reported {kind} {about}",
                    stamps.len()
                )
            })
            .expect("event streams open");
        if event["type"] == kind && event["name"] == about && reporter != about {
            stamps
                .entry(reporter)
                .or_insert(event["at_ms"].as_u64().unwrap());
        }
    }
    stamps.into_values().collect()
}

/// (max, median) of the delays since `since`.
fn spread(mut stamps: Vec<u64>, since: u64) -> (u64, u64) {
    stamps.sort_unstable();
    let delay = |t: u64| t.saturating_sub(since);
    (
        delay(*stamps.last().unwrap()),
        delay(stamps[stamps.len() / 2]),
    )
}
