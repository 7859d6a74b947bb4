//! The rogue at a relay: asking for a place, opening circuits through it.

use std::time::Duration;

use futures::StreamExt;
use iris_behaviours::libp2p::{
    swarm::{dial_opts::DialOpts, dial_opts::PeerCondition, SwarmEvent},
    Multiaddr, PeerId,
};

use super::RoguePeer;

impl RoguePeer {
    /// Asks the relay at `relay` (ending in /p2p/<id>) for a place: `Ok`
    /// once it granted one, or why not.
    pub async fn reserve(&mut self, relay: &str) -> Result<(), String> {
        let circuit: Multiaddr = format!("{relay}/p2p-circuit").parse().unwrap();
        let id = self.swarm.listen_on(circuit).map_err(|e| e.to_string())?;
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let Ok(event) = tokio::time::timeout_at(until, self.swarm.select_next_some()).await
            else {
                return Err("no answer from the relay within 30 s".into());
            };
            match event {
                SwarmEvent::NewListenAddr { listener_id, .. } if listener_id == id => return Ok(()),
                SwarmEvent::ListenerClosed {
                    listener_id,
                    reason,
                    ..
                } if listener_id == id => return Err(format!("{reason:?}")),
                SwarmEvent::ListenerError { listener_id, error } if listener_id == id => {
                    return Err(error.to_string())
                }
                _ => {}
            }
        }
    }

    /// Opens `count` circuits at once through the relay at `relay` to
    /// `target`, which holds a place there; returns how many were made,
    /// and the error of one that was not.
    pub async fn open_circuits(
        &mut self,
        relay: &str,
        target: PeerId,
        count: usize,
    ) -> (usize, Option<String>) {
        let address: Multiaddr = format!("{relay}/p2p-circuit/p2p/{target}").parse().unwrap();
        for _ in 0..count {
            let dial = DialOpts::peer_id(target)
                .condition(PeerCondition::Always)
                .addresses(vec![address.clone()])
                .build();
            self.swarm.dial(dial).unwrap();
        }
        let (mut made, mut settled, mut refused) = (0, 0, None);
        let until = tokio::time::Instant::now() + Duration::from_secs(60);
        while settled < count {
            let Ok(event) = tokio::time::timeout_at(until, self.swarm.select_next_some()).await
            else {
                break;
            };
            match event {
                // Hole punching may add a direct connection: not a circuit.
                SwarmEvent::ConnectionEstablished {
                    peer_id, endpoint, ..
                } if peer_id == target && endpoint.is_relayed() => {
                    made += 1;
                    settled += 1;
                }
                SwarmEvent::OutgoingConnectionError {
                    peer_id: Some(peer),
                    error,
                    ..
                } if peer == target => {
                    settled += 1;
                    refused.get_or_insert_with(|| format!("{error}"));
                }
                _ => {}
            }
        }
        (made, refused)
    }

    /// Takes whatever comes for `period`: circuits to it, requests (left
    /// unanswered), so that its swarm keeps up.
    pub async fn idle(&mut self, period: Duration) {
        let until = tokio::time::Instant::now() + period;
        while tokio::time::timeout_at(until, self.swarm.select_next_some())
            .await
            .is_ok()
        {}
    }
}
