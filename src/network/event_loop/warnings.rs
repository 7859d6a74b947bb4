//! Warnings about peers this node turned away, at most one line of each
//! kind every [`PERIOD`]: a flood of bad connections or requests must not
//! become a flood of log lines (the first of each burst is always there).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use iris_behaviours::libp2p::{swarm::ListenError, Multiaddr, PeerId};

/// The least time between two lines of one kind.
const PERIOD: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct Warnings {
    /// Per kind: when the last line was written, and how many were held
    /// back since.
    kinds: HashMap<&'static str, (Instant, u64)>,
}

impl Warnings {
    /// Writes `message()` as a warning, unless one of this `kind` was
    /// written less than [`PERIOD`] ago; the next line says how many were
    /// held back.
    pub(super) fn warn(&mut self, kind: &'static str, message: impl FnOnce() -> String) {
        let now = Instant::now();
        match self.kinds.get_mut(kind) {
            Some((last, held)) if now.duration_since(*last) < PERIOD => *held += 1,
            Some((last, held)) => {
                let more = std::mem::take(held);
                *last = now;
                tracing::warn!(
                    "{} ({more} more like it in the last {} s)",
                    message(),
                    PERIOD.as_secs()
                );
            }
            None => {
                self.kinds.insert(kind, (now, 0));
                tracing::warn!("{}", message());
            }
        }
    }

    /// Gossip dropped messages to `peer` that waited too long for its
    /// connection: that member learns them only at its next catch-up.
    pub(super) fn dropped(&mut self, peer: PeerId) {
        self.warn("slow-gossip", || {
            format!("gossip to {peer} dropped messages that waited too long for its connection")
        });
    }

    /// A connection that failed in its handshake or was refused: a wrong
    /// key and a connection past the limits are worth a warning (at a
    /// bounded rate), a dialer that hung up is not.
    pub(super) fn incoming_failed(&mut self, from: &Multiaddr, error: &ListenError) {
        if let ListenError::Denied { cause } = error {
            self.warn("limit", || {
                format!("refused an incoming connection from {from}: {cause}")
            });
        } else {
            match crate::network::classify_incoming(error) {
                crate::network::IncomingFailure::WrongKey => self.warn("wrong-key", || {
                    format!(
                        "refused an incoming connection from {from}: handshake failed, wrong network key? ({})",
                        crate::network::error_chain(error)
                    )
                }),
                crate::network::IncomingFailure::TimedOut => self.warn("handshake-timeout", || {
                    format!(
                        "refused an incoming connection from {from}: its handshake did not finish in time (a stuck or slow peer, or another network key) ({})",
                        crate::network::error_chain(error)
                    )
                }),
                crate::network::IncomingFailure::Incompatible(why) => {
                    self.warn("incompatible", || {
                        format!("refused an incoming connection from {from}: {why}")
                    })
                }
                crate::network::IncomingFailure::Other => tracing::debug!(
                    from = %from,
                    "an incoming connection ended in its handshake: {}",
                    crate::network::error_chain(error)
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::network::{classify_incoming, IncomingFailure};

    /// Only a failure in noise hints at a key: a connection aborted for
    /// any other reason was once logged as "wrong network key?".
    #[test]
    fn an_incoming_failure_outside_the_handshake_is_no_wrong_key() {
        let aborted = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "aborted");
        assert!(matches!(
            classify_incoming(&aborted),
            IncomingFailure::Other
        ));
    }
}
