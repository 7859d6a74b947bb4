use super::*;
use iris_behaviours::libp2p::identity::Keypair;

fn peer() -> PeerId {
    Keypair::generate_ed25519().public().to_peer_id()
}

fn exec(bytes: usize) -> AnswerFrame {
    let output = iris_behaviours::ExecOutput {
        exit_code: Some(0),
        stdout: vec![b'x'; bytes],
        stderr: vec![],
        truncated: false,
    };
    AnswerFrame::seal(Ok(output), usize::MAX)
}

fn stdout_of(answer: &AnswerFrame) -> Vec<u8> {
    let output = answer.open::<iris_behaviours::ExecInSession>().unwrap();
    output.expect("an exec's output").stdout
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
        Arrival::Repeat(5, answer) => assert_eq!(stdout_of(&answer).len(), 10),
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
    let busy = AnswerFrame::refused(Refusal::new(RefusalKind::Busy, "too many at once"));
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
        Arrival::Repeat(1, answer) => {
            let refusal = answer.refusal().expect("a refusal");
            assert_eq!(refusal.kind, RefusalKind::Failed);
            assert!(
                refusal.reason.contains("carried out already"),
                "{refusal:?}"
            );
        }
        _ => panic!("a repeat whose answer was dropped is carried out again"),
    }
    match memory.arrived(alice, 9, 2) {
        Arrival::Repeat(2, answer) => assert_eq!(stdout_of(&answer).len(), big),
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
        memory.answered(
            alice,
            id,
            &AnswerFrame::seal(Ok(iris_behaviours::Accepted), 64),
            now,
        );
    }
    assert_eq!(memory.entries.len(), MAX_IDS);
    // The oldest were forgotten, the newest kept.
    assert!(matches!(memory.arrived(alice, 0, 1), Arrival::First));
    assert!(matches!(
        memory.arrived(alice, MAX_IDS as u64 + 99, 1),
        Arrival::Repeat(..)
    ));
}
