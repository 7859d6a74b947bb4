//! The executor against the real Docker engine, with the worker image that
//! docker/build-images.sh builds. Every container is labelled with a node
//! label unique to the test and removed before the test ends.

use std::{path::PathBuf, time::Duration};

use iris::executor::{DataMount, Executor, TaskLimits, TaskSpec, TaskState, Workspace};
use serde_json::Value;

const WORKER_TAR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/.build/iris-probe.tar");

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    executor: Executor,
}

async fn setup() -> Setup {
    setup_with(TaskLimits::default()).await
}

async fn setup_with(limits: TaskLimits) -> Setup {
    assert!(
        std::path::Path::new(WORKER_TAR).exists(),
        "{WORKER_TAR} is missing: run docker/build-images.sh (scripts/test.sh does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let ws = root.join("workspace");
    std::fs::create_dir_all(ws.join("private")).unwrap();
    std::fs::write(ws.join("private/data.csv"), "x,y\n1,3\n2,5\n3,7\n4,9\n").unwrap();
    let label = format!("test-{}", iris::store::random_hex(6));
    let executor = Executor::connect(
        label,
        Workspace {
            local: ws.clone(),
            host: ws,
        },
        None,
    )
    .await
    .with_limits(limits);
    executor
        .availability()
        .expect("the Docker engine is reachable");
    executor
        .load_image(std::path::Path::new(WORKER_TAR))
        .await
        .expect("worker image loads");
    Setup {
        _tmp: tmp,
        root,
        executor,
    }
}

impl Setup {
    fn spec(&self, argv: &[&str]) -> TaskSpec {
        TaskSpec {
            job_id: format!("job-{}", iris::store::random_hex(4)),
            image: "iris-probe:latest".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            network: None,
            memory_bytes: 256 << 20,
            nano_cpus: 1_000_000_000,
            pids_limit: 64,
            timeout_ms: 60_000,
            inputs: vec![],
            dataset: None,
            dry_run: false,
            warm: None,
        }
    }

    async fn run(&self, spec: &TaskSpec) -> (iris::executor::TaskOutcome, String, String) {
        let logs = self.root.join("logs").join(&spec.job_id);
        let (_cancel, rx) = tokio::sync::watch::channel(false);
        let outcome = self
            .executor
            .run(spec, &logs, true, &DataMount::Private, rx, None)
            .await;
        let read = |f: &str| std::fs::read_to_string(logs.join(f)).unwrap_or_default();
        (outcome, read("stdout.log"), read("stderr.log"))
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // Nothing of ours may be left behind, whatever the test did.
        let executor = &self.executor;
        if std::thread::panicking() {
            return;
        }
        let left = futures::executor::block_on(async {
            tokio::time::timeout(Duration::from_secs(30), executor.remove_orphans()).await
        });
        match left {
            Ok(Ok(jobs)) => assert!(jobs.is_empty(), "containers left behind: {jobs:?}"),
            Ok(Err(e)) => panic!("cannot check for containers left behind: {e}"),
            Err(_) => panic!("the check for containers left behind did not finish in 30 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_on_private_data_succeed_and_write_outputs_and_logs() {
    let s = setup().await;
    let spec = s.spec(&["/iris-worker", "stats", "/workspace/private/data.csv"]);
    let (outcome, stdout, _) = s.run(&spec).await;
    assert_eq!(outcome.end, TaskState::Succeeded, "{outcome:?}");
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(outcome.outputs, vec!["stats.json".to_string()]);
    let out = s
        .executor
        .workspace()
        .output_dirs(&spec.job_id)
        .0
        .join("stats.json");
    let stats: Value = serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
    assert_eq!(stats["rows"], 4);
    assert_eq!(stats["columns"]["y"]["sum"], 24.0);
    assert!(stdout.contains("\"rows\": 4"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_command_reports_its_exit_code() {
    let s = setup().await;
    let (outcome, _, _) = s.run(&s.spec(&["/iris-worker", "exit", "3"])).await;
    assert_eq!(outcome.end, TaskState::Failed);
    assert_eq!(outcome.exit_code, Some(3));
    let (outcome, _, stderr) = s
        .run(&s.spec(&["/iris-worker", "stats", "/workspace/private/missing.csv"]))
        .await;
    assert_eq!(outcome.exit_code, Some(2));
    assert!(stderr.contains("missing.csv"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_kills_the_container() {
    let s = setup().await;
    let mut spec = s.spec(&["/iris-worker", "sleep", "60"]);
    spec.timeout_ms = 1000;
    let started = std::time::Instant::now();
    let (outcome, _, _) = s.run(&spec).await;
    assert_eq!(outcome.end, TaskState::TimedOut, "{outcome:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_a_running_task() {
    let s = setup().await;
    let spec = s.spec(&["/iris-worker", "sleep", "60"]);
    let (cancel, rx) = tokio::sync::watch::channel(false);
    let logs = s.root.join("logs");
    let run = s
        .executor
        .run(&spec, &logs, true, &DataMount::Private, rx, None);
    let trigger = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.send_replace(true);
    };
    let (outcome, ()) = tokio::join!(run, trigger);
    assert_eq!(outcome.end, TaskState::Cancelled, "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_cannot_write_to_private_data() {
    let s = setup().await;
    let (outcome, _, stderr) = s
        .run(&s.spec(&["/iris-worker", "touch", "/workspace/private/evil.txt"]))
        .await;
    assert_eq!(outcome.end, TaskState::Failed, "{outcome:?}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(!s.root.join("workspace/private/evil.txt").exists());
    // Nor to its own root file system.
    let (outcome, _, _) = s
        .run(&s.spec(&["/iris-worker", "touch", "/evil.txt"]))
        .await;
    assert_eq!(outcome.end, TaskState::Failed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_without_network_has_only_loopback() {
    let s = setup().await;
    let (outcome, stdout, _) = s.run(&s.spec(&["/iris-worker", "netifs"])).await;
    assert_eq!(outcome.end, TaskState::Succeeded, "{outcome:?}");
    assert_eq!(stdout.trim(), "lo");
    let mut spec = s.spec(&["/iris-worker", "netifs"]);
    spec.network = Some("bridge".into());
    let (_, stdout, _) = s.run(&spec).await;
    assert!(stdout.contains("eth0"), "with --network bridge: {stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_engine_is_reported_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = Workspace {
        local: tmp.path().into(),
        host: tmp.path().into(),
    };
    let executor = Executor::connect("x".into(), ws, Some("unix:///nonexistent/docker.sock")).await;
    assert!(executor.availability().is_err());
    let (_cancel, rx) = tokio::sync::watch::channel(false);
    let spec = TaskSpec {
        job_id: "j".into(),
        image: "iris-probe:latest".into(),
        argv: vec![],
        env: vec![],
        network: None,
        memory_bytes: 1 << 28,
        nano_cpus: 1_000_000_000,
        pids_limit: 64,
        timeout_ms: 1000,
        inputs: vec![],
        dataset: None,
        dry_run: false,
        warm: None,
    };
    let outcome = executor
        .run(&spec, tmp.path(), true, &DataMount::Private, rx, None)
        .await;
    assert_eq!(outcome.end, TaskState::Failed);
    assert!(outcome.error.unwrap().contains("executor: unavailable"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_image_tar_is_a_clear_error() {
    let s = setup().await;
    let bad = s.root.join("bad.tar");
    std::fs::write(&bad, b"this is not a tar").unwrap();
    let err = s.executor.load_image(&bad).await.unwrap_err().to_string();
    assert!(
        err.contains("bad.tar") && err.contains("could not be loaded"),
        "{err}"
    );
    // The engine and the executor are fine afterwards.
    assert!(s
        .executor
        .images()
        .await
        .unwrap()
        .iter()
        .any(|i| i.tags.contains(&"iris-probe:latest".to_string())));
}

/// Before, a job ran as the workspace's owner, which is root when root owns
/// the workspace. Now it never runs as root, and the report names the
/// image's id, not only its tag.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_never_runs_as_root_and_its_image_id_is_recorded() {
    use std::os::unix::fs::MetadataExt;
    let s = setup().await;
    let spec = s.spec(&["/iris-worker", "touch", "/workspace/out/who.txt"]);
    let (outcome, _, stderr) = s.run(&spec).await;
    assert_eq!(outcome.end, TaskState::Succeeded, "{outcome:?} {stderr}");
    let written = s
        .executor
        .workspace()
        .output_dirs(&spec.job_id)
        .0
        .join("who.txt");
    let uid = std::fs::metadata(&written).unwrap().uid();
    assert_ne!(uid, 0, "the job ran as root");
    let owner = std::fs::metadata(s.root.join("workspace")).unwrap().uid();
    assert_eq!(uid, if owner == 0 { 65534 } else { owner });
    let id = std::process::Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            "iris-probe:latest",
        ])
        .output()
        .unwrap();
    assert_eq!(
        outcome.image_id.as_deref(),
        Some(String::from_utf8_lossy(&id.stdout).trim())
    );
}

/// Before, a task could fill the node's disk through its logs and its
/// outputs. Now each log keeps its first `max_log_bytes`, and outputs over
/// `max_output_bytes` fail the task and are deleted.
#[tokio::test(flavor = "multi_thread")]
async fn logs_and_outputs_are_capped() {
    let cap = 1 << 20;
    let s = setup_with(TaskLimits {
        max_log_bytes: cap,
        max_output_bytes: cap,
    })
    .await;
    let three_mib = (3 << 20).to_string();
    let (outcome, stdout, _) = s
        .run(&s.spec(&["/iris-worker", "fill", "-", &three_mib]))
        .await;
    assert_eq!(outcome.end, TaskState::Succeeded, "{outcome:?}");
    assert!(
        stdout.len() as u64 <= cap + 100,
        "{} bytes of log kept",
        stdout.len()
    );
    assert!(
        stdout.ends_with("(jobs.max_log_bytes)]\n"),
        "{}",
        &stdout[stdout.len() - 80..]
    );

    let spec = s.spec(&["/iris-worker", "fill", "/workspace/out/big.bin", &three_mib]);
    let (outcome, _, _) = s.run(&spec).await;
    assert_eq!(outcome.end, TaskState::Failed, "{outcome:?}");
    assert!(
        outcome
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("max_output_bytes"),
        "{outcome:?}"
    );
    assert!(outcome.outputs.is_empty());
    let out = s.executor.workspace().output_dirs(&spec.job_id).0;
    assert!(
        !out.join("big.bin").exists(),
        "the outputs over the cap were kept"
    );
}
