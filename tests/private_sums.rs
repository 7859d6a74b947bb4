//! Secure sums with differential privacy, on real nodes: the attacks of a
//! master that chooses the queries (differences of sums over chosen
//! subsets of sites, the same sum repeated) recover a site's vector
//! exactly from noise-free sums, and nothing better than the noise from
//! noisy ones, whose repeats end when the dataset's budget is spent, a
//! restart of the site included.

mod common;

use common::{sums::*, *};
use serde_json::{json, Value};

/// bob's weighted update from four sums over the 3-site subsets of
/// {bob, carol, dave, erin}, the second without him: the four count each
/// site three times, so bob = (s₀ + s₁ + s₂ + s₃)/3 − s₁. The weight too.
fn bob_from(sums: &[Value]) -> Vec<f64> {
    let each: Vec<Vec<f64>> = sums
        .iter()
        .map(|sum| {
            let mut v = floats(&sum["vector"]);
            v.push(sum["weight"].as_f64().unwrap());
            v
        })
        .collect();
    (0..each[0].len())
        .map(|i| each.iter().map(|v| v[i]).sum::<f64>() / 3.0 - each[1][i])
        .collect()
}

/// bob's own update, weighted, and its weight, read from his disk.
fn bobs_update(bob: &TestNode, id: &str) -> Vec<f64> {
    let (mut vector, weight) = plain_sum(&[bob], id);
    vector.push(weight);
    vector
}

fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

async fn sum_of(master: &TestNode, id: &str, body: Value) -> (u16, Value) {
    master
        .post(&format!("/v1/jobs/{id}/secure-sum"), body)
        .await
}

#[tokio::test]
async fn differences_of_noisy_sums_reveal_no_site_and_the_budget_ends_the_repeats() {
    let mut nodes = data_network(&["alice", "bob", "carol", "dave", "erin"]).await;
    recognise_each_other(&nodes[1..]);
    for site in &nodes[1..] {
        // Room for three sums at epsilon 1 each, not four.
        site.set_policy("privacy_epsilon", "2");
    }
    let alice = &nodes[0];
    let mut ids = Vec::new();
    for on in [
        "bob,carol,dave",
        "carol,dave,erin",
        "bob,dave,erin",
        "bob,carol,erin",
    ] {
        let id = submit(alice, job_body(on, &GRADIENT)).await;
        assert_eq!(wait_job(alice, &id).await["state"], "succeeded");
        ids.push(id);
    }
    let plain = json!({"file": "update.json", "length": 3});

    // By default a site takes part in no sum without noise, and says why.
    let (code, body) = sum_of(alice, &ids[0], plain.clone()).await;
    assert_eq!(code, 409, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("differential privacy"), "{error}");

    // Where the owners allow noise-free sums, the differencing attack
    // gives bob's update exactly.
    for site in &nodes[1..] {
        site.set_policy("noise_free_sums", "allow");
    }
    let mut sums = Vec::new();
    for id in &ids {
        let (code, sum) = sum_of(alice, id, plain.clone()).await;
        assert_eq!(code, 200, "{sum}");
        sums.push(sum);
    }
    let bobs = bobs_update(&nodes[1], &ids[0]);
    let exact = distance(&bob_from(&sums), &bobs);
    assert!(exact < 1e-6, "noise-free sums: bob recovered to {exact}");

    // With noise, the same four sums give bob's update only to within
    // the noise: each site added its own.
    for site in &nodes[1..] {
        site.set_policy("noise_free_sums", "deny");
    }
    let noisy = json!({"file": "update.json", "length": 3, "clip": 1000.0, "epsilon": 1.0});
    let mut sums = Vec::new();
    for id in &ids {
        let (code, sum) = sum_of(alice, id, noisy.clone()).await;
        assert_eq!(code, 200, "{sum}");
        assert_eq!(sum["clipped"], 0, "{sum}");
        sums.push(sum);
    }
    let noise_sd = sums[0]["privacy"]["noise_sd"].as_f64().unwrap();
    // σ = clip/√(2ρ) for each of 3 sites, ρ of epsilon 1 at delta 1e-6.
    assert!(
        (noise_sd / (1000.0 * 3f64.sqrt() / (2.0 * 0.017_468_9f64).sqrt()) - 1.0).abs() < 1e-3,
        "{}",
        sums[0]
    );
    let off = distance(&bob_from(&sums), &bobs);
    // The recovered entries carry noise of about 0.9·noise_sd each; all
    // four within 0.05·noise_sd of bob's has a chance below 10⁻⁶.
    assert!(
        off > 0.05 * noise_sd,
        "bob recovered to {off} through noise of {noise_sd}"
    );

    // Each site took part in three noisy sums: its budget is spent, and
    // the fourth is refused by every site before it reads its update.
    let (code, body) = sum_of(alice, &ids[0], noisy.clone()).await;
    assert_eq!(code, 409, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("privacy budget"), "{error}");
    println!("refused: {error}");

    // bob's audit log holds the three spends, and a restart forgets none.
    let spends = |bob: &TestNode| -> usize {
        let out = bob.cli(&["audit", "--json"]);
        let entries: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        entries
            .iter()
            .filter(|e| e["event"]["type"] == "contribution" && e["event"]["privacy"].is_object())
            .count()
    };
    assert_eq!(spends(&nodes[1]), 3);
    nodes[1].terminate().await;
    nodes[1].start().await;
    let alice = &nodes[0];
    // The same sum again, once bob answers: refused, by him too.
    let error = wait_for("bob to answer after his restart", DEADLINE, || async {
        let (code, body) = sum_of(alice, &ids[0], noisy.clone()).await;
        assert_eq!(code, 409, "{body}");
        let error = body["error"].as_str().unwrap().to_string();
        error.contains("bob (setup: ").then_some(error)
    })
    .await;
    assert!(error.contains("privacy budget"), "{error}");
    assert_eq!(spends(&nodes[1]), 3);

    // bob's owner sees what was spent, and may give the area more: three
    // sums at epsilon 1 cost 1.754 together at delta 1e-6, which leaves
    // 4.622 of a budget of 5.
    let out = nodes[1].owner(&["policy", "budget", "private/", "5"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("private/"))
        .unwrap_or_else(|| panic!("{out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words, ["private/", "5", "1e-6", "1.754", "4.622"], "{out}");
}
