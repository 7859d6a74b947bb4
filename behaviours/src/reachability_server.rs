//! The server side of reachability tests (AutoNAT v2), bounded.
//!
//! A member asks a node to dial it back at an address, to learn whether
//! others can reach it there. libp2p's server dials whatever address the
//! member names (it only asks for some bytes first when the address is not
//! the one it sees the member at). Unbounded, that lets any key holder make
//! a node connect anywhere and learn from the answer whether something
//! listens there: a port scan of the networks the node sees (a hospital's
//! LAN, say), run from inside. This wrapper lets a dial-back go only to the
//! IP address the member is connected from right now, directly (not
//! through a relay): a member may test its own address, which is what the
//! test is for, and nothing else. A refused dial-back fails like one that
//! found nothing, so the member learns only that its test failed.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    task::{Context, Poll},
};

use libp2p::{
    autonat::v2::server,
    core::{transport::PortUse, Endpoint},
    multiaddr::Protocol,
    swarm::{
        ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};

use crate::relay::is_relayed;

/// libp2p's AutoNAT v2 server, whose dial-backs go only to the IP address
/// the member that asked is connected from.
#[derive(Default)]
pub struct ReachabilityServer {
    inner: server::Behaviour,
    /// Direct connections open now: each peer's, with their remote IPs.
    ips: HashMap<PeerId, HashMap<ConnectionId, IpAddr>>,
    /// The connections the server is about to dial: dial-backs.
    dial_backs: HashSet<ConnectionId>,
}

/// Why a dial-back was refused.
#[derive(Debug, thiserror::Error)]
#[error("refused to dial {0} back: a member may only have its own address tested")]
pub struct DialBackRefused(Multiaddr);

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl ReachabilityServer {
    /// Whether a dial-back for `peer` may go to `addr`.
    pub fn allows(&self, peer: &PeerId, addr: &Multiaddr) -> bool {
        let connected_from = |ip: IpAddr| {
            self.ips
                .get(peer)
                .is_some_and(|ips| ips.values().any(|i| *i == ip))
        };
        !is_relayed(addr) && ip_of(addr).is_some_and(connected_from)
    }
}

impl NetworkBehaviour for ReachabilityServer {
    type ConnectionHandler = <server::Behaviour as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = <server::Behaviour as NetworkBehaviour>::ToSwarm;

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if self.dial_backs.remove(&id) {
            let refused = match peer {
                Some(peer) => addresses.iter().find(|a| !self.allows(&peer, a)),
                None => addresses.first(),
            };
            if let Some(addr) = refused {
                return Err(ConnectionDenied::new(DialBackRefused(addr.clone())));
            }
        }
        self.inner
            .handle_pending_outbound_connection(id, peer, addresses, role)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_inbound_connection(id, peer, local, remote)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_outbound_connection(id, peer, addr, role, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match &event {
            FromSwarm::ConnectionEstablished(e) => {
                let remote = e.endpoint.get_remote_address();
                if let Some(ip) = ip_of(remote).filter(|_| !is_relayed(remote)) {
                    let ips = self.ips.entry(e.peer_id).or_default();
                    ips.insert(e.connection_id, ip);
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                ..
            }) => {
                if let Some(ips) = self.ips.get_mut(peer_id) {
                    ips.remove(connection_id);
                    if ips.is_empty() {
                        self.ips.remove(peer_id);
                    }
                }
            }
            FromSwarm::DialFailure(failure) => {
                self.dial_backs.remove(&failure.connection_id);
            }
            _ => {}
        }
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner.on_connection_handler_event(peer, id, event)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        let polled = self.inner.poll(cx);
        if let Poll::Ready(ToSwarm::Dial { opts }) = &polled {
            self.dial_backs.insert(opts.connection_id());
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::{core::ConnectedPoint, swarm::ConnectionId};

    #[test]
    fn a_dial_back_goes_only_to_the_ip_the_member_is_connected_from() {
        let mut server = ReachabilityServer::default();
        let (member, other) = (PeerId::random(), PeerId::random());
        let seen_at: Multiaddr = "/ip4/198.51.100.20/tcp/51000".parse().unwrap();
        let its_listener: Multiaddr = "/ip4/198.51.100.20/tcp/7000".parse().unwrap();
        let lan_host: Multiaddr = "/ip4/10.0.0.5/tcp/22".parse().unwrap();
        let circuit: Multiaddr = format!("{seen_at}/p2p/{other}/p2p-circuit")
            .parse()
            .unwrap();
        assert!(!server.allows(&member, &its_listener), "not connected");
        let id = ConnectionId::new_unchecked(7);
        let endpoint = ConnectedPoint::Listener {
            local_addr: "/ip4/198.51.100.10/tcp/443".parse().unwrap(),
            send_back_addr: seen_at.clone(),
        };
        server
            .ips
            .entry(member)
            .or_default()
            .insert(id, ip_of(endpoint.get_remote_address()).unwrap());
        assert!(server.allows(&member, &its_listener), "its own address");
        assert!(!server.allows(&member, &lan_host), "a host on the LAN");
        assert!(!server.allows(&member, &circuit), "through a relay");
        assert!(
            !server.allows(&other, &its_listener),
            "another member's address"
        );

        // A dial-back the server asks for is refused before it starts.
        server.dial_backs.insert(id);
        let refused = server.handle_pending_outbound_connection(
            id,
            Some(member),
            std::slice::from_ref(&lan_host),
            Endpoint::Dialer,
        );
        assert!(refused.is_err());
        // Any other dial is not the guard's business.
        let ours = server.handle_pending_outbound_connection(
            ConnectionId::new_unchecked(8),
            Some(member),
            std::slice::from_ref(&lan_host),
            Endpoint::Dialer,
        );
        assert!(ours.is_ok());
    }
}
