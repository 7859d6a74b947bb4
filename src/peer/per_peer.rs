//! Work done for peers, bounded per peer and in all.

use std::collections::HashMap;

use iris_behaviours::libp2p::PeerId;
use tokio::task::JoinSet;

/// Tasks working for peers, at most so many per peer and in all. Each
/// task's slot is freed when it ends, even by a panic.
pub(super) struct PerPeer {
    tasks: JoinSet<()>,
    per_peer: usize,
    total: usize,
    counts: HashMap<PeerId, usize>,
    owners: HashMap<tokio::task::Id, PeerId>,
}

impl PerPeer {
    pub(super) fn new(per_peer: usize, total: usize) -> Self {
        Self {
            tasks: JoinSet::new(),
            per_peer,
            total,
            counts: HashMap::new(),
            owners: HashMap::new(),
        }
    }

    pub(super) fn has_room(&self, peer: PeerId) -> bool {
        self.counts.get(&peer).copied().unwrap_or(0) < self.per_peer
            && self.tasks.len() < self.total
    }

    pub(super) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Starts `work` for `peer` (which [`PerPeer::has_room`]).
    pub(super) fn spawn(
        &mut self,
        peer: PeerId,
        work: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        *self.counts.entry(peer).or_default() += 1;
        let task = self.tasks.spawn(work);
        self.owners.insert(task.id(), peer);
    }

    /// Waits for a task to end and frees its slot.
    pub(super) async fn join_next(&mut self) -> Option<()> {
        let id = match self.tasks.join_next_with_id().await? {
            Ok((id, ())) => id,
            Err(error) => {
                tracing::error!("work for a peer failed: {error}");
                error.id()
            }
        };
        if let Some(peer) = self.owners.remove(&id) {
            if let Some(count) = self.counts.get_mut(&peer) {
                *count -= 1;
                if *count == 0 {
                    self.counts.remove(&peer);
                }
            }
        }
        Some(())
    }

    /// Drops what is still in the works: the peer sees the node going.
    pub(super) async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}
