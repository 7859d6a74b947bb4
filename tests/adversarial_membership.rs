//! Attacks on membership by a member that has the network key: a rogue
//! peer (tests/common/rogue.rs) against real `iris` processes. Each test is
//! an attack that worked on the code before its defence. The attacks on
//! data (files, jobs, images) are in tests/adversarial.rs.

mod common;

use std::time::{Duration, Instant};

use common::{
    rogue::{version_on_disk, RoguePeer},
    *,
};
use iris_behaviours::{
    DescribeFile, Hello, Leave, ListFiles, Refusal, RefusalKind, Removals, Welcome,
};

/// A key holder that left keeps asking. Before: every node served its
/// `public/` to any peer that had the key, member or not. Now a peer that
/// left (or never joined) is refused before its request is looked at.
#[tokio::test]
async fn a_key_holder_that_left_is_served_nothing() {
    let nodes = network(&["alice"], KEY).await;
    let alice = &nodes[0];
    std::fs::write(alice.dir.join("workspace/public/shared.txt"), "for members").unwrap();
    let mut rogue = RoguePeer::join(KEY, &alice.bootstrap().await, "mallory").await;
    let master = rogue.network.master;
    let listed = rogue.call(master, ListFiles).await;
    assert!(
        matches!(&listed, Ok(Ok(entries)) if entries.len() == 1),
        "a member is served: {listed:?}"
    );
    let shared = alice.dir.join("workspace/public/shared.txt");
    let version = version_on_disk(&shared).unwrap();
    let chunk = rogue.chunk(master, "public/shared.txt", version, 0).await;
    assert_eq!(
        chunk.as_deref(),
        Ok(&b"for members"[..]),
        "a member gets chunks"
    );
    let left = Leave {
        departure: iris_behaviours::Departure::Leave,
    };
    assert!(matches!(rogue.ask(master, left).await, Ok(Ok(_))));
    alice.wait_state("mallory", "left").await;
    let forbidden = |answer: &Result<Refusal, String>| {
        matches!(
            answer,
            Ok(Refusal {
                kind: RefusalKind::Forbidden,
                ..
            })
        )
    };
    let listed = rogue.call(master, ListFiles).await.map(Result::unwrap_err);
    assert!(
        forbidden(&listed),
        "a peer that left was answered: {listed:?}"
    );
    let describe = DescribeFile {
        path: "public/shared.txt".into(),
    };
    let described = rogue.call(master, describe).await.map(Result::unwrap_err);
    assert!(
        forbidden(&described),
        "a peer that left was answered: {described:?}"
    );
    let chunk = rogue.chunk(master, "public/shared.txt", version, 0).await;
    assert!(chunk.is_err(), "a peer that left got a chunk: {chunk:?}");
}

/// The peer id that `node` sees under `name`, if any.
async fn peer_of(node: &TestNode, name: &str) -> Option<String> {
    let view = node.view_of(name).await?;
    view["peer_id"].as_str().map(str::to_string)
}

/// A new node joins under the name of one that is gone. Before: after 10 s
/// of silence the name was free, and `--on carol` reached the impostor.
/// Now a name stays its node's until the master removes that node; after
/// `iris network remove`, the name is free and every member refuses the
/// removed node, even when it comes back with its old identity.
#[tokio::test]
async fn a_gone_nodes_name_cannot_be_taken_until_the_master_removes_it() {
    let mut nodes = network(&["alice", "bob", "carol"], KEY).await;
    let carol_peer = nodes[2].peer_id().await;
    nodes[2].kill();
    nodes[0].wait_state("carol", "suspect").await;
    wait_for(
        "alice to see carol gone",
        Duration::from_secs(60),
        || async { (nodes[0].state_of("carol").await.as_deref() == Some("gone")).then_some(()) },
    )
    .await;

    let mut impostor = TestNode::init("carol");
    impostor.start().await;
    let (code, body) = impostor.join(KEY, &nodes[0]).await;
    assert_eq!(code, 409, "the impostor took carol's name: {body}");
    assert!(
        body["error"].as_str().unwrap().contains("already taken"),
        "{body}"
    );
    assert_eq!(peer_of(&nodes[0], "carol").await, Some(carol_peer.clone()));

    // Only the master removes.
    let out = nodes[1].cli(&["network", "remove", "carol"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only the network's master"));
    let out = nodes[0].cli(&["network", "remove", "carol"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in &nodes[..2] {
        wait_for("carol's entry to be pruned", DEADLINE, || async {
            peer_of(node, "carol").await.is_none().then_some(())
        })
        .await;
    }

    // The name is free now...
    let (code, body) = impostor.join(KEY, &nodes[1]).await;
    assert_eq!(code, 200, "{body}");
    let new_peer = impostor.peer_id().await;
    // ...and the removed carol, back with her old identity, is refused.
    nodes[2].start().await;
    let turned_away = |node: &TestNode| {
        node.log()
            .contains("closed a connection from a removed node")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !turned_away(&nodes[0]) && !turned_away(&nodes[1]) {
        assert!(
            Instant::now() < deadline,
            "no member turned the removed node away within 60 s; its log:\n{}",
            nodes[2].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for node in &nodes[..2] {
        assert_eq!(
            peer_of(node, "carol").await,
            Some(new_peer.clone()),
            "{}",
            node.name
        );
        let (_, all) = node.get("/v1/nodes").await.unwrap();
        assert!(
            !all.to_string().contains(&carol_peer),
            "{} lists the removed node",
            node.name
        );
    }
}

/// Asks `node` to join through `bootstrap` (a ticket or an address) while
/// the rogue answers the join with `welcome`.
async fn join_through_rogue(
    node: &TestNode,
    rogue: &mut RoguePeer,
    bootstrap: &str,
    welcome: Welcome,
) -> (u16, serde_json::Value) {
    let body = serde_json::json!({"key": KEY, "bootstrap": bootstrap});
    let (answer, ()) = tokio::join!(
        node.post("/v1/network/join", body),
        rogue.welcome_one(welcome, Duration::from_secs(30))
    );
    answer
}

/// A member that a newcomer joins through lists an honest member as
/// removed by the master. Before: the joiner took the list as it came, and
/// refused that member for good (its connections closed, its record never
/// taken). Now a list counts only as the master signed it: a forged one
/// fails the join, and says why.
#[tokio::test]
async fn a_bootstrap_cannot_make_a_newcomer_refuse_a_member() {
    let nodes = network(&["alice", "bob"], KEY).await;
    let (alice, bob) = (&nodes[0], &nodes[1]);
    let (_, status) = alice.get("/v1/network").await.unwrap();
    let genuine: iris_behaviours::NetworkConfig = serde_json::from_value(status).unwrap();
    let mut rogue = RoguePeer::join(KEY, &alice.bootstrap().await, "mallory").await;
    let ticket = format!("iris:{}@{}", genuine.id(), rogue.address);
    let bob_id: iris_behaviours::libp2p::PeerId = bob.peer_id().await.parse().unwrap();
    let mut dave = TestNode::init("dave");
    dave.start().await;
    let unsigned = Removals {
        peers: vec![bob_id],
        ..Removals::default()
    };
    // Unsigned, and signed by the rogue itself: neither is the master's.
    for (removed, why) in [
        (unsigned, "not signed"),
        (Removals::sign(vec![bob_id], 1, &rogue.keypair), "signature"),
    ] {
        let forged = Welcome {
            config: genuine.clone(),
            map: rogue.map.clone(),
            removed,
        };
        let (code, body) = join_through_rogue(&dave, &mut rogue, &ticket, forged).await;
        assert_ne!(code, 200, "dave took a forged removal: {body}");
        assert!(body.to_string().contains(why), "{body}");
    }
    // Through an honest member, dave joins and sees bob.
    let (code, body) = dave.join(KEY, bob).await;
    assert_eq!(code, 200, "{body}");
    dave.wait_state("bob", "alive").await;
}

/// A member that a newcomer joins through says that it is the master, or
/// hands out a forged record of another member. Before: the joiner took
/// the bootstrap's config and map as they came, so any key holder used as a
/// bootstrap could make itself the newcomer's master. Now the config must
/// be signed by the master it names, a join ticket pins which config that
/// is, and a record counts only as its own node signed it.
#[tokio::test]
async fn a_bootstrap_cannot_make_itself_master_or_forge_records() {
    let nodes = network(&["alice"], KEY).await;
    let alice = &nodes[0];
    let (_, status) = alice.get("/v1/network").await.unwrap();
    let genuine: iris_behaviours::NetworkConfig = serde_json::from_value(status).unwrap();
    let ticket_id = genuine.id();
    let mut rogue = RoguePeer::join(KEY, &alice.bootstrap().await, "mallory").await;
    let map = rogue.map.clone();
    let welcome =
        |config: iris_behaviours::NetworkConfig, map: Vec<iris_behaviours::MapEntry>| Welcome {
            config,
            map,
            removed: Removals::default(),
        };
    let mut rogue_record = rogue.record.clone();
    rogue_record.role = iris_behaviours::Role::Master;
    rogue_record.sign(&rogue.keypair, 2);
    let rogue_entry = iris_behaviours::MapEntry {
        record: rogue_record,
        state: iris_behaviours::Liveness::Alive,
        last_seen_ms: 0,
    };

    // 1. The genuine config with the master changed, not re-signed.
    let mut usurped = genuine.clone();
    usurped.master = rogue.peer_id;
    let mut dave = TestNode::init("dave");
    dave.start().await;
    let address = rogue.address.clone();
    let (code, body) = join_through_rogue(
        &dave,
        &mut rogue,
        &address,
        welcome(usurped.clone(), vec![rogue_entry.clone()]),
    )
    .await;
    assert_ne!(code, 200, "dave took the rogue for master: {body}");
    assert!(body.to_string().contains("signature"), "{body}");

    // 2. A config the rogue signed itself, naming itself master: with the
    // ticket's network id, refused.
    usurped.sign(&rogue.keypair);
    let ticket = format!("iris:{ticket_id}@{address}");
    let (code, body) = join_through_rogue(
        &dave,
        &mut rogue,
        &ticket,
        welcome(usurped.clone(), vec![rogue_entry.clone()]),
    )
    .await;
    assert_ne!(code, 200, "dave took the rogue for master: {body}");
    assert!(body.to_string().contains("ticket"), "{body}");

    // 3. The genuine config, with alice's record forged to the rogue's
    // address: the forged record is dropped, and with it the master.
    let mut forged = map.clone();
    for entry in &mut forged {
        if entry.record.peer_id == genuine.master {
            entry.record.addrs = rogue_entry.record.addrs.clone();
        }
    }
    let (code, body) =
        join_through_rogue(&dave, &mut rogue, &ticket, welcome(genuine.clone(), forged)).await;
    assert_ne!(code, 200, "dave took a forged record: {body}");
    assert!(body.to_string().contains("no master"), "{body}");

    // The honest way still works: alice's own ticket.
    let ticket = format!("iris:{ticket_id}@{}", alice.bootstrap().await);
    let (code, body) = dave
        .post(
            "/v1/network/join",
            serde_json::json!({"key": KEY, "bootstrap": ticket}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["network"]["master"], genuine.master.to_string());
    assert_eq!(body["master_on_trust"], false);
}

/// A member opens connection after connection to one node. Before: the
/// node took every one (each with its own yamux and buffers). Now at most
/// `MAX_CONNECTIONS_PER_PEER` (4) stand per peer; the rest are refused, and
/// the refusal is logged.
#[tokio::test]
async fn a_flood_of_connections_from_one_peer_is_refused() {
    let nodes = network(&["alice"], KEY).await;
    let alice = &nodes[0];
    let mut rogue = RoguePeer::join(KEY, &alice.bootstrap().await, "mallory").await;
    let open = rogue.flood_connections(&alice.bootstrap().await, 20).await;
    // The join's own connection, plus the flood's.
    let most = iris_behaviours::behaviour::MAX_CONNECTIONS_PER_PEER as usize;
    assert!(
        open <= most,
        "alice let {open} connections from one peer stand"
    );
    wait_for("alice to log the refusal", DEADLINE, || async {
        alice
            .log()
            .contains("refused an incoming connection")
            .then_some(())
    })
    .await;
    alice.status().await;
}

/// A member sends a record that would grow every map: thousands of image
/// tags and a huge executor reason, signed and all. Before: a record's
/// images and reasons had no bound but the frame. Now it is refused, and
/// the member's entry stays as it was.
#[tokio::test]
async fn an_oversized_record_is_refused_and_changes_nothing() {
    let nodes = network(&["alice"], KEY).await;
    let alice = &nodes[0];
    let mut rogue = RoguePeer::join(KEY, &alice.bootstrap().await, "mallory").await;
    let master = rogue.network.master;
    let mut big = rogue.record.clone();
    big.version += 1;
    big.images = vec![iris_behaviours::ImageRef {
        id: "sha256:x".into(),
        tags: (0..1000).map(|i| format!("t{i}:latest")).collect(),
    }];
    big.executor = iris_behaviours::ExecutorState::Unavailable("x".repeat(20_000));
    big.sign(&rogue.keypair, 10);
    let hello = Hello {
        record: big,
        seen_as: None,
    };
    let answer = rogue.ask(master, hello).await;
    assert!(
        matches!(
            &answer,
            Ok(Err(Refusal {
                kind: RefusalKind::Invalid,
                ..
            }))
        ),
        "{answer:?}"
    );
    let mallory = alice.view_of("mallory").await.unwrap();
    assert_eq!(mallory["version"], 1, "{mallory}");
}

/// A member lies on gossip that bob does not answer. Before (without the
/// refutation) every node took the lie, and those that do not watch bob
/// themselves kept him suspect, then gone, out of every job. Now bob hears
/// the lie and announces a newer record, which every node takes over it.
#[tokio::test]
async fn a_false_suspicion_is_refuted_by_its_target() {
    // More nodes than a neighbourhood, so some never probe bob themselves.
    let names: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let nodes = network(&names, KEY).await;
    let bob = &nodes[1];
    let mut rogue = RoguePeer::join(KEY, &nodes[0].bootstrap().await, "mallory").await;
    // It makes itself known to all (a member, if a silent one).
    let mut record = rogue.record.clone();
    record.sign(&rogue.keypair, iris::now_ms());
    rogue
        .publish(&iris_behaviours::MapMessage::Announce { record })
        .await;
    for node in &nodes {
        wait_for("every node to know mallory", DEADLINE, || async {
            node.state_of("mallory").await
        })
        .await;
    }
    // An observer that holds no connection to bob: only bob's own word
    // can undo the lie there.
    let observer = wait_for("a node not connected to bob", DEADLINE, || async {
        for node in nodes.iter().skip(2) {
            let view = node.view_of(&bob.name).await?;
            if view["connected"] == false {
                return Some(node);
            }
        }
        None
    })
    .await;
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    observer.forward_events(tx).await;

    // The strongest lie: it names a copy of bob's record newer than any
    // (a version no one holds yet), signed now.
    let version = observer.view_of(&bob.name).await.unwrap()["version"]
        .as_u64()
        .unwrap();
    let bob_id = bob.peer_id().await.parse().unwrap();
    let lie = iris_behaviours::MapMessage::Suspect {
        peer: bob_id,
        version: version + 1,
        signed_at_ms: iris::now_ms(),
    };
    rogue.publish(&lie).await;

    // Bob's answer names a newer copy still, so it undoes the lie whichever
    // reaches the observer first (before, a lie that came after the
    // refutation stood), before gone_after (4 s).
    let refuted = |view: Option<serde_json::Value>| {
        view.filter(|v| v["state"] == "alive" && v["version"].as_u64() > Some(version))
    };
    let undone = wait_for(
        "bob's refutation at the observer",
        Duration::from_secs(3),
        || async { refuted(observer.view_of(&bob.name).await) },
    );
    let suspected = async {
        while let Some((_, event)) = events.recv().await {
            if event["name"] == bob.name.as_str() && event["type"] == "suspect" {
                return;
            }
        }
    };
    tokio::select! {
        _ = undone => {}
        _ = suspected => {
            wait_for("bob's refutation after the lie", Duration::from_secs(3), || async {
                refuted(observer.view_of(&bob.name).await)
            })
            .await;
        }
    }

    // A lie naming a copy from the future (no refutation could beat it) is
    // not believed at all.
    let from_the_future = iris_behaviours::MapMessage::Suspect {
        peer: bob_id,
        version: version + 1,
        signed_at_ms: u64::MAX,
    };
    rogue.publish(&from_the_future).await;
    wait_for("the observer to ignore the lie", DEADLINE, || async {
        observer
            .log()
            .contains("ignored a suspicion naming a copy from the future")
            .then_some(())
    })
    .await;
    assert_eq!(observer.state_of(&bob.name).await.as_deref(), Some("alive"));
}
