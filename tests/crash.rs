//! A node killed in the middle of its owner's change. The change is in
//! force after the restart exactly when the audit log recorded it, and no
//! temporary file stays behind. The node dies at chosen points (a fault
//! that debug builds read: right after the new config is written beside
//! the old, and right after the change is recorded, before it is put in
//! place) and at moments a clock chooses, by `kill -9`.
//!
//! Before: a node that died between recording a change and putting it in
//! place came back without it, though its log said it was made, and the
//! config written for it stayed beside the config for good.

mod common;

use std::{fs, time::Duration};

use common::{temporaries, wait_for, TestNode};

/// The `min_aggregate` changes the audit log recorded, in order.
fn recorded(node: &TestNode) -> Vec<String> {
    fs::read_to_string(node.dir.join("audit.log"))
        .unwrap()
        .lines()
        .filter_map(|line| {
            let at = line.find("min_aggregate = ")? + "min_aggregate = ".len();
            Some(
                line[at..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect(),
            )
        })
        .collect()
}

/// The `min_aggregate` the node's config holds.
fn in_force(node: &TestNode) -> String {
    let config = fs::read_to_string(node.dir.join("iris.toml")).unwrap();
    let line = config
        .lines()
        .find(|l| l.trim_start().starts_with("min_aggregate"))
        .expect("the config names min_aggregate");
    line.split('=').nth(1).unwrap().trim().to_string()
}

fn verifies(node: &TestNode) {
    let out = node.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "the log does not verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `node` with `fault` set, has its owner run `change`, and waits
/// for the node to die where the fault says.
async fn crash_during(node: &mut TestNode, fault: &str, change: &[&str]) {
    node.start_with_env(&[(fault, "1")]).await;
    let out = node.cli(change);
    assert!(!out.status.success(), "the node did not crash");
    wait_for("the node to die", Duration::from_secs(30), || {
        let died = node.log().contains("crashing on purpose");
        async move { died.then_some(()) }
    })
    .await;
    node.kill();
}

const SET_7: &[&str] = &["policy", "set", "min_aggregate", "7"];

#[tokio::test]
async fn a_change_recorded_before_a_crash_is_in_force_after_the_restart() {
    let mut bob = TestNode::init("bob");
    crash_during(&mut bob, "IRIS_FAULT_CRASH_AFTER_RECORDING", SET_7).await;
    assert_eq!(recorded(&bob), ["7"], "the change was recorded");

    bob.start().await;
    verifies(&bob);
    assert_eq!(in_force(&bob), "7", "the log says 7 was set");
    assert_eq!(temporaries(&bob.dir), Vec::<String>::new());
    bob.terminate().await;
}

#[tokio::test]
async fn a_change_not_recorded_before_a_crash_is_not_in_force_after_the_restart() {
    let mut bob = TestNode::init("bob");
    let before = in_force(&bob);
    crash_during(&mut bob, "IRIS_FAULT_CRASH_AFTER_STAGING", SET_7).await;
    assert_eq!(recorded(&bob), Vec::<String>::new());

    bob.start().await;
    verifies(&bob);
    assert_eq!(in_force(&bob), before, "a change the log lacks is in force");
    assert_eq!(temporaries(&bob.dir), Vec::<String>::new());
    bob.terminate().await;
}

/// A dataset's declaration writes two files, the index and the dataset's
/// card: recorded before the crash, both are in place after the restart.
#[tokio::test]
async fn a_dataset_declared_before_a_crash_is_declared_after_the_restart() {
    let mut bob = TestNode::init("bob");
    common::heart(&bob, 50);
    let declare = &["datasets", "add", "heart", "private/heart"];
    crash_during(&mut bob, "IRIS_FAULT_CRASH_AFTER_RECORDING", declare).await;

    bob.start().await;
    verifies(&bob);
    let out = bob.cli(&["datasets"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("heart"), "{listed}");
    let data = bob.dir.join("workspace/private/heart");
    assert!(data.join("dataset.toml").exists(), "the card is missing");
    assert_eq!(temporaries(&bob.dir), Vec::<String>::new());
    assert_eq!(temporaries(&data), Vec::<String>::new());
    bob.terminate().await;
}

/// Changes one after another, and `kill -9` at moments a clock chooses,
/// five times: after each restart the log verifies and the config holds
/// the last change the log recorded.
#[tokio::test]
async fn a_node_killed_at_any_moment_of_its_owners_changes_comes_back_whole() {
    let mut bob = TestNode::init("bob");
    for round in 0..5u64 {
        bob.start().await;
        let (url, token) = (bob.url("/v1/policy"), bob.token());
        let changes = tokio::spawn(async move {
            let client = reqwest::Client::new();
            for value in (2..50).cycle() {
                let body = serde_json::json!({"key": "min_aggregate", "value": value.to_string()});
                let sent = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await;
                if sent.is_err() {
                    break;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(200 + 137 * round)).await;
        bob.kill();
        let _ = changes.await;

        verifies(&bob);
        bob.start().await;
        verifies(&bob);
        let last = recorded(&bob).pop().expect("changes were recorded");
        assert_eq!(in_force(&bob), last, "round {round}");
        assert_eq!(temporaries(&bob.dir), Vec::<String>::new(), "round {round}");
        bob.kill();
    }
}
