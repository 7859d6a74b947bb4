//! Attacks by a member that has the network key and misbehaves: a rogue
//! peer (tests/common/rogue.rs) against real `iris` processes. Each test is
//! an attack that worked on the code before its defence.

mod common;

use std::time::{Duration, Instant};

use common::{rogue::RoguePeer, *};
use iris_behaviours::{ControlRequest, ControlResponse, RefusalKind};

/// A member asks for the manifests of many large files at once. Each one is
/// a whole-file hash: unbounded, they take every core and as many threads.
/// The node must serve a few at a time, refuse the rest as busy, and keep
/// answering its own user.
#[tokio::test]
async fn a_flood_of_manifest_requests_is_refused_as_busy_and_the_node_stays_responsive() {
    let nodes = network(&["alice"], KEY).await;
    let alice = &nodes[0];
    let public = alice.dir.join("workspace/public/flood");
    std::fs::create_dir_all(&public).unwrap();
    let data = vec![7u8; 8 << 20];
    for i in 0..64 {
        std::fs::write(public.join(format!("f{i}.bin")), &data).unwrap();
    }
    let mut rogue = RoguePeer::join(KEY, &alice.bootstrap().await, "mallory").await;
    let master = rogue.network.master;
    let flood: Vec<ControlRequest> = (0..64)
        .map(|i| ControlRequest::FileManifest {
            path: format!("public/flood/f{i}.bin"),
        })
        .collect();
    let answering = tokio::spawn(async move { rogue.requests(master, flood).await });
    // Meanwhile the node's own user is answered promptly.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    alice.status().await;
    let status_took = started.elapsed();
    let answers = answering.await.unwrap();
    let busy = answers
        .iter()
        .filter(|a| {
            matches!(
                a,
                Ok(ControlResponse::Refused {
                    kind: RefusalKind::Busy,
                    ..
                })
            )
        })
        .count();
    let served = answers
        .iter()
        .filter(|a| matches!(a, Ok(ControlResponse::Manifest(_))))
        .count();
    assert!(busy > 0, "no request of the flood was refused as busy");
    assert!(served > 0, "nothing was served");
    assert_eq!(busy + served, 64, "{answers:?}");
    assert!(
        status_took < Duration::from_secs(5),
        "the status took {status_took:?} during the flood"
    );
}

/// A member that stays connected and alive but never answers: before, the
/// master's `job run` waited for its acknowledgement for a day. Now a plain
/// request gets 30 s, and the task fails with the reason.
#[tokio::test]
async fn a_member_that_never_answers_fails_its_task_within_a_minute() {
    let nodes = data_network(&["alice"]).await;
    let alice = &nodes[0];
    let mut rogue = RoguePeer::join(KEY, &alice.bootstrap().await, "mallory").await;
    let silent = tokio::spawn(async move {
        rogue.stay_silent(Duration::from_secs(90)).await;
    });
    let started = Instant::now();
    let (code, job) = alice
        .post(
            "/v1/jobs",
            serde_json::json!({"image": "iris-worker:latest", "on": "mallory", "argv": ["/iris-worker", "exit", "0"]}),
        )
        .await;
    assert_eq!(code, 201, "{job}");
    let task = &job["tasks"]["mallory"];
    assert_eq!(task["state"], "failed", "{job}");
    assert!(
        task["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no answer within 30 s"),
        "{job}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    silent.abort();
}
