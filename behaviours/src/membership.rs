//! The membership protocol: join, hello, leave and the probes of the
//! failure detector, on libp2p's request-response with the CBOR codec
//! (`codec.rs`). The receiver's event loop answers them, since it owns the
//! map they change. As with calls ([`crate::calls`]), each request is a
//! type with the one type of answer it gets ([`Asks::Answer`]), and the
//! answer travels as an [`AnswerFrame`] that only the asker decodes.

use libp2p::PeerId;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{
    calls::{Accepted, AnswerFrame},
    codec::{AnswerLimit, MAX_CONTROL_REQUEST, MAX_CONTROL_RESPONSE, SMALL_ANSWER},
    messages::{Departure, Liveness, MapEntry},
    NetworkConfig, NodeRecord, Removals,
};

/// The request-response protocol for membership. Version 1 (with
/// [`crate::PROTOCOL_VERSION`] 11): split from the control protocol
/// (`/iris/control/9`), which carried every request of every concern.
pub const MEMBERSHIP_PROTOCOL: &str = "/iris/membership/1";

/// A membership request, and the type of its answer.
pub trait Asks: Sized {
    type Answer: Serialize + DeserializeOwned + Send + 'static;

    /// The largest answer frame this request may get, refusals included.
    const MAX_ANSWER: usize;

    /// The request as the wire carries it.
    fn into_request(self) -> MembershipRequest;

    /// The answer to this request in `frame`: what was asked for, or the
    /// peer's refusal; an error if it is neither.
    fn open(
        frame: &AnswerFrame,
    ) -> Result<Result<Self::Answer, crate::Refusal>, crate::CodecError> {
        frame.open_as::<Self::Answer>()
    }
}

/// Requests on the membership protocol.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MembershipRequest {
    Join(Join),
    Hello(Hello),
    Leave(Leave),
    Probe(Probe),
    ProbeFor(ProbeFor),
}

impl AnswerLimit for MembershipRequest {
    fn answer_limit(&self) -> usize {
        match self {
            Self::Join(_) => Join::MAX_ANSWER,
            Self::Hello(_) => Hello::MAX_ANSWER,
            Self::Leave(_) => Leave::MAX_ANSWER,
            Self::Probe(_) => Probe::MAX_ANSWER,
            Self::ProbeFor(_) => ProbeFor::MAX_ANSWER,
        }
    }
}

/// "Let me in": answered with a [`Welcome`], or refused. Members also ask
/// it of each other now and then to catch up on records they missed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Join {
    pub record: NodeRecord,
}

/// The network as the member asked knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Welcome {
    pub config: NetworkConfig,
    pub map: Vec<MapEntry>,
    /// Nodes the master removed, which the joiner refuses too, as the
    /// master signed the list.
    #[serde(default)]
    pub removed: Removals,
}

/// Sent on every new connection so both sides know each other at once,
/// without waiting for gossip; answered with the peer's own hello.
/// `seen_as` is how the sender's map shows the receiver: one that finds
/// itself suspect or gone there refutes it with a newer record, which
/// reaches everyone (a partition that heals, a node that hung).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub record: NodeRecord,
    #[serde(default)]
    pub seen_as: Option<Liveness>,
}

/// "I am going": sent to every connected member before leaving or
/// shutting down.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Leave {
    pub departure: Departure,
}

/// "Are you there?": a watcher's direct probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe;

/// "Is `target` there?": a watcher whose own probe of `target` failed asks
/// another member to probe it (SWIM's ping-req). Answered with a no as
/// well as a yes, so the asker can tell a dead target from its own
/// slowness (Lifeguard's nack).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeFor {
    pub target: PeerId,
}

/// The answer to [`ProbeFor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probed {
    pub reached: bool,
}

/// Declares that `$request` is answered with `$answer` of at most `$max`
/// bytes, carried as `MembershipRequest::$variant`.
macro_rules! asks {
    ($request:ident => $answer:ty, $variant:ident, max_answer: $max:expr) => {
        impl Asks for $request {
            type Answer = $answer;
            const MAX_ANSWER: usize = $max;
            fn into_request(self) -> MembershipRequest {
                MembershipRequest::$variant(self)
            }
        }
    };
}

// A welcome carries the whole map; a hello one record, which travels in a
// request too.
asks!(Join => Welcome, Join, max_answer: MAX_CONTROL_RESPONSE);
asks!(Hello => Hello, Hello, max_answer: MAX_CONTROL_REQUEST + SMALL_ANSWER);
asks!(Leave => Accepted, Leave, max_answer: SMALL_ANSWER);
asks!(Probe => Accepted, Probe, max_answer: SMALL_ANSWER);
asks!(ProbeFor => Probed, ProbeFor, max_answer: SMALL_ANSWER);
