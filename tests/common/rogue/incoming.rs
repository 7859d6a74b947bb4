//! What arrives at the rogue: a membership request or a call, with where
//! to answer it.

use iris_behaviours::{
    libp2p::{
        request_response,
        swarm::{ConnectionId, SwarmEvent},
        PeerId,
    },
    AnswerFrame, Envelope, IrisBehaviourEvent, MembershipRequest,
};

/// A membership request or a call a peer sent the rogue, with where to
/// answer it.
pub(super) enum Incoming {
    Membership {
        peer: PeerId,
        request: MembershipRequest,
        channel: request_response::ResponseChannel<AnswerFrame>,
    },
    Call {
        peer: PeerId,
        connection: ConnectionId,
        envelope: Envelope,
        channel: request_response::ResponseChannel<AnswerFrame>,
    },
}

impl Incoming {
    /// The request or call `event` carries, if it is one.
    pub(super) fn from(event: SwarmEvent<IrisBehaviourEvent>) -> Option<Self> {
        use request_response::{Event, Message};
        match event {
            SwarmEvent::Behaviour(IrisBehaviourEvent::Membership(Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            })) => Some(Self::Membership {
                peer,
                request,
                channel,
            }),
            SwarmEvent::Behaviour(IrisBehaviourEvent::Calls(Event::Message {
                peer,
                connection_id,
                message:
                    Message::Request {
                        request, channel, ..
                    },
            })) => Some(Self::Call {
                peer,
                connection: connection_id,
                envelope: request,
                channel,
            }),
            _ => None,
        }
    }
}
