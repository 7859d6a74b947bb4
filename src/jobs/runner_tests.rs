//! The runner's refusals and races, without an engine.

use std::collections::BTreeMap;

use super::*;
use crate::executor::Workspace;

fn spec(job_id: &str) -> TaskSpec {
    TaskSpec {
        job_id: job_id.into(),
        image: "iris-worker:latest".into(),
        argv: vec!["/iris-worker".into(), "exit".into(), "0".into()],
        env: vec![],
        network: None,
        memory_bytes: 64 << 20,
        nano_cpus: 1_000_000_000,
        pids_limit: 64,
        timeout_ms: 1000,
        inputs: vec![],
        dataset: None,
        dry_run: false,
        warm: None,
    }
}

/// A runner of a node whose engine is missing (every task fails at once)
/// and whose policy lets any image run: what is tested is what comes before.
/// Its reports come out of the queue returned with it.
fn runner() -> (
    tokio::runtime::Runtime,
    tempfile::TempDir,
    Arc<TaskRunner>,
    mpsc::UnboundedReceiver<Delivery>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let workspace = Workspace {
        local: tmp.path().join("workspace"),
        host: tmp.path().join("workspace"),
    };
    // No engine: every task fails at once, which is all this needs.
    let executor = runtime.block_on(Executor::connect(
        "test".into(),
        workspace,
        Some("unix:///nonexistent/docker.sock"),
    ));
    let (deliveries, queue) = mpsc::unbounded_channel();
    let audit = Arc::new(
        AuditLog::create(
            tmp.path().join("audit.log"),
            iris_behaviours::libp2p::identity::Keypair::generate_ed25519(),
            None,
        )
        .unwrap(),
    );
    let policy = crate::policy::Policy::new(
        "test".into(),
        crate::policy::save_to(tmp.path().join("policy")),
        // Any image: what is tested is the claim, not the approval.
        crate::policy::PolicyConfig {
            images: crate::policy::ImagePolicy::Any,
            ..Default::default()
        },
        audit.clone(),
    );
    let runner = TaskRunner::new(
        Arc::new(executor),
        Egress::new(policy, audit.clone(), Default::default()),
        Events::default(),
        Metrics::default(),
        Datasets::open(
            tmp.path(),
            tmp.path().to_path_buf(),
            Default::default(),
            audit.clone(),
        ),
        PeerId::random(),
        tmp.path().join("tasks"),
        2,
        deliveries,
    );
    (runtime, tmp, runner, queue)
}

/// How many times each job's task was queued, by the reports it sent: a
/// task started twice reports queued twice.
fn queued_reports(queue: &mut mpsc::UnboundedReceiver<Delivery>) -> BTreeMap<String, usize> {
    let mut queued = BTreeMap::new();
    while let Ok(delivery) = queue.try_recv() {
        if delivery.report.state == TaskState::Queued {
            *queued.entry(delivery.report.job_id).or_default() += 1;
        }
    }
    queued
}

/// The same RunTask twice at the same moment (a resent request, a
/// rogue master) must start one task, never two containers.
#[test]
fn a_duplicate_task_submitted_at_the_same_moment_starts_once() {
    let (runtime, _tmp, runner, mut queue) = runner();
    let origin = PeerId::random();
    for round in 0..200 {
        let job_id = format!("job-{round}");
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let attempts: Vec<_> = (0..2)
            .map(|_| {
                let (runner, barrier, spec) = (runner.clone(), barrier.clone(), spec(&job_id));
                let handle = runtime.handle().clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    handle.block_on(runner.submit(origin, spec)).is_ok()
                })
            })
            .collect();
        let accepted = attempts
            .into_iter()
            .map(|a| a.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert!(accepted >= 1, "round {round}: neither was accepted");
    }
    let queued = queued_reports(&mut queue);
    assert_eq!(queued.len(), 200, "{queued:?}");
    let twice: Vec<_> = queued.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "tasks started twice: {twice:?}");
}

/// A master that restarted while handing a task out asks again: the same
/// task from the same node is acknowledged and not run again; the job's id
/// with another spec, or from another node, is refused.
#[test]
fn the_same_task_asked_again_is_acknowledged_and_run_once() {
    let (runtime, _tmp, runner, mut queue) = runner();
    let origin = PeerId::random();
    runtime
        .block_on(runner.submit(origin, spec("job-again")))
        .unwrap();
    runtime
        .block_on(runner.submit(origin, spec("job-again")))
        .expect("the same task again is acknowledged");
    let mut other_spec = spec("job-again");
    other_spec.argv.push("more".into());
    let refused = runtime
        .block_on(runner.submit(origin, other_spec))
        .unwrap_err();
    assert!(refused.reason.contains("already has a task"), "{refused:?}");
    let refused = runtime
        .block_on(runner.submit(PeerId::random(), spec("job-again")))
        .unwrap_err();
    assert!(refused.reason.contains("already has a task"), "{refused:?}");
    assert_eq!(queued_reports(&mut queue).get("job-again"), Some(&1));
}

/// Only a node's own tasks may be dry runs (on the mock sample it fetched),
/// and a task for a dataset must find it declared here.
#[test]
fn another_nodes_dry_run_or_a_dataset_not_held_here_is_refused() {
    let (runtime, _tmp, runner, _queue) = runner();
    let mut dry = spec("job-dry");
    dry.dataset = Some("heart".into());
    dry.dry_run = true;
    let refused = runtime
        .block_on(runner.submit(PeerId::random(), dry))
        .unwrap_err();
    assert!(refused.reason.contains("dry run"), "{refused:?}");
    let mut elsewhere = spec("job-elsewhere");
    elsewhere.dataset = Some("heart".into());
    let refused = runtime
        .block_on(runner.submit(PeerId::random(), elsewhere))
        .unwrap_err();
    assert_eq!(refused.kind, RefusalKind::NotFound, "{refused:?}");
}
