//! Rounds of a training, named: each round is one job, a round runs once
//! (a driver that resumes after a lost connection or a restart of the
//! master is told which job has it, and no site answers a round twice),
//! and a site's late answer for an earlier round never counts in a later
//! one.

mod common;

use common::{rogue::RoguePeer, *};
use iris_behaviours::{
    Accepted, AnswerFrame, Envelope, PeerRequest, TaskCall, TaskUpdate, MAX_CONTROL_RESPONSE,
};
use serde_json::{json, Value};

/// A job on every node that exits 0, as round `number` of `training`,
/// with `extra` fields.
fn round_job(training: &str, number: Value, extra: Value) -> Value {
    let mut body = job_body("all", &["/iris-worker", "exit", "0"]);
    body["round"] = json!({"training": training, "number": number});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

#[tokio::test]
async fn a_round_runs_once_even_after_a_restart_of_the_master() {
    let mut nodes = data_network(&["alice", "bob"]).await;
    let first = submit(&nodes[0], round_job("cancer-lr", json!(1), json!({}))).await;
    assert_eq!(wait_job(&nodes[0], &first).await["state"], "succeeded");

    // The same round again: a conflict that names the job that has it.
    let (code, refused) = nodes[0]
        .post("/v1/jobs", round_job("cancer-lr", json!(1.0), json!({})))
        .await;
    assert_eq!(code, 409, "{refused}");
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(error.contains(&first), "{error}");
    // The next round, and the same number in another training, run.
    submit(&nodes[0], round_job("cancer-lr", json!(2), json!({}))).await;
    submit(&nodes[0], round_job("other", json!(1), json!({}))).await;

    // Rounds that are not a round's name or number are a bad request.
    for (training, number) in [
        ("cancer-lr", json!(0)),
        ("cancer-lr", json!(1.5)),
        ("../up", json!(3)),
        ("", json!(3)),
    ] {
        let (code, refused) = nodes[0]
            .post("/v1/jobs", round_job(training, number.clone(), json!({})))
            .await;
        assert_eq!(code, 400, "{training} {number}: {refused}");
    }

    // The jobs are read back at start, and their rounds with them.
    nodes[0].terminate().await;
    nodes[0].start().await;
    let (code, refused) = nodes[0]
        .post("/v1/jobs", round_job("cancer-lr", json!(1), json!({})))
        .await;
    assert_eq!(code, 409, "{refused}");
    assert!(refused["error"]
        .as_str()
        .unwrap_or_default()
        .contains(&first));
}

/// mallory is late in round 1: her task is recorded late and cancelled.
/// While round 2 runs, she replays her round-1 answer (succeeded, with an
/// update). It is taken for round 1's task only, which stays late; round
/// 2's task of hers is not succeeded, lists no output, and so takes no
/// part in round 2's secure sum (which sums the tasks that succeeded).
#[tokio::test]
async fn a_late_answer_for_an_earlier_round_never_counts_in_a_later_one() {
    let nodes = data_network(&["alice", "bob"]).await;
    let alice = &nodes[0];
    let mut rogue = RoguePeer::join(KEY, &alice.bootstrap().await, "mallory").await;
    let master = rogue.network.master;
    let acknowledge =
        |_: usize, _: &Envelope| Some(AnswerFrame::seal(Ok(Accepted), MAX_CONTROL_RESPONSE));
    let timed = json!({"quorum": 2, "deadline_secs": 3});

    // Round 1: mallory takes her task, is late, and is told to cancel it.
    let ((code, job), seen) = tokio::join!(
        alice.post("/v1/jobs", round_job("t", json!(1), timed.clone())),
        rogue.answer_calls(master, 2, DEADLINE, acknowledge)
    );
    assert_eq!(code, 201, "{job}");
    assert!(
        matches!(seen[1].request, PeerRequest::Tasks(TaskCall::Cancel(_))),
        "{seen:?}"
    );
    let round_1 = job["id"].as_str().unwrap().to_string();
    assert_eq!(
        wait_job(alice, &round_1).await["tasks"]["mallory"]["state"],
        "late"
    );

    // Round 2 starts; mallory takes her task and says nothing of it.
    let ((code, job), seen) = tokio::join!(
        alice.post("/v1/jobs", round_job("t", json!(2), timed)),
        rogue.answer_calls(master, 1, DEADLINE, acknowledge)
    );
    assert_eq!(code, 201, "{job}");
    assert!(
        matches!(seen[0].request, PeerRequest::Tasks(TaskCall::Run(_))),
        "{seen:?}"
    );
    let round_2 = job["id"].as_str().unwrap().to_string();

    // The replay: her round-1 answer, sent while round 2 runs.
    let report = succeeded_report(&round_1);
    let answered = rogue.call(master, TaskUpdate { report }).await;
    assert!(answered.is_ok(), "{answered:?}");

    let (_, job) = alice.get(&format!("/v1/jobs/{round_2}")).await.unwrap();
    let hers = &job["tasks"]["mallory"];
    assert_ne!(hers["state"], "succeeded", "{job}");
    assert_eq!(hers["outputs"], json!([]), "{job}");
    let (_, job) = alice.get(&format!("/v1/jobs/{round_1}")).await.unwrap();
    assert_eq!(job["tasks"]["mallory"]["state"], "late", "{job}");
    assert_eq!(job["tasks"]["mallory"]["outputs"], json!([]), "{job}");

    // Round 2 ends at its deadline without her.
    let (job, _) = tokio::join!(
        wait_job(alice, &round_2),
        rogue.answer_calls(master, 1, DEADLINE, acknowledge)
    );
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["tasks"]["mallory"]["state"], "late", "{job}");
    assert_eq!(job["tasks"]["mallory"]["outputs"], json!([]), "{job}");
}
