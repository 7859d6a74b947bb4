//! A node whose disk fills up: the owner's changes fail whole, with an
//! error that says why, and leave the audit log verifying, the config
//! matching the log and no temporary file behind; once there is room
//! again the node goes on by itself, and a restart finds everything whole.
//!
//! Before: the audit log kept a torn line in the middle and `iris audit
//! verify` failed for good (the node would not even start again), policy
//! changes were in the log but not in the config, and temporary files
//! stayed. The node's directory is a small tmpfs of its own, so this
//! test needs root (as CI has) and touches no other disk.

mod common;

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use common::{temporaries, TestNode, KEY};
use serde_json::json;

/// A tmpfs mounted on a temporary directory, unmounted when dropped. Its
/// source is named so that a leftover one is recognisable in /proc/mounts.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("iris-test-full-disk-")
            .tempdir()
            .unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0700"))
            .arg("iris-test-full-disk")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs (this test needs root)");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the file system of `dir` to the last byte; returns the file
/// that holds the space.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = fs::File::create(&path).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let bytes = vec![0u8; chunk];
        while file
            .write_all(&bytes)
            .and_then(|()| file.sync_all())
            .is_ok()
        {}
    }
    path
}

fn verifies(node: &TestNode) -> Result<(), String> {
    let out = node.cli(&["audit", "verify"]);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn policy_changes_logged(node: &TestNode) -> usize {
    fs::read_to_string(node.dir.join("audit.log"))
        .unwrap()
        .lines()
        .filter(|line| line.contains("policy_changed"))
        .count()
}

#[tokio::test]
async fn a_full_disk_refuses_changes_whole_and_the_node_goes_on_when_space_returns() {
    let disk = Tmpfs::mount("4m");
    let mut bob = TestNode::init_in("bob", &disk.path().join("bob"));
    bob.start().await;
    common::heart(&bob, 50);
    let logged_before = policy_changes_logged(&bob);
    let filler = fill(disk.path());

    // Each change is refused, and says why.
    for value in ["3", "4", "5", "6", "7"] {
        let out = bob.cli(&["policy", "set", "min_aggregate", value]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a change on a full disk: {err}");
        assert!(err.contains("No space left"), "{err}");
    }
    // So is a dataset's declaration, and its card is not left half written.
    let out = bob.cli(&["datasets", "add", "heart", "private/heart"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a declaration on a full disk: {err}");
    assert!(err.contains("No space left"), "{err}");
    assert!(!bob
        .dir
        .join("workspace/private/heart/dataset.toml")
        .exists());
    assert_eq!(
        temporaries(&bob.dir.join("workspace/private/heart")),
        Vec::<String>::new()
    );
    assert_eq!(bob.status().await["name"], "bob", "the node is alive");
    verifies(&bob).expect("the log verifies on a full disk");
    assert_eq!(policy_changes_logged(&bob), logged_before);
    assert_eq!(temporaries(&bob.dir), Vec::<String>::new());

    // Room again: the next change goes through without a restart.
    fs::remove_file(filler).unwrap();
    bob.set_policy("min_aggregate", "8");
    common::declare_heart(&bob, &[]);
    verifies(&bob).expect("the log verifies after the disk was full");
    assert_eq!(policy_changes_logged(&bob), logged_before + 2);

    // A restart finds the log whole and the config as the log says.
    bob.terminate().await;
    bob.start().await;
    verifies(&bob).expect("the log verifies after a restart");
    let policy = bob.owner(&["policy"]);
    assert!(
        policy
            .lines()
            .any(|l| l.contains("min_aggregate") && l.contains('8')),
        "{policy}"
    );
    let datasets = bob.owner(&["datasets"]);
    assert!(datasets.contains("heart"), "{datasets}");
    assert_eq!(temporaries(&bob.dir), Vec::<String>::new());
    bob.terminate().await;
}

/// A file a peer serves that is larger than the receiver's free disk.
/// Before: the receiver wrote until its disk was full and kept the partial
/// file for a resume, so the disk stayed full (and the audit log with it).
/// Now the size the peer declares is held against the free space first,
/// with a margin, and the transfer is refused before a byte is written.
#[tokio::test]
async fn a_file_larger_than_the_free_disk_is_refused_before_a_byte_is_written() {
    let disk = Tmpfs::mount("96m");
    let mut alice = TestNode::init_in("alice", &disk.path().join("alice"));
    let mut bob = TestNode::init("bob");
    alice.start().await;
    bob.start().await;
    alice.create_network(KEY).await;
    let (code, body) = bob.join(KEY, &alice).await;
    assert_eq!(code, 200, "{body}");
    alice.wait_all_alive(&["alice", "bob"]).await;
    let big = bob.dir.join("workspace/public/big.bin");
    fs::create_dir_all(big.parent().unwrap()).unwrap();
    fs::write(&big, vec![7u8; 120 << 20]).unwrap();

    let free_before = free_bytes(disk.path());
    let (code, refused) = alice
        .post("/v1/files/get", json!({"from": "bob", "path": "big.bin"}))
        .await;
    assert_eq!(code, 507, "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("no room") && error.contains("free"),
        "{error}"
    );
    let free_after = free_bytes(disk.path());
    assert!(
        free_before - free_after < 1 << 20,
        "{free_before} bytes free before, {free_after} after"
    );
    let received = alice.dir.join("workspace/public/received/bob");
    let left: Vec<_> = fs::read_dir(&received)
        .map(|dir| dir.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // The node goes on: its owner can still change its policy.
    alice.set_policy("min_aggregate", "4");
    alice.terminate().await;
    bob.terminate().await;
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
