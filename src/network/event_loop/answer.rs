//! Answering a membership request: the one place that sends an answer on
//! the membership protocol and counts it (refused or not) for `/metrics`.

use iris_behaviours::{
    libp2p::{request_response, Swarm},
    AnswerFrame, IrisBehaviour,
};

/// Answers a membership request on `channel`.
pub(super) fn answer(
    swarm: &mut Swarm<IrisBehaviour>,
    metrics: &crate::metrics::Metrics,
    channel: request_response::ResponseChannel<AnswerFrame>,
    response: AnswerFrame,
) {
    metrics.peer_request(response.refusal().is_some());
    if swarm
        .behaviour_mut()
        .membership
        .send_response(channel, response)
        .is_err()
    {
        tracing::debug!("could not answer: the connection closed");
    }
}
