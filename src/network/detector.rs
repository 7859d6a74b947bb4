//! Failure detection: SWIM's probes with Lifeguard's refinements, over a
//! node's few neighbours ([`super::neighbours`]).
//!
//! Each period the node probes one neighbour, in a shuffled round. A probe
//! unanswered within its timeout (or a connection to a neighbour that
//! breaks) does not make the neighbour suspect yet: the node asks a few
//! other members to probe it (SWIM's ping-req), and suspects it only when
//! they answer that they cannot reach it either. The suspicion then goes
//! out on gossip, where the suspect itself can refute it.
//!
//! Lifeguard's point is that a slow node must not accuse healthy ones:
//! - helpers answer no as well as yes, so silence from every helper says
//!   the asker itself is slow or cut off: it accuses no one, and only if
//!   the next cycle, with stretched timeouts, is silent too does it take
//!   itself for cut off and suspect the target;
//! - the node keeps a health score (the local health multiplier) that
//!   rises when its probes go unanswered or it had to refute a suspicion
//!   of itself, and falls with each answered probe; every period and
//!   timeout is stretched by it;
//! - time the node spent not running at all (a stall of its own) is not
//!   counted against the peers it was waiting for.
//!
//! Pure logic with the clock passed in, like the map; the event loop sends
//! what [`Action`]s ask and feeds back what comes of them.

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use iris_behaviours::libp2p::PeerId;

/// The highest health score: timeouts stretch at most this many times plus one.
pub const MAX_HEALTH: u32 = 8;

/// Probe cycles of a target in a row in which no helper answered at all,
/// after which a node suspects the target anyway: it is cut off from them.
const UNHEARD_CYCLES: u32 = 2;

/// A probe cycle's timings, for a healthy node.
#[derive(Debug, Clone)]
pub struct Timings {
    /// How often a neighbour is probed.
    pub period: Duration,
    /// How long a direct probe may take.
    pub probe_timeout: Duration,
    /// How long the helpers may take, after the direct probe failed.
    pub indirect_timeout: Duration,
    /// How many members are asked to probe for us.
    pub helpers: usize,
}

impl Timings {
    /// Timings whose whole cycle (direct, then indirect) fits `suspect_after`:
    /// a third for the direct probe, the rest for the helpers, who each
    /// probe with a direct timeout of their own.
    pub fn new(period: Duration, suspect_after: Duration) -> Self {
        Self {
            period,
            probe_timeout: suspect_after / 3,
            indirect_timeout: suspect_after - suspect_after / 3,
            helpers: 3,
        }
    }
}

/// What the node should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `peer` a direct probe.
    Probe(PeerId),
    /// Ask each helper to probe `target`.
    AskHelpers {
        target: PeerId,
        helpers: Vec<PeerId>,
    },
    /// Reached neither directly nor through others: suspect it.
    Suspect { peer: PeerId, reason: String },
}

#[derive(Debug)]
enum Stage {
    Direct,
    Indirect { asked: usize, nacks: usize },
}

#[derive(Debug)]
struct Probe {
    stage: Stage,
    deadline: Instant,
}

#[derive(Debug)]
pub struct Detector {
    timings: Timings,
    /// Neighbours in this round's probe order.
    order: Vec<PeerId>,
    next: usize,
    neighbours: BTreeSet<PeerId>,
    probes: HashMap<PeerId, Probe>,
    /// Targets whose last cycles ended with no helper answering, and how
    /// many in a row.
    unheard: HashMap<PeerId, u32>,
    health: u32,
    next_probe_at: Instant,
    last_tick: Instant,
    seed: u64,
}

impl Detector {
    pub fn new(timings: Timings, now: Instant) -> Self {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Self {
            timings,
            order: Vec::new(),
            next: 0,
            neighbours: BTreeSet::new(),
            probes: HashMap::new(),
            unheard: HashMap::new(),
            health: 0,
            next_probe_at: now,
            last_tick: now,
            seed: u64::from_le_bytes(seed) | 1,
        }
    }

    /// The local health multiplier: every timeout is this many times its
    /// healthy length.
    pub fn multiplier(&self) -> u32 {
        self.health + 1
    }

    /// The health score (0 is healthy), for people.
    pub fn health(&self) -> u32 {
        self.health
    }

    fn stretched(&self, d: Duration) -> Duration {
        d * self.multiplier()
    }

    /// How long a direct probe made for someone else may take.
    pub fn probe_timeout(&self) -> Duration {
        self.stretched(self.timings.probe_timeout)
    }

    fn healthier(&mut self) {
        self.health = self.health.saturating_sub(1);
    }

    fn sicker(&mut self) {
        self.health = (self.health + 1).min(MAX_HEALTH);
    }

    /// This node had to refute a suspicion of itself: others could not
    /// reach it in time, so it is slower than it thinks.
    pub fn refuted(&mut self) {
        self.sicker();
    }

    pub fn set_neighbours(&mut self, neighbours: BTreeSet<PeerId>) {
        if neighbours != self.neighbours {
            self.unheard.retain(|p, _| neighbours.contains(p));
            self.neighbours = neighbours;
            self.order.clear();
            self.next = 0;
        }
    }

    pub fn is_neighbour(&self, peer: &PeerId) -> bool {
        self.neighbours.contains(peer)
    }

    pub fn neighbours(&self) -> &BTreeSet<PeerId> {
        &self.neighbours
    }

    /// The next neighbour to probe: a round-robin over a fresh shuffle each
    /// round, so every neighbour is probed once per round and no two
    /// watchers fall into step.
    fn next_target(&mut self) -> Option<PeerId> {
        if self.next >= self.order.len() {
            self.order = self.neighbours.iter().copied().collect();
            for i in (1..self.order.len()).rev() {
                // xorshift64: spreading probes needs no strong randomness.
                self.seed ^= self.seed << 13;
                self.seed ^= self.seed >> 7;
                self.seed ^= self.seed << 17;
                let j = (self.seed % (i as u64 + 1)) as usize;
                self.order.swap(i, j);
            }
            self.next = 0;
        }
        let target = self.order.get(self.next).copied();
        self.next += 1;
        target
    }

    /// Moves time on: starts the period's probe and acts on probes whose
    /// time is up. `helpers_for` names the members that could probe a
    /// target for us, best first.
    pub fn tick(
        &mut self,
        now: Instant,
        helpers_for: impl Fn(&PeerId) -> Vec<PeerId>,
    ) -> Vec<Action> {
        // A stall of our own (the process was not scheduled, or the loop
        // was busy) is not the peers' fault: move their deadlines on by it.
        let gap = now.saturating_duration_since(self.last_tick);
        self.last_tick = now;
        let stall = gap.saturating_sub(self.timings.period.min(Duration::from_millis(100)));
        if stall > self.timings.probe_timeout / 2 {
            for probe in self.probes.values_mut() {
                probe.deadline += stall;
            }
            self.sicker();
        }

        let mut actions = Vec::new();
        let overdue: Vec<PeerId> = self
            .probes
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for target in overdue {
            actions.extend(self.time_up(target, now, &helpers_for));
        }
        if now >= self.next_probe_at {
            self.next_probe_at = now + self.stretched(self.timings.period);
            // Skip neighbours already being probed; try each at most once.
            for _ in 0..self.neighbours.len() {
                match self.next_target() {
                    Some(target) if !self.probes.contains_key(&target) => {
                        actions.push(self.start(target, now));
                        break;
                    }
                    Some(_) => continue,
                    None => break,
                }
            }
        }
        actions
    }

    fn start(&mut self, target: PeerId, now: Instant) -> Action {
        let deadline = now + self.probe_timeout();
        self.probes.insert(
            target,
            Probe {
                stage: Stage::Direct,
                deadline,
            },
        );
        Action::Probe(target)
    }

    /// The connection to `peer` broke: if it is a neighbour, probe it now
    /// (a probe dials it again) rather than at its turn.
    pub fn connection_lost(&mut self, peer: PeerId, now: Instant) -> Option<Action> {
        (self.neighbours.contains(&peer) && !self.probes.contains_key(&peer))
            .then(|| self.start(peer, now))
    }

    /// `target` answered our direct probe.
    pub fn acked(&mut self, target: &PeerId) {
        self.unheard.remove(target);
        if let Some(probe) = self.probes.remove(target) {
            if matches!(probe.stage, Stage::Direct) {
                self.healthier();
            }
        }
    }

    /// Our direct probe of `target` failed before its time was up (the
    /// dial was refused, the connection closed): go to the helpers now.
    pub fn direct_failed(
        &mut self,
        target: PeerId,
        now: Instant,
        helpers_for: impl Fn(&PeerId) -> Vec<PeerId>,
    ) -> Vec<Action> {
        match self.probes.get(&target) {
            Some(Probe {
                stage: Stage::Direct,
                ..
            }) => self.time_up(target, now, &helpers_for),
            _ => Vec::new(),
        }
    }

    /// A helper answered whether it reached `target`.
    pub fn helper_answered(&mut self, target: PeerId, reached: bool) -> Vec<Action> {
        let Some(probe) = self.probes.get_mut(&target) else {
            return Vec::new();
        };
        let Stage::Indirect { asked, nacks } = &mut probe.stage else {
            return Vec::new();
        };
        if reached {
            self.probes.remove(&target);
            self.unheard.remove(&target);
            return Vec::new();
        }
        *nacks += 1;
        if *nacks < *asked {
            return Vec::new();
        }
        // Every helper said no: no need to wait out the deadline.
        self.probes.remove(&target);
        vec![self.suspect(target, "no helper could reach it either")]
    }

    fn suspect(&self, peer: PeerId, why: &str) -> Action {
        Action::Suspect {
            peer,
            reason: format!("did not answer a probe; {why}"),
        }
    }

    fn time_up(
        &mut self,
        target: PeerId,
        now: Instant,
        helpers_for: &impl Fn(&PeerId) -> Vec<PeerId>,
    ) -> Vec<Action> {
        let Some(probe) = self.probes.remove(&target) else {
            return Vec::new();
        };
        match probe.stage {
            Stage::Direct => {
                let helpers: Vec<PeerId> = helpers_for(&target)
                    .into_iter()
                    .filter(|h| *h != target)
                    .take(self.timings.helpers)
                    .collect();
                if helpers.is_empty() {
                    // Nobody else to ask (a network of two): our own word.
                    self.sicker();
                    return vec![self.suspect(target, "no other member to ask")];
                }
                let deadline = now + self.stretched(self.timings.indirect_timeout);
                let asked = helpers.len();
                self.probes.insert(
                    target,
                    Probe {
                        stage: Stage::Indirect { asked, nacks: 0 },
                        deadline,
                    },
                );
                vec![Action::AskHelpers { target, helpers }]
            }
            Stage::Indirect { asked, nacks } => {
                self.sicker();
                if nacks > 0 {
                    self.unheard.remove(&target);
                    return vec![
                        self.suspect(target, "the helpers that answered could not reach it")
                    ];
                }
                // Not one helper answered: the trouble is likely ours. We
                // accuse no one this time and try again with stretched
                // timeouts; if again nobody answers, we are cut off from
                // them all, and the target is suspect to us as well.
                let times = self.unheard.entry(target).or_insert(0);
                *times += 1;
                if *times < UNHEARD_CYCLES {
                    tracing::debug!(%target, asked, "no helper answered; accusing no one yet");
                    return Vec::new();
                }
                self.unheard.remove(&target);
                vec![self.suspect(target, "neither it nor any member asked answered")]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iris_behaviours::libp2p::identity::Keypair;

    fn peer() -> PeerId {
        Keypair::generate_ed25519().public().to_peer_id()
    }

    const MS: Duration = Duration::from_millis(1);

    fn detector(neighbours: &[PeerId], t0: Instant) -> Detector {
        let mut d = Detector::new(Timings::new(200 * MS, 1500 * MS), t0);
        d.set_neighbours(neighbours.iter().copied().collect());
        d
    }

    fn probed(actions: &[Action]) -> Option<PeerId> {
        actions.iter().find_map(|a| match a {
            Action::Probe(p) => Some(*p),
            _ => None,
        })
    }

    #[test]
    fn each_neighbour_is_probed_once_a_round() {
        let all: Vec<PeerId> = (0..5).map(|_| peer()).collect();
        let t0 = Instant::now();
        let mut d = detector(&all, t0);
        let mut seen = BTreeSet::new();
        for i in 0..5 {
            let now = t0 + 200 * MS * i;
            let target = probed(&d.tick(now, |_| vec![])).unwrap();
            d.acked(&target);
            seen.insert(target);
        }
        assert_eq!(seen.len(), 5);
    }

    #[test]
    fn a_silent_neighbour_is_suspected_only_when_the_helpers_say_no() {
        let (bob, carol, dave) = (peer(), peer(), peer());
        let t0 = Instant::now();
        let mut d = detector(&[bob], t0);
        assert_eq!(probed(&d.tick(t0, |_| vec![])), Some(bob));
        // The event loop ticks every 100 ms.
        for i in 1..5 {
            let actions = d.tick(t0 + 100 * MS * i, |_| vec![]);
            assert!(
                !actions.iter().any(|a| *a != Action::Probe(bob)),
                "{actions:?}"
            );
        }
        let actions = d.tick(t0 + 500 * MS, |_| vec![carol, dave]);
        assert!(
            actions.contains(&Action::AskHelpers {
                target: bob,
                helpers: vec![carol, dave]
            }),
            "{actions:?}"
        );
        assert!(d.helper_answered(bob, false).is_empty());
        let actions = d.helper_answered(bob, false);
        assert!(
            matches!(&actions[..], [Action::Suspect { peer, .. }] if *peer == bob),
            "{actions:?}"
        );
    }

    #[test]
    fn one_helper_that_reaches_it_clears_it() {
        let (bob, carol) = (peer(), peer());
        let t0 = Instant::now();
        let mut d = detector(&[bob], t0);
        d.tick(t0, |_| vec![]);
        d.direct_failed(bob, t0 + MS, |_| vec![carol]);
        assert!(d.helper_answered(bob, true).is_empty());
        let later = d.tick(t0 + 5000 * MS, |_| vec![carol]);
        assert!(
            !later.iter().any(|a| matches!(a, Action::Suspect { .. })),
            "{later:?}"
        );
    }

    /// Lifeguard: when no helper answers at all, the asker is the likely
    /// culprit; it accuses no one at first and stretches its timeouts. If
    /// nobody answers the next cycle either, it is cut off (a partition)
    /// and suspects the target after all.
    #[test]
    fn a_node_that_hears_from_no_one_slows_down_before_it_accuses() {
        let (bob, carol) = (peer(), peer());
        let t0 = Instant::now();
        let mut d = detector(&[bob], t0);
        d.tick(t0, |_| vec![]);
        let mut now = t0;
        let mut suspected_at = None;
        for _ in 0..100 {
            now += 100 * MS;
            let actions = d.tick(now, |_| vec![carol]);
            if actions.iter().any(|a| matches!(a, Action::Suspect { .. })) {
                suspected_at.get_or_insert(now - t0);
            }
        }
        let at = suspected_at.expect("a node cut off from all suspects in the end");
        assert!(at > 3000 * MS, "suspected after {at:?}, in the first cycle");
        assert!(d.multiplier() > 1, "health {}", d.health());
        d.acked(&bob);
        for _ in 0..200 {
            now += 100 * MS;
            if let Some(target) = probed(&d.tick(now, |_| vec![])) {
                d.acked(&target);
            }
        }
        assert_eq!(d.health(), 0, "answered probes heal it");
    }

    #[test]
    fn a_stall_of_our_own_is_not_held_against_the_peers() {
        let (bob, carol) = (peer(), peer());
        let t0 = Instant::now();
        let mut d = detector(&[bob], t0);
        d.tick(t0, |_| vec![]);
        // The process did not run for 2 s; bob's answer may be waiting.
        let actions = d.tick(t0 + 2000 * MS, |_| vec![carol]);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::AskHelpers { .. } | Action::Suspect { .. })),
            "{actions:?}"
        );
        assert_eq!(d.health(), 1);
    }

    #[test]
    fn a_broken_connection_to_a_neighbour_is_probed_at_once_and_nobody_else_is() {
        let (bob, stranger) = (peer(), peer());
        let t0 = Instant::now();
        let mut d = detector(&[bob], t0);
        assert_eq!(d.connection_lost(stranger, t0), None);
        assert_eq!(d.connection_lost(bob, t0), Some(Action::Probe(bob)));
        let actions = d.direct_failed(bob, t0, |_| vec![]);
        assert!(
            matches!(&actions[..], [Action::Suspect { peer, .. }] if *peer == bob),
            "{actions:?}"
        );
    }
}
