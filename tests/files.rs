//! File transfer between real `iris` processes.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn random_file(path: &std::path::Path, bytes: usize) -> String {
    let mut data = vec![0u8; bytes];
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ bytes as u64;
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, &data).unwrap();
    blake3::hash(&data).to_hex().to_string()
}

/// The file's BLAKE3 hash, by the reference crate over the whole file:
/// what `b3sum` prints, and what a transfer must name.
fn blake3_of(path: &std::path::Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap())
        .to_hex()
        .to_string()
}

#[tokio::test]
async fn a_200_mib_file_moves_intact_and_a_third_party_transfer_works() {
    let nodes = network(&["alice", "bob", "carol"], KEY).await;
    let hash = random_file(
        &nodes[1].dir.join("workspace/public/results/big.bin"),
        200 << 20,
    );

    let (code, transfer) = nodes[0]
        .post(
            "/v1/files/get",
            json!({"from": "bob", "path": "results/big.bin"}),
        )
        .await;
    assert_eq!(code, 200, "{transfer}");
    assert_eq!(transfer["blake3"], hash.as_str());
    let local = nodes[0]
        .dir
        .join("workspace/public/received/bob/results/big.bin");
    assert_eq!(blake3_of(&local), hash);

    // carol pulls from bob directly, on alice's word.
    let (code, transfer) = nodes[0]
        .post("/v1/files/get", json!({"from": "bob", "path": "results/big.bin", "to": "carol", "dest": "public/in/big.bin"}))
        .await;
    assert_eq!(code, 200, "{transfer}");
    assert_eq!(
        blake3_of(&nodes[2].dir.join("workspace/public/in/big.bin")),
        hash
    );

    // And a put from alice lands in every other node's public area.
    let model = nodes[0].dir.join("model.bin");
    let model_hash = random_file(&model, 3 << 20);
    let out = nodes[0].cli(&[
        "files",
        "put",
        model.to_str().unwrap(),
        "--to",
        "all",
        "--as",
        "models/model.bin",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for node in &nodes[1..] {
        assert_eq!(
            blake3_of(&node.dir.join("workspace/public/models/model.bin")),
            model_hash
        );
    }
    // No partial files are left anywhere.
    for node in &nodes {
        let listing: Vec<String> = walk(&node.dir.join("workspace"));
        assert!(
            listing.iter().all(|p| !p.contains(".partial")),
            "{listing:?}"
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

#[tokio::test]
async fn a_corrupted_chunk_is_detected_and_fetched_again() {
    let mut alice = TestNode::init("alice");
    let mut bob = TestNode::init("bob");
    alice.start().await;
    // bob damages chunk 3 once, on the wire's sending end.
    bob.start_with_env(&[("IRIS_FAULT_CORRUPT_CHUNK", "3")])
        .await;
    alice.create_network(KEY).await;
    let (code, body) = bob.join(KEY, &alice).await;
    assert_eq!(code, 200, "{body}");
    let hash = random_file(&bob.dir.join("workspace/public/data.bin"), 10 << 20);

    let (code, transfer) = alice
        .post("/v1/files/get", json!({"from": "bob", "path": "data.bin"}))
        .await;
    assert_eq!(code, 200, "{transfer}");
    assert_eq!(transfer["refetched_chunks"], 1, "{transfer}");
    assert_eq!(
        blake3_of(&alice.dir.join("workspace/public/received/bob/data.bin")),
        hash
    );
}

#[tokio::test]
async fn traversal_private_files_and_links_out_are_refused() {
    let nodes = network(&["alice", "bob"], KEY).await;
    std::fs::write(nodes[1].dir.join("workspace/private/secret.csv"), "secret").unwrap();
    std::os::unix::fs::symlink(
        nodes[1].dir.join("workspace/private"),
        nodes[1].dir.join("workspace/public/link"),
    )
    .unwrap();
    for path in [
        "../private/secret.csv",
        "/etc/passwd",
        "image/../private/secret.csv",
        "link/secret.csv",
        "private/secret.csv",
    ] {
        let (code, body) = nodes[0]
            .post("/v1/files/get", json!({"from": "bob", "path": path}))
            .await;
        assert_ne!(code, 200, "{path}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    // A destination outside public/ and image/ is refused too.
    std::fs::write(nodes[1].dir.join("workspace/public/ok.txt"), "ok").unwrap();
    let (code, _) = nodes[0]
        .post(
            "/v1/files/get",
            json!({"from": "bob", "path": "ok.txt", "dest": "../private/x"}),
        )
        .await;
    assert_eq!(code, 400);
    assert!(
        nodes[1].log().contains("refused to serve"),
        "bob logs the refusals"
    );
    // Nothing of the secret reached alice.
    assert!(walk(&nodes[0].dir.join("workspace/public"))
        .iter()
        .all(|p| !p.contains("secret")));
}

/// Asks `alice` for bob's big.bin and kills bob once 16 chunks are saved
/// as here in `progress`; the answer to the cut request.
async fn kill_source_midway(
    alice: &TestNode,
    bob: &mut TestNode,
    progress: &std::path::Path,
) -> (u16, Value) {
    let request = alice.post("/v1/files/get", json!({"from": "bob", "path": "big.bin"}));
    let kill_midway = async {
        wait_for("part of the transfer", Duration::from_secs(60), || async {
            let saved: Value = serde_json::from_slice(&std::fs::read(progress).ok()?).ok()?;
            (saved["done"].as_array()?.len() >= 16).then_some(())
        })
        .await;
        bob.kill();
    };
    let (answer, ()) = tokio::join!(request, kill_midway);
    answer
}

#[tokio::test]
async fn a_transfer_resumes_after_its_source_restarts_without_refetching_chunks() {
    let mut nodes = network(&["alice", "bob"], KEY).await;
    let mut bob = nodes.pop().unwrap();
    let alice = &nodes[0];
    let hash = random_file(&bob.dir.join("workspace/public/big.bin"), 200 << 20);
    let progress = alice
        .dir
        .join("workspace/public/received/bob/.big.bin.partial.json");

    let (code, first) = kill_source_midway(alice, &mut bob, &progress).await;
    assert_ne!(code, 200, "the transfer should have been cut: {first}");
    assert!(
        first["error"]
            .as_str()
            .unwrap_or_default()
            .contains("resumable")
            || code == 502,
        "{first}"
    );

    bob.start().await;
    alice.wait_state("bob", "alive").await;
    let (code, transfer) = alice
        .post("/v1/files/get", json!({"from": "bob", "path": "big.bin"}))
        .await;
    assert_eq!(code, 200, "{transfer}");
    let resumed = transfer["resumed_chunks"].as_u64().unwrap();
    let fetched = transfer["fetched_chunks"].as_u64().unwrap();
    assert!(resumed >= 16, "{transfer}");
    assert_eq!(resumed + fetched, 200, "{transfer}");
    assert_eq!(
        blake3_of(&alice.dir.join("workspace/public/received/bob/big.bin")),
        hash
    );
}

/// A power loss on the receiver's side: the progress says chunks are
/// here, but the partial file lost its data (cut to nothing, then
/// zero-filled to its size by the resume). Before: the transfer resumed
/// those chunks unread and completed, "verified", with zeros. Now each
/// saved chunk is read back and checked, and the lost ones come again.
#[tokio::test]
async fn a_resumed_transfer_whose_partial_file_lost_its_data_fetches_it_again() {
    let mut nodes = network(&["alice", "bob"], KEY).await;
    let mut bob = nodes.pop().unwrap();
    let alice = &nodes[0];
    let hash = random_file(&bob.dir.join("workspace/public/big.bin"), 100 << 20);
    let received = alice.dir.join("workspace/public/received/bob");
    let progress = received.join(".big.bin.partial.json");

    let (code, first) = kill_source_midway(alice, &mut bob, &progress).await;
    assert_ne!(code, 200, "the transfer should have been cut: {first}");
    std::fs::File::options()
        .write(true)
        .open(received.join(".big.bin.partial"))
        .unwrap()
        .set_len(0)
        .unwrap();

    bob.start().await;
    alice.wait_state("bob", "alive").await;
    let (code, transfer) = alice
        .post("/v1/files/get", json!({"from": "bob", "path": "big.bin"}))
        .await;
    assert_eq!(code, 200, "{transfer}");
    assert_eq!(blake3_of(&received.join("big.bin")), hash, "{transfer}");
    assert_eq!(transfer["resumed_chunks"], 0, "{transfer}");
    assert_eq!(transfer["fetched_chunks"], 100, "{transfer}");
    assert!(
        transfer["refetched_chunks"].as_u64().unwrap() >= 16,
        "{transfer}"
    );
}

#[tokio::test]
async fn a_job_ships_the_image_to_a_node_that_lacks_it_and_gathers_outputs() {
    let nodes = network(&["alice", "bob"], KEY).await;
    for node in &nodes {
        std::fs::write(
            node.dir.join("workspace/private/data.csv"),
            "x,y\n1,2\n3,4\n",
        )
        .unwrap();
    }
    // An image tag of this test's own, in a tar only alice has.
    let tag = format!("iris-ship-{}:latest", iris::store::random_hex(4));
    assert!(std::process::Command::new("docker")
        .args(["tag", "iris-probe:latest", &tag])
        .status()
        .unwrap()
        .success());
    let tar = nodes[0].dir.join("ship.tar");
    assert!(std::process::Command::new("docker")
        .args(["save", &tag, "-o", tar.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    assert!(std::process::Command::new("docker")
        .args(["rmi", &tag])
        .status()
        .unwrap()
        .success());
    let out = nodes[0].cli(&["images", "load", tar.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let run = {
        let (dir, tag) = (nodes[0].dir_str().to_string(), tag.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(IRIS)
                .env("IRIS_DIR", dir)
                .args([
                    "job", "run", "--image", &tag, "--on", "all", "--gather", "--",
                ])
                .args(["/iris-worker", "stats", "/workspace/private/data.csv"])
                .output()
                .unwrap()
        })
    };
    // bob's owner has never seen this image: the task waits for them.
    let pending = wait_for("bob's task to await approval", DEADLINE, || async {
        let out = nodes[1].cli(&["approvals", "--json"]);
        let pending: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
        pending.into_iter().next()
    })
    .await;
    assert_eq!(pending["image"], tag.as_str());
    nodes[1].owner(&["approvals", "approve", pending["id"].as_str().unwrap()]);
    let out = run.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let _ = std::process::Command::new("docker")
        .args(["rmi", &tag])
        .status();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // bob's record did not list the tag when the job started, so the tar went to him.
    assert!(
        nodes[1].dir.join("workspace/image/ship.tar").exists(),
        "image not shipped"
    );
    let (_, jobs) = nodes[0].get("/v1/jobs").await.unwrap();
    let id = jobs[0]["id"].as_str().unwrap();
    for name in ["alice", "bob"] {
        let gathered = nodes[0]
            .dir
            .join(format!("workspace/gathered/{id}/{name}/stats.json"));
        let stats: Value =
            serde_json::from_str(&std::fs::read_to_string(&gathered).unwrap()).unwrap();
        assert_eq!(stats["rows"], 2, "{name}");
    }
}

#[tokio::test]
async fn two_fetches_into_one_destination_both_succeed_and_leave_the_file_intact() {
    let nodes = network(&["alice", "bob"], KEY).await;
    let hash = random_file(&nodes[1].dir.join("workspace/public/twice.bin"), 48 << 20);
    let body = json!({"from": "bob", "path": "twice.bin", "dest": "public/in/twice.bin"});
    let (first, second) = tokio::join!(
        nodes[0].post("/v1/files/get", body.clone()),
        nodes[0].post("/v1/files/get", body.clone())
    );
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(second.0, 200, "{}", second.1);
    assert_eq!(
        blake3_of(&nodes[0].dir.join("workspace/public/in/twice.bin")),
        hash
    );
}

#[tokio::test]
async fn an_image_tar_is_loaded_once_even_while_a_load_is_slow() {
    let mut node = TestNode::init("alice");
    // Every engine load takes 3 s longer: the watcher scans every 2 s.
    node.start_with_env(&[("IRIS_FAULT_SLOW_IMAGE_LOAD_MS", "3000")])
        .await;
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    node.forward_events(events).await;
    let out = node.cli(&["images", "load", probe_tar()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two more scans of the watcher, then count the loads.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut loads = 0;
    while let Ok((_, event)) = received.try_recv() {
        if event["type"] == "image_loaded" {
            loads += 1;
        }
    }
    assert_eq!(loads, 1, "the tar was loaded {loads} times");
}
