//! Our requests to peers, from sending to the answer: a request whose
//! connection closed under it (before or while it was sent, with no answer)
//! is sent again, on a live connection or a new one, a few times within its
//! deadline. Closing idle connections races requests that start at that
//! moment, and a peer may restart or be cut off for a moment; neither may
//! fail a user's command. A request that is not safe to repeat travels as
//! [`ControlRequest::AtMostOnce`], so the peer answers a repeat with its
//! first answer instead of carrying it out twice.

use std::time::{Duration, Instant};

use iris_behaviours::{
    libp2p::{
        request_response::{OutboundFailure, OutboundRequestId},
        PeerId,
    },
    ControlRequest, ControlResponse,
};
use tokio::sync::oneshot;

use super::{EventLoop, Outbound};

/// Times a request is sent before its failure is the asker's.
pub(super) const MAX_ATTEMPTS: u32 = 4;
/// The pause before the first repeat; it doubles with each.
const FIRST_PAUSE: Duration = Duration::from_millis(100);

impl EventLoop {
    /// Sends `request` to `peer` and hands the answer to `reply`. Not
    /// connected (say, just after a restart), it dials the addresses the
    /// member's record gives.
    pub(super) fn send_request(
        &mut self,
        peer: PeerId,
        request: ControlRequest,
        reply: oneshot::Sender<Result<ControlResponse, String>>,
    ) {
        let within = request.answer_within();
        let request = if request.is_repeatable() {
            request
        } else {
            ControlRequest::AtMostOnce {
                id: fresh_id(),
                request: Box::new(request),
            }
        };
        let outbound = Outbound {
            peer,
            request,
            attempts: 0,
            deadline: Instant::now() + within,
            within,
            reply,
            _in_use: self.ctx.activity.begin(peer),
        };
        self.dispatch(outbound);
    }

    fn dispatch(&mut self, mut outbound: Outbound) {
        let addrs = self.map.addrs(&outbound.peer);
        outbound.attempts += 1;
        let id = self
            .swarm
            .behaviour_mut()
            .control
            .send_request_with_addresses(&outbound.peer, outbound.request.clone(), addrs);
        self.outbound.insert(id, outbound);
    }

    /// Our request `id` failed: sent again if the connection went under it
    /// and there is time, or the asker hears why.
    pub(super) fn request_failed(&mut self, id: OutboundRequestId, error: &OutboundFailure) {
        let Some(outbound) = self.outbound.remove(&id) else {
            return;
        };
        let now = Instant::now();
        let pause = FIRST_PAUSE * 2u32.pow(outbound.attempts.saturating_sub(1));
        if lost_with_its_connection(error)
            && outbound.attempts < MAX_ATTEMPTS
            && now + pause < outbound.deadline
        {
            tracing::debug!(
                peer = %outbound.peer,
                attempt = outbound.attempts,
                "a request's connection closed under it ({error}); sending it again"
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

    /// Sends again the requests whose pause is over.
    pub(super) fn resend_due(&mut self, now: Instant) {
        if self.resends.is_empty() {
            return;
        }
        let (due, waiting) = std::mem::take(&mut self.resends)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.resends = waiting;
        for (_, outbound) in due {
            self.dispatch(outbound);
        }
    }

    /// Gives up on requests whose peer has not answered in time: the asker
    /// hears so, and a late answer is dropped.
    pub(super) fn expire_requests(&mut self) {
        let now = Instant::now();
        let overdue: Vec<OutboundRequestId> = self
            .outbound
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            if let Some(outbound) = self.outbound.remove(&id) {
                let within = outbound.within;
                let _ = outbound
                    .reply
                    .send(Err(format!("no answer within {} s", within.as_secs())));
            }
        }
    }
}

/// Whether a request failed because its connection went away (or never
/// came), so that sending it again may work: the connection closed, the
/// stream broke, or the dial failed. Not a timeout, a protocol the peer
/// does not speak, or an answer we could not read.
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

/// A new id for an at-most-once request: random, so that ids from before
/// a restart never collide with new ones.
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
}
