//! The Docker engine comes and goes under a running node. The node here
//! reaches the engine through a socket this test serves (a relay to the
//! real engine's socket), so the test can take the engine away and bring
//! it back without touching the engine the other tests use.
//!
//! Before: the engine was asked once, at the start; a node started before
//! its engine stayed "unavailable" until it was restarted.

mod common;

use std::{path::Path, time::Duration};

use common::*;
use tokio::net::{UnixListener, UnixStream};

const ENGINE: &str = "/var/run/docker.sock";

/// Serves `path` as the engine, relaying every connection to the real
/// one, until the set is dropped.
fn relay(path: &Path) -> tokio::task::JoinSet<()> {
    let listener = UnixListener::bind(path).unwrap();
    let mut relay = tokio::task::JoinSet::new();
    relay.spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            connections.spawn(async move {
                if let Ok(mut engine) = UnixStream::connect(ENGINE).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut engine).await;
                }
            });
        }
    });
    relay
}

async fn engine_state(node: &TestNode) -> String {
    node.status().await["executor"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn wait_engine(node: &TestNode, available: bool) {
    wait_for("the engine's state", Duration::from_secs(60), || async {
        let state = engine_state(node).await;
        (state.starts_with("available") == available).then_some(())
    })
    .await;
    let metrics = reqwest::Client::new()
        .get(node.url("/metrics"))
        .bearer_auth(node.token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = format!("iris_engine_available {}", available as u8);
    assert!(metrics.contains(&gauge), "{metrics}");
}

#[tokio::test]
async fn an_engine_that_comes_and_goes_is_noticed_without_a_restart() {
    let sockets = tempfile::tempdir().unwrap();
    let socket = sockets.path().join("engine.sock");
    let host = format!("unix://{}", socket.display());
    let mut bob = TestNode::init("bob");
    bob.start_with_env(&[("DOCKER_HOST", &host)]).await;
    assert!(engine_state(&bob).await.starts_with("unavailable"));

    // The engine comes after the node.
    let engine = relay(&socket);
    wait_engine(&bob, true).await;

    // It goes away, and comes back.
    drop(engine);
    std::fs::remove_file(&socket).unwrap();
    wait_engine(&bob, false).await;
    let _engine = relay(&socket);
    wait_engine(&bob, true).await;
    bob.terminate().await;
}
