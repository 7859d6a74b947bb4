//! Reports on their way to the nodes that asked for the tasks.

use std::{sync::Arc, time::Duration};

use iris_behaviours::{Liveness, TaskUpdate};
use tokio::sync::mpsc;

use super::runner::{Delivery, TaskRunner};
use crate::{crew::Crew, membership::Membership};

/// How long to wait before sending an unacknowledged report again: it
/// doubles with each failure, up to [`MAX_REDELIVERY_DELAY`].
const REDELIVER_AFTER: Duration = Duration::from_secs(2);
const MAX_REDELIVERY_DELAY: Duration = Duration::from_secs(10);
/// Failed attempts after which a report waits for the next start (about
/// an hour of trying).
const MAX_DELIVERY_FAILURES: u32 = 360;

fn redelivery_delay(failures: u32) -> Duration {
    REDELIVER_AFTER
        .saturating_mul(1 << failures.min(16))
        .min(MAX_REDELIVERY_DELAY)
}

/// Carries the runner's reports to the nodes that asked for the tasks
/// (this node included, through its own router as any other).
pub struct Courier {
    membership: Arc<Membership>,
    runner: Arc<TaskRunner>,
    /// Deliveries under way, stopped when the node shuts down (the reports
    /// stay on disk, unacknowledged, and the next start sends them again).
    crew: Crew,
}

impl Courier {
    pub fn new(membership: Arc<Membership>, runner: Arc<TaskRunner>) -> Arc<Self> {
        Arc::new(Self {
            membership,
            runner,
            crew: Crew::default(),
        })
    }

    /// Passes the runner's reports on, again until they are acknowledged,
    /// waiting longer after each failure. A report is given up when its
    /// node has left the network, or after [`MAX_DELIVERY_FAILURES`]; it
    /// stays on disk, unacknowledged, and the next start of this node
    /// sends it again. This node's own reports go in order, one at a time.
    pub async fn run(
        self: Arc<Self>,
        mut deliveries: mpsc::UnboundedReceiver<Delivery>,
        retry: mpsc::UnboundedSender<Delivery>,
    ) {
        let local = self.membership.local_peer();
        while let Some(delivery) = deliveries.recv().await {
            if delivery.origin == local {
                let update = TaskUpdate {
                    report: delivery.report.clone(),
                };
                match self.membership.call(local, update).await {
                    Ok(_) => self.runner.delivered(&delivery.report).await,
                    Err(e) => {
                        tracing::warn!(job = %delivery.report.job_id, "a report of this node's own task was not taken: {e}")
                    }
                }
                continue;
            }
            self.crew
                .spawn(self.clone().deliver(delivery, retry.clone()));
        }
    }

    /// One attempt at delivering a report to another node.
    async fn deliver(self: Arc<Self>, delivery: Delivery, retry: mpsc::UnboundedSender<Delivery>) {
        let Delivery {
            origin,
            report,
            failures,
            not_before_ms,
        } = delivery.clone();
        let wait = not_before_ms.saturating_sub(crate::now_ms());
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        // Not in a network (yet: a restarting node delivers before it has
        // rejoined) counts as a failed attempt.
        let client = self.membership.client();
        if let Some(client) = &client {
            let update = TaskUpdate {
                report: report.clone(),
            };
            if client.call(origin, update).await.is_ok() {
                return self.runner.delivered(&report).await;
            }
        }
        let left = match &client {
            // Left, or removed by the master (no longer in the map).
            Some(client) => client.snapshot().await.is_ok_and(|snapshot| {
                !snapshot
                    .map
                    .iter()
                    .any(|e| e.record.peer_id == origin && e.state != Liveness::Left)
            }),
            None => false,
        };
        let give_up = if left {
            Some("it left the network or was removed".to_string())
        } else if failures + 1 >= MAX_DELIVERY_FAILURES {
            Some(format!("{MAX_DELIVERY_FAILURES} attempts failed"))
        } else {
            None
        };
        if let Some(why) = give_up {
            return tracing::warn!(
                job = %report.job_id,
                "dropped the report of job {} for {origin}: {why}",
                report.job_id
            );
        }
        tokio::time::sleep(redelivery_delay(failures)).await;
        let _ = retry.send(Delivery {
            failures: failures + 1,
            ..delivery
        });
    }

    /// Stops the deliveries under way, and waits for them.
    pub async fn stop(&self) {
        self.crew.stop().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redelivery_backs_off_to_ten_seconds_and_gives_up_within_about_an_hour() {
        assert_eq!(redelivery_delay(0), Duration::from_secs(2));
        assert_eq!(redelivery_delay(1), Duration::from_secs(4));
        assert_eq!(redelivery_delay(40), MAX_REDELIVERY_DELAY);
        let total: Duration = (0..MAX_DELIVERY_FAILURES).map(redelivery_delay).sum();
        assert!(total > Duration::from_secs(50 * 60), "{total:?}");
        assert!(total < Duration::from_secs(70 * 60), "{total:?}");
    }
}
