//! The network map as one node sees it: every member's record and liveness.
//!
//! Pure logic with the clock passed in, so the state machine
//! alive -> suspect -> gone (and back to alive when heard from) is tested
//! without a network. The event loop feeds it what it observes.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use iris_behaviours::{
    libp2p::PeerId, Departure, Liveness, MapEntry, NetworkConfig, NodeRecord, Role,
};

use crate::events::EventKind;

#[derive(Debug, Clone)]
struct Member {
    record: NodeRecord,
    state: Liveness,
    /// When we last heard from it (monotonic, for timeouts).
    heard: Instant,
    /// The same as wall-clock milliseconds, for people.
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
/// heartbeats, so a key holder cannot grow it without end by joining under
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
}

impl NetworkMap {
    /// A map holding only our own record.
    pub fn new(config: &NetworkConfig, own: NodeRecord, now: Instant) -> Self {
        let mut map = Self {
            local: own.peer_id,
            master: config.master,
            members: BTreeMap::new(),
            removed: BTreeSet::new(),
        };
        map.set_own(own, now);
        map
    }

    /// Loads entries from a saved map or a bootstrap peer's welcome. Their
    /// liveness is taken as given but their clocks restart now, so a member
    /// that stays silent turns suspect after the usual timeout.
    pub fn load(&mut self, entries: Vec<MapEntry>, removed: Vec<PeerId>, now: Instant) {
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
                    heard: now,
                    heard_ms: entry.last_seen_ms,
                    suspect_since: None,
                },
            );
        }
    }

    pub fn set_own(&mut self, own: NodeRecord, now: Instant) {
        self.members.insert(
            own.peer_id,
            Member {
                record: own,
                state: Liveness::Alive,
                heard: now,
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

    /// Peers we should be connected to: everyone but us and those who left.
    pub fn peers_to_dial(
        &self,
    ) -> Vec<(PeerId, Vec<iris_behaviours::libp2p::Multiaddr>, Liveness)> {
        self.members
            .values()
            .filter(|m| m.record.peer_id != self.local && m.state != Liveness::Left)
            .map(|m| (m.record.peer_id, m.record.addrs.clone(), m.state))
            .collect()
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

    /// The nodes the master removed, to keep and to pass on.
    pub fn removed(&self) -> Vec<PeerId> {
        self.removed.iter().copied().collect()
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
    pub fn merge(&mut self, record: NodeRecord, now: Instant) -> Result<Option<EventKind>, String> {
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
                let rewritten = match (&member.record.audit, &record.audit) {
                    (Some(before), Some(now)) => !before.is_followed_by(now),
                    (Some(_), None) => true,
                    _ => false,
                };
                member.record = record;
                if rewritten {
                    tracing::warn!(%peer, "its audit log shrank or was rewritten");
                    let name = member.record.name.clone();
                    self.revive(&peer, now);
                    return Ok(Some(EventKind::AuditRewritten {
                        name,
                        peer_id: peer,
                    }));
                }
                Ok(self.revive(&peer, now))
            }
            None => {
                let name = record.name.clone();
                self.members.insert(
                    peer,
                    Member {
                        record,
                        state: Liveness::Alive,
                        heard: now,
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
    pub fn heard_from(&mut self, peer: &PeerId, now: Instant) -> Option<EventKind> {
        if self.members.get(peer)?.state == Liveness::Left {
            return None;
        }
        self.revive(peer, now)
    }

    fn revive(&mut self, peer: &PeerId, now: Instant) -> Option<EventKind> {
        let member = self.members.get_mut(peer)?;
        member.heard = now;
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

    /// Our last connection to `peer` closed.
    pub fn connection_lost(&mut self, peer: &PeerId, now: Instant) -> Option<EventKind> {
        self.suspect(peer, now, "connection lost")
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

    /// Applies the timeouts: silent alive members turn suspect, long-suspect
    /// members turn gone.
    pub fn tick(
        &mut self,
        now: Instant,
        suspect_after: Duration,
        gone_after: Duration,
    ) -> Vec<EventKind> {
        let mut events = Vec::new();
        let silent: Vec<PeerId> = self
            .members
            .values()
            .filter(|m| m.state == Liveness::Alive && now.duration_since(m.heard) >= suspect_after)
            .map(|m| m.record.peer_id)
            .collect();
        for peer in silent {
            let reason = format!("silent for {} ms", suspect_after.as_millis());
            events.extend(self.suspect(&peer, now, &reason));
        }
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
mod tests {
    use super::*;
    use iris_behaviours::{libp2p::identity::Keypair, NetworkMode};

    fn record(name: &str, peer_id: PeerId, role: Role) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            peer_id,
            addrs: vec![],
            api_port: 1,
            p2p_port: 2,
            role,
            tags: vec![],
            executor: Default::default(),
            images: vec![],
            version: 1,
            audit: None,
            signed_at_ms: 0,
            signature: vec![],
        }
    }

    fn peer() -> PeerId {
        Keypair::generate_ed25519().public().to_peer_id()
    }

    fn setup() -> (NetworkMap, PeerId, Instant) {
        let master = peer();
        let config = NetworkConfig {
            name: "lab".into(),
            mode: NetworkMode::MasterSlave,
            master,
            created_at_ms: 0,
            signature: vec![],
        };
        let now = Instant::now();
        (
            NetworkMap::new(&config, record("alice", master, Role::Master), now),
            master,
            now,
        )
    }

    const SUSPECT: Duration = Duration::from_secs(2);
    const GONE: Duration = Duration::from_secs(10);

    #[test]
    fn alive_suspect_gone_and_back() {
        let (mut map, _, t0) = setup();
        let bob = peer();
        let joined = map.merge(record("bob", bob, Role::Slave), t0).unwrap();
        assert!(matches!(joined, Some(EventKind::Joined { .. })));

        assert!(map
            .tick(t0 + Duration::from_millis(1999), SUSPECT, GONE)
            .is_empty());
        let events = map.tick(t0 + SUSPECT, SUSPECT, GONE);
        assert!(
            matches!(events[..], [EventKind::Suspect { .. }]),
            "{events:?}"
        );
        assert!(map
            .tick(
                t0 + SUSPECT + GONE - Duration::from_millis(1),
                SUSPECT,
                GONE
            )
            .is_empty());
        let events = map.tick(t0 + SUSPECT + GONE, SUSPECT, GONE);
        assert!(matches!(events[..], [EventKind::Gone { .. }]), "{events:?}");
        assert_eq!(map.get(&bob).unwrap().state, Liveness::Gone);

        let back = map.heard_from(&bob, t0 + Duration::from_secs(20));
        assert!(matches!(back, Some(EventKind::Alive { .. })));
        assert_eq!(map.get(&bob).unwrap().state, Liveness::Alive);
    }

    /// A node that left kept its connection open and answers pings. Before:
    /// the first ping made it alive again, and it was served as a member.
    #[test]
    fn a_node_that_left_is_not_brought_back_by_a_ping_but_by_a_new_record() {
        let (mut map, _, t0) = setup();
        let bob = peer();
        let mut bobs = record("bob", bob, Role::Slave);
        map.merge(bobs.clone(), t0).unwrap();
        map.departed(&bob, Departure::Leave);
        assert_eq!(map.heard_from(&bob, t0 + Duration::from_millis(500)), None);
        assert_eq!(map.get(&bob).unwrap().state, Liveness::Left);
        // It joins again: its new record is a member's.
        bobs.version += 1;
        let back = map.merge(bobs, t0 + Duration::from_secs(1)).unwrap();
        assert!(matches!(back, Some(EventKind::Alive { .. })), "{back:?}");
    }

    #[test]
    fn a_lost_connection_makes_a_member_suspect_at_once() {
        let (mut map, master, t0) = setup();
        let bob = peer();
        map.merge(record("bob", bob, Role::Slave), t0).unwrap();
        assert!(matches!(
            map.connection_lost(&bob, t0),
            Some(EventKind::Suspect { .. })
        ));
        assert!(map.connection_lost(&bob, t0).is_none(), "suspect twice");
        assert!(
            map.connection_lost(&master, t0).is_none(),
            "we never suspect ourselves"
        );
        assert!(map
            .tick(t0 + Duration::from_secs(60), SUSPECT, GONE)
            .iter()
            .all(|e| { !matches!(e, EventKind::Suspect { name, .. } if name == "alice") }));
    }

    #[test]
    fn duplicate_names_and_false_roles_are_refused() {
        let (mut map, _, t0) = setup();
        let err = map
            .merge(record("alice", peer(), Role::Slave), t0)
            .unwrap_err();
        assert!(err.contains("already taken"), "{err}");
        let err = map
            .merge(record("mallory", peer(), Role::Master), t0)
            .unwrap_err();
        assert!(err.contains("claims role master"), "{err}");
    }

    #[test]
    fn a_shutdown_is_gone_and_a_leave_is_left() {
        let (mut map, _, t0) = setup();
        let (bob, carol) = (peer(), peer());
        map.merge(record("bob", bob, Role::Slave), t0).unwrap();
        map.merge(record("carol", carol, Role::Slave), t0).unwrap();
        assert!(matches!(
            map.departed(&bob, Departure::Shutdown),
            Some(EventKind::Gone { .. })
        ));
        assert!(matches!(
            map.departed(&carol, Departure::Leave),
            Some(EventKind::Left { .. })
        ));
        let dial: Vec<PeerId> = map.peers_to_dial().into_iter().map(|(p, _, _)| p).collect();
        assert_eq!(
            dial,
            vec![bob],
            "a node that shut down comes back, one that left does not"
        );
    }

    /// Before, any copy of a record, however old, counted as a sign of
    /// life: a replayed announcement kept a dead node alive.
    #[test]
    fn a_replayed_record_is_no_sign_of_life() {
        let (mut map, _, t0) = setup();
        let bob = peer();
        let mut r = record("bob", bob, Role::Slave);
        r.signed_at_ms = 10;
        map.merge(r.clone(), t0).unwrap();
        assert!(map.connection_lost(&bob, t0).is_some());
        assert!(
            map.merge(r.clone(), t0).unwrap().is_none(),
            "a replay revived it"
        );
        assert_eq!(map.get(&bob).unwrap().state, Liveness::Suspect);
        r.signed_at_ms = 11;
        assert!(matches!(
            map.merge(r, t0),
            Ok(Some(EventKind::Alive { .. }))
        ));
    }

    #[test]
    fn an_audit_log_that_shrinks_or_changes_its_head_is_reported() {
        let (mut map, _, t0) = setup();
        let bob = peer();
        let head = |entries, head: &str| {
            Some(iris_behaviours::AuditHead {
                entries,
                head: head.into(),
            })
        };
        let mut r = record("bob", bob, Role::Slave);
        r.audit = head(5, "aa");
        map.merge(r.clone(), t0).unwrap();
        for (version, audit, alarm) in [
            (2, head(6, "bb"), false),
            (3, head(6, "bb"), false),
            (4, head(6, "cc"), true),
            (5, head(3, "dd"), true),
            (6, None, true),
        ] {
            r.version = version;
            r.audit = audit;
            let event = map.merge(r.clone(), t0).unwrap();
            assert_eq!(
                matches!(event, Some(EventKind::AuditRewritten { .. })),
                alarm,
                "version {version}"
            );
        }
    }

    #[test]
    fn a_name_stays_its_nodes_until_the_master_removes_it() {
        let (mut map, master, t0) = setup();
        let bob = peer();
        map.merge(record("bob", bob, Role::Slave), t0).unwrap();
        map.departed(&bob, Departure::Leave);
        let err = map
            .merge(record("bob", peer(), Role::Slave), t0)
            .unwrap_err();
        assert!(
            err.contains("already taken") && err.contains("(left)"),
            "{err}"
        );
        assert!(map.remove(master).is_none(), "the master is never removed");
        assert!(matches!(map.remove(bob), Some(EventKind::Removed { .. })));
        assert!(map.remove(bob).is_none(), "removed twice");
        assert!(map.get(&bob).is_none(), "a removed node's entry is pruned");
        assert!(map.merge(record("bob", peer(), Role::Slave), t0).is_ok());
        let err = map.merge(record("bob2", bob, Role::Slave), t0).unwrap_err();
        assert!(err.contains("removed"), "{err}");
        assert_eq!(map.removed(), [bob]);
    }

    #[test]
    fn newer_versions_win_and_older_ones_do_not_undo_them() {
        let (mut map, _, t0) = setup();
        let bob = peer();
        let mut r = record("bob", bob, Role::Slave);
        r.version = 5;
        r.tags = vec!["new".into()];
        map.merge(r.clone(), t0).unwrap();
        let mut old = r.clone();
        old.version = 4;
        old.tags = vec![];
        map.merge(old, t0).unwrap();
        assert_eq!(map.get(&bob).unwrap().record.tags, vec!["new".to_string()]);
    }
}
