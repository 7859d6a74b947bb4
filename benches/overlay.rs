//! Overlay benchmark: N real node processes on loopback (N = 10, 25, 50,
//! 100 by default), with the node's default liveness settings.
//!
//! For each N it prints
//! - agree: from the moment the last node asks to join until every other
//!   node has it in its map (their `joined` events), then until every map
//!   shows all N alive (polled);
//! - idle CPU of the whole network over 30 s, and per node as a ratio to a
//!   lone node's measured in the same run (1.0 means the network costs a
//!   node nothing more than being alone);
//! - connections per node (max and mean) and RSS per node (max and mean);
//! - SIGKILL, SIGSTOP and leave: from the signal (or the leave) until every
//!   other node reports the node suspect (or left), max and median over
//!   the nodes.
//!
//! Times come from the nodes' own event timestamps, so polling adds nothing.
//! Targets (issue 14): at N = 100 the maps agree within 3 s, the idle
//! network uses at most half a core, a node keeps at most 16 connections;
//! SIGKILL within 1 s, SIGSTOP within 3 s, a leave within 1 s.
//!
//! Run: `cargo bench --bench overlay` (or `-- 10 25` for chosen sizes).
//! `IRIS_IDLE_SECS` shortens the idle measurement.
//!
//! The soak, `cargo bench --bench overlay -- soak [N] [MINUTES]` (default
//! 50 nodes, 10 minutes): the network idles while two busy loops saturate
//! both cores, and every suspicion any node reports is counted. All are
//! false (nobody failed); the target is none. `IRIS_SUSPECT_AFTER_MS` and
//! `IRIS_SOAK_LOOPS` make the probes less patient and the load heavier.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{os::unix::process::CommandExt, time::Duration};

use common::*;
use serde_json::Value;
use tokio::sync::mpsc;

const KEY: &str = "bench-network-key-0123";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("soak") {
        let n = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50);
        let minutes = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
        return soak(n, minutes).await;
    }
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .filter(|n| *n >= 3)
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10, 25, 50, 100]
    } else {
        sizes
    };
    let idle_secs: u64 = std::env::var("IRIS_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let lone = lone_node_cpu(idle_secs).await;
    println!("overlay benchmark: default liveness settings, idle CPU over {idle_secs} s");
    println!(
        "a lone node (network of one) idles at {:.4} of a core",
        lone
    );
    println!(
        "{:>4}  {:>17}  {:>9}  {:>10}  {:>13}  {:>15}  {:>15}  {:>15}  {:>15}",
        "N",
        "agree (ms)",
        "idle CPU",
        "per node/1",
        "conns max/avg",
        "RSS MiB max/avg",
        "SIGKILL max/med",
        "SIGSTOP max/med",
        "leave max/med"
    );
    for n in sizes {
        let r = run(n, idle_secs).await;
        println!(
            "{n:>4}  {:>17}  {:>9.3}  {:>10.2}  {:>13}  {:>15}  {:>15}  {:>15}  {:>15}",
            format!("{} / {}", r.joined, r.agreed),
            r.cpu,
            r.cpu / n as f64 / lone,
            format!("{} / {:.1}", r.conns.0, r.conns.1),
            format!("{:.1} / {:.1}", r.rss.0, r.rss.1),
            format!("{} / {}", r.kill.0, r.kill.1),
            format!("{} / {}", r.stop.0, r.stop.1),
            format!("{} / {}", r.leave.0, r.leave.1),
        );
    }
}

struct Figures {
    joined: u64,
    agreed: u64,
    cpu: f64,
    conns: (usize, f64),
    rss: (f64, f64),
    kill: (u64, u64),
    stop: (u64, u64),
    leave: (u64, u64),
}

fn init(name: &str) -> TestNode {
    let node = TestNode::init(name);
    // The node's own defaults, not the tests' quicker ones.
    let defaults = iris::config::LivenessConfig::default();
    // IRIS_SUSPECT_AFTER_MS tightens the probes' patience, to show that
    // the soak does catch false suspicions when there are some.
    let suspect_after = std::env::var("IRIS_SUSPECT_AFTER_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(defaults.suspect_after_ms);
    node.set_liveness(
        defaults.probe_interval_ms,
        suspect_after,
        defaults.gone_after_ms,
    );
    node
}

async fn lone_node_cpu(idle_secs: u64) -> f64 {
    let mut node = init("lone");
    node.start().await;
    node.create_network(KEY).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    idle_cpu(&[node.pid()], idle_secs).await
}

/// N nodes idle for `minutes` on a saturated machine; prints every
/// suspicion any node reported (each a false one) and fails if there was one.
async fn soak(n: usize, minutes: u64) {
    let (names, nodes) = settled_network(n).await;
    let (tx, mut events) = mpsc::unbounded_channel();
    for node in &nodes {
        node.forward_events(tx.clone()).await;
    }
    // One busy loop per core; IRIS_SOAK_LOOPS asks for more (a longer run
    // queue), to show the soak does see false suspicions when there are.
    let cores = std::env::var("IRIS_SOAK_LOOPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |c| c.get()));
    let mut hog = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("for i in $(seq {cores}); do (while :; do :; done) & done; wait"),
        ])
        .process_group(0)
        .spawn()
        .expect("a shell for the busy loops");
    println!(
        "soak: {n} nodes idle for {minutes} min while {cores} busy loops saturate the machine"
    );
    let end = tokio::time::Instant::now() + Duration::from_secs(60 * minutes);
    let mut false_suspects = Vec::new();
    while let Ok(Some((reporter, event))) = tokio::time::timeout_at(end, events.recv()).await {
        if event["type"] == "suspect" {
            println!(
                "  false suspect: {reporter} suspected {}: {}",
                event["name"], event["reason"]
            );
            false_suspects.push((reporter, event));
        }
    }
    // The whole group: the shell and its loops.
    let _ = std::process::Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{}", hog.id())])
        .status();
    let _ = hog.wait();
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    for node in &nodes {
        node.wait_all_alive(&all).await;
    }
    println!(
        "soak: {} false suspects in {minutes} min",
        false_suspects.len()
    );
    assert!(false_suspects.is_empty(), "healthy nodes were suspected");
}

/// N nodes started, the first creating the network and the others joining
/// through members picked in turn, every map showing all N alive.
async fn settled_network(n: usize) -> (Vec<String>, Vec<TestNode>) {
    let names: Vec<String> = (0..n).map(|i| format!("node{i:03}")).collect();
    let mut nodes: Vec<TestNode> = names.iter().map(|name| init(name)).collect();
    for node in nodes.iter_mut() {
        node.start().await;
    }
    nodes[0].create_network(KEY).await;
    for i in 1..n {
        let (code, body) = nodes[i].join(KEY, &nodes[i / 2]).await;
        assert_eq!(code, 200, "{body}");
    }
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    for node in &nodes {
        node.wait_all_alive(&all).await;
    }
    (names, nodes)
}

async fn run(n: usize, idle_secs: u64) -> Figures {
    let names: Vec<String> = (0..n).map(|i| format!("node{i:03}")).collect();
    let mut nodes: Vec<TestNode> = names.iter().map(|name| init(name)).collect();
    for node in nodes.iter_mut() {
        node.start().await;
    }
    nodes[0].create_network(KEY).await;
    // Everyone but the last joins through a member picked in turn, then the
    // network settles.
    for i in 1..n - 1 {
        let via = &nodes[i / 2];
        let (code, body) = nodes[i].join(KEY, via).await;
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

    // The last join, through a non-genesis member: until every other node
    // has it, then until every map is the same, all alive.
    let last = &nodes[n - 1];
    let started = iris::now_ms();
    let (code, body) = last.join(KEY, &nodes[n / 2]).await;
    assert_eq!(code, 200, "{body}");
    let seen = collect(&mut events, "joined", &last.name, n - 2).await;
    let joined = seen.iter().max().unwrap() - started;
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    for node in &nodes {
        node.wait_all_alive(&all).await;
    }
    let agreed = iris::now_ms() - started;

    // Idle: a few seconds for idle connections to close, then measure.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let pids: Vec<u32> = nodes.iter().map(TestNode::pid).collect();
    let cpu = idle_cpu(&pids, idle_secs).await;
    let mut conns = Vec::new();
    for node in &nodes {
        conns.push(connections(node).await);
    }
    let rss: Vec<f64> = pids.iter().map(|p| rss_mib(*p)).collect();
    // Drain what idling produced: only what follows counts.
    while events.try_recv().is_ok() {}

    // A crash: the neighbours' connections reset, the rest hear it.
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

    // A leave, announced.
    let leaver = 1;
    let left_at = iris::now_ms();
    let (code, body) = nodes[leaver]
        .post("/v1/network/leave", serde_json::json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    let leave = spread(
        collect(&mut events, "left", &names[leaver], n - 2).await,
        left_at,
    );

    Figures {
        joined,
        agreed,
        cpu,
        conns: (
            *conns.iter().max().unwrap(),
            conns.iter().sum::<usize>() as f64 / n as f64,
        ),
        rss: (
            rss.iter().cloned().fold(0.0, f64::max),
            rss.iter().sum::<f64>() / n as f64,
        ),
        kill,
        stop,
        leave,
    }
}

/// The cores `pids` used together over `secs` seconds.
async fn idle_cpu(pids: &[u32], secs: u64) -> f64 {
    let ticks = |pids: &[u32]| -> u64 { pids.iter().map(|p| cpu_ticks(*p)).sum() };
    let before = ticks(pids);
    let start = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let used = ticks(pids) - before;
    // Linux counts CPU time in ticks of 1/100 s (USER_HZ).
    used as f64 / 100.0 / start.elapsed().as_secs_f64()
}

/// User plus system time of a process, in ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    field(11) + field(12)
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// How many members `node` holds a connection to.
async fn connections(node: &TestNode) -> usize {
    let (_, map) = node.get("/v1/nodes").await.unwrap();
    map.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["self"] != true && e["connected"] == true)
        .count()
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
