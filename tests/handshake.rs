//! The handshake against peers of another protocol version, on real
//! sockets: a node says which version it speaks before anything secret is
//! used, and a mismatch is reported naming both versions, not blamed on
//! the key.

mod common;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    time::Duration,
};

use common::*;
use iris_behaviours::{libp2p::identity::Keypair, PROTOCOL_VERSION};

/// What a node of protocol `version` says first.
fn preamble(version: u32) -> [u8; 8] {
    let mut bytes = *b"iris\0\0\0\0";
    bytes[4..].copy_from_slice(&version.to_be_bytes());
    bytes
}

#[tokio::test]
async fn a_member_names_both_versions_when_a_node_of_another_release_calls() {
    let nodes = network(&["alice"], KEY).await;
    let alice = &nodes[0];
    let port = alice.bootstrap().await;
    let port = port
        .split("/tcp/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let mut socket = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket.write_all(&preamble(PROTOCOL_VERSION + 1)).unwrap();
    let mut heard = [0u8; 8];
    socket.read_exact(&mut heard).unwrap();
    assert_eq!(
        heard,
        preamble(PROTOCOL_VERSION),
        "alice said her version first"
    );
    let expected = format!(
        "the peer speaks Iris protocol {}, this node protocol {PROTOCOL_VERSION}",
        PROTOCOL_VERSION + 1
    );
    wait_for("alice to log the other version", DEADLINE, || async {
        alice.log().contains(&expected).then_some(())
    })
    .await;
    assert!(
        !alice.log().contains("wrong network key"),
        "blamed on the key"
    );
}

#[tokio::test]
async fn joining_a_node_of_another_release_fails_naming_both_versions() {
    // A listener that speaks like a node of the next protocol version.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let newer = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        socket.write_all(&preamble(PROTOCOL_VERSION + 1)).unwrap();
        let mut heard = [0u8; 8];
        let _ = socket.read_exact(&mut heard);
        heard
    });
    let mut joiner = TestNode::init("joiner");
    joiner.start().await;
    let peer = Keypair::generate_ed25519().public().to_peer_id();
    let (code, body) = joiner
        .post(
            "/v1/network/join",
            serde_json::json!({
                "key": KEY,
                "bootstrap": format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}"),
            }),
        )
        .await;
    assert_eq!(code, 502, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("Iris protocol {}", PROTOCOL_VERSION + 1))
            && error.contains(&format!("this node protocol {PROTOCOL_VERSION}")),
        "{error}"
    );
    assert!(!error.contains("wrong network key"), "{error}");
    assert_eq!(newer.join().unwrap(), preamble(PROTOCOL_VERSION));
}
