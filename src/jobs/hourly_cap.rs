//! The owner's cap on tasks from other nodes per dataset per hour
//! (`max_tasks_per_hour`), under `release = review` and `aggregate`.
//!
//! Each task that ran tells the master at least one bit (it succeeded or
//! failed) and a class of its time, whatever its outputs; a master who
//! repeats a query learns that much each time. The cap bounds the rate:
//! at most `cap` tasks in any hour, so that what is left of those
//! channels is a number of bits an hour the owner chose.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

const HOUR_MS: u64 = 3_600_000;

/// When tasks were admitted, per dataset, over the last hour.
#[derive(Default)]
pub struct HourlyCap {
    admitted: Mutex<HashMap<String, VecDeque<u64>>>,
}

impl HourlyCap {
    /// Admits one task for `dataset` at `now_ms` if fewer than `cap` were
    /// admitted in the hour before; otherwise the time (ms) from which the
    /// next may be.
    pub fn take(&self, dataset: &str, cap: u32, now_ms: u64) -> Result<(), u64> {
        let mut admitted = self.admitted.lock().expect("lock");
        let times = admitted.entry(dataset.to_string()).or_default();
        while times.front().is_some_and(|t| t + HOUR_MS <= now_ms) {
            times.pop_front();
        }
        if times.len() >= cap as usize {
            return Err(times.front().map_or(now_ms, |t| t + HOUR_MS));
        }
        times.push_back(now_ms);
        Ok(())
    }

    /// Counts a task admitted before a restart, at `at_ms`.
    pub fn count(&self, dataset: &str, at_ms: u64) {
        let mut admitted = self.admitted.lock().expect("lock");
        let times = admitted.entry(dataset.to_string()).or_default();
        let at = times.partition_point(|t| *t <= at_ms);
        times.insert(at, at_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_cap_tasks_in_any_hour_per_dataset() {
        let cap = HourlyCap::default();
        let t0 = 10 * HOUR_MS;
        assert!(cap.take("heart", 2, t0).is_ok());
        assert!(cap.take("heart", 2, t0 + 1000).is_ok());
        assert_eq!(cap.take("heart", 2, t0 + 2000), Err(t0 + HOUR_MS));
        assert!(
            cap.take("lungs", 2, t0 + 2000).is_ok(),
            "another dataset has its own"
        );
        assert!(
            cap.take("heart", 2, t0 + HOUR_MS).is_ok(),
            "the first left the hour"
        );
        // Tasks from before a restart count, in order.
        let cap = HourlyCap::default();
        cap.count("heart", t0 + 500);
        cap.count("heart", t0);
        assert_eq!(cap.take("heart", 2, t0 + 1000), Err(t0 + HOUR_MS));
    }
}
