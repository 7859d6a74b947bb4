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

/// What someone with the run of bob's disk does: turns the policy change
/// at `line` into another, seals every line from there on again, and adds
/// `extra` lines of their own, so the log is longer than what the others
/// last saw. With `sign`, they used bob's own key (it is on the same disk).
fn forge_bob(bob: &TestNode, line: usize, extra: usize, sign: bool) {
    use iris::audit::{AuditEntry, AuditEvent};
    let path = bob.dir.join("audit.log");
    let mut entries = iris::audit::read(&path).unwrap();
    let AuditEvent::PolicyChanged { change, .. } = &mut entries[line - 1].event else {
        panic!("line {line} is no policy change: {:?}", entries[line - 1]);
    };
    *change = "max_tasks_per_hour = 1".into();
    for i in 0..extra {
        let mut copy = entries.last().unwrap().clone();
        copy.seq += 1;
        copy.event = AuditEvent::PolicyChanged {
            change: format!("forged {i}"),
            saved: Vec::new(),
        };
        entries.push(copy);
    }
    let keypair = sign.then(|| iris::store::Store::new(&bob.dir).load_identity().unwrap());
    let mut text = String::new();
    let mut prev: Option<AuditEntry> = None;
    for entry in entries {
        let entry = AuditEntry::reseal(entry, prev.as_ref(), keypair.as_ref());
        text += &serde_json::to_string(&entry).unwrap();
        text += "\n";
        prev = Some(entry);
    }
    std::fs::write(&path, text).unwrap();
}

/// The log is signed and witnessed: lines sealed again without bob's key
/// fail `iris audit verify`; with his key they verify, but alice kept the
/// head she last saw and raises `audit_rewritten`, with both heads, when
/// bob comes back with a log that does not extend it, longer or not.
#[tokio::test]
async fn a_rewritten_log_is_caught_by_its_signatures_and_by_the_members() {
    let mut nodes = network(&["alice", "bob"], "audit-witness-key-0001").await;
    let (events, mut heard) = tokio::sync::mpsc::unbounded_channel();
    nodes[0].forward_events(events).await;
    nodes[1].set_policy("logs", "share");
    nodes[1].set_policy("logs", "withhold");
    let length = iris::audit::read(&nodes[1].dir.join("audit.log"))
        .unwrap()
        .len() as u64;
    let bob_id = nodes[1].peer_id().await;
    let witnessed = nodes[0].dir.join("witnessed.json");
    wait_for("alice to keep bob's audit head", DEADLINE, || {
        let kept: Option<Value> = std::fs::read(&witnessed)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let entries = kept.and_then(|k| k[&bob_id]["entries"].as_u64());
        async move { (entries == Some(length)).then_some(()) }
    })
    .await;

    let bob = &mut nodes[1];
    bob.terminate().await;
    let changed = 2; // "logs = share"
    forge_bob(bob, changed, 0, false);
    let out = bob.cli(&["audit", "verify"]);
    assert!(
        !out.status.success(),
        "lines sealed again without bob's key verified"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signature"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    forge_bob(bob, changed, 1, true);
    let out = bob.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "signed with bob's own key, the forgery verifies on its own: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bob.start().await;
    let alarm = wait_for("alice to raise audit_rewritten", DEADLINE, || {
        let mut alarm = None;
        while let Ok((_, event)) = heard.try_recv() {
            if event["type"] == "audit_rewritten" {
                alarm = Some(event);
            }
        }
        async move { alarm }
    })
    .await;
    let kind = &alarm;
    assert_eq!(kind["name"], "bob", "{alarm}");
    assert_eq!(kind["before"]["entries"].as_u64(), Some(length), "{alarm}");
    assert_eq!(kind["now"]["entries"].as_u64(), Some(length + 1), "{alarm}");
    assert_ne!(kind["before"]["root"], kind["now"]["root"], "{alarm}");
}
