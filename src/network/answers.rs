//! The answers to at-most-once calls ([`Envelope::once`]),
//! by sender and id. A sender whose connection closed before the answer
//! came sends the request again with the same id; the receiver must then
//! answer with the first answer, not carry the request out twice (a task
//! started twice, an exec run twice, a fetch's final status told once and
//! lost). A repeat that arrives while the first is still being worked out
//! waits for its answer.
//!
//! Bounded three ways, since any member can send ids: answers are kept for
//! [`KEEP_ANSWERS`], the answers' bytes held at once are capped (past it
//! the oldest answers are dropped but their ids kept, and a repeat of one
//! is refused rather than carried out again), and so is the number of ids.
//!
//! [`Envelope::once`]: iris_behaviours::Envelope::once

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use iris_behaviours::{libp2p::PeerId, AnswerFrame, Refusal, RefusalKind};

/// How long an answer is kept after it was given: far longer than a
/// sender takes to repeat a request (within a second or two of losing its
/// connection).
pub(super) const KEEP_ANSWERS: Duration = Duration::from_secs(10 * 60);
/// The answers' bytes held at once; older answers are dropped past it.
const MAX_HELD_BYTES: usize = 32 * 1024 * 1024;
/// Ids remembered at once; the oldest answered ones are forgotten past it.
const MAX_IDS: usize = 16 * 1024;

type Key = (PeerId, u64);

enum Entry<C> {
    /// Being worked out; these channels wait for its answer (the first
    /// request's own, and any repeat's).
    Working(Vec<C>),
    /// Answered; `None` once the answer was dropped to save memory.
    Answered { answer: Option<Box<AnswerFrame>> },
}

/// What to do with an at-most-once request that just arrived.
pub(super) enum Arrival<C> {
    /// Its first arrival: carry it out, then call [`AnswerMemory::answered`].
    First,
    /// A repeat of one still being worked out: it gets the same answer.
    Waiting,
    /// A repeat of one answered already: send it this answer.
    Repeat(C, Box<AnswerFrame>),
}

/// Answers by sender and id, each to be sent on a channel of type `C`
/// (libp2p's response channel; anything, in a unit test).
pub(super) struct AnswerMemory<C> {
    entries: HashMap<Key, Entry<C>>,
    /// Answered ids, oldest first, to expire and evict them in order.
    answered: VecDeque<(Key, Instant)>,
    held_bytes: usize,
}

impl<C> Default for AnswerMemory<C> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            answered: VecDeque::new(),
            held_bytes: 0,
        }
    }
}

impl<C> AnswerMemory<C> {
    /// Request `id` from `peer` arrived, to be answered on `channel`.
    pub(super) fn arrived(&mut self, peer: PeerId, id: u64, channel: C) -> Arrival<C> {
        match self.entries.get_mut(&(peer, id)) {
            None => {
                self.entries
                    .insert((peer, id), Entry::Working(vec![channel]));
                Arrival::First
            }
            Some(Entry::Working(waiting)) => {
                waiting.push(channel);
                Arrival::Waiting
            }
            Some(Entry::Answered {
                answer: Some(answer),
                ..
            }) => Arrival::Repeat(channel, answer.clone()),
            Some(Entry::Answered { answer: None, .. }) => {
                let refusal = Refusal::failed(
                    "this request was carried out already, and its answer is no longer held",
                );
                Arrival::Repeat(channel, Box::new(AnswerFrame::refused(refusal)))
            }
        }
    }

    /// The answer to request `id` from `peer` is in: every channel waiting
    /// for it, to send it on. A "busy" answer means nothing was done, so it
    /// is not kept: a repeat is carried out as if new.
    pub(super) fn answered(
        &mut self,
        peer: PeerId,
        id: u64,
        answer: &AnswerFrame,
        now: Instant,
    ) -> Vec<C> {
        let key = (peer, id);
        let Some(Entry::Working(waiting)) = self.entries.remove(&key) else {
            return Vec::new();
        };
        let busy = answer
            .refusal()
            .is_some_and(|refusal| refusal.kind == RefusalKind::Busy);
        if !busy {
            self.held_bytes += answer.len();
            let answer = Some(Box::new(answer.clone()));
            self.entries.insert(key, Entry::Answered { answer });
            self.answered.push_back((key, now));
            self.bound();
        }
        waiting
    }

    /// Forgets answers older than [`KEEP_ANSWERS`].
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(&(key, at)) = self.answered.front() {
            if now.saturating_duration_since(at) < KEEP_ANSWERS {
                break;
            }
            self.answered.pop_front();
            self.forget(&key);
        }
    }

    /// Keeps the bytes and ids held within bounds, oldest answers first.
    fn bound(&mut self) {
        let mut dropped = 0;
        while self.held_bytes > MAX_HELD_BYTES && dropped < self.answered.len() {
            let (key, _) = self.answered[dropped];
            if let Some(Entry::Answered { answer, .. }) = self.entries.get_mut(&key) {
                if let Some(answer) = answer.take() {
                    self.held_bytes -= answer.len();
                }
            }
            dropped += 1;
        }
        while self.entries.len() > MAX_IDS {
            let Some((key, _)) = self.answered.pop_front() else {
                break;
            };
            self.forget(&key);
        }
    }

    fn forget(&mut self, key: &Key) {
        if let Some(Entry::Answered { answer, .. }) = self.entries.remove(key) {
            self.held_bytes -= answer.as_deref().map_or(0, AnswerFrame::len);
        }
    }

    #[cfg(test)]
    fn held_bytes(&self) -> usize {
        self.held_bytes
    }
}

#[cfg(test)]
#[path = "answers_tests.rs"]
mod tests;
