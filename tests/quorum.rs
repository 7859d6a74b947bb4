//! Jobs with a quorum and a deadline: a site that never answers does not
//! hold the job. Here the straggler is carol, whose owner never approves
//! the image (as a site whose owner is away would): before, every job on
//! all three waited for her for as long as the researcher did; now the
//! job ends at its deadline, succeeds if its quorum did, and carol's task
//! is recorded as late and cancelled on her node.

mod common;

use std::time::{Duration, Instant};

use common::{rogue::RoguePeer, *};
use iris_behaviours::{
    Accepted, AnswerFrame, Envelope, PeerRequest, TaskCall, TaskUpdate, MAX_CONTROL_RESPONSE,
};
use serde_json::json;

/// A job on every node of the network that exits 0, with `extra` fields.
fn job_with(extra: serde_json::Value) -> serde_json::Value {
    let mut body = job_body("all", &["/iris-worker", "exit", "0"]);
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

#[tokio::test]
async fn a_job_ends_at_its_deadline_with_its_quorum_and_the_straggler_late() {
    let nodes = unapproved_data_network(&["alice", "bob", "carol"]).await;
    for node in &nodes[..2] {
        node.approve_command("/iris-worker exit");
    }
    let (alice, carol) = (&nodes[0], &nodes[2]);

    let started = Instant::now();
    let id = submit(alice, job_with(json!({"quorum": 2, "deadline_secs": 4}))).await;
    let job = wait_job(alice, &id).await;
    let took = started.elapsed();
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["tasks"]["alice"]["state"], "succeeded", "{job}");
    assert_eq!(job["tasks"]["bob"]["state"], "succeeded", "{job}");
    assert_eq!(job["tasks"]["carol"]["state"], "late", "{job}");
    assert!(
        took >= Duration::from_secs(4),
        "ended before its deadline: {took:?}"
    );
    // The cancel reached carol: her owner is no longer asked.
    wait_for("carol's approval to be withdrawn", DEADLINE, || async {
        let (_, pending) = carol.get("/v1/approvals").await.ok()?;
        pending.as_array()?.is_empty().then_some(())
    })
    .await;

    // Without a quorum every task must succeed: the deadline fails it.
    let id = submit(alice, job_with(json!({"deadline_secs": 3}))).await;
    let job = wait_job(alice, &id).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["tasks"]["carol"]["state"], "late", "{job}");
    assert_eq!(job["tasks"]["bob"]["state"], "succeeded", "{job}");

    // A quorum no run could meet is refused before anything runs: a
    // conflict with the network as it stands (3 nodes), not a bad request.
    let (code, refused) = alice.post("/v1/jobs", job_with(json!({"quorum": 4}))).await;
    assert_eq!(code, 409, "{refused}");
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(error.contains("3 target(s)"), "{error}");
}

/// The master restarts before its job's deadline: the deadline is read
/// back with the job, and the job still ends on time.
#[tokio::test]
async fn a_deadline_outlives_a_restart_of_the_master() {
    let mut nodes = unapproved_data_network(&["alice", "bob"]).await;
    nodes[0].approve_command("/iris-worker exit");
    let id = submit(
        &nodes[0],
        job_with(json!({"quorum": 1, "deadline_secs": 8})),
    )
    .await;
    wait_for("alice's own task to succeed", DEADLINE, || async {
        let (_, job) = nodes[0].get(&format!("/v1/jobs/{id}")).await.ok()?;
        (job["tasks"]["alice"]["state"] == "succeeded").then_some(())
    })
    .await;
    nodes[0].terminate().await;
    nodes[0].start().await;
    let job = wait_job(&nodes[0], &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["tasks"]["bob"]["state"], "late", "{job}");
}

/// A quorum without a deadline lets some tasks fail: the job waits for
/// every task to end, and succeeds if enough succeeded. Here the job asks
/// for a network, which alice's owner allows and bob's refuses. The CLI
/// takes the quorum and fails when it is not met.
#[tokio::test]
async fn a_quorum_lets_a_task_fail_and_the_cli_takes_it() {
    let nodes = data_network(&["alice", "bob"]).await;
    let alice = &nodes[0];
    alice.set_policy("network", "allow");
    let networked = json!({"network": "bridge"});

    let id = submit(alice, job_with(json!({"network": "bridge", "quorum": 1}))).await;
    let job = wait_job(alice, &id).await;
    assert_eq!(job["tasks"]["alice"]["state"], "succeeded", "{job}");
    assert_eq!(job["tasks"]["bob"]["state"], "failed", "{job}");
    assert_eq!(job["state"], "succeeded", "{job}");
    let id = submit(alice, job_with(networked)).await;
    assert_eq!(wait_job(alice, &id).await["state"], "failed");

    let run = |quorum: &str| {
        alice.cli(&[
            "job",
            "run",
            "--image",
            "iris-probe:latest",
            "--network",
            "bridge",
            "--quorum",
            quorum,
            "--deadline",
            "2m",
            "--",
            "/iris-worker",
            "exit",
            "0",
        ])
    };
    let out = run("1");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let out = run("2");
    assert!(!out.status.success(), "a quorum of 2 was met with one task");
}

/// A late answer: mallory takes its task, says nothing until the deadline
/// has passed, then reports it succeeded, with an output. The master keeps
/// the task late, lists no output of it, and a secure sum over the job
/// would not count it (it takes the tasks that succeeded).
#[tokio::test]
async fn a_report_after_the_deadline_does_not_count() {
    let nodes = data_network(&["alice", "bob"]).await;
    let alice = &nodes[0];
    let mut rogue = RoguePeer::join(KEY, &alice.bootstrap().await, "mallory").await;
    let master = rogue.network.master;
    // mallory acknowledges its task, and later its cancel.
    let acknowledge =
        |_: usize, _: &Envelope| Some(AnswerFrame::seal(Ok(Accepted), MAX_CONTROL_RESPONSE));
    let body = job_with(json!({"quorum": 2, "deadline_secs": 3}));
    let ((code, job), seen) = tokio::join!(
        alice.post("/v1/jobs", body),
        rogue.answer_calls(master, 2, DEADLINE, acknowledge)
    );
    assert_eq!(code, 201, "{job}");
    let asked: Vec<bool> = seen
        .iter()
        .map(|e| matches!(e.request, PeerRequest::Tasks(TaskCall::Run(_))))
        .collect();
    assert_eq!(asked, [true, false], "mallory's calls: {seen:?}");
    assert!(
        matches!(seen[1].request, PeerRequest::Tasks(TaskCall::Cancel(_))),
        "the late task was not cancelled: {seen:?}"
    );
    let id = job["id"].as_str().unwrap().to_string();
    let job = wait_job(alice, &id).await;
    assert_eq!(job["tasks"]["mallory"]["state"], "late", "{job}");
    assert_eq!(job["state"], "succeeded", "{job}");

    let report = succeeded_report(&id);
    let answered = rogue.call(master, TaskUpdate { report }).await;
    assert!(answered.is_ok(), "{answered:?}");
    let (_, job) = alice.get(&format!("/v1/jobs/{id}")).await.unwrap();
    assert_eq!(job["tasks"]["mallory"]["state"], "late", "{job}");
    assert_eq!(job["tasks"]["mallory"]["outputs"], json!([]), "{job}");
}

/// The master shuts down while it hands out a job's tasks: bob, frozen,
/// has not taken his yet. Before, his task failed on the spot ("this node
/// is in no network": the shutdown took the network away under the call),
/// and a training's round was lost for good; now it stays queued, the
/// master hands it out again when it starts, and bob runs it once.
#[tokio::test]
async fn a_task_not_handed_out_before_the_master_stopped_is_handed_out_when_it_starts() {
    let mut nodes = data_network(&["alice", "bob"]).await;
    nodes[1].pause();
    let (url, token) = (nodes[0].url("/v1/jobs"), nodes[0].token());
    let body = job_body("bob", &["/iris-worker", "exit", "0"]);
    // The submission waits for bob, who cannot answer; its answer (or the
    // connection's end) does not matter here.
    let submitting = tokio::task::spawn(async move {
        let _ = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .json(&body)
            .timeout(DEADLINE)
            .send()
            .await;
    });
    let id = wait_for("the job to be recorded", DEADLINE, || async {
        let (_, jobs) = nodes[0].get("/v1/jobs").await.ok()?;
        Some(jobs.as_array()?.first()?["id"].as_str()?.to_string())
    })
    .await;
    nodes[0].terminate().await;
    let _ = submitting.await;
    nodes[1].resume();
    nodes[0].start().await;
    let job = wait_job(&nodes[0], &id).await;
    assert_eq!(job["tasks"]["bob"]["state"], "succeeded", "{job}");
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(
        nodes[0].log().contains("handing out queued tasks again"),
        "{}",
        nodes[0].log()
    );
}
