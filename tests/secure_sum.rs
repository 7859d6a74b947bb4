//! Secure sums on real nodes: the master gets Σ wᵢ·vᵢ and Σ wᵢ of the
//! sites' update files and no single one; a site under `release =
//! aggregate` lets its outputs out only that way; a site that is gone is
//! left out of the sum, with the reason.

mod common;

use common::{sums::*, *};
use serde_json::{json, Value};

/// Each of `sites` recognises every other and takes part in sums without
/// noise: these tests check the protocol's sums exactly
/// (tests/private_sums.rs has the noisy ones).
fn exact_sum_sites(sites: &[TestNode]) {
    recognise_each_other(sites);
    for site in sites {
        site.set_policy("noise_free_sums", "allow");
    }
}

#[tokio::test]
async fn the_master_gets_the_sum_of_the_sites_updates_and_nothing_else() {
    let nodes = data_network(&["alice", "bob", "carol", "dave"]).await;
    exact_sum_sites(&nodes[1..]);
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
    let (code, sum) = secure_sum(alice, &id, "update.json", 3).await;
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
    // The vector, the weight and the count of clipped values.
    assert_eq!(contribution["event"]["length"], vector.len() + 2);
    assert_eq!(contribution["event"]["participants"], 3);
    // ... and names every site of the sum.
    let mut sites: Vec<String> = contribution["event"]["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    sites.sort();
    let mut want = Vec::new();
    for node in &nodes[1..] {
        want.push(node.peer_id().await);
    }
    want.sort();
    assert_eq!(sites, want);
    assert!(nodes[1].cli(&["audit", "verify"]).status.success());
}

#[tokio::test]
async fn a_site_that_is_gone_is_left_out_and_too_few_sites_give_no_sum() {
    let mut nodes = data_network(&["alice", "bob", "carol", "dave", "erin"]).await;
    exact_sum_sites(&nodes[1..]);
    let id = submit(&nodes[0], job_body("all", &GRADIENT)).await;
    assert_eq!(wait_job(&nodes[0], &id).await["state"], "succeeded");
    nodes[4].kill();
    let alice = &nodes[0];
    let (code, sum) = secure_sum(alice, &id, "update.json", 3).await;
    if code != 200 {
        for node in &nodes[..4] {
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
    assert_eq!(names(&sum["nodes"]), ["alice", "bob", "carol", "dave"]);
    let dropped = sum["dropped"][0].as_str().unwrap();
    assert!(dropped.starts_with("erin ("), "{sum}");
    let (vector, _) = plain_sum(&[&nodes[0], &nodes[1], &nodes[2], &nodes[3]], &id);
    assert_close(&sum["vector"], &vector);

    // With carol and dave gone too, two sites are left: no sum, and why.
    nodes[2].kill();
    nodes[3].kill();
    let (code, body) = secure_sum(&nodes[0], &id, "update.json", 3).await;
    assert_eq!(code, 409, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("needs 3 sites or more"), "{error}");
    // A file that is not an update is refused by name, and a path is not a file.
    let (code, body) = secure_sum(&nodes[0], &id, "../../private/data.csv", 3).await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("must be a file name"),
        "{body}"
    );
}

/// Every string of `body`, and every file the master keeps: none may hold
/// `secret`.
fn assert_nowhere(master: &TestNode, body: &Value, secret: &str) {
    assert!(!body.to_string().contains(secret), "{body}");
    for entry in walk(&master.dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "{} holds a site's secret",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            files.extend(walk(&path));
        } else if path.is_file() {
            files.push(path);
        }
    }
    files
}

/// A master who tries: the owners approved the image and let outputs out
/// only through secure sums, and the job writes a site's private file as
/// its update, or a value out of range. Whatever the sites answer, no byte
/// of either reaches the master: refusals are closed words, and values out
/// of range are clipped, not named.
#[tokio::test]
async fn no_refusal_of_a_secure_sum_carries_a_sites_data() {
    let nodes = data_network(&["alice", "bob", "carol", "dave"]).await;
    exact_sum_sites(&nodes[1..]);
    let alice = &nodes[0];
    for node in &nodes[1..] {
        node.set_policy("release", "aggregate");
        let secret = format!("patient 4711 of {}, born 1962-03-14, HIV+", node.name);
        std::fs::write(node.dir.join("workspace/private/secret.txt"), secret).unwrap();
    }
    let smuggle = [
        "/iris-worker",
        "smuggle",
        "/workspace/private/secret.txt",
        "update.json",
    ];
    let id = submit(alice, job_body("role:slave", &smuggle)).await;
    assert_eq!(wait_job(alice, &id).await["state"], "succeeded");
    let (code, body) = secure_sum(alice, &id, "update.json", 3).await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not an update file"),
        "{body}"
    );
    // Whole words of the secret: "4711" alone stands by chance in the hex
    // digests and signatures the master keeps (seen in witnessed.json,
    // about one run in ten).
    assert_nowhere(alice, &body, "patient 4711");
    assert_nowhere(alice, &body, "1962-03-14");

    // A value out of range is clipped to ±10⁶ and summed, never named.
    let out_of_range = r#"{"weight": 1, "vector": [27641994.0417, 1, 2]}"#;
    let write = ["/iris-worker", "write", "update.json", out_of_range];
    let id = submit(alice, job_body("role:slave", &write)).await;
    assert_eq!(wait_job(alice, &id).await["state"], "succeeded");
    let (code, sum) = secure_sum(alice, &id, "update.json", 3).await;
    assert_eq!(code, 200, "{sum}");
    assert_close(&sum["vector"], &[3e6, 3.0, 6.0]);
    assert_eq!(sum["clipped"], 3, "one at each site, told only as a total");
    // (The master wrote the value in its own job's argv, so only what came
    // back is searched.)
    assert!(!sum.to_string().contains("27641994"), "{sum}");
    assert!(!alice.log().contains("27641994"));

    // A length the master did not ask for: a refusal that says no more.
    let (code, body) = secure_sum(alice, &id, "update.json", 4).await;
    assert_eq!(code, 409, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("does not have the length the sum asked for"),
        "{error}"
    );
}

/// Federated statistics of real values: sums of squares of a column are
/// around 10⁹. Before, a job could not say so: a request naming a range
/// was refused, and every number beyond ±10⁶ was clipped to it, so the sum
/// was wrong. Now the job declares the range and resolution it needs;
/// what lies beyond is clipped and only the total count comes back, and
/// what cannot fit 64 bits is refused before any site is asked.
#[tokio::test]
async fn sums_of_real_statistics_take_the_range_the_job_declares() {
    let nodes = data_network(&["alice", "bob", "carol", "dave"]).await;
    exact_sum_sites(&nodes[1..]);
    let alice = &nodes[0];
    let squares = r#"{"weight": 2, "vector": [2.5e9, 1.2345, 3e12]}"#;
    let write = ["/iris-worker", "write", "update.json", squares];
    let id = submit(alice, job_body("role:slave", &write)).await;
    assert_eq!(wait_job(alice, &id).await["state"], "succeeded");
    let url = format!("/v1/jobs/{id}/secure-sum");

    let declared = json!({"file": "update.json", "length": 3, "range": 1e10, "resolution": 1e-3});
    let (code, sum) = alice.post(&url, declared).await;
    assert_eq!(code, 200, "{sum}");
    // 2·2.5e9 fits the range exactly; 2·3e12 does not, and is clipped to
    // 1e10 at each of the 3 sites.
    let got = floats(&sum["vector"]);
    assert_eq!(got[0], 1.5e10, "{sum}");
    assert!((got[1] - 3.0 * 2.469).abs() < 3e-3, "{sum}");
    assert_eq!(got[2], 3e10, "{sum}");
    assert_eq!(sum["weight"], 6.0, "{sum}");
    assert_eq!(sum["clipped"], 3, "{sum}");

    // Without a range, the default ±10⁶: two numbers of each site clipped.
    let (code, sum) = secure_sum(alice, &id, "update.json", 3).await;
    assert_eq!(code, 200, "{sum}");
    assert_close(&sum["vector"], &[3e6, 3.0 * 2.469, 3e6]);
    assert_eq!(sum["clipped"], 6, "{sum}");

    // Wide and fine at once cannot fit 64 bits over 3 sites: refused here,
    // with what to do about it.
    let greedy = json!({"file": "update.json", "length": 3, "range": 1e10, "resolution": 1e-12});
    let (code, body) = alice.post(&url, greedy).await;
    assert_eq!(code, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("coarser resolution"), "{error}");
    let nonsense = json!({"file": "update.json", "length": 3, "range": -1});
    let (code, body) = alice.post(&url, nonsense).await;
    assert_eq!(code, 400, "{body}");
}

/// The sybil attack: the master holds the network key, so it joins a node
/// of its own (mallory) and asks for a sum over itself, mallory and bob;
/// its own two updates subtracted, bob's is left, exactly. bob's owner
/// recognises carol and dave, not mallory, and the master's own node never
/// counts: bob refuses, before reading his update, and records nothing.
/// A sum over the sites he recognises still goes through.
#[tokio::test]
async fn a_master_cannot_isolate_a_site_with_nodes_of_its_own() {
    let nodes = data_network(&["alice", "bob", "carol", "dave", "mallory"]).await;
    let (alice, bob, mallory) = (&nodes[0], &nodes[1], &nodes[4]);
    exact_sum_sites(&nodes[1..4]);
    // mallory is the master's: it takes part in whatever alice asks.
    mallory.owner(&["policy", "recognise", "bob"]);
    mallory.set_policy("min_aggregate", "2");
    mallory.set_policy("noise_free_sums", "allow");

    let id = submit(alice, job_body("alice,mallory,bob", &GRADIENT)).await;
    assert_eq!(wait_job(alice, &id).await["state"], "succeeded");
    let (code, body) = secure_sum(alice, &id, "update.json", 3).await;
    if code == 200 {
        // The attack worked: the sum less alice's and mallory's updates.
        let (theirs, _) = plain_sum(&[alice, mallory], &id);
        let recovered: Vec<f64> = floats(&body["vector"])
            .iter()
            .zip(&theirs)
            .map(|(s, t)| s - t)
            .collect();
        let (bobs, _) = plain_sum(&[bob], &id);
        panic!("the master recovered bob's weighted update {recovered:?} (his: {bobs:?})");
    }
    assert_eq!(code, 409, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("bob (setup: "), "{error}");
    assert!(error.contains("recognises"), "{error}");
    let out = bob.cli(&["audit", "--json"]);
    let entries: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !entries.iter().any(|e| e["event"]["type"] == "contribution"),
        "bob contributed"
    );

    // Over the sites bob's owner recognises, the sum goes through.
    let id = submit(alice, job_body("bob,carol,dave", &GRADIENT)).await;
    assert_eq!(wait_job(alice, &id).await["state"], "succeeded");
    let (code, sum) = secure_sum(alice, &id, "update.json", 3).await;
    assert_eq!(code, 200, "{sum}");
    assert_eq!(names(&sum["nodes"]), ["bob", "carol", "dave"]);
}
