//! The members' rules, without a network: what this node makes of
//! records, suspicions, removals and membership requests.

use std::time::{Duration, Instant};

use iris_behaviours::{
    libp2p::identity::Keypair, Asks, Hello, Join, MapMessage, MembershipRequest, NetworkConfig,
    NetworkMode, NodeRecord, Probe, RefusalKind, Removals, Role,
};

use super::{Effect, Members, Reply};
use crate::events::EventKind;

/// A record of `keypair`'s node, signed by it.
fn record(name: &str, keypair: &Keypair, role: Role) -> NodeRecord {
    let mut record = crate::network::map::tests::record(name, keypair.public().to_peer_id(), role);
    record.sign(keypair, crate::now_ms());
    record
}

/// Alice's members (she is the master), and the keys of alice and bob.
fn alice() -> (Members, Keypair, Keypair) {
    let (alice, bob) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let network = NetworkConfig {
        name: "lab".into(),
        mode: NetworkMode::MasterSlave,
        master: alice.public().to_peer_id(),
        created_at_ms: 0,
        signature: vec![],
    };
    let own = record("alice", &alice, Role::Master);
    (Members::new(network, own, alice.clone()), alice, bob)
}

/// Alice's members with bob joined.
fn with_bob() -> (Members, Keypair, Keypair) {
    let (mut members, alice, bob) = alice();
    let join = Join {
        record: record("bob", &bob, Role::Slave),
    };
    let (reply, effects) = members.on_request(bob.public().to_peer_id(), join.into_request());
    assert!(matches!(reply, Reply::Now(frame) if frame.refusal().is_none()));
    assert!(matches!(
        effects[..],
        [Effect::Changed(EventKind::Joined { .. })]
    ));
    (members, alice, bob)
}

fn refusal(reply: Reply) -> RefusalKind {
    match reply {
        Reply::Now(frame) => frame.refusal().expect("a refusal").kind,
        Reply::ProbeFor(_) => panic!("a probe instead of a refusal"),
    }
}

#[test]
fn a_record_sent_for_another_node_is_refused() {
    let (mut members, _, bob) = alice();
    let carol = Keypair::generate_ed25519();
    let join = Join {
        record: record("carol", &carol, Role::Slave),
    };
    let (reply, effects) = members.on_request(bob.public().to_peer_id(), join.into_request());
    assert_eq!(refusal(reply), RefusalKind::Invalid);
    assert!(effects.is_empty());
    assert!(!members.is_current_member(&carol.public().to_peer_id()));
}

#[test]
fn only_members_may_ask_for_probes() {
    let (mut members, _, bob) = alice();
    let request = MembershipRequest::Probe(Probe);
    let (reply, _) = members.on_request(bob.public().to_peer_id(), request.clone());
    assert_eq!(refusal(reply), RefusalKind::Forbidden);
    let (mut members, _, bob) = with_bob();
    let (reply, _) = members.on_request(bob.public().to_peer_id(), request);
    assert!(matches!(reply, Reply::Now(frame) if frame.refusal().is_none()));
}

#[test]
fn a_hello_keeps_the_connection_in_use_and_answers_with_our_record() {
    let (mut members, alice, bob) = with_bob();
    let mut newer = record("bob", &bob, Role::Slave);
    newer.version = 2;
    newer.sign(&bob, crate::now_ms());
    let hello = Hello {
        record: newer,
        seen_as: None,
    };
    let bob_id = bob.public().to_peer_id();
    let (reply, effects) = members.on_request(bob_id, hello.into_request());
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::InUse(p) if *p == bob_id)));
    let Reply::Now(frame) = reply else {
        panic!("no answer")
    };
    let Ok(Ok(Hello { record, .. })) = Hello::open(&frame) else {
        panic!("not a hello")
    };
    assert_eq!(record.peer_id, alice.public().to_peer_id());
}

#[test]
fn a_suspicion_of_this_node_is_refuted_with_a_newer_copy() {
    let (mut members, alice, bob) = with_bob();
    let own = alice.public().to_peer_id();
    let named = (members.own.version + 5, crate::now_ms() + 1_000);
    let effects = members.on_suspicion(bob.public().to_peer_id(), own, named, Instant::now());
    assert!(matches!(effects[..], [Effect::Refuted, Effect::Announce]));
    let MapMessage::Announce { record } = members.announcement() else {
        panic!("not an announcement")
    };
    assert!(
        (record.version, record.signed_at_ms) > named,
        "the refutation is newer than the copy the suspicion names"
    );
    record.verify().expect("signed by this node");
}

#[test]
fn suspicions_from_strangers_or_from_the_future_are_ignored() {
    let (mut members, alice, bob) = with_bob();
    let (own, bob_id) = (alice.public().to_peer_id(), bob.public().to_peer_id());
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    let now = Instant::now();
    assert!(members
        .on_suspicion(stranger, bob_id, (1, 0), now)
        .is_empty());
    let future = crate::now_ms() + Duration::from_secs(3600).as_millis() as u64;
    assert!(members
        .on_suspicion(bob_id, own, (future, 0), now)
        .is_empty());
}

#[test]
fn our_own_suspicion_is_published_naming_the_copy_we_hold() {
    let (mut members, _, bob) = with_bob();
    let bob_id = bob.public().to_peer_id();
    let held = members.map.stamp(&bob_id).unwrap();
    let effects = members.suspect(bob_id, "did not answer", Instant::now());
    let named = effects.iter().find_map(|e| match e {
        Effect::Publish(MapMessage::Suspect {
            peer,
            version,
            signed_at_ms,
        }) => Some((*peer, (*version, *signed_at_ms))),
        _ => None,
    });
    assert_eq!(named, Some((bob_id, held)));
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Changed(EventKind::Suspect { .. }))));
}

#[test]
fn only_the_master_removes_nodes_and_only_its_signed_list_counts() {
    let (mut members, alice, bob) = with_bob();
    let bob_id = bob.public().to_peer_id();
    let carol = Keypair::generate_ed25519();
    let carol_id = carol.public().to_peer_id();
    // A list no master signed, or another node signed, removes no one,
    // whoever sends it.
    for removals in [
        Removals {
            peers: vec![bob_id],
            ..Removals::default()
        },
        Removals::sign(vec![bob_id], 1, &carol),
    ] {
        let removal = MapMessage::Removed { removals };
        assert!(members.on_map_message(carol_id, removal.clone()).is_empty());
        let master = alice.public().to_peer_id();
        assert!(members.on_map_message(master, removal).is_empty());
        assert!(members.is_current_member(&bob_id));
    }
    // The master removes bob: it signs the list, and tells everyone.
    let effects = members.remove_as_master(bob_id);
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Disconnect(p) if *p == bob_id)));
    assert!(!members.is_current_member(&bob_id));
    let Some(MapMessage::Removed { removals }) = members.removal_notice() else {
        panic!("no removal notice");
    };
    assert_eq!(removals.peers, vec![bob_id]);
    removals.verify(&alice.public().to_peer_id()).unwrap();
}

#[test]
fn the_membership_is_saved_only_when_it_changed() {
    let (mut members, _, bob) = with_bob();
    assert!(members.changes_to_save(false).is_some());
    assert!(
        members.changes_to_save(false).is_none(),
        "nothing changed since"
    );
    assert!(
        members.changes_to_save(true).is_some(),
        "a shutdown saves anyway"
    );
    members.departed(
        &bob.public().to_peer_id(),
        iris_behaviours::Departure::Leave,
    );
    let saved = members.changes_to_save(false).expect("a leave is a change");
    assert_eq!(saved.map.len(), 2);
}

#[test]
fn a_changed_record_is_a_new_version_and_announced() {
    let (mut members, _, _) = alice();
    let before = members.own.version;
    let effects = members.change_own(|own| own.tags.push("gpu".into()));
    assert!(matches!(effects[..], [Effect::Announce]));
    assert!(members.own.version > before);
}
