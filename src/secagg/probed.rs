//! The update a site's newest probe read, kept for the setup that follows
//! it, so that a site reads and parses its update once a sum (a vector of
//! 10⁶ entries is 19 MB of JSON, about 40 ms to parse).
//!
//! One slot: a probe of another update takes its place, and that setup
//! reads the file again. The setup takes what it uses, and a reading
//! older than [`LIFETIME`] is dropped at the next look, so at most one
//! update's worth of memory stays behind an abandoned probe.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use super::update::Update;

/// How long a probe's reading is kept for its setup.
pub const LIFETIME: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct ProbedUpdate {
    slot: Mutex<Option<Reading>>,
}

/// An update as a probe read it, and which one it is.
struct Reading {
    job_id: String,
    file: String,
    entries: usize,
    update: Update,
    at: Instant,
}

impl ProbedUpdate {
    /// Keeps what a probe of `file` of task `job_id`, with `entries`
    /// entries, read, in place of any earlier reading.
    pub fn keep(&self, job_id: &str, file: &str, entries: usize, update: Update) {
        *self.lock() = Some(Reading {
            job_id: job_id.into(),
            file: file.into(),
            entries,
            update,
            at: Instant::now(),
        });
    }

    /// The reading of the same task, file and length, taken from the slot,
    /// if one younger than [`LIFETIME`] is there.
    pub fn take(&self, job_id: &str, file: &str, entries: usize) -> Option<Update> {
        let mut slot = self.lock();
        if slot.as_ref().is_some_and(|r| r.at.elapsed() >= LIFETIME) {
            *slot = None;
        }
        let same = slot
            .as_ref()
            .is_some_and(|r| r.job_id == job_id && r.file == file && r.entries == entries);
        same.then(|| slot.take()).flatten().map(|r| r.update)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Reading>> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(weight: u32) -> Update {
        let text = format!(r#"{{"vector": [1, 2], "weight": {weight}}}"#);
        Update::parse(text.as_bytes(), 2).unwrap()
    }

    #[test]
    fn a_setup_takes_the_reading_of_its_own_probe_once() {
        let probed = ProbedUpdate::default();
        probed.keep("job-a", "update.json", 2, update(1));
        // Another file, length or task: not this reading, which stays.
        assert!(probed.take("job-a", "other.json", 2).is_none());
        assert!(probed.take("job-a", "update.json", 3).is_none());
        assert!(probed.take("job-b", "update.json", 2).is_none());
        assert_eq!(probed.take("job-a", "update.json", 2), Some(update(1)));
        // Taken: the next setup reads the file again.
        assert!(probed.take("job-a", "update.json", 2).is_none());
        // A newer probe takes the slot.
        probed.keep("job-a", "update.json", 2, update(1));
        probed.keep("job-b", "update.json", 2, update(2));
        assert!(probed.take("job-a", "update.json", 2).is_none());
        assert_eq!(probed.take("job-b", "update.json", 2), Some(update(2)));
    }

    #[test]
    fn an_old_reading_is_not_used_and_is_dropped() {
        let probed = ProbedUpdate::default();
        probed.keep("job-a", "update.json", 2, update(1));
        if let Some(reading) = probed.lock().as_mut() {
            reading.at = Instant::now() - LIFETIME;
        }
        assert!(probed.take("job-a", "update.json", 2).is_none());
        assert!(probed.lock().is_none());
    }
}
