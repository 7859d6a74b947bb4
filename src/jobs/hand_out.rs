//! Handing a job's tasks to its targets: each target that lacks the image
//! gets this node's tar of it first, then its `RunTask`. A job submitted
//! as the node shuts down keeps the tasks it could not hand out queued,
//! and the next start hands them out (`Jobs::hand_out_queued`): a restart
//! of the master is not a site's failure. Handing a task out twice is
//! harmless, since a target takes the same task from the same master once
//! and acknowledges it again.

use std::sync::Arc;

use iris_behaviours::{libp2p::PeerId, MapEntry, RunTask, TaskSpec};

use crate::{images::ImageLibrary, membership::Membership};

/// How a target's hand-out ended.
#[derive(Debug)]
pub(super) enum Handed {
    /// The target took its task.
    Taken,
    /// The target could not be given it, or refused it: the task failed.
    Failed(String),
    /// This node began to shut down meanwhile: the task stays queued for
    /// the next start.
    Interrupted,
}

pub(super) struct HandOut {
    membership: Arc<Membership>,
    images: Arc<ImageLibrary>,
}

impl HandOut {
    pub fn new(membership: Arc<Membership>, images: Arc<ImageLibrary>) -> Self {
        Self { membership, images }
    }

    /// Hands every target its task at once (each waits only for its own
    /// acknowledgement), shipping the image to those `map` shows without it.
    pub async fn to_all(
        &self,
        targets: &[PeerId],
        spec: &TaskSpec,
        map: &[MapEntry],
    ) -> Vec<(PeerId, Handed)> {
        let ship = self.image_shipment(&spec.image, targets, map);
        let hand_outs = targets.iter().map(|peer| {
            let tar = ship
                .as_ref()
                .filter(|(_, to)| to.contains(peer))
                .map(|(tar, _)| tar.clone());
            async move { (*peer, self.to_one(*peer, spec.clone(), tar).await) }
        });
        futures::future::join_all(hand_outs).await
    }

    /// Hands one target its task, after shipping it the image `tar`.
    async fn to_one(&self, peer: PeerId, spec: TaskSpec, tar: Option<String>) -> Handed {
        let local = self.membership.local_peer();
        let sent = async {
            // This node itself too: its own router takes the call, with the
            // checks a peer's call gets.
            if let Some(tar) = tar.filter(|_| peer != local) {
                // The target lacks the image: it pulls our tar first (once;
                // its record lists the image afterwards).
                crate::files::fetch_on(&self.membership, peer, local, tar.clone(), tar)
                    .await
                    .map_err(|e| format!("cannot ship the image: {e}"))?;
            }
            self.membership
                .call(peer, RunTask { spec })
                .await
                .map_err(|e| e.to_string())
        };
        match sent.await {
            Ok(_) => Handed::Taken,
            Err(_) if self.membership.is_stopping() => Handed::Interrupted,
            Err(error) => Handed::Failed(error),
        }
    }

    /// Which targets lack `image` (by their map records), and the tar this
    /// node loaded it from, if it has one to send them.
    fn image_shipment(
        &self,
        image: &str,
        targets: &[PeerId],
        map: &[MapEntry],
    ) -> Option<(String, Vec<PeerId>)> {
        let local = self.membership.local_peer();
        let tag = if image.contains(':') {
            image.to_string()
        } else {
            format!("{image}:latest")
        };
        let lacking: Vec<PeerId> = targets
            .iter()
            .filter(|peer| **peer != local)
            .filter(|peer| {
                let entry = map.iter().find(|e| e.record.peer_id == **peer);
                !entry.is_some_and(|e| e.record.images.iter().any(|i| i.tags.contains(&tag)))
            })
            .copied()
            .collect();
        if lacking.is_empty() {
            return None;
        }
        let tar = self.images.source_of(&tag)?;
        let name = tar.file_name()?.to_string_lossy().into_owned();
        Some((format!("image/{name}"), lacking))
    }
}
