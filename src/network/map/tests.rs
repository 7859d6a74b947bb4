//! The map's state machine, without a network.

use super::*;
use iris_behaviours::{libp2p::identity::Keypair, NetworkMode};

/// An unsigned record of the plainest node; the event loop's tests sign it.
pub(crate) fn record(name: &str, peer_id: PeerId, role: Role) -> NodeRecord {
    NodeRecord {
        name: name.into(),
        peer_id,
        addrs: vec![],
        api_port: 1,
        p2p_port: 2,
        role,
        relay: false,
        tags: vec![],
        executor: Default::default(),
        images: vec![],
        version: 1,
        audit: None,
        signed_at_ms: 0,
        signature: vec![],
        datasets: Vec::new(),
    }
}

fn peer() -> PeerId {
    Keypair::generate_ed25519().public().to_peer_id()
}

fn setup() -> (NetworkMap, PeerId, Instant) {
    let master = peer();
    let config = NetworkConfig {
        name: "lab".into(),
        mode: NetworkMode::MasterSlave,
        master,
        created_at_ms: 0,
        signature: vec![],
    };
    let now = Instant::now();
    (
        NetworkMap::new(&config, record("alice", master, Role::Master)),
        master,
        now,
    )
}

const GONE: Duration = Duration::from_secs(10);

#[test]
fn alive_suspect_gone_and_back() {
    let (mut map, _, t0) = setup();
    let bob = peer();
    let joined = map.merge(record("bob", bob, Role::Slave)).unwrap();
    assert!(matches!(joined, Some(EventKind::Joined { .. })));
    assert!(
        map.tick(t0 + Duration::from_secs(60), GONE).is_empty(),
        "silence alone suspects no one: watchers do"
    );
    let event = map.suspect_observed(&bob, t0, "did not answer a probe");
    assert!(
        matches!(event, Some(EventKind::Suspect { .. })),
        "{event:?}"
    );
    assert!(map
        .tick(t0 + GONE - Duration::from_millis(1), GONE)
        .is_empty());
    let events = map.tick(t0 + GONE, GONE);
    assert!(matches!(events[..], [EventKind::Gone { .. }]), "{events:?}");
    assert_eq!(map.get(&bob).unwrap().state, Liveness::Gone);
    assert_eq!(map.gone(), [bob]);

    let back = map.heard_from(&bob);
    assert!(matches!(back, Some(EventKind::Alive { .. })));
    assert_eq!(map.get(&bob).unwrap().state, Liveness::Alive);
}

/// SWIM's rule: a suspicion names the copy of the record it is about, and
/// only a newer copy, which only the suspect can sign, refutes it.
#[test]
fn a_reported_suspicion_holds_until_a_newer_record_refutes_it() {
    let (mut map, master, t0) = setup();
    let bob = peer();
    let mut r = record("bob", bob, Role::Slave);
    r.signed_at_ms = 10;
    map.merge(r.clone()).unwrap();
    assert!(
        map.suspect_reported(&bob, (1, 9), t0, "x").is_none(),
        "a suspicion of an older copy is stale"
    );
    assert!(matches!(
        map.suspect_reported(&bob, (1, 10), t0, "suspected by carol"),
        Some(EventKind::Suspect { .. })
    ));
    assert!(
        map.suspect_reported(&bob, (1, 10), t0, "x").is_none(),
        "twice"
    );
    assert!(
        map.suspect_observed(&master, t0, "x").is_none(),
        "we never suspect ourselves"
    );
    r.signed_at_ms = 11;
    assert!(matches!(map.merge(r), Ok(Some(EventKind::Alive { .. }))));
    assert!(map.suspect_reported(&bob, (1, 10), t0, "x").is_none());
    let watched: Vec<PeerId> = map.watched().collect();
    assert!(watched.contains(&bob) && watched.contains(&master));
}

/// A node that left kept its connection open and answers pings. Before:
/// the first ping made it alive again, and it was served as a member.
#[test]
fn a_node_that_left_is_not_brought_back_by_a_ping_but_by_a_new_record() {
    let (mut map, _, _) = setup();
    let bob = peer();
    let mut bobs = record("bob", bob, Role::Slave);
    map.merge(bobs.clone()).unwrap();
    map.departed(&bob, Departure::Leave);
    assert_eq!(map.heard_from(&bob), None);
    assert_eq!(map.get(&bob).unwrap().state, Liveness::Left);
    // It joins again: its new record is a member's.
    bobs.version += 1;
    let back = map.merge(bobs).unwrap();
    assert!(matches!(back, Some(EventKind::Alive { .. })), "{back:?}");
}

#[test]
fn duplicate_names_and_false_roles_are_refused() {
    let (mut map, _, _) = setup();
    let err = map.merge(record("alice", peer(), Role::Slave)).unwrap_err();
    assert!(err.contains("already taken"), "{err}");
    let err = map
        .merge(record("mallory", peer(), Role::Master))
        .unwrap_err();
    assert!(err.contains("claims role master"), "{err}");
}

#[test]
fn a_shutdown_is_gone_and_a_leave_is_left() {
    let (mut map, _, _) = setup();
    let (bob, carol) = (peer(), peer());
    map.merge(record("bob", bob, Role::Slave)).unwrap();
    map.merge(record("carol", carol, Role::Slave)).unwrap();
    assert!(matches!(
        map.departed(&bob, Departure::Shutdown),
        Some(EventKind::Gone { .. })
    ));
    assert!(matches!(
        map.departed(&carol, Departure::Leave),
        Some(EventKind::Left { .. })
    ));
    assert_eq!(map.gone(), [bob], "a node that shut down is tried again");
    assert_eq!(
        map.watched().count(),
        1,
        "neither is watched: only alice is left"
    );
}

/// Before, any copy of a record, however old, counted as a sign of
/// life: a replayed announcement kept a dead node alive.
#[test]
fn a_replayed_record_is_no_sign_of_life() {
    let (mut map, _, t0) = setup();
    let bob = peer();
    let mut r = record("bob", bob, Role::Slave);
    r.signed_at_ms = 10;
    map.merge(r.clone()).unwrap();
    assert!(map.suspect_observed(&bob, t0, "x").is_some());
    assert!(
        map.merge(r.clone()).unwrap().is_none(),
        "a replay revived it"
    );
    assert_eq!(map.get(&bob).unwrap().state, Liveness::Suspect);
    r.signed_at_ms = 11;
    assert!(matches!(map.merge(r), Ok(Some(EventKind::Alive { .. }))));
}

#[test]
fn a_name_stays_its_nodes_until_the_master_removes_it() {
    let (mut map, master, _) = setup();
    let bob = peer();
    map.merge(record("bob", bob, Role::Slave)).unwrap();
    map.departed(&bob, Departure::Leave);
    let err = map.merge(record("bob", peer(), Role::Slave)).unwrap_err();
    assert!(
        err.contains("already taken") && err.contains("(left)"),
        "{err}"
    );
    assert!(map.remove(master).is_none(), "the master is never removed");
    assert!(matches!(map.remove(bob), Some(EventKind::Removed { .. })));
    assert!(map.remove(bob).is_none(), "removed twice");
    assert!(map.get(&bob).is_none(), "a removed node's entry is pruned");
    assert!(map.merge(record("bob", peer(), Role::Slave)).is_ok());
    let err = map.merge(record("bob2", bob, Role::Slave)).unwrap_err();
    assert!(err.contains("removed"), "{err}");
    assert_eq!(map.removed(), [bob]);
}

#[test]
fn newer_versions_win_and_older_ones_do_not_undo_them() {
    let (mut map, _, _) = setup();
    let bob = peer();
    let mut r = record("bob", bob, Role::Slave);
    r.version = 5;
    r.tags = vec!["new".into()];
    map.merge(r.clone()).unwrap();
    let mut old = r.clone();
    old.version = 4;
    old.tags = vec![];
    map.merge(old).unwrap();
    assert_eq!(map.get(&bob).unwrap().record.tags, vec!["new".to_string()]);
}
