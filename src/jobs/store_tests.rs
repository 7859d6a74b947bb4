//! Job files across formats: today's files (format 1, unnumbered) are read
//! as they are; a newer Iris's files are left alone.

use super::*;

/// A job file exactly as Iris wrote it before formats were numbered: no
/// `format`, and (older still) no job `state`.
const FORMAT_1: &str = r#"{
  "id": "7d1c0b9e-job",
  "request": {
    "image": "iris-worker:latest",
    "argv": ["sum", "--in", "data.csv"],
    "env": [],
    "on": "all",
    "any": false,
    "network": null,
    "memory_mb": 512,
    "cpus": 1.0,
    "timeout_secs": 3600.0,
    "inputs": [],
    "dry_run": false
  },
  "created_ms": 1764700000000,
  "tasks": {
    "bob": {
      "node": "bob",
      "peer_id": "PEER_ID",
      "state": "succeeded",
      "exit_code": 0,
      "started_ms": 1764700000100,
      "finished_ms": 1764700001100,
      "outputs": ["result.json"],
      "error": null
    }
  }
}"#;

/// [`FORMAT_1`] with a real peer id.
fn format_1() -> String {
    let peer = iris_behaviours::libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id();
    FORMAT_1.replace("PEER_ID", &peer.to_string())
}

fn store_with(files: &[(&str, &str)]) -> (tempfile::TempDir, JobStore) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let store = JobStore::open(dir.path().to_path_buf()).unwrap();
    (dir, store)
}

#[test]
fn a_job_file_from_before_formats_is_read_and_its_state_derived() {
    let (_dir, store) = store_with(&[("7d1c0b9e-job.json", &format_1())]);
    let job = store.get("7d1c0b9e-job").expect("the old file is read");
    assert_eq!(job.state, JobState::Succeeded, "derived from its tasks");
    assert_eq!(job.request.memory_mb, 512);
    assert_eq!(job.tasks["bob"].outputs, vec!["result.json".to_string()]);
    assert!(
        !job.tasks["bob"].outputs_truncated,
        "a later field, defaulted"
    );
}

#[tokio::test]
async fn a_saved_job_names_its_format_and_reads_back_the_same() {
    let (dir, store) = store_with(&[("7d1c0b9e-job.json", &format_1())]);
    let job = store.get("7d1c0b9e-job").unwrap();
    let mut copy = job.clone();
    copy.id = "second-job".into();
    store.insert(copy).await.unwrap();
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("second-job.json")).unwrap())
            .unwrap();
    assert_eq!(written["format"], JOB_FORMAT);
    assert_eq!(written["state"], "succeeded");
    let reopened = JobStore::open(dir.path().to_path_buf()).unwrap();
    let again = reopened.get("second-job").expect("read back");
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(store.get("second-job").unwrap()).unwrap()
    );
}

#[test]
fn a_job_file_from_a_newer_iris_is_left_alone() {
    let newer = format_1().replacen('{', r#"{"format": 3, "#, 1);
    let (dir, store) = store_with(&[("7d1c0b9e-job.json", &newer)]);
    assert!(store.get("7d1c0b9e-job").is_none(), "not read as today's");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("7d1c0b9e-job.json")).unwrap(),
        newer,
        "and not changed"
    );
    let why = read_job_file(newer.as_bytes()).unwrap_err();
    assert!(why.contains("format 3, from a newer Iris"), "{why}");
}

/// The API shows a job as the node keeps it: the view made from a record
/// names every field the record has, with the same values.
#[test]
fn the_view_of_a_job_says_what_its_record_says() {
    let (_dir, store) = store_with(&[("7d1c0b9e-job.json", &format_1())]);
    let mut job = store.get("7d1c0b9e-job").unwrap();
    let bob = job.tasks.get_mut("bob").unwrap();
    bob.held = Some("held for review".into());
    bob.image_id = Some("sha256:00".into());
    bob.unnamed_outputs = vec!["\\xff".into()];
    bob.outputs_truncated = true;
    assert_eq!(
        serde_json::to_value(job.view()).unwrap(),
        serde_json::to_value(&job).unwrap()
    );
}
