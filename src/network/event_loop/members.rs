//! The members as this node knows them (the network's config, our own
//! record and the map) and what this node makes of what members say: records
//! and suspicions on the map topic, requests and answers on the membership
//! protocol.
//!
//! Pure, like [`crate::network::map`]: no swarm and no I/O. Each step
//! returns the [`Effect`]s the event loop carries out (tell the owner,
//! publish, disconnect), so the rules are tested without a network.

use std::time::Instant;

use iris_behaviours::{
    libp2p::{identity::Keypair, PeerId},
    Accepted, AnswerFrame, Asks, Departure, Hello, Join, Leave, Liveness, MapMessage,
    MembershipRequest, NetworkConfig, NodeRecord, Probe, ProbeFor, Refusal, Removals, Welcome,
    MAX_REMOVED,
};

use super::call_desk::Sender;
use crate::{
    events::EventKind,
    network::{map::NetworkMap, Snapshot},
    store::SavedMembership,
};

/// How far ahead of our clock a copy of a record named in a suspicion may
/// be: clocks differ a little, but a copy signed later than this cannot
/// exist yet.
const MAX_CLOCK_AHEAD: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// What the event loop does after a step of [`Members`].
#[derive(Debug)]
pub(super) enum Effect {
    /// The map changed: the owner is told and the neighbours recomputed.
    Changed(EventKind),
    /// Our record changed or was doubted: a freshly signed copy goes out
    /// ([`Members::announcement`]).
    Announce,
    /// A message for the map topic.
    Publish(MapMessage),
    /// The master removed this node: its connections close.
    Disconnect(PeerId),
    /// A suspicion of this node was refuted: the watch starts afresh.
    Refuted,
    /// A member spoke on this connection: it is in use, not idle.
    InUse(PeerId),
}

/// How a membership request is answered.
pub(super) enum Reply {
    /// With this frame, now.
    Now(AnswerFrame),
    /// Once a probe of `target` on the asker's behalf ends
    /// ([`super::watch::Watch::probe_for`]).
    ProbeFor(PeerId),
}

pub(super) struct Members {
    pub(super) network: NetworkConfig,
    pub(super) own: NodeRecord,
    pub(super) map: NetworkMap,
    keypair: Keypair,
    /// The map or our record changed since the last save.
    dirty: bool,
}

impl Members {
    /// Before the setup: `network` is the config to create or resume, or a
    /// stand-in while joining; the map holds only `own`.
    pub(super) fn new(network: NetworkConfig, own: NodeRecord, keypair: Keypair) -> Self {
        let map = NetworkMap::new(&network, own.clone());
        Self {
            network,
            own,
            map,
            keypair,
            dirty: true,
        }
    }

    /// The setup is done: the network and map it settled on.
    pub(super) fn joined(&mut self, network: NetworkConfig, map: NetworkMap) {
        self.network = network;
        self.map = map;
        self.dirty = true;
    }

    pub(super) fn is_current_member(&self, peer: &PeerId) -> bool {
        self.map
            .get(peer)
            .is_some_and(|entry| entry.state != Liveness::Left)
    }

    pub(super) fn is_master(&self, peer: &PeerId) -> bool {
        *peer == self.network.master
    }

    /// Who `peer` is to a call it sent.
    pub(super) fn sender(&self, peer: &PeerId) -> Sender {
        match self.is_current_member(peer) {
            true => Sender::Member {
                is_master: self.is_master(peer),
            },
            false => Sender::Stranger,
        }
    }

    /// What the node's API shows of the network, with the peers this node
    /// is `connected` to.
    pub(super) fn snapshot(&self, connected: Vec<PeerId>, relayed: Vec<PeerId>) -> Snapshot {
        Snapshot {
            network: self.network.clone(),
            own: self.own.clone(),
            map: self.map.entries(),
            connected,
            relayed,
        }
    }

    /// The membership to save, if it changed since the last time asked
    /// (or `always`, at a shutdown).
    pub(super) fn changes_to_save(&mut self, always: bool) -> Option<SavedMembership> {
        if !self.dirty && !always {
            return None;
        }
        self.dirty = false;
        Some(SavedMembership {
            network: self.network.clone(),
            own_version: self.own.version,
            map: self.map.entries(),
            removed: self.map.removed(),
            removals: self.map.removals().clone(),
        })
    }

    /// A freshly signed copy of our record for the map topic: each
    /// announcement and introduction is a new signature, so a replayed
    /// copy is never taken for a sign of life, and a newer one refutes any
    /// suspicion of an older.
    pub(super) fn announcement(&mut self) -> MapMessage {
        sign_now(&mut self.own, &self.keypair);
        self.map.set_own(self.own.clone());
        MapMessage::Announce {
            record: self.own.clone(),
        }
    }

    /// Our record changed (`change`): a new version, saved and announced.
    pub(super) fn change_own(&mut self, change: impl FnOnce(&mut NodeRecord)) -> Vec<Effect> {
        change(&mut self.own);
        self.own.version = crate::network::next_version(self.own.version);
        self.map.set_own(self.own.clone());
        self.dirty = true;
        vec![Effect::Announce]
    }

    /// The master tells everyone which nodes it removed: at each removal,
    /// and to each new listener, so a member that missed one learns it.
    pub(super) fn removal_notice(&self) -> Option<MapMessage> {
        let removals = self.map.removals();
        (self.network.master == self.own.peer_id && !removals.peers.is_empty()).then(|| {
            MapMessage::Removed {
                removals: removals.clone(),
            }
        })
    }

    /// This node, the master, removes `peer`, and signs the new list of
    /// the nodes it removed (which it then tells everyone).
    pub(super) fn remove_as_master(&mut self, peer: PeerId) -> Vec<Effect> {
        if !self.is_master(&self.own.peer_id) {
            tracing::warn!(%peer, "only the master removes a node");
            return Vec::new();
        }
        if self.map.removed().len() >= MAX_REMOVED {
            tracing::error!(%peer, "cannot remove a node: {MAX_REMOVED} were removed already, the most a list holds");
            return Vec::new();
        }
        let effects = self.remove(vec![peer]);
        let at = crate::now_ms().max(self.map.removals().signed_at_ms + 1);
        let signed = Removals::sign(self.map.removed(), at, &self.keypair);
        self.map.keep_removals(signed);
        self.dirty = true;
        effects
    }

    /// A list of removed nodes that reached us (in a notice, a join's
    /// answer or a catch-up): taken only as the master signed it.
    pub(super) fn take_removals(&mut self, from: PeerId, removals: Removals) -> Vec<Effect> {
        if removals.peers.is_empty() {
            return Vec::new();
        }
        if let Err(reason) = removals.verify(&self.network.master) {
            tracing::warn!(%from, "ignored a list of removed nodes: {reason}");
            return Vec::new();
        }
        let peers = removals.peers.clone();
        self.map.keep_removals(removals);
        self.dirty = true;
        self.remove(peers)
    }

    /// A change of the map, if there is one: saved, and the owner told.
    fn changed(&mut self, event: Option<EventKind>) -> Vec<Effect> {
        match event {
            Some(event) => {
                self.dirty = true;
                vec![Effect::Changed(event)]
            }
            None => Vec::new(),
        }
    }

    fn changed_all(&mut self, events: Vec<EventKind>) -> Vec<Effect> {
        events
            .into_iter()
            .flat_map(|event| self.changed(Some(event)))
            .collect()
    }

    /// Any sign of life from `peer`.
    pub(super) fn heard_from(&mut self, peer: &PeerId) -> Vec<Effect> {
        let event = self.map.heard_from(peer);
        self.changed(event)
    }

    /// Suspects gone for long enough become gone.
    pub(super) fn tick(&mut self, now: Instant, gone_after: std::time::Duration) -> Vec<Effect> {
        let events = self.map.tick(now, gone_after);
        self.changed_all(events)
    }

    /// A message `author` signed on the map topic.
    pub(super) fn on_map_message(&mut self, author: PeerId, message: MapMessage) -> Vec<Effect> {
        match message {
            MapMessage::Announce { record } => {
                if record.peer_id != author {
                    tracing::warn!(%author, "ignored a record for {} sent by someone else", record.peer_id);
                    return Vec::new();
                }
                if let Err(reason) = record.verify() {
                    tracing::warn!(%author, "ignored a record: {reason}");
                    return Vec::new();
                }
                match self.map.merge(record) {
                    Ok(event) => self.changed(event),
                    Err(reason) => {
                        tracing::warn!(%author, "ignored a record: {reason}");
                        Vec::new()
                    }
                }
            }
            MapMessage::Suspect {
                peer,
                version,
                signed_at_ms,
            } => self.on_suspicion(author, peer, (version, signed_at_ms), Instant::now()),
            MapMessage::Leave { departure } => self.departed(&author, departure),
            MapMessage::Removed { removals } if self.is_master(&author) => {
                self.take_removals(author, removals)
            }
            MapMessage::Removed { .. } => {
                tracing::warn!(%author, "ignored a removal from a node that is not the master");
                Vec::new()
            }
        }
    }

    /// `peer` said goodbye.
    pub(super) fn departed(&mut self, peer: &PeerId, departure: Departure) -> Vec<Effect> {
        let event = self.map.departed(peer, departure);
        self.changed(event)
    }

    /// Removes nodes the master removed: pruned from the map, refused and
    /// disconnected from now on.
    pub(super) fn remove(&mut self, peers: Vec<PeerId>) -> Vec<Effect> {
        let mut effects = Vec::new();
        for peer in peers {
            if let Some(event) = self.map.remove(peer) {
                tracing::info!(%peer, "the master removed a node from the network");
                effects.extend(self.changed(Some(event)));
                effects.push(Effect::Disconnect(peer));
            }
        }
        effects
    }

    /// Merges a record that arrived on a connection authenticated as `peer`.
    fn take_record(&mut self, peer: PeerId, record: NodeRecord) -> Result<Vec<Effect>, String> {
        if record.peer_id != peer {
            let reason = format!("the record is for {}, but you are {peer}", record.peer_id);
            tracing::warn!(%peer, "{reason}");
            return Err(reason);
        }
        record.verify()?;
        match self.map.merge(record) {
            Ok(event) => Ok(self.changed(event)),
            Err(reason) => {
                tracing::warn!(%peer, "refused a record: {reason}");
                Err(reason)
            }
        }
    }

    /// A membership request from `peer`, and how to answer it.
    pub(super) fn on_request(
        &mut self,
        peer: PeerId,
        request: MembershipRequest,
    ) -> (Reply, Vec<Effect>) {
        let now = |frame| Reply::Now(frame);
        match request {
            MembershipRequest::Join(Join { record }) => match self.take_record(peer, record) {
                Ok(effects) => (
                    now(sealed::<Join>(Welcome {
                        config: self.network.clone(),
                        map: self.map.entries(),
                        removed: self.map.removals().clone(),
                    })),
                    effects,
                ),
                Err(reason) => (
                    now(AnswerFrame::refused(Refusal::invalid(format!(
                        "{reason} in network '{}'",
                        self.network.name
                    )))),
                    Vec::new(),
                ),
            },
            MembershipRequest::Hello(Hello { record, seen_as }) => {
                // How we saw the peer before this sign of life.
                let ours = self.map.get(&peer).map(|e| e.state);
                match self.take_record(peer, record) {
                    Ok(mut effects) => {
                        effects.push(Effect::InUse(peer));
                        effects.extend(self.refute_if_doubted(peer, seen_as));
                        let hello = Hello {
                            record: self.own.clone(),
                            seen_as: ours,
                        };
                        (now(sealed::<Hello>(hello)), effects)
                    }
                    Err(reason) => (
                        now(AnswerFrame::refused(Refusal::invalid(reason))),
                        Vec::new(),
                    ),
                }
            }
            MembershipRequest::Probe(_) | MembershipRequest::ProbeFor(_)
                if !self.is_current_member(&peer) =>
            {
                let refusal =
                    Refusal::forbidden("forbidden: you are not a current member of this network");
                (now(AnswerFrame::refused(refusal)), Vec::new())
            }
            MembershipRequest::Probe(_) => (now(sealed::<Probe>(Accepted)), Vec::new()),
            MembershipRequest::ProbeFor(ProbeFor { target }) => {
                (Reply::ProbeFor(target), Vec::new())
            }
            MembershipRequest::Leave(Leave { departure }) => (
                now(sealed::<Leave>(Accepted)),
                self.departed(&peer, departure),
            ),
        }
    }

    /// A member's answer to our hello: its record, and how it sees us.
    pub(super) fn on_hello_back(&mut self, peer: PeerId, answer: &AnswerFrame) -> Vec<Effect> {
        match Hello::open(answer) {
            Ok(Ok(Hello { record, seen_as })) => {
                let mut effects = self.take_record(peer, record).unwrap_or_default();
                effects.extend(self.refute_if_doubted(peer, seen_as));
                effects
            }
            Ok(Err(refusal)) => {
                tracing::warn!(%peer, "peer refused us: {}", refusal.reason);
                Vec::new()
            }
            Err(e) => {
                tracing::debug!(%peer, "an answer to our hello that is not one: {e}");
                Vec::new()
            }
        }
    }

    /// The answer to our catch-up ([`super::watch::Watch::upkeep`]): every
    /// record it holds that is newer than ours, each as its own node signed
    /// it.
    pub(super) fn on_catch_up(&mut self, peer: PeerId, answer: &AnswerFrame) -> Vec<Effect> {
        let (map, removed) = match Join::open(answer) {
            Ok(Ok(Welcome { map, removed, .. })) => (map, removed),
            Ok(Err(refusal)) => {
                tracing::warn!(%peer, "peer refused us: {}", refusal.reason);
                return Vec::new();
            }
            Err(e) => {
                tracing::debug!(%peer, "an answer to our catch-up that is not one: {e}");
                return Vec::new();
            }
        };
        // Removals first: a record of a node removed since is refused.
        let mut effects = self.take_removals(peer, removed);
        for entry in map {
            if entry.record.peer_id == self.own.peer_id
                || self.map.stamp(&entry.record.peer_id)
                    >= Some((entry.record.version, entry.record.signed_at_ms))
            {
                continue;
            }
            if let Err(reason) = entry.record.verify() {
                tracing::warn!(%peer, "a catch-up held a record that does not verify: {reason}");
                continue;
            }
            match self.map.merge(entry.record) {
                Ok(event) => effects.extend(self.changed(event)),
                Err(reason) => tracing::debug!(%peer, "a catch-up record: {reason}"),
            }
        }
        effects
    }

    /// Our detector gave up on `peer`: suspect it here and tell everyone,
    /// naming the copy of its record we hold so a newer one refutes it.
    pub(super) fn suspect(&mut self, peer: PeerId, reason: &str, now: Instant) -> Vec<Effect> {
        let Some((version, signed_at_ms)) = self.map.stamp(&peer) else {
            return Vec::new();
        };
        let event = self.map.suspect_observed(&peer, now, reason);
        let mut effects = Vec::new();
        if event.is_some() {
            tracing::info!(%peer, "suspect: {reason}");
            effects.push(Effect::Publish(MapMessage::Suspect {
                peer,
                version,
                signed_at_ms,
            }));
        }
        effects.extend(self.changed(event));
        effects
    }

    /// Another watcher suspects `peer`. If that is us, we refute it with a
    /// newer copy of our record, whatever copy it names (members may hold
    /// older ones than our latest, which only a neighbour saw); otherwise
    /// we believe it, unless we hold a newer copy than the one it names.
    ///
    /// A suspicion naming a copy from the future (a version or signing time
    /// more than [`MAX_CLOCK_AHEAD`] past our clock) is a lie, and ignored:
    /// no copy could beat it. We refute with a copy newer than the one it
    /// names, so our refutation wins in any order: before, a lie naming a
    /// copy newer than ours that reached a member after our refutation
    /// stood there (seen as a flaky test).
    pub(super) fn on_suspicion(
        &mut self,
        author: PeerId,
        peer: PeerId,
        stamp: (u64, u64),
        now: Instant,
    ) -> Vec<Effect> {
        if !self.is_current_member(&author) {
            tracing::warn!(%author, "ignored a suspicion from a node that is not a member");
            return Vec::new();
        }
        let horizon = crate::now_ms().saturating_add(MAX_CLOCK_AHEAD.as_millis() as u64);
        if stamp.0 > horizon || stamp.1 > horizon {
            tracing::warn!(%author, %peer, ?stamp, "ignored a suspicion naming a copy from the future");
            return Vec::new();
        }
        if peer == self.own.peer_id {
            tracing::info!(%author, ?stamp, "refuting a suspicion of this node");
            if (self.own.version, self.own.signed_at_ms) <= stamp {
                if stamp.0 > self.own.version {
                    self.own.version = stamp.0;
                    self.dirty = true;
                }
                // The next signature is later than the copy it names.
                self.own.signed_at_ms = self.own.signed_at_ms.max(stamp.1);
            }
            return vec![Effect::Refuted, Effect::Announce];
        }
        let by = self
            .map
            .get(&author)
            .map(|e| e.record.name)
            .unwrap_or_else(|| author.to_string());
        let reason = format!("{by} could not reach it");
        let event = self.map.suspect_reported(&peer, stamp, now, &reason);
        self.changed(event)
    }

    /// `peer` says its map shows us `seen_as`: if not alive, others may
    /// see us so too, and a newer copy of our record tells them all.
    fn refute_if_doubted(&mut self, peer: PeerId, seen_as: Option<Liveness>) -> Vec<Effect> {
        if matches!(seen_as, Some(Liveness::Suspect | Liveness::Gone)) {
            tracing::info!(%peer, ?seen_as, "a member doubted this node; announcing it anew");
            return vec![Effect::Announce];
        }
        Vec::new()
    }
}

/// Signs `own` as of now, later than its last signature.
pub(super) fn sign_now(own: &mut NodeRecord, keypair: &Keypair) {
    let at = crate::now_ms().max(own.signed_at_ms + 1);
    own.sign(keypair, at);
}

/// The frame of the answer to a request `R` the event loop answers, within
/// `R`'s bound.
pub(super) fn sealed<R: Asks>(answer: R::Answer) -> AnswerFrame {
    AnswerFrame::seal(Ok(answer), R::MAX_ANSWER)
}

#[cfg(test)]
#[path = "members_tests.rs"]
mod tests;
