//! Saying goodbye: every connected member is asked to acknowledge our
//! departure on the membership protocol, and the loop waits a little for
//! them, handling everything else as always meanwhile.

use std::collections::HashSet;

use futures::StreamExt;
use iris_behaviours::{
    libp2p::{
        request_response::{Event, Message, OutboundRequestId},
        swarm::SwarmEvent,
        PeerId, Swarm,
    },
    Asks, Departure, IrisBehaviour, IrisBehaviourEvent, Leave,
};

/// How long goodbyes may take before we go anyway.
const DEPART_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// Goodbyes waiting for their acknowledgement.
pub(super) struct Goodbye {
    pending: HashSet<OutboundRequestId>,
    deadline: tokio::time::Instant,
}

impl Goodbye {
    /// Tells every connected member that we go.
    pub(super) fn send(swarm: &mut Swarm<IrisBehaviour>, departure: Departure) -> Self {
        let peers: Vec<PeerId> = swarm.connected_peers().copied().collect();
        let membership = &mut swarm.behaviour_mut().membership;
        let pending = peers
            .iter()
            .map(|peer| membership.send_request(peer, Leave { departure }.into_request()))
            .collect();
        Self {
            pending,
            deadline: tokio::time::Instant::now() + DEPART_DEADLINE,
        }
    }

    /// The swarm's next event that is not an acknowledgement, while some
    /// are missing and there is time; `None` once done.
    pub(super) async fn next(
        &mut self,
        swarm: &mut Swarm<IrisBehaviour>,
    ) -> Option<SwarmEvent<IrisBehaviourEvent>> {
        while !self.pending.is_empty() {
            let Ok(event) = tokio::time::timeout_at(self.deadline, swarm.select_next_some()).await
            else {
                let missing = self.pending.len();
                tracing::warn!("{missing} members did not acknowledge our departure in time");
                return None;
            };
            match event {
                SwarmEvent::Behaviour(IrisBehaviourEvent::Membership(
                    Event::Message {
                        message: Message::Response { request_id, .. },
                        ..
                    }
                    | Event::OutboundFailure { request_id, .. },
                )) if self.pending.contains(&request_id) => {
                    self.pending.remove(&request_id);
                }
                other => return Some(other),
            }
        }
        None
    }
}
