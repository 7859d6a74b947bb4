//! TCP that may go through an HTTP CONNECT proxy: a site whose firewall
//! lets connections out only through its proxy names it in `iris.toml`
//! (`[p2p] proxy`), and every dial of the node then asks the proxy for a
//! tunnel to the address it dials. What flows in the tunnel is our whole
//! handshake (transport.rs): the proxy sees the address and the
//! bytes' count, never their content.
//!
//! Listening is plain TCP as always; a node behind such a proxy is reached
//! through a relay (relay.rs).

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};

use futures::{future::BoxFuture, AsyncReadExt, AsyncWriteExt, FutureExt};
use libp2p::{
    core::transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent},
    multiaddr::Protocol,
    tcp, Multiaddr, Transport,
};

/// The longest answer to a CONNECT the node reads.
const MAX_PROXY_ANSWER: usize = 8 * 1024;

type Tcp = tcp::tokio::Transport;
type TcpStream = <Tcp as Transport>::Output;

/// An HTTP proxy to tunnel through: where it is, and the `user:password`
/// it asks for, if any (sent as Basic authentication).
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    pub addr: SocketAddr,
    pub credentials: Option<String>,
}

impl std::fmt::Debug for Proxy {
    // The password stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let with = if self.credentials.is_some() {
            " (with credentials)"
        } else {
            ""
        };
        write!(f, "http://{}{with}", self.addr)
    }
}

/// TCP, through `proxy` when there is one.
pub struct MaybeProxied {
    tcp: Tcp,
    proxy: Option<Proxy>,
}

impl MaybeProxied {
    pub fn new(tcp: Tcp, proxy: Option<Proxy>) -> Self {
        Self { tcp, proxy }
    }
}

/// The `ip:port` a TCP multiaddr names, as a CONNECT request says it.
fn authority(addr: &Multiaddr) -> Option<String> {
    let mut parts = addr.iter();
    let host = match parts.next()? {
        Protocol::Ip4(ip) => ip.to_string(),
        Protocol::Ip6(ip) => format!("[{ip}]"),
        Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name) => name.to_string(),
        _ => return None,
    };
    let Protocol::Tcp(port) = parts.next()? else {
        return None;
    };
    // A /p2p/ suffix is ours to check, after the tunnel; anything else
    // (a circuit) is not for TCP.
    match (parts.next(), parts.next()) {
        (None, _) | (Some(Protocol::P2p(_)), None) => Some(format!("{host}:{port}")),
        _ => None,
    }
}

/// Asks the proxy on `stream` for a tunnel to `authority`, with Basic
/// `credentials` if given; the stream is the tunnel once the proxy
/// answered 200.
pub async fn connect<S>(
    stream: &mut S,
    authority: &str,
    credentials: Option<&str>,
) -> io::Result<()>
where
    S: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    use base64::Engine;
    let auth = credentials.map_or(String::new(), |c| {
        let token = base64::engine::general_purpose::STANDARD.encode(c);
        format!("Proxy-Authorization: Basic {token}\r\n")
    });
    let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    // Byte by byte, so that nothing of the tunnel is read with the header.
    let mut answer = Vec::with_capacity(256);
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= MAX_PROXY_ANSWER {
            return Err(io::Error::other("the proxy's answer has no end"));
        }
        let mut byte = [0u8];
        stream.read_exact(&mut byte).await?;
        answer.push(byte[0]);
    }
    let status = answer.split(|b| *b == b'\r').next().unwrap_or_default();
    let status = String::from_utf8_lossy(status);
    let code = status.split(' ').nth(1);
    if !status.starts_with("HTTP/1.") || code != Some("200") {
        let shown: String = status.chars().take(80).collect();
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("the proxy refused a tunnel to {authority}: {shown}"),
        ));
    }
    Ok(())
}

impl Transport for MaybeProxied {
    type Output = TcpStream;
    type Error = io::Error;
    type ListenerUpgrade = <Tcp as Transport>::ListenerUpgrade;
    type Dial = BoxFuture<'static, io::Result<TcpStream>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<io::Error>> {
        self.tcp.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.tcp.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<io::Error>> {
        let Some(Proxy {
            addr: proxy,
            credentials,
        }) = self.proxy.clone()
        else {
            return Ok(self.tcp.dial(addr, opts)?.boxed());
        };
        let Some(target) = authority(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let proxy_addr = Multiaddr::from(proxy.ip()).with(Protocol::Tcp(proxy.port()));
        // A fresh port: the proxy is not a peer that could dial us back.
        let opts = DialOpts {
            port_use: PortUse::New,
            ..opts
        };
        let dial = self.tcp.dial(proxy_addr, opts)?;
        Ok(async move {
            let mut stream = dial.await?;
            connect(&mut stream, &target, credentials.as_deref()).await?;
            Ok(stream)
        }
        .boxed())
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, io::Error>> {
        Pin::new(&mut self.get_mut().tcp).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tunnel_is_asked_for_the_tcp_address_and_nothing_else() {
        let addr = |s: &str| s.parse::<Multiaddr>().unwrap();
        assert_eq!(
            authority(&addr("/ip4/198.51.100.10/tcp/443")).as_deref(),
            Some("198.51.100.10:443")
        );
        assert_eq!(
            authority(&addr("/ip6/::1/tcp/7000")).as_deref(),
            Some("[::1]:7000")
        );
        let id = libp2p::PeerId::random();
        assert!(authority(&addr(&format!("/ip4/192.0.2.1/tcp/1/p2p/{id}"))).is_some());
        let circuit = format!("/ip4/192.0.2.1/tcp/1/p2p/{id}/p2p-circuit");
        assert_eq!(authority(&addr(&circuit)), None);
        assert_eq!(authority(&addr("/ip4/192.0.2.1/udp/1")), None);
    }

    async fn answered(proxy_says: &'static [u8]) -> (io::Result<()>, Vec<u8>) {
        use tokio_util::compat::TokioAsyncReadCompatExt;
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (mut ours, mut theirs) = (ours.compat(), theirs.compat());
        let proxy = async move {
            let mut request = vec![0u8; 256];
            let n = theirs.read(&mut request).await.unwrap();
            theirs.write_all(proxy_says).await.unwrap();
            theirs.write_all(b"tunnel").await.unwrap();
            request.truncate(n);
            (request, theirs)
        };
        let asked = connect(&mut ours, "198.51.100.10:443", Some("site:s3cret"));
        let (result, (request, _theirs)) = tokio::join!(asked, proxy);
        if result.is_ok() {
            let mut rest = [0u8; 6];
            ours.read_exact(&mut rest).await.unwrap();
            assert_eq!(
                &rest, b"tunnel",
                "the tunnel's first bytes are left to read"
            );
        }
        (result, request)
    }

    #[tokio::test]
    async fn the_proxy_must_answer_200_and_the_tunnel_follows_its_answer() {
        let (ok, request) =
            answered(b"HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\n").await;
        ok.unwrap();
        let request = String::from_utf8(request).unwrap();
        let head = "CONNECT 198.51.100.10:443 HTTP/1.1\r\nHost: 198.51.100.10:443\r\n";
        assert!(request.starts_with(head), "{request}");
        // base64("site:s3cret")
        let auth = "Proxy-Authorization: Basic c2l0ZTpzM2NyZXQ=\r\n\r\n";
        assert!(request.contains(auth), "{request}");
        let (refused, _) = answered(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
        let error = refused.unwrap_err().to_string();
        assert!(error.contains("403 Forbidden"), "{error}");
        let (garbage, _) = answered(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        assert!(garbage.is_err());
    }
}
