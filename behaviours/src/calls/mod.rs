//! Calls: what one node asks another to do, one type per request, each
//! with the one type of answer it gets ([`Call::Answer`]). A caller writes
//! `call(peer, RunTask { spec })` and gets `Result<Accepted, _>`: there is
//! no answer of the wrong kind to handle, because an answer is decoded as
//! the type its request names, and anything else fails to decode.
//!
//! Calls are grouped by concern (tasks, sessions, files, secure sums,
//! audit), each in its own file. On the wire a call travels in an
//! [`Envelope`] on [`CALLS_PROTOCOL`]; its answer comes back as one frame
//! holding `Result<Answer, Refusal>` ([`AnswerFrame`]), which the caller
//! decodes. Membership (join, hello, leave, probes) has a protocol of its
//! own (`membership.rs`), answered by the receiver's event loop, with
//! answers of the same kind.

mod audit;
mod files;
mod sessions;
mod sums;
mod tasks;

pub use audit::{AuditCall, AuditProofs, ProveAudit, MAX_PROOFS_ANSWER, MAX_PROOF_SIZES};
pub use files::{
    DescribeFile, FetchFile, FetchProgress, FetchStarted, FetchStatus, FileCall, ListFiles,
    MAX_LISTING, MAX_MANIFEST,
};
pub use sessions::{CreateSession, ExecInSession, ExecOutput, RemoveSession, SessionCall};
pub use sums::{SecureSumStep, SumAnswer, SumCall, MAX_SUM_ANSWER};
pub use tasks::{
    Accepted, CancelTask, FetchLogs, Logs, RunTask, TaskCall, TaskUpdate, OUTPUT_ANSWER,
};

use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{
    codec::{decode, encode, AnswerLimit, CodecError, Framed},
    refusal::Refusal,
};

/// The request-response protocol for calls. Version 10 (with
/// [`crate::PROTOCOL_VERSION`] 11): one type per call and per answer,
/// grouped by concern, split from membership; before it, every request of
/// every concern was one enum on `/iris/control/9`.
pub const CALLS_PROTOCOL: &str = "/iris/calls/10";

/// How long a caller waits for a plain answer (an acknowledgement, a
/// record, a list): a member that says nothing for this long is not going
/// to, and a command must not hang on it.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// A request to one peer, and the type of its answer.
pub trait Call: Clone + Send + Sized + 'static {
    /// What the peer answers when it does what was asked.
    type Answer: Serialize + DeserializeOwned + Send + 'static;

    /// Whether sending this call twice does what sending it once does, so
    /// that it may be sent again as it is when its connection closed
    /// before the answer came. Reads are; so are reports and cancels,
    /// which their receivers merge. Starting work (a task, an exec, a
    /// fetch, a step of a secure sum) is not, nor is a fetch's final
    /// status, which is told once: those carry an id
    /// ([`Envelope::once`]), and a receiver answers a repeat of the id
    /// with its first answer.
    const REPEATABLE: bool;

    /// The largest answer frame this call may get, refusals included:
    /// the caller reads no more, and the answerer sends no more (an answer
    /// that would not fit becomes a refusal that says so). Each call has
    /// its own, from what its answer holds (docs/protocol.md's table).
    fn max_answer(&self) -> usize;

    /// How long the caller waits for the answer. Work that runs before the
    /// answer has a deadline of its own: an exec its timeout, a manifest a
    /// whole-file hash.
    fn answer_within(&self) -> Duration {
        ANSWER_WITHIN
    }

    /// The call as the wire's [`PeerRequest`] carries it.
    fn into_request(self) -> PeerRequest;
}

/// Every call, by concern: what the receiver decodes and dispatches.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerRequest {
    Tasks(TaskCall),
    Sessions(SessionCall),
    Files(FileCall),
    Sums(SumCall),
    Audit(AuditCall),
}

impl PeerRequest {
    /// The bound of this call's answer ([`Call::max_answer`]).
    pub fn max_answer(&self) -> usize {
        match self {
            Self::Tasks(call) => call.max_answer(),
            Self::Sessions(call) => call.max_answer(),
            Self::Files(call) => call.max_answer(),
            Self::Sums(call) => call.max_answer(),
            Self::Audit(call) => call.max_answer(),
        }
    }
}

/// A call as it travels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Set for a call to be carried out at most once: its sender may send
    /// it again, with the same id, when the connection closed before the
    /// answer came back, and the receiver answers a repeat with the first
    /// answer (waiting for it if it is still being worked out) instead of
    /// doing the work twice. Ids are the sender's, kept apart per sender.
    pub once: Option<u64>,
    pub request: PeerRequest,
}

impl AnswerLimit for Envelope {
    fn answer_limit(&self) -> usize {
        self.request.max_answer()
    }
}

/// An answer as it travels: the CBOR of `Result<C::Answer, Refusal>` for
/// the call `C` it answers, as one frame. Only the caller knows `C`, so
/// only the caller decodes it ([`AnswerFrame::open`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerFrame(pub Vec<u8>);

impl AnswerFrame {
    /// The frame of an answer, at most `max` bytes; one too large becomes
    /// a refusal that says so.
    pub fn seal<A: Serialize>(answer: Result<A, Refusal>, max: usize) -> Self {
        match encode(&answer, max) {
            Ok(bytes) => Self(bytes),
            Err(e) => Self::refused(Refusal::failed(format!("the answer cannot be sent: {e}"))),
        }
    }

    /// The frame of a refusal.
    pub fn refused(refusal: Refusal) -> Self {
        let bytes =
            encode(&Err::<(), _>(refusal), usize::MAX).expect("a refusal encodes to memory");
        Self(bytes)
    }

    /// The answer to a call of type `C`.
    pub fn open<C: Call>(&self) -> Result<Result<C::Answer, Refusal>, CodecError> {
        self.open_as::<C::Answer>()
    }

    /// The answer, as an `A`, or the refusal it holds.
    pub fn open_as<A: DeserializeOwned>(&self) -> Result<Result<A, Refusal>, CodecError> {
        decode(&self.0)
    }

    /// The refusal this frame holds, if it holds one: whatever the call,
    /// a refusal decodes the same.
    pub fn refusal(&self) -> Option<Refusal> {
        match decode::<Result<serde::de::IgnoredAny, Refusal>>(&self.0) {
            Ok(Err(refusal)) => Some(refusal),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Framed for AnswerFrame {
    fn to_frame(&self, max: usize) -> Result<Vec<u8>, CodecError> {
        if self.0.len() > max {
            return Err(CodecError::TooLarge {
                len: self.0.len(),
                max,
            });
        }
        Ok(self.0.clone())
    }

    fn from_frame(body: Vec<u8>) -> Result<Self, CodecError> {
        Ok(Self(body))
    }
}

/// Declares that `$call` is a call answered with `$answer` of at most
/// `$max` bytes, carried as `PeerRequest::$concern($group::$variant(..))`,
/// with an optional `answer_within` of its own.
macro_rules! call {
    ($call:ident => $answer:ty, $concern:ident($group:ident::$variant:ident), repeatable: $repeatable:expr, max_answer: $max:expr $(, $within:item)?) => {
        impl $crate::calls::Call for $call {
            type Answer = $answer;
            const REPEATABLE: bool = $repeatable;
            fn max_answer(&self) -> usize {
                $max
            }
            $($within)?
            fn into_request(self) -> $crate::calls::PeerRequest {
                $crate::calls::PeerRequest::$concern($group::$variant(self))
            }
        }
    };
}
pub(crate) use call;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refusal::RefusalKind;

    #[test]
    fn an_answer_opens_as_its_call_and_a_refusal_as_any() {
        let frame = AnswerFrame::seal::<Accepted>(Ok(Accepted), 1024);
        let opened = frame.open::<CancelTask>().unwrap();
        assert_eq!(opened, Ok(Accepted));
        assert_eq!(frame.refusal(), None);

        let refused = AnswerFrame::refused(Refusal::not_found("no such task"));
        let opened = refused.open::<FetchLogs>().unwrap();
        assert_eq!(opened.unwrap_err().kind, RefusalKind::NotFound);
        assert_eq!(refused.refusal().unwrap().reason, "no such task");
    }

    /// Every call's bound has room for any refusal, and none is over the
    /// codec's own.
    #[test]
    fn the_longest_refusal_fits_the_smallest_bound() {
        let refusal = Refusal::failed("é".repeat(10 * crate::refusal::MAX_REASON_BYTES));
        assert!(AnswerFrame::refused(refusal).len() <= crate::codec::SMALL_ANSWER);
        let step = SecureSumStep {
            body: Vec::new(),
            max_answer: u32::MAX,
        };
        assert_eq!(
            step.max_answer(),
            MAX_SUM_ANSWER,
            "a step's bound is capped"
        );
        const { assert!(MAX_SUM_ANSWER <= crate::codec::MAX_CONTROL_RESPONSE) };
        assert_eq!(
            CancelTask { job_id: "j".into() }.max_answer(),
            crate::codec::SMALL_ANSWER
        );
    }

    #[test]
    fn an_answer_of_another_call_does_not_open() {
        let logs = Logs {
            stdout: b"out".to_vec(),
            stderr: Vec::new(),
        };
        let frame = AnswerFrame::seal::<Logs>(Ok(logs), 1024);
        assert!(frame.open::<ListFiles>().is_err());
    }

    #[test]
    fn an_answer_too_large_is_sealed_as_a_refusal() {
        let logs = Logs {
            stdout: vec![7; 4096],
            stderr: Vec::new(),
        };
        let frame = AnswerFrame::seal::<Logs>(Ok(logs), 1024);
        assert_eq!(frame.refusal().unwrap().kind, RefusalKind::Failed);
    }
}
