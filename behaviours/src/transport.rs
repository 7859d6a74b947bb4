//! TCP, then pnet (the network key), then noise (the node's identity), then
//! yamux (many streams over one connection).
//!
//! pnet runs on the raw socket before anything else, so a peer without the
//! key cannot even start multistream negotiation: it reads noise and gives
//! up. QUIC cannot carry pnet, which is why this is TCP only.

use std::{error::Error, fmt, io, time::Duration};

use either::Either;
use libp2p::{
    core::{
        muxing::StreamMuxerBox,
        transport::{timeout::TransportTimeoutError, Boxed},
        upgrade::{NegotiationError, Version},
    },
    identity::Keypair,
    noise,
    pnet::{PnetConfig, PnetError, PreSharedKey},
    tcp, yamux, PeerId, Transport,
};

/// Builds the authenticated, multiplexed transport of an Iris network.
///
/// `handshake_timeout` bounds the whole upgrade. A wrong key never produces a
/// clear error by itself (the far side just reads garbage), so a short timeout
/// is what turns a wrong key into a prompt failure instead of a hang. Every
/// failure carries the [`HandshakeStage`] it happened in.
pub fn build_transport(
    keypair: &Keypair,
    psk: PreSharedKey,
    handshake_timeout: Duration,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    let noise = noise::Config::new(keypair)?;
    let transport = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
        .upgrade(Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .timeout(handshake_timeout)
        .map_err(HandshakeError::from_steps)
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed();
    Ok(transport)
}

/// Where setting up a connection failed. A wrong network key shows only
/// from [`HandshakeStage::Negotiation`] on: pnet's nonces are exchanged in
/// the clear, and a stream that negotiated a protocol was decrypted right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStage {
    /// The TCP connection itself.
    Connect,
    /// pnet's nonce exchange, before the key is used.
    Nonces,
    /// multistream-select over the pnet stream: garbage here is the mark
    /// of a wrong key on one side.
    Negotiation,
    /// noise, after the protocol was agreed.
    Authentication,
    /// yamux, after noise.
    Multiplexing,
    /// The handshake timeout passed.
    Timeout,
}

impl fmt::Display for HandshakeStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandshakeStage::Connect => "connecting",
            HandshakeStage::Nonces => "exchanging nonces",
            HandshakeStage::Negotiation => "negotiating the security protocol",
            HandshakeStage::Authentication => "authenticating",
            HandshakeStage::Multiplexing => "setting up streams",
            HandshakeStage::Timeout => "handshake timed out",
        })
    }
}

/// A failed handshake: the stage, and what went wrong in it.
#[derive(Debug)]
pub struct HandshakeError {
    pub stage: HandshakeStage,
    /// The kind of the innermost I/O error, if the cause was one.
    pub io_kind: Option<io::ErrorKind>,
    cause: Box<dyn Error + Send + Sync>,
}

/// The error of the transport's steps, innermost first: TCP, pnet, then
/// the upgrades to noise (`N`) and to yamux (`Y`), each an `and_then`.
type Steps<N, Y> = TransportTimeoutError<Either<Either<Either<io::Error, PnetError>, N>, Y>>;

impl HandshakeError {
    fn from_steps<N, Y>(error: Steps<N, Y>) -> io::Error
    where
        N: Error + Send + Sync + 'static,
        Y: Error + Send + Sync + 'static,
    {
        use HandshakeStage::*;
        let (stage, cause): (_, Box<dyn Error + Send + Sync>) = match error {
            TransportTimeoutError::Timeout => (Timeout, "no answer in time".into()),
            TransportTimeoutError::TimerError(e) => (Timeout, Box::new(e)),
            TransportTimeoutError::Other(Either::Left(Either::Left(Either::Left(e)))) => {
                (Connect, Box::new(e))
            }
            TransportTimeoutError::Other(Either::Left(Either::Left(Either::Right(e)))) => match e {
                PnetError::HandshakeError(e) => (Nonces, Box::new(e)),
                PnetError::IoError(e) => (Nonces, Box::new(e)),
            },
            // libp2p keeps its upgrade error type private; what it wraps
            // tells the negotiation from the noise handshake after it.
            TransportTimeoutError::Other(Either::Left(Either::Right(e))) => {
                let negotiation = e
                    .source()
                    .is_some_and(|s| s.downcast_ref::<NegotiationError>().is_some());
                (
                    if negotiation {
                        Negotiation
                    } else {
                        Authentication
                    },
                    Box::new(e),
                )
            }
            TransportTimeoutError::Other(Either::Right(e)) => (Multiplexing, Box::new(e)),
        };
        let io_kind = innermost_io_kind(cause.as_ref());
        let kind = io_kind.unwrap_or(io::ErrorKind::Other);
        // `io::Error::source()` skips the error it wraps, and so does the
        // `Either` the swarm puts around this transport: the extra layer
        // keeps the HandshakeError itself in the chain a reader walks.
        io::Error::new(
            kind,
            Visible(HandshakeError {
                stage,
                io_kind,
                cause,
            }),
        )
    }

    /// The handshake failure in an error's chain of sources, if any.
    pub fn find<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a HandshakeError> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(found) = e.downcast_ref::<HandshakeError>() {
                return Some(found);
            }
            current = match e.downcast_ref::<io::Error>() {
                // Step into what an I/O error wraps (its source() skips it).
                Some(io) => io.get_ref().map(|inner| inner as &(dyn Error + 'static)),
                None => e.source(),
            };
        }
        None
    }
}

fn innermost_io_kind(error: &(dyn Error + 'static)) -> Option<io::ErrorKind> {
    let mut kind = None;
    let mut current = Some(error);
    while let Some(e) = current {
        // noise's I/O error forwards `source()` past the error it holds.
        if let Some(noise::Error::Io(io)) = e.downcast_ref::<noise::Error>() {
            kind = Some(io.kind());
        }
        current = match e.downcast_ref::<io::Error>() {
            Some(io) => {
                kind = Some(io.kind());
                io.get_ref().map(|inner| inner as &(dyn Error + 'static))
            }
            None => e.source(),
        };
    }
    kind
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.stage, self.cause)
    }
}

impl Error for HandshakeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.cause.as_ref())
    }
}

/// See [`HandshakeError::from_steps`]: a layer whose source is the
/// [`HandshakeError`], for the readers that skip one layer.
#[derive(Debug)]
struct Visible(HandshakeError);

impl fmt::Display for Visible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Error for Visible {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reset() -> io::Error {
        io::Error::from(io::ErrorKind::ConnectionReset)
    }

    /// The layers the swarm puts around a transport's error, as seen when
    /// an incoming connection fails.
    fn as_the_swarm_reports(ours: io::Error) -> io::Error {
        io::Error::other(TransportTimeoutError::Other(
            Either::<io::Error, io::Error>::Right(ours),
        ))
    }

    /// Stands in for libp2p's private upgrade error: it wraps the cause.
    #[derive(Debug)]
    struct Upgrade(Box<dyn Error + Send + Sync>);
    impl fmt::Display for Upgrade {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Handshake failed")
        }
    }
    impl Error for Upgrade {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    type Test = Steps<Upgrade, io::Error>;

    #[test]
    fn the_stage_of_a_failure_survives_the_layers_around_it() {
        let aborted: Test = TransportTimeoutError::Other(Either::Left(Either::Right(Upgrade(
            Box::new(noise::Error::Io(reset())),
        ))));
        let error = as_the_swarm_reports(HandshakeError::from_steps(aborted));
        let found = HandshakeError::find(&error).expect("the stage is found");
        assert_eq!(found.stage, HandshakeStage::Authentication);
        assert_eq!(found.io_kind, Some(io::ErrorKind::ConnectionReset));

        let garbage: Test = TransportTimeoutError::Other(Either::Left(Either::Right(Upgrade(
            Box::new(NegotiationError::Failed),
        ))));
        let error = as_the_swarm_reports(HandshakeError::from_steps(garbage));
        assert_eq!(
            HandshakeError::find(&error).map(|f| f.stage),
            Some(HandshakeStage::Negotiation)
        );

        let nonces: Test = TransportTimeoutError::Other(Either::Left(Either::Left(Either::Right(
            PnetError::HandshakeError(reset()),
        ))));
        let error = as_the_swarm_reports(HandshakeError::from_steps(nonces));
        assert_eq!(
            HandshakeError::find(&error).map(|f| f.stage),
            Some(HandshakeStage::Nonces)
        );
        let timeout = as_the_swarm_reports(HandshakeError::from_steps::<Upgrade, io::Error>(
            TransportTimeoutError::Timeout,
        ));
        assert_eq!(
            HandshakeError::find(&timeout).map(|f| f.stage),
            Some(HandshakeStage::Timeout)
        );
    }
}
