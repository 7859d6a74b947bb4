//! Writes the membership (network config and map) to disk off the swarm's
//! task: the event loop hands over the latest state, and a task of its own
//! writes whatever is newest, on a blocking thread.

use tokio::{sync::watch, task::JoinHandle};
use tokio_util::task::TaskTracker;

use crate::store::{SavedMembership, Store};

pub(super) struct Saver {
    latest: watch::Sender<Option<SavedMembership>>,
    writer: JoinHandle<()>,
}

impl Saver {
    /// Starts the writer as one of the network's `tasks`.
    pub(super) fn spawn(store: Store, tasks: &TaskTracker) -> Self {
        let (latest, mut newest) = watch::channel(None::<SavedMembership>);
        // `finish` awaits it once the last state is handed over.
        let writer = tasks.spawn(async move {
            // Ends once the sender is gone and its last value is written.
            while newest.changed().await.is_ok() {
                let Some(membership) = newest.borrow_and_update().clone() else {
                    continue;
                };
                let store = store.clone();
                let written =
                    tokio::task::spawn_blocking(move || store.save_membership(&membership)).await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!("cannot save the network map: {e}"),
                    Err(e) => tracing::error!("cannot save the network map: {e}"),
                }
            }
        });
        Self { latest, writer }
    }

    /// Hands over the newest state; it is written soon.
    pub(super) fn save(&self, membership: SavedMembership) {
        self.latest.send_replace(Some(membership));
    }

    /// Waits until everything handed over is on disk.
    pub(super) async fn finish(self) {
        drop(self.latest);
        if let Err(e) = self.writer.await {
            tracing::error!("the map writer failed: {e}");
        }
    }
}
