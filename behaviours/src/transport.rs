//! TCP, then pnet (the network key), then noise (the node's identity), then
//! yamux (many streams over one connection).
//!
//! pnet runs on the raw socket before anything else, so a peer without the
//! key cannot even start multistream negotiation: it reads noise and gives
//! up. QUIC cannot carry pnet, which is why this is TCP only.

use std::time::Duration;

use libp2p::{
    core::{muxing::StreamMuxerBox, transport::Boxed, upgrade::Version},
    identity::Keypair,
    noise,
    pnet::{PnetConfig, PreSharedKey},
    tcp, yamux, PeerId, Transport,
};

/// Builds the authenticated, multiplexed transport of an Iris network.
///
/// `handshake_timeout` bounds the whole upgrade. A wrong key never produces a
/// clear error by itself (the far side just reads garbage), so a short timeout
/// is what turns a wrong key into a prompt failure instead of a hang.
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
        .boxed();
    Ok(transport)
}
