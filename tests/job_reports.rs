//! How task reports reach the node that submitted a job, and how a client
//! waits for them: real `iris` processes and the real Docker engine.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn a_wait_blocks_until_the_job_ends_and_job_run_idles_while_it_waits() {
    let nodes = data_network(&["alice"]).await;

    // `?wait=S` answers when the job ends...
    let id = submit(
        &nodes[0],
        job_body("alice", &["/iris-worker", "sleep", "3"]),
    )
    .await;
    let started = Instant::now();
    let (code, job) = nodes[0]
        .get(&format!("/v1/jobs/{id}?wait=60"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{job}");
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(started.elapsed() < Duration::from_secs(60));

    // ... or when S has passed, with the job as it stands.
    let id = submit(
        &nodes[0],
        job_body("alice", &["/iris-worker", "sleep", "30"]),
    )
    .await;
    let started = Instant::now();
    let (_, job) = nodes[0]
        .get(&format!("/v1/jobs/{id}?wait=2"))
        .await
        .unwrap();
    assert_eq!(job["state"], "running", "{job}");
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "the wait returned after {:?}",
        started.elapsed()
    );
    let (code, answer) = nodes[0]
        .get(&format!("/v1/jobs/{id}?wait=soon"))
        .await
        .unwrap();
    assert_eq!(code, 400, "{answer}");
    let out = nodes[0].cli(&["job", "cancel", &id]);
    assert!(out.status.success());
    // Its container is gone before the node is.
    assert_eq!(wait_job(&nodes[0], &id).await["state"], "failed");

    // `job run` waits without spinning: bash's `times` gives the CPU its
    // children used. A tight polling loop burns about as long as the job.
    let script = format!(
        "{IRIS} job run --image iris-probe:latest --on alice -- /iris-worker sleep 4 >/dev/null && times"
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .env("IRIS_DIR", nodes[0].dir_str())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let children = stdout.lines().last().unwrap_or_default();
    let cpu: f64 = children.split_whitespace().map(bash_seconds).sum();
    assert!(
        cpu < 1.0,
        "job run used {cpu:.2} s of CPU waiting for a 4 s job ({children})"
    );
}

/// `0m1.250s` as seconds.
fn bash_seconds(text: &str) -> f64 {
    let (minutes, rest) = text.split_once('m').unwrap_or(("0", text));
    minutes.parse::<f64>().unwrap_or(0.0) * 60.0
        + rest.trim_end_matches('s').parse::<f64>().unwrap_or(0.0)
}

#[tokio::test]
async fn a_task_with_thousands_of_outputs_still_reports_its_end() {
    let nodes = data_network(&["alice", "bob"]).await;
    let id = submit(&nodes[0], job_body("bob", &["/iris-worker", "sleep", "3"])).await;
    // Files the task leaves in its output directory, with names long
    // enough that the list alone is larger than a request frame.
    let out = nodes[1].dir.join(format!("workspace/outputs/{id}"));
    wait_for("bob's output directory", DEADLINE, || async {
        out.is_dir().then_some(())
    })
    .await;
    for i in 0..3000 {
        std::fs::write(
            out.join(format!("output-file-with-a-long-name-{i:06}.txt")),
            "x",
        )
        .unwrap();
    }
    let job = wait_job(&nodes[0], &id).await;
    let task = &job["tasks"]["bob"];
    assert_eq!(task["state"], "succeeded", "{job}");
    let listed = task["outputs"].as_array().unwrap().len();
    assert!(listed > 0 && listed < 3000, "{listed} outputs listed");
    assert!(
        task["outputs_truncated"].as_bool() == Some(true),
        "{}",
        json!(task["outputs_truncated"])
    );
}

#[tokio::test]
async fn reports_for_a_submitter_that_left_the_network_are_given_up() {
    let nodes = data_network(&["alice", "bob"]).await;
    let id = submit(&nodes[0], job_body("bob", &["/iris-worker", "sleep", "2"])).await;
    let out = nodes[0].cli(&["network", "leave"]);
    assert!(out.status.success());
    nodes[1].wait_state("alice", "left").await;
    wait_for(
        "bob to give up the report for alice",
        Duration::from_secs(60),
        || async {
            nodes[1]
                .log()
                .contains(&format!("dropped the report of job {id}"))
                .then_some(())
        },
    )
    .await;
    // bob's task runs on: the test ends with it, so no container of it
    // outlives the test.
    let task = nodes[1].dir.join(format!("tasks/{id}/task.json"));
    wait_for("bob's task to end", Duration::from_secs(60), || async {
        let text = std::fs::read_to_string(&task).ok()?;
        let state: Value = serde_json::from_str(&text).ok()?;
        (!matches!(
            state["report"]["state"].as_str(),
            Some("queued" | "running")
        ))
        .then_some(())
    })
    .await;
}
