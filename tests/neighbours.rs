//! A network larger than a node's neighbourhood: each node keeps only its
//! neighbours' connections, yet hears of every member's failure, and still
//! reaches any member when it needs to.

mod common;

use std::time::Duration;

use common::*;

/// Twelve nodes: more than the eight neighbours a node keeps at most.
#[tokio::test]
async fn nodes_keep_only_their_neighbours_yet_everyone_hears_of_a_crash() {
    let names: Vec<String> = (0..12).map(|i| format!("n{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut nodes = network(&names, KEY).await;

    // The connections a join or an introduction opened close once idle;
    // neighbours' stay.
    for node in &nodes {
        wait_for(
            &format!("{} to keep at most 8 connections", node.name),
            Duration::from_secs(60),
            || async {
                let count = connections(node).await;
                (count <= 8).then_some(count)
            },
        )
        .await;
    }
    let counts = futures::future::join_all(nodes.iter().map(connections)).await;
    assert!(
        counts.iter().all(|c| *c >= 2),
        "a node lost its neighbours: {counts:?}"
    );

    // The master reaches a member it holds no connection to: the request
    // dials it.
    let master = &nodes[0];
    let (_, map) = master.get("/v1/nodes").await.unwrap();
    if let Some(far) = map
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["self"] != true && e["connected"] != true)
    {
        let name = far["name"].as_str().unwrap();
        let out = master.cli(&["files", "ls", "--node", name]);
        assert!(
            out.status.success(),
            "listing {name}'s files: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A crash: its neighbours see the connections reset and probe; the
    // others, not connected to it, hear their suspicion.
    let victim = names.len() - 1;
    let unconnected: Vec<usize> = {
        let mut far = Vec::new();
        for (i, node) in nodes.iter().enumerate().take(victim) {
            let view = node.view_of(names[victim]).await.unwrap();
            if view["connected"] != true {
                far.push(i);
            }
        }
        far
    };
    nodes[victim].kill();
    for node in &nodes[..victim] {
        node.wait_state(names[victim], "suspect").await;
    }
    assert!(
        !unconnected.is_empty(),
        "every node was connected to the victim: the test proves nothing"
    );
    let alive: Vec<&str> = names[..victim].to_vec();
    for node in &nodes[..victim] {
        let states = node.states().await;
        for name in &alive {
            assert!(
                states.iter().any(|(n, s)| n == name && s == "alive"),
                "{} sees {name} as {states:?}",
                node.name
            );
        }
    }
}

async fn connections(node: &TestNode) -> usize {
    let Ok((_, map)) = node.get("/v1/nodes").await else {
        return usize::MAX;
    };
    map.as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["self"] != true && e["connected"] == true)
                .count()
        })
        .unwrap_or(usize::MAX)
}
