//! The network map as one node sees it: every member's record and liveness.
//!
//! Pure logic with the clock passed in, so the state machine
//! alive -> suspect -> gone (and back to alive when heard from) is tested
//! without a network. The event loop feeds it what it observes: its own
//! failure detector's verdicts, the suspicions other watchers spread, and
//! records, whose newer copies refute a suspicion.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use iris_behaviours::{
    libp2p::PeerId, Departure, Liveness, MapEntry, NetworkConfig, NodeRecord, Removals, Role,
};

use crate::events::EventKind;

#[derive(Debug, Clone)]
struct Member {
    record: NodeRecord,
    state: Liveness,
    /// When we last heard from it, as wall-clock milliseconds, for people.
    heard_ms: u64,
    /// When it became suspect.
    suspect_since: Option<Instant>,
}

impl Member {
    fn entry(&self) -> MapEntry {
        MapEntry {
            record: self.record.clone(),
            state: self.state,
            last_seen_ms: self.heard_ms,
        }
    }
}

/// The most members a map holds: each one costs every member memory and
/// a record to keep, so a key holder cannot grow it without end by joining under
/// ever new identities.
pub const MAX_MEMBERS: usize = 1024;

/// Records by peer, plus our view of each one's liveness.
#[derive(Debug)]
pub struct NetworkMap {
    local: PeerId,
    master: PeerId,
    members: BTreeMap<PeerId, Member>,
    /// Nodes the master removed: refused from then on, their names free.
    removed: BTreeSet<PeerId>,
    /// The master's latest signed list of them, to pass on to joiners.
    removals: Removals,
}

impl NetworkMap {
    /// A map holding only our own record.
    pub fn new(config: &NetworkConfig, own: NodeRecord) -> Self {
        let mut map = Self {
            local: own.peer_id,
            master: config.master,
            members: BTreeMap::new(),
            removed: BTreeSet::new(),
            removals: Removals::default(),
        };
        map.set_own(own);
        map
    }

    /// Loads entries from a saved map or a bootstrap peer's welcome. A
    /// suspect one is taken as alive: its watchers will tell if it is not.
    pub fn load(&mut self, entries: Vec<MapEntry>, removed: Vec<PeerId>) {
        self.removed
            .extend(removed.into_iter().filter(|p| *p != self.local));
        for entry in entries.into_iter().take(MAX_MEMBERS) {
            if entry.record.peer_id == self.local || self.check(&entry.record).is_err() {
                continue;
            }
            let state = match entry.state {
                Liveness::Left | Liveness::Gone => entry.state,
                Liveness::Alive | Liveness::Suspect => Liveness::Alive,
            };
            self.members.insert(
                entry.record.peer_id,
                Member {
                    record: entry.record,
                    state,
                    heard_ms: entry.last_seen_ms,
                    suspect_since: None,
                },
            );
        }
    }

    pub fn set_own(&mut self, own: NodeRecord) {
        self.members.insert(
            own.peer_id,
            Member {
                record: own,
                state: Liveness::Alive,
                heard_ms: crate::now_ms(),
                suspect_since: None,
            },
        );
    }

    pub fn entries(&self) -> Vec<MapEntry> {
        let mut entries: Vec<_> = self.members.values().map(Member::entry).collect();
        entries.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        entries
    }

    pub fn get(&self, peer: &PeerId) -> Option<MapEntry> {
        self.members.get(peer).map(Member::entry)
    }

    /// The member other than `record`'s node that holds `record`'s name. A
    /// name stays its node's while it is gone or has left, so `--on carol`
    /// never reaches an impostor; only the master's removal frees it.
    fn name_holder(&self, record: &NodeRecord) -> Option<&Member> {
        self.members
            .values()
            .find(|m| m.record.name == record.name && m.record.peer_id != record.peer_id)
    }

    /// Whether the master removed `peer` from the network.
    pub fn is_removed(&self, peer: &PeerId) -> bool {
        self.removed.contains(peer)
    }

    /// The nodes the master removed, to keep.
    pub fn removed(&self) -> Vec<PeerId> {
        self.removed.iter().copied().collect()
    }

    /// The master's latest signed list of removed nodes, to pass on.
    pub fn removals(&self) -> &Removals {
        &self.removals
    }

    /// Keeps `removals` (the caller checked the master's signature) to
    /// pass on, if it is later than the one kept. Its nodes are removed
    /// with [`Self::remove`].
    pub fn keep_removals(&mut self, removals: Removals) {
        if removals.signed_at_ms > self.removals.signed_at_ms {
            self.removals = removals;
        }
    }

    /// The master removed `peer`: its entry is pruned, its name is free and
    /// it is refused from now on.
    pub fn remove(&mut self, peer: PeerId) -> Option<EventKind> {
        if peer == self.local || peer == self.master || !self.removed.insert(peer) {
            return None;
        }
        let member = self.members.remove(&peer)?;
        Some(EventKind::Removed {
            name: member.record.name,
            peer_id: peer,
        })
    }

    /// What a record must satisfy before it enters the map.
    fn check(&self, record: &NodeRecord) -> Result<(), String> {
        record.validate()?;
        if self.removed.contains(&record.peer_id) {
            return Err(format!(
                "node {} was removed from this network by its master",
                record.peer_id
            ));
        }
        let expected = if record.peer_id == self.master {
            Role::Master
        } else {
            Role::Slave
        };
        if record.role != expected {
            return Err(format!(
                "node '{}' claims role {} but the network's master decides it is {expected}",
                record.name, record.role
            ));
        }
        if let Some(holder) = self.name_holder(record) {
            return Err(format!(
                "node name '{}' is already taken by {} ({}); a name stays its node's \
                 until the master removes that node (iris network remove)",
                record.name, holder.record.peer_id, holder.state
            ));
        }
        Ok(())
    }

    /// Takes in a record its own node sent us (the caller has checked the
    /// sender), and counts it as a sign of life.
    pub fn merge(&mut self, record: NodeRecord) -> Result<Option<EventKind>, String> {
        if record.peer_id == self.local {
            return Ok(None);
        }
        self.check(&record)?;
        let peer = record.peer_id;
        if !self.members.contains_key(&peer) && self.members.len() >= MAX_MEMBERS {
            return Err(format!(
                "the network is full: it has {MAX_MEMBERS} members, the most a map holds"
            ));
        }
        match self.members.get_mut(&peer) {
            Some(member) => {
                // Each copy its node sends is signed anew: one no newer than
                // what we have is stale or replayed, and no sign of life.
                let stamp = |r: &NodeRecord| (r.version, r.signed_at_ms);
                if stamp(&record) <= stamp(&member.record) {
                    return Ok(None);
                }
                // Its audit head is the witness's to check (`audit::witness`).
                member.record = record;
                Ok(self.revive(&peer))
            }
            None => {
                let name = record.name.clone();
                self.members.insert(
                    peer,
                    Member {
                        record,
                        state: Liveness::Alive,
                        heard_ms: crate::now_ms(),
                        suspect_since: None,
                    },
                );
                Ok(Some(EventKind::Joined {
                    name,
                    peer_id: peer,
                }))
            }
        }
    }

    /// Any sign of life: a message, a ping, a request. A node that left is
    /// no member any more: a ping on a connection it kept open does not
    /// bring it back; only a new record of its own does ([`Self::merge`],
    /// when it joins again).
    pub fn heard_from(&mut self, peer: &PeerId) -> Option<EventKind> {
        if self.members.get(peer)?.state == Liveness::Left {
            return None;
        }
        self.revive(peer)
    }

    fn revive(&mut self, peer: &PeerId) -> Option<EventKind> {
        let member = self.members.get_mut(peer)?;
        member.heard_ms = crate::now_ms();
        if member.state == Liveness::Alive {
            return None;
        }
        member.state = Liveness::Alive;
        member.suspect_since = None;
        Some(EventKind::Alive {
            name: member.record.name.clone(),
            peer_id: *peer,
        })
    }

    /// Our own failure detector could not reach `peer`.
    pub fn suspect_observed(
        &mut self,
        peer: &PeerId,
        now: Instant,
        reason: &str,
    ) -> Option<EventKind> {
        self.suspect(peer, now, reason)
    }

    /// Another watcher suspects `peer` as of its record `stamp` (version,
    /// signing time). A newer copy of the record than that refutes it.
    pub fn suspect_reported(
        &mut self,
        peer: &PeerId,
        stamp: (u64, u64),
        now: Instant,
        reason: &str,
    ) -> Option<EventKind> {
        let held = self.stamp(peer)?;
        (held <= stamp).then(|| self.suspect(peer, now, reason))?
    }

    /// The version and signing time of the copy of `peer`'s record we hold.
    pub fn stamp(&self, peer: &PeerId) -> Option<(u64, u64)> {
        self.members
            .get(peer)
            .map(|m| (m.record.version, m.record.signed_at_ms))
    }

    /// Everyone who takes part in watching and being watched: members
    /// alive or suspect (a suspect one may yet refute), ourselves included.
    pub fn watched(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.members
            .values()
            .filter(|m| matches!(m.state, Liveness::Alive | Liveness::Suspect))
            .map(|m| m.record.peer_id)
    }

    /// Whether `peer` is a member we believe alive.
    pub fn is_alive(&self, peer: &PeerId) -> bool {
        self.members
            .get(peer)
            .is_some_and(|m| m.state == Liveness::Alive)
    }

    /// Members that are gone: tried now and then, so that two halves of a
    /// network that was cut in two find each other again.
    pub fn gone(&self) -> Vec<PeerId> {
        self.members
            .values()
            .filter(|m| m.state == Liveness::Gone)
            .map(|m| m.record.peer_id)
            .collect()
    }

    /// A member's addresses, as its record gives them, those through a
    /// relay last: a direct connection is tried first.
    pub fn addrs(&self, peer: &PeerId) -> Vec<iris_behaviours::libp2p::Multiaddr> {
        let mut addrs = self
            .members
            .get(peer)
            .map(|m| m.record.addrs.clone())
            .unwrap_or_default();
        addrs.sort_by_key(iris_behaviours::is_relayed);
        addrs
    }

    /// Members alive that relay for others, the master first: where a node
    /// reserves a place so that those who cannot dial it reach it.
    pub fn relays(&self) -> Vec<PeerId> {
        let mut relays: Vec<PeerId> = self
            .members
            .values()
            .filter(|m| m.record.relay && m.state == Liveness::Alive)
            .map(|m| m.record.peer_id)
            .filter(|p| *p != self.local)
            .collect();
        relays.sort_by_key(|p| *p != self.master);
        relays
    }

    /// Every member that has not left (the master's removed ones are out
    /// of the map already): whom a relay of ours serves.
    pub fn current_members(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.members
            .values()
            .filter(|m| m.state != Liveness::Left)
            .map(|m| m.record.peer_id)
    }

    fn suspect(&mut self, peer: &PeerId, now: Instant, reason: &str) -> Option<EventKind> {
        let member = self.members.get_mut(peer)?;
        if member.state != Liveness::Alive || *peer == self.local {
            return None;
        }
        member.state = Liveness::Suspect;
        member.suspect_since = Some(now);
        Some(EventKind::Suspect {
            name: member.record.name.clone(),
            peer_id: *peer,
            reason: reason.to_string(),
        })
    }

    /// `peer` said goodbye. One that left is no member any more; one that
    /// shut down is gone until it comes back by itself.
    pub fn departed(&mut self, peer: &PeerId, departure: Departure) -> Option<EventKind> {
        let member = self.members.get_mut(peer)?;
        let state = match departure {
            Departure::Leave => Liveness::Left,
            Departure::Shutdown => Liveness::Gone,
        };
        if member.state == state || *peer == self.local {
            return None;
        }
        member.state = state;
        member.suspect_since = None;
        let (name, peer_id) = (member.record.name.clone(), *peer);
        Some(match departure {
            Departure::Leave => EventKind::Left { name, peer_id },
            Departure::Shutdown => EventKind::Gone {
                name,
                peer_id,
                reason: crate::events::SHUT_DOWN.into(),
            },
        })
    }

    /// Applies the timeout: members suspect for `gone_after` turn gone.
    pub fn tick(&mut self, now: Instant, gone_after: Duration) -> Vec<EventKind> {
        let mut events = Vec::new();
        for member in self.members.values_mut() {
            let Some(since) = member.suspect_since else {
                continue;
            };
            if member.state == Liveness::Suspect && now.duration_since(since) >= gone_after {
                member.state = Liveness::Gone;
                member.suspect_since = None;
                events.push(EventKind::Gone {
                    name: member.record.name.clone(),
                    peer_id: member.record.peer_id,
                    reason: format!("suspect for {} ms", gone_after.as_millis()),
                });
            }
        }
        events
    }
}

#[cfg(test)]
pub(crate) mod tests;
