//! Secure sums on real nodes: the master gets Σ wᵢ·vᵢ and Σ wᵢ of the
//! sites' update files and no single one; a site under `release =
//! aggregate` lets its outputs out only that way; a site that is gone is
//! left out of the sum, with the reason.

mod common;

use common::*;
use serde_json::{json, Value};

const GRADIENT: [&str; 9] = [
    "/iris-worker",
    "gradient",
    "/workspace/private/data.csv",
    "--target",
    "y",
    "--weights",
    "0.5,0.25",
    "--steps",
    "1",
];

/// Σ weight·vector and Σ weight over the update files the named nodes wrote
/// for job `id`, read from their disks: what the secure sum must equal.
fn plain_sum(nodes: &[&TestNode], id: &str) -> (Vec<f64>, f64) {
    let mut vector: Vec<f64> = Vec::new();
    let mut weight = 0.0;
    for node in nodes {
        let path = node.dir.join(format!("workspace/outputs/{id}/update.json"));
        let update: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let w = update["weight"].as_f64().unwrap();
        let v: Vec<f64> = update["vector"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        vector.resize(v.len(), 0.0);
        for (s, x) in vector.iter_mut().zip(&v) {
            *s += w * x;
        }
        weight += w;
    }
    (vector, weight)
}

fn assert_close(got: &Value, want: &[f64]) {
    let got: Vec<f64> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
    }
}

fn names(value: &Value) -> Vec<String> {
    let mut names: Vec<String> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_master_gets_the_sum_of_the_sites_updates_and_nothing_else() {
    let nodes = data_network(&["alice", "bob", "carol", "dave"]).await;
    let alice = &nodes[0];
    // bob lets his outputs out only as an input of a secure sum.
    nodes[1].set_policy("release", "aggregate");
    let id = submit(alice, job_body("role:slave", &GRADIENT)).await;
    assert_eq!(wait_job(alice, &id).await["state"], "succeeded");

    let (code, gathered) = alice
        .post(&format!("/v1/jobs/{id}/gather"), json!({}))
        .await;
    assert_eq!(code, 200, "{gathered}");
    assert!(
        gathered["held"][0]
            .as_str()
            .unwrap()
            .contains("secure aggregation"),
        "{gathered}"
    );
    let (code, sum) = alice
        .post(
            &format!("/v1/jobs/{id}/secure-sum"),
            json!({"file": "update.json"}),
        )
        .await;
    assert_eq!(code, 200, "{sum}");
    assert_eq!(names(&sum["nodes"]), ["bob", "carol", "dave"]);
    assert_eq!(sum["dropped"], json!([]));
    let (vector, weight) = plain_sum(&[&nodes[1], &nodes[2], &nodes[3]], &id);
    assert_close(&sum["vector"], &vector);
    assert!(
        (sum["weight"].as_f64().unwrap() - weight).abs() < 1e-9,
        "{sum}"
    );
    let kept: Value = serde_json::from_slice(
        &std::fs::read(alice.dir.join(format!("workspace/gathered/{id}/sum.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(kept["vector"], sum["vector"]);
    // bob's vector itself never reached alice: only the sum is in her workspace.
    let bobs = std::fs::read(
        nodes[1]
            .dir
            .join(format!("workspace/outputs/{id}/update.json")),
    )
    .unwrap();
    assert!(!alice
        .dir
        .join(format!("workspace/gathered/{id}/bob"))
        .exists());
    assert!(
        !String::from_utf8_lossy(&std::fs::read(alice.dir.join("node.log")).unwrap())
            .contains(String::from_utf8_lossy(&bobs).trim())
    );

    // bob's audit log records his contribution: the session, the length,
    // how many took part.
    let out = nodes[1].cli(&["audit", "--json"]);
    let entries: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let contribution = entries
        .iter()
        .find(|e| e["event"]["type"] == "contribution")
        .expect("a contribution entry");
    assert_eq!(contribution["event"]["job_id"], id.as_str());
    assert_eq!(contribution["event"]["session"], sum["session"]);
    assert_eq!(contribution["event"]["length"], vector.len() + 1);
    assert_eq!(contribution["event"]["participants"], 3);
    assert!(nodes[1].cli(&["audit", "verify"]).status.success());
}

#[tokio::test]
async fn a_site_that_is_gone_is_left_out_and_too_few_sites_give_no_sum() {
    let mut nodes = data_network(&["alice", "bob", "carol", "dave"]).await;
    let id = submit(&nodes[0], job_body("all", &GRADIENT)).await;
    assert_eq!(wait_job(&nodes[0], &id).await["state"], "succeeded");
    nodes[3].kill();
    let alice = &nodes[0];
    let (code, sum) = alice
        .post(
            &format!("/v1/jobs/{id}/secure-sum"),
            json!({"file": "update.json"}),
        )
        .await;
    if code != 200 {
        for node in &nodes[..3] {
            for line in node
                .log()
                .lines()
                .filter(|l| l.contains("secure") || l.contains("WARN"))
            {
                eprintln!("{}: {line}", node.name);
            }
        }
    }
    assert_eq!(code, 200, "{sum}");
    assert_eq!(names(&sum["nodes"]), ["alice", "bob", "carol"]);
    let dropped = sum["dropped"][0].as_str().unwrap();
    assert!(dropped.starts_with("dave ("), "{sum}");
    let (vector, _) = plain_sum(&[&nodes[0], &nodes[1], &nodes[2]], &id);
    assert_close(&sum["vector"], &vector);

    // With carol gone too, two sites are left: no sum, and why.
    nodes[2].kill();
    let (code, body) = nodes[0]
        .post(
            &format!("/v1/jobs/{id}/secure-sum"),
            json!({"file": "update.json"}),
        )
        .await;
    assert_eq!(code, 409, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("needs 3 sites or more"), "{error}");
    // A file that is not an update is refused by name, and a path is not a file.
    let (code, body) = nodes[0]
        .post(
            &format!("/v1/jobs/{id}/secure-sum"),
            json!({"file": "../../private/data.csv"}),
        )
        .await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("must be a file name"),
        "{body}"
    );
}
