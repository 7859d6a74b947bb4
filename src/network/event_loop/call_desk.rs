//! Calls in both directions ([`iris_behaviours::calls`]): ours to peers,
//! from sending to the answer, and peers' to this node's router, from
//! arrival to our answer.
//!
//! Ours: a call whose connection closed under it (before or while it was
//! sent, with no answer) is sent again, on a live connection or a new one,
//! a few times within its deadline. Closing idle connections races calls
//! that start at that moment, and a peer may restart or be cut off for a
//! moment; neither may fail a user's command. A call that is not safe to
//! repeat carries an id ([`Envelope::once`]), so the peer answers a repeat
//! with its first answer instead of carrying it out twice.
//!
//! Theirs: each goes to the router with who sent it; one with an id is
//! carried out the first time only ([`AnswerMemory`]).

use std::time::{Duration, Instant};

use futures::{future::BoxFuture, stream::FuturesUnordered, StreamExt};
use iris_behaviours::{
    libp2p::{
        request_response::{self, OutboundFailure, OutboundRequestId, ResponseChannel},
        Multiaddr, PeerId,
    },
    AnswerFrame, CborCodec, Envelope, PeerRequest, Refusal, RefusalKind,
};
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

use super::super::{
    answers::{AnswerMemory, Arrival},
    Activity, InUse, Inbound,
};
use crate::metrics::Metrics;

/// Times a call is sent before its failure is the caller's.
pub(super) const MAX_ATTEMPTS: u32 = 4;
/// The pause before the first repeat; it doubles with each.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// A dial that failed within this time was refused (a peer restarting,
/// say) and may work in a moment; one that took longer waited out its
/// timeout for a host that is gone, and would wait it out again each time
/// (a dead site once cost a training round 4 × 3 s).
const REFUSED_WITHIN: Duration = Duration::from_secs(1);

/// The libp2p behaviour calls travel on.
pub(super) type CallsBehaviour = request_response::Behaviour<CborCodec<Envelope, AnswerFrame>>;

/// Who answers a call that arrived: ourselves, or the sender is turned
/// away before any work.
pub(super) enum Sender {
    /// A current member; whether it is the network's master.
    Member { is_master: bool },
    /// Anyone else: a peer with the key but no record, or one that left.
    Stranger,
}

/// One of our calls, waiting for its answer until `deadline`.
struct Outbound {
    peer: PeerId,
    /// As sent, to send again if its connection closes under it.
    envelope: Envelope,
    /// How many times it was sent.
    attempts: u32,
    /// When it was last sent.
    sent_at: Instant,
    deadline: Instant,
    within: Duration,
    reply: oneshot::Sender<Result<AnswerFrame, String>>,
    /// Keeps the connection open until the answer is in.
    _in_use: InUse,
}

/// Where an answer the node worked out goes: back on the call's own
/// channel, or, for an at-most-once call, to every channel waiting for it
/// in [`AnswerMemory`].
enum ReplyTo {
    Channel(ResponseChannel<AnswerFrame>),
    Remembered { peer: PeerId, id: u64 },
}

/// An answer the router worked out, and where it goes.
pub(super) struct Reply(ReplyTo, AnswerFrame);

/// Calls in flight, ours and peers'.
pub(super) struct CallDesk {
    /// Our calls waiting for an answer, by request id.
    outbound: HashMap<OutboundRequestId, Outbound>,
    /// Our calls whose connection closed under them, to be sent again at
    /// the instant given.
    resends: Vec<(Instant, Outbound)>,
    /// Answers the node is still working out, with where they go.
    replies: FuturesUnordered<BoxFuture<'static, (ReplyTo, AnswerFrame)>>,
    /// The answers to peers' at-most-once calls.
    answers: AnswerMemory<ResponseChannel<AnswerFrame>>,
    /// Where peers' calls go: the router.
    router: mpsc::Sender<Inbound>,
    activity: Activity,
    metrics: Metrics,
}

impl CallDesk {
    pub(super) fn new(router: mpsc::Sender<Inbound>, activity: Activity, metrics: Metrics) -> Self {
        Self {
            outbound: HashMap::new(),
            resends: Vec::new(),
            replies: FuturesUnordered::new(),
            answers: AnswerMemory::default(),
            router,
            activity,
            metrics,
        }
    }

    /// Sends `request` to `peer` and hands the answer to `reply`, dialing
    /// `addrs` when not connected (say, just after a restart).
    pub(super) fn call(
        &mut self,
        calls: &mut CallsBehaviour,
        addrs: Vec<Multiaddr>,
        peer: PeerId,
        (request, repeatable, within): (PeerRequest, bool, Duration),
        reply: oneshot::Sender<Result<AnswerFrame, String>>,
    ) {
        let envelope = Envelope {
            once: (!repeatable).then(fresh_id),
            request,
        };
        let outbound = Outbound {
            peer,
            envelope,
            attempts: 0,
            sent_at: Instant::now(),
            deadline: Instant::now() + within,
            within,
            reply,
            _in_use: self.activity.begin(peer),
        };
        self.dispatch(calls, addrs, outbound);
    }

    fn dispatch(
        &mut self,
        calls: &mut CallsBehaviour,
        addrs: Vec<Multiaddr>,
        mut outbound: Outbound,
    ) {
        outbound.attempts += 1;
        outbound.sent_at = Instant::now();
        let envelope = outbound.envelope.clone();
        let id = calls.send_request_with_addresses(&outbound.peer, envelope, addrs);
        self.outbound.insert(id, outbound);
    }

    /// The answer to our call `id` came; false if it was not ours (or
    /// came too late).
    fn answered(&mut self, id: OutboundRequestId, answer: AnswerFrame) -> bool {
        let Some(outbound) = self.outbound.remove(&id) else {
            return false;
        };
        let _ = outbound.reply.send(Ok(answer));
        true
    }

    /// Our call `id` failed: sent again if the connection went under it
    /// and there is time, or the caller hears why.
    fn failed(&mut self, id: OutboundRequestId, error: &OutboundFailure) {
        let Some(outbound) = self.outbound.remove(&id) else {
            return;
        };
        let now = Instant::now();
        let pause = FIRST_PAUSE * 2u32.pow(outbound.attempts.saturating_sub(1));
        if worth_sending_again(error, now - outbound.sent_at)
            && outbound.attempts < MAX_ATTEMPTS
            && now + pause < outbound.deadline
        {
            tracing::debug!(
                peer = %outbound.peer,
                attempt = outbound.attempts,
                "a call's connection closed under it ({error}); sending it again"
            );
            self.resends.push((now + pause, outbound));
            return;
        }
        let detail = match outbound.attempts {
            1 => error.to_string(),
            n => format!("{error} (sent {n} times)"),
        };
        let _ = outbound.reply.send(Err(detail));
    }

    /// Sends again the calls whose pause is over, each to the addresses
    /// `addrs` gives for its peer; gives up on the calls whose peer has
    /// not answered in time (the caller hears so, and a late answer is
    /// dropped); forgets old answers.
    pub(super) fn tick(
        &mut self,
        calls: &mut CallsBehaviour,
        addrs: impl Fn(&PeerId) -> Vec<Multiaddr>,
        now: Instant,
    ) {
        let (due, waiting) = std::mem::take(&mut self.resends)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.resends = waiting;
        for (_, outbound) in due {
            let addrs = addrs(&outbound.peer);
            self.dispatch(calls, addrs, outbound);
        }
        self.outbound.retain(|_, outbound| {
            if outbound.deadline > now {
                return true;
            }
            let within = outbound.within.as_secs();
            let reply = std::mem::replace(&mut outbound.reply, oneshot::channel().0);
            let _ = reply.send(Err(format!("no answer within {within} s")));
            false
        });
        self.answers.expire(now);
    }

    /// An event of the calls protocol: a peer's call goes on with who sent
    /// it (`sender`), an answer to ours to its caller. Returns the peer
    /// whose answer arrived, a sign of life.
    pub(super) fn on_event(
        &mut self,
        calls: &mut CallsBehaviour,
        event: request_response::Event<Envelope, AnswerFrame>,
        sender: impl FnOnce(&PeerId) -> Sender,
    ) -> Option<PeerId> {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let sender = sender(&peer);
                self.arrived(calls, peer, sender, request, channel);
                None
            }
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                self.answered(request_id, response);
                Some(peer)
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, "a call failed: {error}");
                self.failed(request_id, &error);
                None
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "a call from a peer failed: {error}");
                None
            }
            Event::ResponseSent { .. } => None,
        }
    }

    /// A peer's call: to the router, with who sent it; the answer goes
    /// back once the node has worked it out. One with an id is carried out
    /// the first time the id comes from `peer`; a repeat (its sender lost
    /// the connection before the answer came) gets the first answer, or
    /// waits for it.
    fn arrived(
        &mut self,
        calls: &mut CallsBehaviour,
        peer: PeerId,
        sender: Sender,
        envelope: Envelope,
        channel: ResponseChannel<AnswerFrame>,
    ) {
        let is_master = match sender {
            Sender::Member { is_master } => is_master,
            Sender::Stranger => {
                let refusal = Refusal::forbidden(
                    "forbidden: you are not a current member of this network (join it first)",
                );
                return self.send(calls, channel, AnswerFrame::refused(refusal));
            }
        };
        let Some(id) = envelope.once else {
            let to = ReplyTo::Channel(channel);
            return self.forward(peer, is_master, envelope.request, to);
        };
        match self.answers.arrived(peer, id, channel) {
            Arrival::First => {
                let to = ReplyTo::Remembered { peer, id };
                self.forward(peer, is_master, envelope.request, to)
            }
            Arrival::Waiting => {
                tracing::debug!(%peer, id, "a call sent again waits for the first one's answer")
            }
            Arrival::Repeat(channel, answer) => {
                tracing::debug!(%peer, id, "a call sent again gets the first one's answer");
                self.send(calls, channel, *answer)
            }
        }
    }

    /// Hands a call to the router; its answer comes back through
    /// [`CallDesk::next_reply`].
    fn forward(&mut self, peer: PeerId, is_master: bool, request: PeerRequest, to: ReplyTo) {
        let (reply, answer) = oneshot::channel();
        let in_use = self.activity.begin(peer);
        let inbound = Inbound {
            peer,
            from_master: is_master,
            request,
            reply,
        };
        if self.router.try_send(inbound).is_err() {
            tracing::warn!(%peer, "too many calls waiting; refused one");
        }
        self.replies.push(Box::pin(async move {
            let _in_use = in_use;
            let answer = answer.await.unwrap_or_else(|_| {
                AnswerFrame::refused(Refusal::new(
                    RefusalKind::Busy,
                    "the node is busy or shutting down; try again",
                ))
            });
            (to, answer)
        }));
    }

    /// The next answer the router worked out; never, while there is none.
    pub(super) async fn next_reply(&mut self) -> Reply {
        match self.replies.next().await {
            Some((to, answer)) => Reply(to, answer),
            None => std::future::pending().await,
        }
    }

    /// Sends an answer the router worked out where it goes.
    pub(super) fn deliver(&mut self, calls: &mut CallsBehaviour, Reply(to, answer): Reply) {
        match to {
            ReplyTo::Channel(channel) => self.send(calls, channel, answer),
            ReplyTo::Remembered { peer, id } => {
                let now = Instant::now();
                for channel in self.answers.answered(peer, id, &answer, now) {
                    self.send(calls, channel, answer.clone());
                }
            }
        }
    }

    fn send(
        &self,
        calls: &mut CallsBehaviour,
        channel: ResponseChannel<AnswerFrame>,
        answer: AnswerFrame,
    ) {
        self.metrics.peer_request(answer.refusal().is_some());
        if calls.send_response(channel, answer).is_err() {
            tracing::debug!("could not answer a call: the connection closed");
        }
    }
}

/// Whether a call failed because its connection went away (or never
/// came), so that sending it again may work: the connection closed, the
/// stream broke, or the dial failed. Not a timeout, a protocol the peer
/// does not speak, or an answer we could not read.
/// Whether a call that failed with `error`, `took` after it was sent, is
/// sent again: its connection closed under it, or a dial was refused at
/// once; not a dial that waited out its timeout.
fn worth_sending_again(error: &OutboundFailure, took: Duration) -> bool {
    match error {
        OutboundFailure::DialFailure => took < REFUSED_WITHIN,
        other => lost_with_its_connection(other),
    }
}

pub(super) fn lost_with_its_connection(error: &OutboundFailure) -> bool {
    use std::io::ErrorKind::*;
    match error {
        OutboundFailure::ConnectionClosed | OutboundFailure::DialFailure => true,
        OutboundFailure::Io(e) => matches!(
            e.kind(),
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected
        ),
        _ => false,
    }
}

/// A new id for an at-most-once call: random, so that ids from before a
/// restart never collide with new ones.
fn fresh_id() -> u64 {
    getrandom::u64().unwrap_or_else(|_| crate::now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lost_connection_is_worth_sending_again() {
        use std::io::{Error, ErrorKind};
        assert!(lost_with_its_connection(&OutboundFailure::ConnectionClosed));
        assert!(lost_with_its_connection(&OutboundFailure::DialFailure));
        let eof = Error::new(ErrorKind::UnexpectedEof, "unexpected end of file");
        assert!(lost_with_its_connection(&OutboundFailure::Io(eof)));
        let bad = Error::new(ErrorKind::InvalidData, "frame too large");
        assert!(!lost_with_its_connection(&OutboundFailure::Io(bad)));
        assert!(!lost_with_its_connection(&OutboundFailure::Timeout));
        assert!(!lost_with_its_connection(
            &OutboundFailure::UnsupportedProtocols
        ));
    }

    #[test]
    fn a_dial_refused_at_once_is_tried_again_but_not_one_that_timed_out() {
        let quick = Duration::from_millis(5);
        let timed_out = Duration::from_secs(3);
        assert!(worth_sending_again(&OutboundFailure::DialFailure, quick));
        assert!(!worth_sending_again(
            &OutboundFailure::DialFailure,
            timed_out
        ));
        assert!(worth_sending_again(
            &OutboundFailure::ConnectionClosed,
            timed_out
        ));
        assert!(!worth_sending_again(&OutboundFailure::Timeout, quick));
    }
}
