//! Job overhead benchmark: the same image and command through `iris job run`
//! and through bare `docker run`, in the same run, on 1 node and on 3 nodes
//! at once (3 bare runs in parallel as the baseline). Both sides use the
//! same sandbox flags, and both are timed as a user would, as whole
//! command-line invocations. Runs alternate so drift hits both alike.
//!
//! Target (issue 3): Iris adds under 10% over bare Docker.
//! Run: `cargo bench --bench jobs` (or `-- 20` for 20 rounds).

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::*;

fn docker_run(private: &Path, out: &Path) -> Command {
    let mut cmd = Command::new("docker");
    cmd.args([
        "run",
        "--rm",
        "--label",
        "iris.bench=1",
        "--network",
        "none",
        "--read-only",
    ])
    .args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"])
    .args([
        "--memory",
        "512m",
        "--memory-swap",
        "512m",
        "--cpus",
        "1",
        "--pids-limit",
        "256",
    ])
    .arg("-v")
    .arg(format!("{}:/workspace/private:ro", private.display()))
    .arg("-v")
    .arg(format!("{}:/workspace/out", out.display()))
    .args([
        "iris-probe:latest",
        "/iris-worker",
        "stats",
        "/workspace/private/data.csv",
    ]);
    cmd
}

fn iris_run(node: &TestNode, on: &str) -> Command {
    let mut cmd = Command::new(IRIS);
    cmd.env("IRIS_DIR", node.dir_str())
        .args([
            "job",
            "run",
            "--image",
            "iris-probe:latest",
            "--on",
            on,
            // A run that cannot finish fails the benchmark instead of hanging it.
            "--timeout",
            "120s",
            "--",
        ])
        .args(["/iris-worker", "stats", "/workspace/private/data.csv"]);
    cmd
}

/// Runs every command at once and returns the wall time until all ended.
fn timed(commands: &mut [Command]) -> Duration {
    let start = Instant::now();
    let children: Vec<_> = commands
        .iter_mut()
        .map(|c| {
            c.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a run failed");
    }
    start.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let nodes = network(&["alice", "bob", "carol"], KEY).await;
    let mut csv = "x,y\n".to_string();
    for x in 0..1000 {
        csv += &format!("{x},{}\n", 2 * x + 1);
    }
    for node in &nodes {
        std::fs::write(node.dir.join("workspace/private/data.csv"), &csv).unwrap();
        assert!(node.cli(&["images", "load", probe_tar()]).status.success());
        // Each site's owner approves the image once, as the testnet does.
        node.owner(&[
            "policy",
            "allow-image",
            "iris-probe:latest",
            "--whole-image",
        ]);
    }
    let scratch = tempfile::tempdir().unwrap();
    let outs: Vec<_> = (0..3)
        .map(|i| scratch.path().join(format!("out{i}")))
        .collect();
    for out in &outs {
        std::fs::create_dir_all(out).unwrap();
    }
    let private = |i: usize| nodes[i].dir.join("workspace/private");

    // Warm up both paths once.
    timed(&mut [docker_run(&private(0), &outs[0])]);
    timed(&mut [iris_run(&nodes[0], "alice")]);

    let (mut docker1, mut iris1, mut docker3, mut iris3) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        docker1.push(timed(&mut [docker_run(&private(0), &outs[0])]));
        iris1.push(timed(&mut [iris_run(&nodes[0], "alice")]));
        let mut three: Vec<Command> = (0..3).map(|i| docker_run(&private(i), &outs[i])).collect();
        docker3.push(timed(&mut three));
        iris3.push(timed(&mut [iris_run(&nodes[0], "all")]));
    }
    println!("job overhead benchmark: median of {rounds} rounds, iris-worker stats on 1000 rows");
    println!(
        "{:<28} {:>12} {:>12} {:>8}",
        "", "docker (ms)", "iris (ms)", "ratio"
    );
    for (label, docker, iris) in [
        ("1 node", docker1, iris1),
        ("3 nodes at once", docker3, iris3),
    ] {
        let (d, i) = (median(docker), median(iris));
        println!(
            "{label:<28} {:>12.1} {:>12.1} {:>8.3}",
            d.as_secs_f64() * 1e3,
            i.as_secs_f64() * 1e3,
            i.as_secs_f64() / d.as_secs_f64()
        );
    }
}
