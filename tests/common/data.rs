//! Networks with private data on every node, and the jobs tests run on
//! them: the helpers of the tests that run containers.

use std::time::Duration;

use serde_json::{json, Value};

use super::{network, probe_tar, wait_for, TestNode, KEY};

/// A network of `names` where every node holds its own private CSV: node i
/// has i + 2 rows of y = 2x + i. Every owner approved the worker image, as
/// the testnet's do; the rest of each policy is the default.
pub async fn data_network(names: &[&str]) -> Vec<TestNode> {
    let nodes = unapproved_data_network(names).await;
    for node in &nodes {
        node.owner(&[
            "policy",
            "allow-image",
            "iris-probe:latest",
            "--whole-image",
        ]);
    }
    nodes
}

impl TestNode {
    /// Runs an owner's command (`iris policy ...`, `iris approvals ...`)
    /// on this node; it must succeed. Returns what it printed.
    pub fn owner(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The owner approves the probe image for the commands that start
    /// with `prefix` (words split at spaces), and for no other.
    pub fn approve_command(&self, prefix: &str) {
        let mut args = vec![
            "policy",
            "allow-image",
            "iris-probe:latest",
            "--prefix",
            "--",
        ];
        args.extend(prefix.split_whitespace());
        self.owner(&args);
    }

    /// Sets one setting of this node's policy, as its owner would.
    pub fn set_policy(&self, key: &str, value: &str) {
        self.owner(&["policy", "set", key, value]);
    }
}

/// [`data_network`] with every policy left as it is by default: no image
/// approved anywhere.
pub async fn unapproved_data_network(names: &[&str]) -> Vec<TestNode> {
    let nodes = network(names, KEY).await;
    for (i, node) in nodes.iter().enumerate() {
        let mut csv = "x,y\n".to_string();
        for x in 1..=(i + 2) {
            csv += &format!("{x},{}\n", 2 * x + i);
        }
        std::fs::write(node.dir.join("workspace/private/data.csv"), csv).unwrap();
        let out = node.cli(&["images", "load", probe_tar()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    nodes
}

pub fn job_body(on: &str, argv: &[&str]) -> Value {
    json!({"image": "iris-probe:latest", "on": on, "argv": argv})
}

pub async fn wait_job(node: &TestNode, id: &str) -> Value {
    wait_for(
        &format!("job {id} to finish"),
        Duration::from_secs(90),
        || async {
            let (_, job) = node.get(&format!("/v1/jobs/{id}")).await.ok()?;
            (job["state"] != "running").then_some(job)
        },
    )
    .await
}

pub async fn submit(node: &TestNode, body: Value) -> String {
    let (code, job) = node.post("/v1/jobs", body).await;
    assert_eq!(code, 201, "{job}");
    job["id"].as_str().unwrap().to_string()
}

/// Runs the worker's stats on bob's private data from `master`, waits for
/// it to succeed and gathers its outputs: the job id and the gather's answer.
pub async fn stats_on_bob_gathered(master: &TestNode) -> (String, Value) {
    let argv = ["/iris-worker", "stats", "/workspace/private/data.csv"];
    let id = submit(master, job_body("bob", &argv)).await;
    assert_eq!(wait_job(master, &id).await["state"], "succeeded");
    let (code, gathered) = master
        .post(&format!("/v1/jobs/{id}/gather"), json!({}))
        .await;
    assert_eq!(code, 200, "{gathered}");
    (id, gathered)
}

/// A dataset directory `private/heart` of `rows` rows in `node`'s private area.
pub fn heart(node: &TestNode, rows: usize) {
    let dir = node.dir.join("workspace/private/heart");
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = "age,bmi,smoker\n".to_string();
    for i in 0..rows {
        csv += &format!("{},{}.5,{}\n", 40 + i % 30, 20 + i % 10, i % 2);
    }
    std::fs::write(dir.join("part1.csv"), csv).unwrap();
}

/// Its owner declares `private/heart` as the dataset `heart`, tagged
/// `cardio`; returns what the command printed.
pub fn declare_heart(node: &TestNode, extra: &[&str]) -> String {
    let mut args = vec![
        "datasets",
        "add",
        "heart",
        "private/heart",
        "--tag",
        "cardio",
    ];
    args.extend_from_slice(extra);
    node.owner(&args)
}

/// The files in `dir` that a write left behind (`<file>.tmp<pid>-<n>`).
pub fn temporaries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp"))
        .collect()
}

/// A report that the task of `job_id` succeeded a second ago with an
/// update: what a late or replayed answer says (tests/quorum.rs,
/// tests/rounds.rs).
pub fn succeeded_report(job_id: &str) -> iris_behaviours::TaskReport {
    let now = iris::now_ms();
    let mut report = iris_behaviours::TaskReport::queued(job_id.to_string());
    report.state = iris_behaviours::TaskState::Succeeded;
    report.exit_code = Some(0);
    report.started_ms = Some(now - 1000);
    report.finished_ms = Some(now);
    report.outputs = vec!["update.json".into()];
    report
}
