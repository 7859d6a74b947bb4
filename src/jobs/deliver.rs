//! Reports on their way to the nodes that asked for the tasks.

use std::{sync::Arc, time::Duration};

use iris_behaviours::{ControlRequest, Liveness};
use tokio::sync::mpsc;

use super::{runner::Delivery, Jobs};

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

impl Jobs {
    /// Passes the runner's reports to the nodes that asked for the tasks,
    /// again until they are acknowledged, waiting longer after each failure.
    /// A report is given up when its node has left the network, or after
    /// [`MAX_DELIVERY_FAILURES`]; it stays on disk, unacknowledged, and the
    /// next start of this node sends it again.
    pub async fn deliver(
        self: Arc<Self>,
        mut deliveries: mpsc::UnboundedReceiver<Delivery>,
        retry: mpsc::UnboundedSender<Delivery>,
    ) {
        while let Some(delivery) = deliveries.recv().await {
            let Delivery {
                origin,
                report,
                failures,
                not_before_ms,
            } = delivery.clone();
            if origin == self.local() {
                let job = self.store.apply(origin, report.clone()).await;
                self.announce_if_finished(job);
                self.runner.delivered(&report).await;
                continue;
            }
            let jobs = self.clone();
            let retry = retry.clone();
            tokio::spawn(async move {
                let wait = not_before_ms.saturating_sub(crate::now_ms());
                if wait > 0 {
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                // Not in a network (yet: a restarting node delivers before
                // it has rejoined) counts as a failed attempt.
                let client = jobs.membership.client();
                if let Some(client) = &client {
                    let request = ControlRequest::TaskUpdate {
                        report: report.clone(),
                    };
                    if client.request(origin, request).await.is_ok() {
                        return jobs.runner.delivered(&report).await;
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
            });
        }
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
