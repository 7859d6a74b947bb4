//! Attacks on the relay a master serves to members that cannot be dialed
//! (behind NAT): rogue peers (tests/common/rogue.rs) with the network key
//! against real `iris` processes. docs/site-it.md states the limits.

mod common;

use std::time::Duration;

use common::{rogue::RoguePeer, *};
use iris_behaviours::relay::{CIRCUIT_BURST, MAX_CIRCUITS_PER_MEMBER};

/// `from` opens `count` circuits to `target` through `relay` while
/// `target` takes them: how many were made, and why one was not.
async fn circuits(
    from: &mut RoguePeer,
    relay: &str,
    target: &mut RoguePeer,
    count: usize,
) -> (usize, Option<String>) {
    let target_id = target.peer_id;
    tokio::select! {
        outcome = from.open_circuits(relay, target_id, count) => outcome,
        () = target.idle(Duration::from_secs(300)) => panic!("the circuits did not end"),
    }
}

/// A key holder that never joined, or that left, asks the master's relay
/// for a place (to be reached through it) and for circuits to a member
/// that holds one. Before the gate, libp2p's relay served any peer that
/// could connect: anyone with the key. Now it serves current members only.
#[tokio::test]
async fn a_key_holder_that_is_no_member_gets_no_place_and_no_circuit() {
    let nodes = network(&["alice"], KEY).await;
    let relay = nodes[0].bootstrap().await;
    let mut target = RoguePeer::join(KEY, &relay, "trent").await;
    target.reserve(&relay).await.expect("a member gets a place");

    let mut stranger = RoguePeer::stranger(KEY, &relay, "mallory").await;
    let refused = stranger.reserve(&relay).await;
    assert!(refused.is_err(), "a stranger got a place: {refused:?}");
    let (made, why) = circuits(&mut stranger, &relay, &mut target, 1).await;
    assert_eq!(made, 0, "a stranger got a circuit to a member");
    assert!(why.is_some());

    // A member is served; once it left, it is not.
    let mut member = RoguePeer::join(KEY, &relay, "trudy").await;
    member.reserve(&relay).await.expect("a member gets a place");
    let (made, why) = circuits(&mut member, &relay, &mut target, 1).await;
    assert_eq!(made, 1, "a member was refused a circuit: {why:?}");
    let left = iris_behaviours::Leave {
        departure: iris_behaviours::Departure::Leave,
    };
    let master = member.network.master;
    assert!(matches!(member.ask(master, left).await, Ok(Ok(_))));
    nodes[0].wait_state("trudy", "left").await;
    let (made, _) = circuits(&mut member, &relay, &mut target, 1).await;
    assert_eq!(made, 0, "a member that left got a circuit");
}

/// A member opens circuits as fast as it can. The relay lets it have its
/// share (a burst of [`CIRCUIT_BURST`], at most [`MAX_CIRCUITS_PER_MEMBER`]
/// at once) and refuses the rest, and another member still gets its
/// circuit. Before the per-member rate, every circuit of the flood was
/// made, up to the relay's total.
#[tokio::test]
async fn a_member_that_floods_circuits_is_refused_past_its_share_and_others_are_served() {
    let nodes = network(&["alice"], KEY).await;
    let relay = nodes[0].bootstrap().await;
    let mut target = RoguePeer::join(KEY, &relay, "trent").await;
    target.reserve(&relay).await.expect("a member gets a place");
    let mut flooder = RoguePeer::join(KEY, &relay, "mallory").await;
    let mut other = RoguePeer::join(KEY, &relay, "peggy").await;

    // In waves: libp2p itself drops requests past a few at once on one
    // connection, and a flooder that waits a moment gets past that.
    let (flood, wave) = (3 * CIRCUIT_BURST as usize, 8);
    let target_id = target.peer_id;
    let waves = async {
        let (mut made, mut refused) = (0, None);
        for _ in 0..flood / wave {
            let (m, r) = flooder.open_circuits(&relay, target_id, wave).await;
            made += m;
            refused = refused.or(r);
        }
        (made, refused)
    };
    let (made, refused) = tokio::select! {
        outcome = waves => outcome,
        () = target.idle(Duration::from_secs(300)) => panic!("the flood did not end"),
    };
    let share = MAX_CIRCUITS_PER_MEMBER.max(CIRCUIT_BURST as usize) + 2;
    assert!(
        made <= share,
        "the flooder made {made} circuits of {flood}, over its share of {share}"
    );
    assert!(made > 0, "the flooder's first circuits are served");
    assert!(refused.is_some(), "the relay refused nothing");

    let (served, why) = circuits(&mut other, &relay, &mut target, 1).await;
    assert_eq!(served, 1, "another member was refused: {why:?}");
    let log = nodes[0].log();
    assert!(
        log.contains("a circuit to"),
        "the master logged no refusal: {log}"
    );
}
