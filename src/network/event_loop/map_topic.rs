//! The map's gossip topic: this network's topic, and its messages encoded,
//! published, decoded and counted.

use std::sync::Arc;

use iris_behaviours::{
    behaviour::MAX_GOSSIP_MESSAGE,
    codec,
    libp2p::{
        gossipsub::{self, IdentTopic},
        PeerId,
    },
    traffic::Traffic,
    MapMessage, NetworkConfig,
};

pub(super) struct MapTopic {
    topic: IdentTopic,
    /// The map's share of the node's traffic metrics.
    traffic: Arc<Traffic>,
}

impl MapTopic {
    pub(super) fn new(network: &NetworkConfig, traffic: Arc<Traffic>) -> Self {
        Self {
            topic: IdentTopic::new(iris_behaviours::map_topic(&network.name)),
            traffic,
        }
    }

    pub(super) fn subscribe(&self, gossipsub: &mut gossipsub::Behaviour) {
        if let Err(e) = gossipsub.subscribe(&self.topic) {
            tracing::error!("cannot subscribe to the map topic: {e}");
        }
    }

    /// Publishes `message`; false if no one listens yet.
    pub(super) fn publish(
        &self,
        gossipsub: &mut gossipsub::Behaviour,
        message: &MapMessage,
    ) -> bool {
        let bytes = match codec::encode(message, MAX_GOSSIP_MESSAGE) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!("cannot encode a map message: {e}");
                return true;
            }
        };
        let len = bytes.len();
        match gossipsub.publish(self.topic.clone(), bytes) {
            Ok(_) => {
                self.traffic.sent(len);
                true
            }
            // Nobody has subscribed yet (we are alone, or just connected).
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => false,
            Err(e) => {
                tracing::debug!("map publish failed: {e}");
                true
            }
        }
    }

    /// A message that arrived, with its author; `None` if it is no map
    /// message.
    pub(super) fn open(&self, message: &gossipsub::Message) -> Option<(PeerId, MapMessage)> {
        self.traffic.received(message.data.len());
        // Strict validation guarantees a signed author.
        let author = message.source?;
        match codec::decode(&message.data) {
            Ok(decoded) => Some((author, decoded)),
            Err(e) => {
                tracing::warn!(%author, "ignored a malformed map message: {e}");
                None
            }
        }
    }
}
