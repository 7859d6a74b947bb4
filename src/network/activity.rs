//! What this node is doing with each peer, so that the event loop closes
//! a connection to a member that is not its neighbour only once nothing
//! uses it: no request waiting for an answer, no chunk stream open, and
//! nothing for a while. (libp2p cannot tell: gossipsub's streams keep
//! every connection busy in its eyes.)

use std::{
    collections::HashMap,
    ops::{Deref, DerefMut},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use iris_behaviours::libp2p::PeerId;

#[derive(Debug)]
struct Use {
    open: u32,
    last: Instant,
}

/// Uses of connections, by peer. Cheap to clone; every clone is the same.
#[derive(Debug, Clone, Default)]
pub struct Activity(Arc<Mutex<HashMap<PeerId, Use>>>);

impl Activity {
    /// Something starts using the connection to `peer`; it ends when the
    /// guard is dropped.
    pub fn begin(&self, peer: PeerId) -> InUse {
        let mut uses = self.0.lock().expect("activity lock");
        let entry = uses.entry(peer).or_insert(Use {
            open: 0,
            last: Instant::now(),
        });
        entry.open += 1;
        InUse {
            activity: self.clone(),
            peer,
        }
    }

    /// The connection to `peer` was used just now (a short exchange).
    pub fn touch(&self, peer: PeerId) {
        let mut uses = self.0.lock().expect("activity lock");
        uses.entry(peer)
            .and_modify(|u| u.last = Instant::now())
            .or_insert(Use {
                open: 0,
                last: Instant::now(),
            });
    }

    /// How long nothing has used the connection to `peer`; `None` while
    /// something does.
    pub fn idle_for(&self, peer: &PeerId, now: Instant) -> Option<Duration> {
        let uses = self.0.lock().expect("activity lock");
        match uses.get(peer) {
            Some(u) if u.open > 0 => None,
            Some(u) => Some(now.saturating_duration_since(u.last)),
            None => Some(Duration::MAX),
        }
    }

    /// Forgets peers we hold no connection to.
    pub fn retain(&self, connected: impl Fn(&PeerId) -> bool) {
        let mut uses = self.0.lock().expect("activity lock");
        uses.retain(|peer, u| u.open > 0 || connected(peer));
    }
}

/// One use of a peer's connection, ended on drop.
#[derive(Debug)]
pub struct InUse {
    activity: Activity,
    peer: PeerId,
}

impl Drop for InUse {
    fn drop(&mut self) {
        let mut uses = self.activity.0.lock().expect("activity lock");
        if let Some(u) = uses.get_mut(&self.peer) {
            u.open = u.open.saturating_sub(1);
            u.last = Instant::now();
        }
    }
}

/// Something (a stream) that keeps its peer's connection in use while it
/// lives.
#[derive(Debug)]
pub struct Busy<T> {
    inner: T,
    _use: InUse,
}

impl<T> Busy<T> {
    pub fn new(inner: T, use_: InUse) -> Self {
        Self { inner, _use: use_ }
    }
}

impl<T> Deref for Busy<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> DerefMut for Busy<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iris_behaviours::libp2p::identity::Keypair;

    #[test]
    fn a_connection_is_idle_only_once_every_use_has_ended() {
        let activity = Activity::default();
        let peer = Keypair::generate_ed25519().public().to_peer_id();
        assert_eq!(
            activity.idle_for(&peer, Instant::now()),
            Some(Duration::MAX)
        );
        let first = activity.begin(peer);
        let second = activity.begin(peer);
        drop(first);
        assert_eq!(activity.idle_for(&peer, Instant::now()), None);
        drop(second);
        let later = Instant::now() + Duration::from_secs(5);
        assert!(activity.idle_for(&peer, later).unwrap() >= Duration::from_secs(4));
        activity.retain(|_| false);
        assert_eq!(activity.idle_for(&peer, later), Some(Duration::MAX));
    }
}
