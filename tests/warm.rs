//! Warm workers: a training's rounds on one site run in one container
//! that the node keeps between rounds, and each round's outputs are the
//! files of that round's own directory, never what the program leaves
//! elsewhere or late for an earlier round.

mod common;

use common::*;
use serde_json::{json, Value};

/// Round `number` of training `t` on bob, warm.
fn round(number: u32, argv: &[&str]) -> Value {
    let mut body = job_body("bob", argv);
    body["round"] = json!({"training": "t", "number": number});
    body["warm"] = json!(true);
    body
}

/// The ids of the running warm workers of the node `peer`.
fn warm_workers(peer: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("label=iris.node={peer}")])
        .args(["--filter", "name=iris-warm-"])
        .output()
        .expect("docker ps runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

async fn run_round(alice: &TestNode, body: Value) -> (String, Value) {
    let id = submit(alice, body).await;
    let job = wait_job(alice, &id).await;
    (id, job["tasks"]["bob"].clone())
}

#[tokio::test]
async fn a_warm_worker_serves_a_trainings_rounds_and_each_round_takes_only_its_own_files() {
    let mut nodes = data_network(&["alice", "bob"]).await;
    let bob = nodes[1].peer_id().await;
    let alice = &nodes[0];

    let (first, task) = run_round(
        alice,
        round(1, &["/iris-worker", "write", "update.json", "{}"]),
    )
    .await;
    assert_eq!(task["state"], "succeeded", "{task}");
    assert_eq!(task["outputs"], json!(["update.json"]), "{task}");
    let worker = warm_workers(&bob);
    assert_eq!(worker.len(), 1, "no warm worker kept after round 1");

    // Round 2 writes late into round 1's directory: nobody takes it.
    let late = format!("/workspace/out/{first}/late.json");
    let (_, task) = run_round(alice, round(2, &["/iris-worker", "touch", &late])).await;
    assert_eq!(task["state"], "succeeded", "{task}");
    assert_eq!(task["outputs"], json!([]), "{task}");
    assert_eq!(
        warm_workers(&bob),
        worker,
        "round 2 ran in another container"
    );

    // Round 3 writes where a cold job writes: not the round's either.
    let stray = "/workspace/out/stray.json";
    let (_, task) = run_round(alice, round(3, &["/iris-worker", "touch", stray])).await;
    assert_eq!(task["state"], "succeeded", "{task}");
    assert_eq!(task["outputs"], json!([]), "{task}");
    let (_, job) = alice.get(&format!("/v1/jobs/{first}")).await.unwrap();
    assert_eq!(
        job["tasks"]["bob"]["outputs"],
        json!(["update.json"]),
        "{job}"
    );

    // A round whose program fails is a failed task; the worker goes on.
    let (_, task) = run_round(alice, round(4, &["/iris-worker", "exit", "3"])).await;
    assert_eq!(task["state"], "failed", "{task}");
    assert_eq!(task["exit_code"], 1, "{task}");
    assert_eq!(warm_workers(&bob), worker);

    // warm without a round is a bad request.
    let mut body = round(5, &["/iris-worker", "exit", "0"]);
    body.as_object_mut().unwrap().remove("round");
    let (code, refused) = alice.post("/v1/jobs", body).await;
    assert_eq!(code, 400, "{refused}");

    // No worker outlives its node.
    nodes[1].terminate().await;
    assert_eq!(warm_workers(&bob), Vec::<String>::new());
}
