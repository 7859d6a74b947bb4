//! The overlay end to end: real `iris` processes on loopback ports.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn three_nodes_converge_with_roles_and_the_cli_shows_them() {
    // carol joins through bob, who is not the genesis.
    let nodes = network(&["alice", "bob", "carol"], "s3cret-s3cret-s3cret").await;
    let alice_id = nodes[0].peer_id().await;
    for node in &nodes {
        let (_, map) = node.get("/v1/nodes").await.unwrap();
        for entry in map.as_array().unwrap() {
            let expected = if entry["peer_id"] == alice_id.as_str() {
                "master"
            } else {
                "slave"
            };
            assert_eq!(entry["role"], expected, "{} sees {entry}", node.name);
        }
    }

    let out = nodes[1].cli(&["nodes"]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    let alice_row = table
        .lines()
        .find(|l| l.starts_with("alice"))
        .expect(&table);
    assert!(
        alice_row.contains("master") && alice_row.contains("alive"),
        "{table}"
    );
    assert_eq!(
        table
            .lines()
            .filter(|l| l.contains("slave") && l.contains("alive"))
            .count(),
        2,
        "{table}"
    );

    let out = nodes[1].cli(&["nodes", "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);

    let out = nodes[2].cli(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["name"], "carol");
    assert_eq!(status["role"], "slave");
    assert_eq!(status["network"]["name"], "lab");
    assert_eq!(status["network"]["master"], alice_id.as_str());
    assert!(status["addrs"][0]
        .as_str()
        .unwrap()
        .ends_with(status["peer_id"].as_str().unwrap()));
}

#[tokio::test]
async fn the_network_key_never_appears_in_the_map_or_the_state() {
    let nodes = network(&["alice", "bob"], "a-very-distinctive-key").await;
    for node in &nodes {
        let (_, map) = node.get("/v1/nodes").await.unwrap();
        let status = node.status().await;
        let (_, network) = node.get("/v1/network").await.unwrap();
        for text in [map.to_string(), status.to_string(), network.to_string()] {
            assert!(!text.contains("a-very-distinctive-key"));
        }
        for file in ["state.json", "network.psk", "iris.toml"] {
            let content = std::fs::read_to_string(node.dir.join(file)).unwrap_or_default();
            assert!(!content.contains("a-very-distinctive-key"), "key in {file}");
        }
    }
}

#[tokio::test]
async fn a_wrong_key_is_refused_quickly_and_the_member_stays_healthy() {
    let nodes = network(&["alice", "bob"], "s3cret-s3cret-s3cret").await;
    let mut mallory = TestNode::init("mallory");
    mallory.start().await;
    let started = std::time::Instant::now();
    let (code, body) = mallory.join("not-the-right-network-key", &nodes[0]).await;
    let took = started.elapsed();
    assert_eq!(code, 502, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("handshake") && error.contains("wrong network key"),
        "{error}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // Alice logged it, still answers and still has the same map.
    wait_for("alice to log the refused connection", DEADLINE, || async {
        nodes[0].log().contains("wrong network key").then_some(())
    })
    .await;
    nodes[0].wait_all_alive(&["alice", "bob"]).await;
    assert_eq!(mallory.status().await["network"], Value::Null);

    // And the same node can still join with the right key.
    let (code, body) = mallory.join("s3cret-s3cret-s3cret", &nodes[1]).await;
    assert_eq!(code, 200, "{body}");
    nodes[0].wait_all_alive(&["alice", "bob", "mallory"]).await;
}

#[tokio::test]
async fn a_duplicate_name_is_refused_at_join() {
    let nodes = network(&["alice", "bob"], "s3cret-s3cret-s3cret").await;
    let mut impostor = TestNode::init("bob");
    impostor.start().await;
    let (code, body) = impostor.join("s3cret-s3cret-s3cret", &nodes[0]).await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("'bob' is already taken"),
        "{body}"
    );
    assert_eq!(impostor.status().await["network"], Value::Null);
    nodes[0].wait_all_alive(&["alice", "bob"]).await;
}

#[tokio::test]
async fn a_killed_member_turns_suspect_then_gone_then_alive_after_restart() {
    let mut nodes = network(&["alice", "bob", "carol"], "s3cret-s3cret-s3cret").await;
    let carol_id = nodes[2].peer_id().await;
    nodes[2].kill();
    for node in &nodes[..2] {
        node.wait_state("carol", "suspect").await;
    }
    for node in &nodes[..2] {
        node.wait_state("carol", "gone").await;
    }
    nodes[2].start().await;
    assert_eq!(
        nodes[2].peer_id().await,
        carol_id,
        "peer id changed across restart"
    );
    for node in &nodes {
        node.wait_all_alive(&["alice", "bob", "carol"]).await;
    }
}

#[tokio::test]
async fn a_hung_member_turns_suspect_and_recovers() {
    let nodes = network(&["alice", "bob", "carol"], "s3cret-s3cret-s3cret").await;
    nodes[1].pause();
    for node in [&nodes[0], &nodes[2]] {
        node.wait_state("bob", "suspect").await;
    }
    nodes[1].resume();
    for node in &nodes {
        node.wait_all_alive(&["alice", "bob", "carol"]).await;
    }
}

#[tokio::test]
async fn the_others_keep_working_while_the_genesis_is_down() {
    let mut nodes = network(&["alice", "bob", "carol"], "s3cret-s3cret-s3cret").await;
    nodes[0].kill();
    nodes[1].wait_state("alice", "suspect").await;
    // A newcomer joins through a member while the master is away.
    let mut dave = TestNode::init("dave");
    dave.start().await;
    let (code, body) = dave.join("s3cret-s3cret-s3cret", &nodes[2]).await;
    assert_eq!(code, 200, "{body}");
    for node in [&nodes[1], &nodes[2], &dave] {
        wait_for("bob, carol, dave alive", DEADLINE, || async {
            let states = node.states().await;
            let alive = |n: &str| states.iter().any(|(name, s)| name == n && s == "alive");
            (alive("bob") && alive("carol") && alive("dave")).then_some(())
        })
        .await;
    }
    // The master comes back, keeps its role and learns about dave.
    nodes[0].start().await;
    assert_eq!(nodes[0].status().await["role"], "master");
    nodes[0]
        .wait_all_alive(&["alice", "bob", "carol", "dave"])
        .await;
}

#[tokio::test]
async fn leave_and_shutdown_are_announced_and_only_a_shutdown_rejoins() {
    let mut nodes = network(&["alice", "bob", "carol"], "s3cret-s3cret-s3cret").await;

    let out = nodes[1].cli(&["network", "leave"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    nodes[0].wait_state("bob", "left").await;
    nodes[2].wait_state("bob", "left").await;
    assert_eq!(nodes[1].status().await["network"], Value::Null);

    nodes[2].terminate().await;
    nodes[0].wait_state("carol", "gone").await;

    // carol rejoins by herself; bob, who left, does not.
    nodes[2].start().await;
    nodes[0].wait_state("carol", "alive").await;
    nodes[1].terminate().await;
    nodes[1].start().await;
    assert_eq!(nodes[1].status().await["network"], Value::Null);
    assert_eq!(nodes[0].state_of("bob").await.as_deref(), Some("left"));
}

#[tokio::test]
async fn membership_and_map_survive_a_restart_of_every_node() {
    let mut nodes = network(&["alice", "bob", "carol"], "s3cret-s3cret-s3cret").await;
    let ids: Vec<String> = futures::future::join_all(nodes.iter().map(|n| n.peer_id())).await;
    for node in nodes.iter_mut() {
        node.terminate().await;
    }
    for node in nodes.iter_mut() {
        node.start().await;
    }
    for (node, id) in nodes.iter().zip(&ids) {
        assert_eq!(&node.peer_id().await, id);
        node.wait_all_alive(&["alice", "bob", "carol"]).await;
    }
    assert_eq!(nodes[0].status().await["role"], "master");
}

#[tokio::test]
async fn the_api_wants_a_token_and_answers_errors_in_json() {
    let mut node = TestNode::init("alice");
    node.start().await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", node.api_port);

    for route in ["/v1/status", "/v1/nodes", "/v1/network", "/v1/events"] {
        let response = http.get(url(route)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{route}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
    }
    let response = http
        .get(url("/v1/status"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let post = |path: &str, body: &'static str| {
        http.post(url(path))
            .bearer_auth(node.token())
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (path, body) in [
        ("/v1/network", "{not json"),
        ("/v1/network", r#"{"name": "lab"}"#),
        (
            "/v1/network",
            r#"{"name": "lab", "key": "0123456789abcdef", "extra": 1}"#,
        ),
        (
            "/v1/network/join",
            r#"{"key": "0123456789abcdef", "bootstrap": 7}"#,
        ),
    ] {
        let response = post(path, body).await.unwrap();
        assert_eq!(response.status(), 400, "{path} {body}");
        let json: Value = response.json().await.unwrap();
        assert!(
            json["error"]
                .as_str()
                .unwrap()
                .starts_with("invalid request body"),
            "{json}"
        );
    }
    for (body, needle) in [
        (
            r#"{"name": "lab", "key": "0123456789abcdef", "mode": "star"}"#,
            "master_slave",
        ),
        (
            r#"{"name": "../lab", "key": "0123456789abcdef"}"#,
            "network name",
        ),
        (
            r#"{"name": "lab", "key": ""}"#,
            "shorter than 16 characters",
        ),
        (
            r#"{"name": "lab", "key": "s3cret"}"#,
            "shorter than 16 characters",
        ),
    ] {
        let response = post("/v1/network", body).await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let json: Value = response.json().await.unwrap();
        assert!(json["error"].as_str().unwrap().contains(needle), "{json}");
    }
    let (code, body) = node
        .post(
            "/v1/network/join",
            json!({"key": "0123456789abcdef", "bootstrap": "/ip4/127.0.0.1/tcp/1"}),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("/p2p/"), "{body}");

    let (code, _) = node.get("/v1/nodes").await.unwrap();
    assert_eq!(code, 409, "no network yet");
    let (code, _) = node.get("/v1/network").await.unwrap();
    assert_eq!(code, 404);
    let (code, body) = node.get("/v1/nope").await.unwrap();
    assert_eq!(code, 404);
    assert!(body["error"].is_string());

    // The node is unharmed by all of it.
    node.create_network(KEY).await;
    let (code, _) = node.get("/v1/nodes").await.unwrap();
    assert_eq!(code, 200);
}

#[tokio::test]
async fn events_stream_joins_and_departures_live() {
    let mut alice = TestNode::init("alice");
    alice.start().await;
    alice.create_network("s3cret-s3cret-s3cret").await;

    let mut events = tokio::process::Command::new(IRIS)
        .args(["events", "--json", "--dir", alice.dir_str()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = events.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    // Give the stream a moment to subscribe before anything happens.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut bob = TestNode::init("bob");
    bob.start().await;
    let (code, body) = bob.join("s3cret-s3cret-s3cret", &alice).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = bob.post("/v1/network/leave", json!({})).await;
    assert_eq!(code, 200, "{body}");

    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !(seen.contains(&"joined".to_string()) && seen.contains(&"left".to_string())) {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("events seen so far: {seen:?}"))
            .unwrap()
            .expect("event stream ended");
        let event: Value = serde_json::from_str(&line).unwrap();
        if event["name"] == "bob" {
            seen.push(event["type"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(seen.first().map(String::as_str), Some("joined"), "{seen:?}");
}

#[tokio::test]
async fn init_refuses_to_overwrite_and_a_corrupt_state_is_a_clear_error() {
    let mut node = TestNode::init("alice");
    let out = iris(&["init", "--dir", node.dir_str(), "--name", "alice"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));

    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(node.dir.join("identity.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o077, 0, "identity readable by others");

    // The harness inits with api.port = 0: before the first start the CLI
    // has no port to go to, and says why.
    let out = node.cli(&["status"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("api.port = 0") && stderr.contains("running?"),
        "{stderr}"
    );

    node.start().await;
    node.create_network(KEY).await;
    node.terminate().await;
    std::fs::write(node.dir.join("state.json"), "{ truncated").unwrap();
    let out = std::process::Command::new(IRIS)
        .args(["run", "--dir", node.dir_str()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("state.json") && stderr.contains("corrupt"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn images_in_the_workspace_are_loaded_at_start_and_listed_in_the_map() {
    let worker = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/.build/iris-probe.tar");
    assert!(
        std::path::Path::new(worker).exists(),
        "run docker/build-images.sh first"
    );
    let mut alice = TestNode::init("alice");
    let mut bob = TestNode::init("bob");
    // bob starts with the worker and a corrupt tar in his library.
    std::fs::copy(worker, bob.dir.join("workspace/image/iris-worker.tar")).unwrap();
    std::fs::write(bob.dir.join("workspace/image/broken.tar"), "not a tar").unwrap();
    alice.start().await;
    bob.start().await;
    alice.create_network(KEY).await;
    let (code, body) = bob.join(KEY, &alice).await;
    assert_eq!(code, 200, "{body}");

    wait_for("alice to see bob's worker image", DEADLINE, || async {
        let bob = alice.view_of("bob").await?;
        assert_eq!(bob["executor"]["state"], "available", "{bob}");
        let has = bob["images"]
            .as_array()?
            .iter()
            .any(|i| i["tags"].to_string().contains("iris-probe:latest"));
        has.then_some(())
    })
    .await;
    assert!(
        bob.log().contains("broken.tar"),
        "the corrupt tar is reported"
    );

    // Loading through the API: a bad tar is refused and not kept.
    let bad = alice.dir.join("bad.tar");
    std::fs::write(&bad, "garbage").unwrap();
    let (code, body) = alice.post("/v1/images/load", json!({"path": bad})).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("bad.tar"),
        "{body}"
    );
    assert!(!alice.dir.join("workspace/image/bad.tar").exists());
    let out = alice.cli(&["images", "load", worker]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("loaded iris-probe:latest"));
    assert!(alice.dir.join("workspace/image/iris-probe.tar").exists());
}

#[tokio::test]
async fn init_keeps_external_addresses_and_the_node_announces_them_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("alice");
    let external = "/ip4/203.0.113.7/tcp/7000";
    let mut node = TestNode::init_in_with("alice", &dir, &["--external", external]);
    let config = std::fs::read_to_string(dir.join("iris.toml")).unwrap();
    assert!(config.contains(external), "{config}");
    node.start().await;
    node.create_network(KEY).await;
    let status = node.status().await;
    assert!(
        status["addrs"][0].as_str().unwrap().starts_with(external),
        "{status}"
    );
}

#[tokio::test]
async fn a_healthy_network_warns_of_no_wrong_key() {
    // Listening on every interface, each node announces several addresses
    // that all reach it: peers dial them at once and drop all but one.
    let names = ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"];
    let mut nodes: Vec<TestNode> = names.iter().map(|n| TestNode::init(n)).collect();
    for node in nodes.iter_mut() {
        let path = node.dir.join("iris.toml");
        let config = std::fs::read_to_string(&path)
            .unwrap()
            .replace("listen = \"127.0.0.1\"", "listen = \"0.0.0.0\"");
        std::fs::write(path, config).unwrap();
        node.start().await;
    }
    nodes[0].create_network(KEY).await;
    for i in 1..nodes.len() {
        let (code, body) = nodes[i].join(KEY, &nodes[i - 1]).await;
        assert_eq!(code, 200, "{} join: {body}", nodes[i].name);
    }
    for node in &nodes {
        node.wait_all_alive(&names).await;
    }
    // Redials run every 2 s: give every pair a few chances to dial at once.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for node in &nodes {
        let log = node.log();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("wrong network key"))
            .collect();
        assert!(warnings.is_empty(), "{}: {warnings:#?}", node.name);
    }
}

#[tokio::test]
async fn create_without_a_key_generates_one_shown_once_and_a_short_key_is_refused() {
    let mut alice = TestNode::init("alice");
    let mut bob = TestNode::init("bob");
    alice.start().await;
    bob.start().await;
    let out = bob.cli(&["network", "create", "--name", "lab", "--key", "s3cret"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("shorter than 16 characters"), "{stderr}");

    let out = alice.cli(&["network", "create", "--name", "lab"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    let key = stdout
        .lines()
        .find(|l| l.len() == 64 && l.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no generated key in: {stdout}"))
        .to_string();
    // Shown once: nowhere in the node's files or logs.
    for file in ["state.json", "network.psk", "iris.toml", "node.log"] {
        let content = std::fs::read(alice.dir.join(file)).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&content).contains(&key),
            "the key is in {file}"
        );
    }
    let (code, body) = bob.join(&key, &alice).await;
    assert_eq!(code, 200, "{body}");
    alice.wait_all_alive(&["alice", "bob"]).await;
}
