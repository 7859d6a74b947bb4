//! The audit log on real nodes: what a site records when another node runs
//! a job on it and takes its outputs, and that an edit is found.

mod common;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn a_site_records_the_request_the_end_and_each_release_and_detects_an_edit() {
    let nodes = data_network(&["alice", "bob"]).await;
    let (alice, bob) = (&nodes[0], &nodes[1]);
    bob.set_policy("logs", "share");
    let (id, _) = stats_on_bob_gathered(alice).await;
    let (code, logs) = alice
        .get(&format!("/v1/jobs/{id}/logs?node=bob"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{logs}");

    let out = bob.cli(&["audit", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = entries
        .iter()
        .filter(|e| e["event"]["job_id"] == id.as_str() || e["event"]["subject"] == id.as_str())
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "task_requested",
            "decision",
            "task_started",
            "task_ended",
            "output_released",
            "logs_released"
        ],
        "{entries:?}"
    );
    // The owner's own changes come first: the image approval, then logs.
    let changes: Vec<&str> = entries
        .iter()
        .filter(|e| e["event"]["type"] == "policy_changed")
        .map(|e| e["event"]["change"].as_str().unwrap())
        .collect();
    assert!(
        changes[0].starts_with("approved image iris-probe:latest (sha256:")
            && changes[1] == "logs = share",
        "{changes:?}"
    );
    let decision = entries
        .iter()
        .find(|e| e["event"]["type"] == "decision")
        .unwrap();
    assert_eq!(decision["event"]["verdict"], "approved");
    assert_eq!(decision["event"]["by"], "policy");
    let alice_peer = alice.peer_id().await;
    let released = entries
        .iter()
        .find(|e| e["event"]["type"] == "output_released")
        .unwrap();
    assert_eq!(released["event"]["to"], alice_peer.as_str());
    assert_eq!(
        released["event"]["path"],
        format!("outputs/{id}/stats.json")
    );
    let sent = std::fs::read(
        alice
            .dir
            .join(format!("workspace/gathered/{id}/bob/stats.json")),
    )
    .unwrap();
    assert_eq!(released["event"]["bytes"], sent.len());
    // alice ran nothing of anyone else's: her log records no task.
    let out = alice.cli(&["audit", "--json"]);
    let own: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        own.iter().all(|e| e["event"]["type"] != "output_released"),
        "{own:?}"
    );

    let out = bob.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // bob's record tells the others how long his log is.
    let length = entries.len() as u64;
    wait_for("alice to see bob's audit head", DEADLINE, || async {
        let bob = alice.view_of("bob").await?;
        (bob["audit"]["entries"].as_u64() == Some(length)).then_some(())
    })
    .await;
    // The owner of the disk edits a line: verify says which.
    let path = bob.dir.join("audit.log");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = 1 + text
        .lines()
        .position(|l| l.contains("\"exit_code\":0"))
        .unwrap();
    let edited = text.replacen("\"exit_code\":0", "\"exit_code\":1", 1);
    std::fs::write(&path, edited).unwrap();
    let out = bob.cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("line {line}:")) && said.contains("changed"),
        "{said}"
    );
}

/// `iris audit verify` fails where there is no node or no log; a node
/// whose log was deleted does not start a new one silently, and `iris
/// audit new` starts one knowingly, keeping what was there.
#[test]
fn a_missing_or_damaged_log_is_never_replaced_silently() {
    let empty = tempfile::tempdir().unwrap();
    let out = iris(&["audit", "verify", "--dir", empty.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node in"));

    let node = TestNode::init("bob");
    let dir = node.dir_str();
    assert!(iris(&["audit", "verify", "--dir", dir]).status.success());
    let log = node.dir.join("audit.log");
    std::fs::remove_file(&log).unwrap();
    let out = iris(&["audit", "verify", "--dir", dir]);
    assert!(!out.status.success(), "a deleted log must not verify");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is missing"));

    // The node refuses to start without it.
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_iris"))
        .args(["run", "--dir", dir])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            run.kill().unwrap();
            panic!("a node without its audit log started");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(!status.success());
    let mut said = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut said).unwrap();
    assert!(said.contains("iris audit new"), "{said}");

    // A damaged last line: kept aside by `audit new`, which starts a log
    // that says so.
    std::fs::write(&log, "{\"seq\":1, garbage\n").unwrap();
    let out = iris(&["audit", "new", "--dir", dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept: Vec<_> = std::fs::read_dir(&node.dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".damaged"))
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        std::fs::read_to_string(kept[0].path()).unwrap(),
        "{\"seq\":1, garbage\n"
    );
    assert!(iris(&["audit", "verify", "--dir", dir]).status.success());
    let out = iris(&["audit", "--json", "--dir", dir]);
    let entries: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entries[0]["event"]["type"], "log_started");
    assert!(entries[0]["event"]["after"]
        .as_str()
        .unwrap()
        .contains("damaged"));
    // A whole log is not replaced.
    assert!(!iris(&["audit", "new", "--dir", dir]).status.success());
}
