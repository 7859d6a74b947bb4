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
    ///
    /// Once the crew is stopping, no work takes another step, even one
    /// that a task dropped before it made ready: the runner's next queued
    /// task would otherwise take the permit its running one let go, and
    /// write itself `running` on the way out.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        if self.stop.is_cancelled() {
            return;
        }
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                biased;
                () = stop.cancelled() => {}
                () = work => {}
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

    /// A task that frees what another waits for (a queue's permit, as the
    /// task runner's) must not let that other one take a step once the
    /// crew is stopping: a queued task of the runner would write itself
    /// `running` on the way out and be found lost after the restart.
    #[tokio::test]
    async fn a_stopping_crew_lets_no_waiting_task_take_another_step() {
        use std::sync::{
            atomic::{AtomicBool, Ordering},
            Arc,
        };
        use tokio::sync::Semaphore;
        for round in 0..200 {
            let crew = Crew::default();
            let queue = Arc::new(Semaphore::new(1));
            let first = queue.clone().try_acquire_owned().expect("a free permit");
            crew.spawn(async move {
                let _first = first; // freed when the task is dropped
                std::future::pending::<()>().await;
            });
            let started = Arc::new(AtomicBool::new(false));
            let second = (queue.clone(), started.clone());
            crew.spawn(async move {
                let _permit = second.0.acquire_owned().await;
                second.1.store(true, Ordering::SeqCst);
            });
            tokio::task::yield_now().await;
            crew.stop().await;
            assert!(
                !started.load(Ordering::SeqCst),
                "round {round}: the queued task started while the crew stopped"
            );
        }
    }
}
