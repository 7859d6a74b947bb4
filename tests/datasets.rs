//! Datasets on a real network: owners declare them, every member finds
//! them by name or tag, jobs target them and see that dataset alone, and an
//! owner can approve an image for one dataset only.

mod common;

use common::{
    data_network, declare_heart, heart, job_body, submit, unapproved_data_network, wait_for,
    wait_job, TestNode, DEADLINE,
};
use serde_json::{json, Value};

async fn listed(node: &TestNode, query: &str) -> Vec<Value> {
    let (code, body) = node.get(&format!("/v1/datasets{query}")).await.unwrap();
    assert_eq!(code, 200, "{body}");
    body.as_array().unwrap().clone()
}

#[tokio::test]
async fn owners_declare_datasets_and_every_member_finds_them() {
    let nodes = data_network(&["alice", "bob", "carol"]).await;
    let (alice, bob, carol) = (&nodes[0], &nodes[1], &nodes[2]);
    heart(bob, 1234);
    heart(carol, 40);
    let said = declare_heart(
        bob,
        &["--description", "cardiology cohort", "--rows-bucket", "100"],
    );
    assert!(
        said.contains("age:integer bmi:number smoker:integer"),
        "{said}"
    );
    declare_heart(carol, &["--mock-rows", "0"]);

    // The card, never the data: bob's 1234 rows show as 1200.
    let found = wait_for("both cards at alice", DEADLINE, || async {
        let all = listed(alice, "").await;
        (all.len() == 2).then_some(all)
    })
    .await;
    assert_eq!(found[0]["node"], "bob");
    assert_eq!(found[0]["card"]["rows"], 1200);
    assert_eq!(found[0]["card"]["description"], "cardiology cohort");
    assert_eq!(found[0]["card"]["schema"][1]["type"], "number");
    assert_eq!(found[0]["card"]["mock"], "public/datasets/heart/mock.csv");
    assert_eq!(found[1]["node"], "carol");
    assert!(found[1]["card"]["mock"].is_null());
    let mock =
        std::fs::read_to_string(bob.dir.join("workspace/public/datasets/heart/mock.csv")).unwrap();
    assert!(
        mock.starts_with("age,bmi,smoker\n") && mock.lines().count() == 21,
        "{mock}"
    );
    assert!(listed(alice, "?tag=cardio").await.len() == 2);
    assert!(listed(alice, "?tag=oncology").await.is_empty());
    let table = alice.owner(&["datasets", "--tag", "cardio"]);
    assert!(
        table.contains("heart") && table.contains("~1200"),
        "{table}"
    );

    // A job on the dataset runs where it is, on it alone.
    let argv = ["/iris-worker", "stats", "/workspace/data/part1.csv"];
    let id = submit(alice, job_body("dataset:heart", &argv)).await;
    let job = wait_job(alice, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let ran: Vec<&String> = job["tasks"].as_object().unwrap().keys().collect();
    assert_eq!(ran, ["bob", "carol"]);
    let peek = ["/iris-worker", "cat", "/workspace/private/data.csv"];
    let id = submit(alice, job_body("dataset:heart", &peek)).await;
    let job = wait_job(alice, &id).await;
    assert_eq!(
        job["tasks"]["bob"]["state"], "failed",
        "the rest of private/ was there: {job}"
    );
    let (code, body) = alice
        .post("/v1/jobs", job_body("dataset:nowhere", &argv))
        .await;
    assert_eq!(code, 404, "no node holds it: {body}");
    assert!(
        body["error"].as_str().unwrap().contains("dataset:nowhere"),
        "{body}"
    );

    // A dry run: on alice alone, on bob's mock sample; no site runs it, so
    // a mistake costs them nothing.
    let dry = alice.cli(&[
        "job",
        "run",
        "--dry-run",
        "--on",
        "dataset:heart",
        "--image",
        "iris-probe:latest",
        "--",
        "/iris-worker",
        "stats",
        "/workspace/data/mock.csv",
    ]);
    let said = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(said.contains("alice") && !said.contains("bob"), "{said}");
    let mut mistake = job_body(
        "dataset:heart",
        &["/iris-worker", "stats", "/workspace/data/typo.csv"],
    );
    mistake["dry_run"] = json!(true);
    let id = submit(alice, mistake).await;
    let job = wait_job(alice, &id).await;
    assert_eq!(job["tasks"]["alice"]["state"], "failed", "{job}");
    assert_eq!(job["tasks"].as_object().unwrap().len(), 1);
    assert!(
        !bob.owner(&["audit", "--json"]).contains(&id),
        "a site saw the dry run"
    );

    // A bad edit of a card changes nothing; a good one reaches the others.
    let card = bob.dir.join("workspace/private/heart/dataset.toml");
    let good = std::fs::read_to_string(&card).unwrap();
    std::fs::write(&card, good.replace("rows = 1200", "rows = 1234")).unwrap();
    let refused = bob.cli(&["datasets", "reload"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("rounded"));
    std::fs::write(
        &card,
        good.replace("cardiology cohort", "heart failure cohort"),
    )
    .unwrap();
    bob.owner(&["datasets", "reload"]);
    wait_for("the edit at alice", DEADLINE, || async {
        let all = listed(alice, "").await;
        (all[0]["card"]["description"] == "heart failure cohort").then_some(())
    })
    .await;
    bob.owner(&["datasets", "rm", "heart"]);
    wait_for("bob's card gone at alice", DEADLINE, || async {
        (listed(alice, "").await.len() == 1).then_some(())
    })
    .await;
    assert!(card.exists(), "withdrawing a dataset deleted its card");
}

#[tokio::test]
async fn an_image_approved_for_one_dataset_runs_on_it_and_waits_elsewhere() {
    let nodes = unapproved_data_network(&["alice", "bob"]).await;
    let (alice, bob) = (&nodes[0], &nodes[1]);
    heart(bob, 50);
    declare_heart(bob, &[]);
    bob.owner(&[
        "policy",
        "allow-image",
        "iris-probe:latest",
        "--dataset",
        "heart",
        "--whole-image",
    ]);
    wait_for("bob's card at alice", DEADLINE, || async {
        (!listed(alice, "").await.is_empty()).then_some(())
    })
    .await;

    let on_heart = ["/iris-worker", "stats", "/workspace/data/part1.csv"];
    let id = submit(alice, job_body("dataset:heart", &on_heart)).await;
    assert_eq!(wait_job(alice, &id).await["state"], "succeeded");

    let on_everything = ["/iris-worker", "stats", "/workspace/private/data.csv"];
    let id = submit(alice, job_body("bob", &on_everything)).await;
    wait_for(
        "the task on all of private/ to await approval",
        DEADLINE,
        || async {
            let (_, job) = alice.get(&format!("/v1/jobs/{id}")).await.ok()?;
            (job["tasks"]["bob"]["state"] == "awaiting_approval").then_some(())
        },
    )
    .await;
    // A dry run on a dataset only this node holds copies its own sample.
    heart(alice, 10);
    declare_heart(alice, &[]);
    let mut own = job_body(
        "dataset:heart",
        &["/iris-worker", "stats", "/workspace/data/mock.csv"],
    );
    own["dry_run"] = json!(true);
    bob.owner(&["datasets", "rm", "heart"]);
    wait_for("only alice's card at alice", DEADLINE, || async {
        let all = listed(alice, "").await;
        (all.len() == 1 && all[0]["node"] == "alice").then_some(())
    })
    .await;
    let id = submit(alice, own).await;
    assert_eq!(wait_job(alice, &id).await["state"], "succeeded");

    let audit = bob.owner(&["audit", "--json"]);
    assert!(
        audit.contains("\"dataset\": \"heart\""),
        "the audit log does not say which dataset: {audit}"
    );
}

/// A member's card is its owner's words, and a hostile member's words can
/// be commands to a terminal: column names that set the window title,
/// write the clipboard (OSC 52) and clear the screen, and a description
/// that turns the text red. The master's `iris datasets` shows them as
/// visible escapes, and nothing of them reaches its terminal as a control
/// character.
#[tokio::test]
async fn a_members_escape_sequences_reach_the_terminal_as_text() {
    let nodes = data_network(&["alice", "bob"]).await;
    let (alice, bob) = (&nodes[0], &nodes[1]);
    let dir = bob.dir.join("workspace/private/evil");
    std::fs::create_dir_all(&dir).unwrap();
    let header = "age\u{1b}]0;pwned\u{7},bmi\u{1b}]52;c;ZXZpbA==\u{7},x\u{1b}[2J\u{1b}[H\u{202e}";
    std::fs::write(dir.join("part1.csv"), format!("{header}\n1,2,3\n4,5,6\n")).unwrap();
    bob.owner(&[
        "datasets",
        "add",
        "evil",
        "private/evil",
        "--mock-rows",
        "0",
        "--description",
        "cohort \u{1b}[31mred",
    ]);
    wait_for("bob's card at alice", DEADLINE, || async {
        (!listed(alice, "").await.is_empty()).then_some(())
    })
    .await;
    let out = alice.cli(&["datasets"]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    let controls: Vec<char> = table
        .chars()
        .filter(|c| (c.is_control() && *c != '\n') || ('\u{202a}'..='\u{202e}').contains(c))
        .collect();
    assert!(
        controls.is_empty(),
        "{controls:?} reached the terminal: {table:?}"
    );
    assert!(table.contains(r"\e]0;pwned"), "{table}");
}
