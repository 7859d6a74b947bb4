//! A node under a memory cap, as an owner's service manager or container
//! would set one, asked for work whose size its owner's files or requests
//! choose: it refuses what is too big, with an error that says why, and
//! stays up.
//!
//! Before: a dataset file with a row of a gigabyte (a file with no line
//! breaks, or not a CSV at all) was read whole into memory by the scan,
//! and the capped node was killed. The cap is a cgroup (v1) of the test's
//! own, so this test needs root (as CI has).

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
};

use common::TestNode;

/// A memory cgroup with a limit, named after the test, removed when
/// dropped (whatever it still holds moves back to the root first).
struct MemoryCap {
    dir: PathBuf,
}

impl MemoryCap {
    fn new(limit_bytes: u64) -> Self {
        let dir = PathBuf::from(format!(
            "/sys/fs/cgroup/memory/iris-test-memory-cap-{}",
            std::process::id()
        ));
        fs::create_dir(&dir).expect("a memory cgroup of our own (this test needs root, cgroup v1)");
        let cap = Self { dir };
        fs::write(
            cap.dir.join("memory.limit_in_bytes"),
            limit_bytes.to_string(),
        )
        .unwrap();
        cap
    }

    /// Puts the process `pid` under the cap.
    fn hold(&self, pid: u32) {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    /// Whether the kernel had to kill anything under the cap.
    fn oom_kills(&self) -> u64 {
        let control = fs::read_to_string(self.dir.join("memory.oom_control")).unwrap_or_default();
        control
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemoryCap {
    fn drop(&mut self) {
        let root = Path::new("/sys/fs/cgroup/memory/cgroup.procs");
        let held = fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
        for pid in held.lines() {
            let _ = fs::write(root, pid);
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

#[tokio::test]
async fn a_capped_node_refuses_a_dataset_row_too_long_and_writes_a_full_mock_sample() {
    let mut alice = TestNode::init("alice");
    alice.start().await;
    let cap = MemoryCap::new(384 << 20);
    cap.hold(alice.pid());

    // A header, a row, then a gigabyte without a line break (sparse: it
    // takes no disk).
    let huge = alice.dir.join("workspace/private/huge");
    fs::create_dir_all(&huge).unwrap();
    let file = huge.join("a.csv");
    fs::write(&file, "x,y\n1,2\n").unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let out = alice.cli(&["datasets", "add", "huge", "private/huge"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a gigabyte row was taken");
    assert!(
        stderr.contains("row 2 is over 1024 KiB"),
        "the error does not say what is wrong: {stderr}\n{}",
        alice.log()
    );
    assert_eq!(cap.oom_kills(), 0, "the node ran out of memory");
    let (code, _) = alice.get("/v1/status").await.expect("the node is up");
    assert_eq!(code, 200);

    // The widest schema a card takes, and the largest mock sample: written
    // a row at a time, whole.
    let wide = alice.dir.join("workspace/private/wide");
    fs::create_dir_all(&wide).unwrap();
    let header: Vec<String> = (0..64).map(|i| format!("column_{i}")).collect();
    let row: Vec<String> = (0..64).map(|i| format!("text {i}")).collect();
    fs::write(
        wide.join("a.csv"),
        format!("{}\n{}\n", header.join(","), row.join(",")),
    )
    .unwrap();
    alice.owner(&[
        "datasets",
        "add",
        "wide",
        "private/wide",
        "--mock-rows",
        "100000",
    ]);
    let mock =
        fs::read_to_string(alice.dir.join("workspace/public/datasets/wide/mock.csv")).unwrap();
    assert_eq!(mock.lines().count(), 100_001);
    assert!(mock.lines().all(|l| l.split(',').count() == 64));
    assert_eq!(cap.oom_kills(), 0, "the node ran out of memory");
    let (code, _) = alice.get("/v1/status").await.expect("the node is up");
    assert_eq!(code, 200);
}
