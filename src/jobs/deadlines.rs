//! Jobs with a quorum and a deadline: the researcher's answer to the site
//! that never answers. A job ends at its deadline with whatever succeeded
//! by then; the tasks still going are recorded as late and cancelled
//! (`Jobs::end_late`), and the job succeeded if its quorum did
//! (`Job::quorum`).

use std::{collections::BTreeMap, sync::Mutex};

use super::record::{JobRecord, JobState};
use crate::api_types::JobRequest;

/// The longest deadline a job may have: a week, as for a task's timeout.
const MAX_DEADLINE_SECS: f64 = 604_800.0;

/// Checks the request's quorum and deadline, and says how many
/// milliseconds after its submission the job ends, if it has a deadline.
/// (A quorum over the job's targets is the network's conflict, not the
/// request's error: `Jobs::submit` checks it.)
pub(super) fn ends_at(request: &JobRequest) -> Result<Option<u64>, String> {
    if request.quorum == Some(0) {
        return Err("quorum: at least one task must succeed".into());
    }
    let Some(secs) = request.deadline_secs else {
        return Ok(None);
    };
    if !secs.is_finite() || secs <= 0.0 || secs > MAX_DEADLINE_SECS {
        return Err(format!(
            "deadline_secs: {secs} is not a number of seconds above 0 and at most {MAX_DEADLINE_SECS}"
        ));
    }
    Ok(Some((secs * 1000.0).ceil() as u64))
}

/// When `job` ends, in ms since the epoch, if it has a deadline.
pub(super) fn deadline_of(job: &JobRecord) -> Option<u64> {
    let after = ends_at(&job.request).ok().flatten()?;
    Some(job.created_ms + after)
}

/// When each job with a deadline ends, in ms since the epoch, by job id.
#[derive(Debug, Default)]
pub(super) struct Deadlines(Mutex<BTreeMap<String, u64>>);

impl Deadlines {
    /// The deadlines of the jobs still running among `jobs` (after a
    /// restart: a deadline passed meanwhile ends its job at once).
    pub fn of(jobs: &[JobRecord]) -> Self {
        let running = jobs.iter().filter(|j| j.state == JobState::Running);
        let deadlines = running
            .filter_map(|j| Some((j.id.clone(), deadline_of(j)?)))
            .collect();
        Self(Mutex::new(deadlines))
    }

    pub fn add(&self, id: &str, at_ms: u64) {
        self.0.lock().expect("lock").insert(id.to_string(), at_ms);
    }

    /// The jobs whose deadline is `now_ms` or before, taken off the list.
    pub fn due(&self, now_ms: u64) -> Vec<String> {
        let mut deadlines = self.0.lock().expect("lock");
        let due: Vec<String> = deadlines
            .iter()
            .filter(|(_, at)| **at <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &due {
            deadlines.remove(id);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(quorum: Option<u32>, deadline_secs: Option<f64>) -> JobRequest {
        let mut request: JobRequest =
            serde_json::from_value(serde_json::json!({"image": "w", "argv": ["x"]})).unwrap();
        request.quorum = quorum;
        request.deadline_secs = deadline_secs;
        request
    }

    #[test]
    fn a_quorum_of_none_or_a_deadline_out_of_range_is_refused() {
        assert_eq!(ends_at(&request(None, None)), Ok(None));
        assert_eq!(ends_at(&request(Some(3), Some(1.5))), Ok(Some(1500)));
        assert!(ends_at(&request(Some(0), None)).is_err());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
            assert!(ends_at(&request(None, Some(bad))).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_deadline_is_due_once() {
        let deadlines = Deadlines::default();
        deadlines.add("job-a", 1_000);
        deadlines.add("job-b", 2_000);
        assert_eq!(deadlines.due(999), Vec::<String>::new());
        assert_eq!(deadlines.due(1_500), ["job-a"]);
        assert_eq!(deadlines.due(5_000), ["job-b"]);
        assert_eq!(deadlines.due(9_000), Vec::<String>::new());
    }
}
