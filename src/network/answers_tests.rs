use super::*;
use iris_behaviours::libp2p::identity::Keypair;

fn peer() -> PeerId {
    Keypair::generate_ed25519().public().to_peer_id()
}

fn exec(bytes: usize) -> ControlResponse {
    ControlResponse::Exec {
        exit_code: Some(0),
        stdout: vec![b'x'; bytes],
        stderr: vec![],
        truncated: false,
    }
}

#[test]
fn a_repeat_waits_for_the_first_answer_and_a_later_one_gets_it_again() {
    let mut memory = AnswerMemory::default();
    let (alice, now) = (peer(), Instant::now());
    assert!(matches!(memory.arrived(alice, 7, 1), Arrival::First));
    // Sent again while the first is being worked out: it waits.
    assert!(matches!(memory.arrived(alice, 7, 2), Arrival::Waiting));
    // Another id, or the same id from another peer, is new work.
    assert!(matches!(memory.arrived(alice, 8, 3), Arrival::First));
    assert!(matches!(memory.arrived(peer(), 7, 4), Arrival::First));
    // Both channels of id 7 get the one answer.
    assert_eq!(memory.answered(alice, 7, &exec(10), now), vec![1, 2]);
    match memory.arrived(alice, 7, 5) {
        Arrival::Repeat(5, answer) => match *answer {
            ControlResponse::Exec { stdout, .. } => assert_eq!(stdout.len(), 10),
            other => panic!("another answer: {other:?}"),
        },
        _ => panic!("a repeat after the answer is not answered with it"),
    }
    // Kept for KEEP_ANSWERS, then forgotten.
    memory.expire(now + KEEP_ANSWERS - Duration::from_secs(1));
    assert!(matches!(memory.arrived(alice, 7, 6), Arrival::Repeat(6, _)));
    memory.expire(now + KEEP_ANSWERS);
    assert!(matches!(memory.arrived(alice, 7, 7), Arrival::First));
}

#[test]
fn a_busy_answer_is_not_kept_since_nothing_was_done() {
    let mut memory = AnswerMemory::default();
    let alice = peer();
    assert!(matches!(memory.arrived(alice, 1, 1), Arrival::First));
    let busy = Refusal::new(RefusalKind::Busy, "too many requests at once").into();
    assert_eq!(memory.answered(alice, 1, &busy, Instant::now()), vec![1]);
    assert!(matches!(memory.arrived(alice, 1, 2), Arrival::First));
}

#[test]
fn past_the_byte_bound_old_answers_go_but_their_repeats_are_still_not_carried_out() {
    let mut memory = AnswerMemory::default();
    let (alice, now) = (peer(), Instant::now());
    let big = MAX_HELD_BYTES / 4;
    for id in 0..10 {
        assert!(matches!(memory.arrived(alice, id, 0), Arrival::First));
        memory.answered(alice, id, &exec(big), now);
        assert!(memory.held_bytes() <= MAX_HELD_BYTES);
    }
    match memory.arrived(alice, 0, 1) {
        Arrival::Repeat(1, answer) => match *answer {
            ControlResponse::Refused { kind, reason } => {
                assert_eq!(kind, RefusalKind::Failed);
                assert!(reason.contains("carried out already"), "{reason}");
            }
            other => panic!("another answer: {other:?}"),
        },
        _ => panic!("a repeat whose answer was dropped is carried out again"),
    }
    match memory.arrived(alice, 9, 2) {
        Arrival::Repeat(2, answer) => assert!(matches!(*answer, ControlResponse::Exec { .. })),
        _ => panic!("the newest answer was not kept"),
    }
    memory.expire(now + KEEP_ANSWERS);
    assert_eq!(memory.held_bytes(), 0);
}

#[test]
fn the_ids_held_are_bounded() {
    let mut memory = AnswerMemory::default();
    let (alice, now) = (peer(), Instant::now());
    for id in 0..(MAX_IDS as u64 + 100) {
        memory.arrived(alice, id, 0);
        memory.answered(alice, id, &ControlResponse::Ack, now);
    }
    assert_eq!(memory.entries.len(), MAX_IDS);
    // The oldest were forgotten, the newest kept.
    assert!(matches!(memory.arrived(alice, 0, 1), Arrival::First));
    assert!(matches!(
        memory.arrived(alice, MAX_IDS as u64 + 99, 1),
        Arrival::Repeat(..)
    ));
}
