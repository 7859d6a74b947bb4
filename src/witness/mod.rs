//! Every member is a witness of every other's audit log (see
//! [`crate::audit`]: the signed head in each record, the tree behind it). It keeps the
//! last signed head it saw from each node (in `DIR/witnessed.json`, so a
//! restart forgets nothing), and when a node's record shows a newer head
//! it asks that node for consistency proofs ([`iris_behaviours::ProveAudit`])
//! that its log now extends both the kept head and the shown one. A log
//! rewritten, by anyone and of any length, has no such proof: the witness
//! raises `audit_rewritten` with both heads, signed by the node itself.
//!
//! What it cannot do: see a log that was rewritten before any member saw
//! its head, or tell a node that never answers from one that is slow (it
//! asks again every [`LOOK_EVERY`], and keeps the older head meanwhile).

use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use iris_behaviours::{libp2p::PeerId, AuditHead, AuditProofs, Liveness, ProveAudit, RefusalKind};
use tokio::task::JoinSet;

use crate::{
    audit::tree::extends,
    events::{EventKind, Events},
    membership::{Membership, MembershipError},
    network::NetworkError,
};

/// How often the witness looks at the map for new heads.
pub const LOOK_EVERY: Duration = Duration::from_secs(2);

/// A head a node showed that does not extend the one kept of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub before: AuditHead,
    pub now: AuditHead,
}

/// What a head shown in a node's record calls for.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// Nothing: the head kept, or one not signed by its node.
    Nothing,
    /// The first head of this node: kept as it is.
    First,
    /// Ask the node to prove that its log extends these sizes.
    Prove(Vec<u64>),
    /// Of the kept head's length, with another root.
    Rewritten(Rewrite),
}

/// What the node answered to a request for proofs.
pub type Answer = Result<(AuditHead, Vec<Vec<u8>>), String>;

/// The heads this node keeps of the others.
pub struct Witness {
    path: PathBuf,
    heads: BTreeMap<PeerId, AuditHead>,
}

impl Witness {
    /// The witness whose heads are kept at `path`. A file that cannot be
    /// read is kept aside and the witness starts again from the heads it
    /// sees next (it says so).
    pub fn open(path: PathBuf) -> Self {
        let heads = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                let aside = path.with_extension(format!("{}.damaged", crate::now_ms()));
                tracing::warn!(
                    "{} is not a list of audit heads ({e}); kept as {}, and the heads seen next \
                     are taken as they are",
                    path.display(),
                    aside.display()
                );
                let _ = std::fs::rename(&path, &aside);
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        Self { path, heads }
    }

    /// The head kept of `peer`.
    pub fn kept(&self, peer: &PeerId) -> Option<&AuditHead> {
        self.heads.get(peer)
    }

    fn keep(&mut self, peer: PeerId, head: AuditHead) {
        self.heads.insert(peer, head);
        let bytes = serde_json::to_vec_pretty(&self.heads).expect("heads serialize");
        if let Err(e) = crate::store::write_private(&self.path, &bytes) {
            tracing::warn!("cannot save the audit heads this node witnessed: {e}");
        }
    }

    /// `peer`'s record shows `now`.
    pub fn seen(&mut self, peer: PeerId, now: &AuditHead) -> Seen {
        if let Err(e) = now.verify(&peer) {
            tracing::warn!(%peer, "its record's audit head is not its own: {e}");
            return Seen::Nothing;
        }
        let Some(before) = self.heads.get(&peer).cloned() else {
            self.keep(peer, now.clone());
            return Seen::First;
        };
        if before == *now {
            Seen::Nothing
        } else if before.entries == now.entries {
            self.keep(peer, now.clone());
            Seen::Rewritten(Rewrite {
                before,
                now: now.clone(),
            })
        } else {
            Seen::Prove(vec![before.entries, now.entries])
        }
    }

    /// `peer`, which showed `now`, answered the request for proofs from the
    /// kept head's size and from `now`'s. Unless the answer proves both,
    /// the log was rewritten; either way the head kept from here on is
    /// the newest the node signed, so that one rewrite raises one alarm.
    pub fn proven(&mut self, peer: PeerId, now: &AuditHead, answer: Answer) -> Option<Rewrite> {
        let before = self.heads.get(&peer)?.clone();
        let latest = match answer {
            Ok((latest, proofs))
                if latest.verify(&peer).is_ok()
                    && proofs.len() == 2
                    && extends(&before, &latest, &proofs[0])
                    && extends(now, &latest, &proofs[1]) =>
            {
                self.keep(peer, latest);
                return None;
            }
            Ok((latest, _)) if latest.verify(&peer).is_ok() => latest,
            _ => now.clone(),
        };
        self.keep(peer, latest);
        Some(Rewrite {
            before,
            now: now.clone(),
        })
    }

    /// Watches the members' heads for as long as the node runs.
    pub async fn run(mut self, membership: Arc<Membership>, events: Events) {
        let mut asking = JoinSet::new();
        let mut in_flight = HashSet::new();
        let mut look = tokio::time::interval(LOOK_EVERY);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = look.tick() => {
                    let Ok(snapshot) = membership.snapshot().await else { continue };
                    for entry in snapshot.map {
                        let peer = entry.record.peer_id;
                        let Some(now) = entry.record.audit.as_ref() else { continue };
                        if peer == snapshot.own.peer_id || in_flight.contains(&peer) {
                            continue;
                        }
                        // The last record of a node that stopped counts too:
                        // its head is kept before anyone can rewrite the log
                        // of the stopped node. Only a node that is up can
                        // prove anything.
                        let name = entry.record.name.clone();
                        match self.seen(peer, now) {
                            Seen::Rewritten(rewrite) => raise(&events, name, peer, rewrite),
                            Seen::Prove(sizes) if entry.state == Liveness::Alive => {
                                in_flight.insert(peer);
                                let membership = membership.clone();
                                let now = now.clone();
                                asking.spawn(async move {
                                    let answer = ask(&membership, peer, sizes).await;
                                    (peer, name, now, answer)
                                });
                            }
                            Seen::Prove(_) | Seen::Nothing | Seen::First => {}
                        }
                    }
                }
                Some(Ok((peer, name, now, answer))) = asking.join_next() => {
                    in_flight.remove(&peer);
                    // No answer at all: ask again at the next look.
                    let Some(answer) = answer else { continue };
                    if let Some(rewrite) = self.proven(peer, &now, answer) {
                        raise(&events, name, peer, rewrite);
                    }
                }
            }
        }
    }
}

/// Asks `peer` for its proofs; none when it could not answer (gone,
/// unreachable, too slow), as opposed to answering that it cannot prove.
async fn ask(membership: &Membership, peer: PeerId, sizes: Vec<u64>) -> Option<Answer> {
    match membership.call(peer, ProveAudit { sizes }).await {
        Ok(AuditProofs { head, proofs }) => Some(Ok((
            head,
            proofs.into_iter().map(|p| p.into_vec()).collect(),
        ))),
        // The log never had one of the sizes: it shrank.
        Err(MembershipError::Network(NetworkError::PeerRefused {
            kind: RefusalKind::NotFound,
            reason,
            ..
        })) => Some(Err(reason)),
        Err(e) => {
            tracing::debug!(%peer, "no answer to a request for audit proofs: {e}");
            None
        }
    }
}

fn raise(events: &Events, name: String, peer_id: PeerId, rewrite: Rewrite) {
    tracing::warn!(
        %peer_id,
        before = rewrite.before.entries,
        now = rewrite.now.entries,
        "its audit log was rewritten: its new head does not extend the one seen before"
    );
    events.emit(EventKind::AuditRewritten {
        name,
        peer_id,
        before: rewrite.before,
        now: rewrite.now,
    });
}

#[cfg(test)]
mod tests;
