//! TCP (or a circuit through a relay: relay.rs), then a version
//! preamble in the clear, then noise (the node's identity, bound to the
//! network key), then yamux (many streams over one connection).
//!
//! One encryption layer: noise's. The network key enters the noise
//! handshake as its prologue ([`PreSharedKey::noise_prologue`]), which both
//! sides hash into the handshake, so a peer without the key cannot finish
//! it: the dialer's check of noise's second message fails, and it hangs up.
//! Before noise, each side says which protocol version it speaks
//! ([`crate::PROTOCOL_VERSION`]), so a node of another release fails with a
//! message naming both versions instead of one that blames the key.
//! docs/protocol.md weighs this against the pnet layer it replaced.

use std::{error::Error, fmt, io, time::Duration};

use either::Either;
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{
    core::{
        muxing::StreamMuxerBox,
        transport::{timeout::TransportTimeoutError, Boxed},
        upgrade::{NegotiationError, Version},
    },
    identity::Keypair,
    noise, relay, tcp, yamux, PeerId, Transport,
};

use crate::{
    proxy::MaybeProxied, psk::PreSharedKey, started_timeout::StartedTimeout, PROTOCOL_VERSION,
};

/// Builds the authenticated, multiplexed transport of an Iris network.
///
/// `handshake_timeout` bounds the whole upgrade of each attempt, from its
/// start (started_timeout.rs): a peer that says nothing fails it promptly
/// instead of hanging. Every failure carries the
/// [`HandshakeStage`] it happened in. `relayed` is the relay client's
/// transport: a circuit is upgraded exactly as a TCP connection is, so the
/// relay in the middle sees only noise's ciphertext. With a `proxy`, every
/// TCP dial is a tunnel through it ([`crate::proxy`]).
pub fn build_transport(
    keypair: &Keypair,
    psk: &PreSharedKey,
    handshake_timeout: Duration,
    relayed: relay::client::Transport,
    proxy: Option<crate::proxy::Proxy>,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    let noise = noise::Config::new(keypair)?.with_prologue(psk.noise_prologue(PROTOCOL_VERSION));
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    let tcp = MaybeProxied::new(tcp, proxy);
    let upgraded = relayed
        .or_transport(tcp)
        // A circuit that could not be made fails like a TCP connect.
        .map_err(|error| match error {
            Either::Left(relayed) => io::Error::other(relayed),
            Either::Right(tcp) => tcp,
        })
        .and_then(|socket, _| exchange_versions(socket, PROTOCOL_VERSION))
        .upgrade(Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux::Config::default());
    let transport = StartedTimeout::new(upgraded, handshake_timeout)
        .map_err(HandshakeError::from_steps)
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed();
    Ok(transport)
}

/// What each side sends first, in the clear: these four bytes, then the
/// protocol version it speaks (big-endian u32).
const PREAMBLE_MAGIC: &[u8; 4] = b"iris";

/// Why the version preamble failed.
#[derive(Debug, thiserror::Error)]
pub enum PreambleError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(
        "the peer does not speak Iris's handshake of protocol {ours}: an Iris node of a release \
         before it, or not an Iris node"
    )]
    NotIris { ours: u32 },
    #[error(
        "the peer speaks Iris protocol {theirs}, this node protocol {ours}: run one Iris \
         release on both"
    )]
    Version { ours: u32, theirs: u32 },
}

/// Both sides write their preamble at once, then read the other's: half a
/// round trip, before anything secret is used.
pub async fn exchange_versions<S>(mut socket: S, ours: u32) -> Result<S, PreambleError>
where
    S: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    let mut mine = [0u8; 8];
    mine[..4].copy_from_slice(PREAMBLE_MAGIC);
    mine[4..].copy_from_slice(&ours.to_be_bytes());
    socket.write_all(&mine).await?;
    socket.flush().await?;
    let mut theirs = [0u8; 8];
    socket.read_exact(&mut theirs).await?;
    if &theirs[..4] != PREAMBLE_MAGIC {
        return Err(PreambleError::NotIris { ours });
    }
    let theirs = u32::from_be_bytes(theirs[4..].try_into().expect("four bytes"));
    if theirs != ours {
        return Err(PreambleError::Version { ours, theirs });
    }
    Ok(socket)
}

/// Where setting up a connection failed. A wrong network key shows only in
/// [`HandshakeStage::Authentication`]: the preamble and the negotiation
/// before noise are in the clear and use no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStage {
    /// The TCP connection itself.
    Connect,
    /// The version preamble: an I/O error here is a peer that hung up
    /// before saying anything.
    Preamble,
    /// Both spoke, but not the same protocol: [`PreambleError::Version`]
    /// or [`PreambleError::NotIris`].
    Incompatible,
    /// multistream-select, choosing noise.
    Negotiation,
    /// noise: where a peer with another network key fails.
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
            HandshakeStage::Preamble => "exchanging protocol versions",
            HandshakeStage::Incompatible => "incompatible peer",
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

/// The error of the transport's steps, innermost first: TCP, the preamble,
/// then the upgrades to noise (`N`) and to yamux (`Y`), each an `and_then`.
type Steps<N, Y> = TransportTimeoutError<Either<Either<Either<io::Error, PreambleError>, N>, Y>>;

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
                PreambleError::Io(e) => (Preamble, Box::new(e)),
                incompatible => (Incompatible, Box::new(incompatible)),
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

    /// Why the peer was incompatible, for [`HandshakeStage::Incompatible`].
    pub fn incompatibility(&self) -> Option<String> {
        (self.stage == HandshakeStage::Incompatible).then(|| self.cause.to_string())
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

        let silent: Test = TransportTimeoutError::Other(Either::Left(Either::Left(Either::Right(
            PreambleError::Io(reset()),
        ))));
        let error = as_the_swarm_reports(HandshakeError::from_steps(silent));
        assert_eq!(
            HandshakeError::find(&error).map(|f| f.stage),
            Some(HandshakeStage::Preamble)
        );
        let other: Test = TransportTimeoutError::Other(Either::Left(Either::Left(Either::Right(
            PreambleError::Version { ours: 5, theirs: 6 },
        ))));
        let error = as_the_swarm_reports(HandshakeError::from_steps(other));
        let found = HandshakeError::find(&error).unwrap();
        assert_eq!(found.stage, HandshakeStage::Incompatible);
        let why = found.incompatibility().unwrap();
        assert!(
            why.contains("protocol 6") && why.contains("protocol 5"),
            "{why}"
        );
        let timeout = as_the_swarm_reports(HandshakeError::from_steps::<Upgrade, io::Error>(
            TransportTimeoutError::Timeout,
        ));
        assert_eq!(
            HandshakeError::find(&timeout).map(|f| f.stage),
            Some(HandshakeStage::Timeout)
        );
    }

    #[tokio::test]
    async fn the_preamble_names_both_versions_and_spots_a_stranger() {
        let pair = || {
            let (a, b) = tokio::io::duplex(64);
            use tokio_util::compat::TokioAsyncReadCompatExt;
            (a.compat(), b.compat())
        };
        let (a, b) = pair();
        let (left, right) = tokio::join!(exchange_versions(a, 5), exchange_versions(b, 5));
        assert!(left.is_ok() && right.is_ok());

        let (a, b) = pair();
        let (left, right) = tokio::join!(exchange_versions(a, 5), exchange_versions(b, 7));
        let (left, right) = (left.err().unwrap(), right.err().unwrap());
        assert!(matches!(
            left,
            PreambleError::Version { ours: 5, theirs: 7 }
        ));
        assert!(
            right
                .to_string()
                .contains("protocol 5, this node protocol 7"),
            "{right}"
        );

        // What a node of the pnet era sent first: 24 bytes of nonce.
        let (a, mut b) = pair();
        let stranger = async move {
            b.write_all(&[0x5a; 24]).await.unwrap();
            let mut ignored = [0u8; 8];
            let _ = b.read_exact(&mut ignored).await;
        };
        let (left, ()) = tokio::join!(exchange_versions(a, 5), stranger);
        assert!(matches!(
            left.err().unwrap(),
            PreambleError::NotIris { ours: 5 }
        ));
    }
}
