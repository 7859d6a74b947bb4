//! The tasks a service spawns, owned by the service: when the node shuts
//! down, each is told to stop and the node waits until every one has
//! ended, as in mini-redis. No task outlives the node's shutdown unseen.

use std::future::Future;

use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// A service's spawned tasks. Cheap to clone; the clones share the tasks.
#[derive(Clone, Default)]
pub struct Crew {
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Crew {
    /// Runs `work` until it ends or the crew is stopped, whichever comes
    /// first: a stopped crew drops its work where it stands, as the end of
    /// the process would. What must survive a stop is written as whole
    /// records before it matters (a task's state, a delivery queue).
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        if self.stop.is_cancelled() {
            return;
        }
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = work => {}
                () = stop.cancelled() => {}
            }
        });
    }

    /// Stops every task and waits until all have ended.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// How many tasks are running.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn stopping_ends_every_task_and_waits_for_them() {
        let crew = Crew::default();
        let (ended, mut ends) = tokio::sync::mpsc::channel::<()>(4);
        for _ in 0..3 {
            let ended = ended.clone();
            crew.spawn(async move {
                let _ended = ended; // dropped when the task ends
                std::future::pending::<()>().await;
            });
        }
        drop(ended);
        assert_eq!(crew.len(), 3);
        tokio::time::timeout(Duration::from_secs(10), crew.stop())
            .await
            .expect("the crew stopped");
        assert!(crew.is_empty());
        assert!(ends.recv().await.is_none(), "a task outlived the stop");
        // A stopped crew starts nothing more.
        crew.spawn(async {});
        assert!(crew.is_empty());
    }
}
