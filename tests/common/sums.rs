//! Secure sums as the tests ask for them and check them.

use serde_json::{json, Value};

use super::TestNode;

pub const GRADIENT: [&str; 9] = [
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
pub fn plain_sum(nodes: &[&TestNode], id: &str) -> (Vec<f64>, f64) {
    let mut vector: Vec<f64> = Vec::new();
    let mut weight = 0.0;
    for node in nodes {
        let path = node.dir.join(format!("workspace/outputs/{id}/update.json"));
        let update: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let w = update["weight"].as_f64().unwrap();
        let v = floats(&update["vector"]);
        vector.resize(v.len(), 0.0);
        for (s, x) in vector.iter_mut().zip(&v) {
            *s += w * x;
        }
        weight += w;
    }
    (vector, weight)
}

/// `POST /v1/jobs/{id}/secure-sum` of `file`, vectors of `length` numbers.
pub async fn secure_sum(master: &TestNode, id: &str, file: &str, length: u64) -> (u16, Value) {
    master
        .post(
            &format!("/v1/jobs/{id}/secure-sum"),
            json!({"file": file, "length": length}),
        )
        .await
}

/// Each of `sites` recognises every other as a co-participant of secure
/// sums (by default a site recognises none, and takes part in none).
pub fn recognise_each_other(sites: &[TestNode]) {
    for site in sites {
        let mut args = vec!["policy", "recognise"];
        args.extend(
            sites
                .iter()
                .filter(|other| other.name != site.name)
                .map(|other| other.name.as_str()),
        );
        site.owner(&args);
    }
}

/// A JSON array of numbers.
pub fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

pub fn assert_close(got: &Value, want: &[f64]) {
    let got = floats(got);
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
    }
}

pub fn names(value: &Value) -> Vec<String> {
    let mut names: Vec<String> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}
