//! The secure sum of a finished job's updates, as the node that submitted
//! the job asks for it: over the sites whose tasks succeeded, kept in
//! `gathered/<job>/sum.json`.

use std::sync::Arc;

use iris_behaviours::{libp2p::PeerId, TaskState};

use super::{check_room, coordinator::SumError, Coordinator, FixedPoint, SumOutcome, MAX_LENGTH};
use crate::{
    api_types::{Job, JobState, SecureSumRequest},
    files::{FileError, Files},
    membership::Membership,
    workspace::WorkspacePath,
};

/// Why a job's secure sum did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SumJobError {
    /// The request is wrong: its length, range or resolution.
    #[error("{0}")]
    Invalid(String),
    /// The job runs still; its sum waits until it has ended.
    #[error("job {0} has not ended yet")]
    Running(String),
    /// Too few sites, a refusal or a falsified share: nothing to sum.
    #[error("no secure sum: {0}")]
    Sum(#[from] SumError),
    /// The sum was computed but could not be kept in `sum.json`.
    #[error("cannot keep the sum in sum.json: {0}")]
    Keep(#[source] FileError),
}

/// Most numbers in an update's vector: the weight and the count of clipped
/// values are two more entries.
pub const MAX_ENTRIES: usize = MAX_LENGTH - 2;

/// The secure sum of each succeeded task's update file (`{"vector":
/// [...], "weight": w}`, with `length` numbers in the vector), encoded in
/// the range and resolution the request declares: the sum of wᵢ·vᵢ and of
/// wᵢ, with no site's vector seen; kept in `gathered/<id>/sum.json`.
pub async fn sum_job(
    membership: &Arc<Membership>,
    job: &Job,
    request: &SecureSumRequest,
    files: &Files,
) -> Result<SumOutcome, SumJobError> {
    let id = &job.id;
    let entries = usize::try_from(request.length)
        .ok()
        .filter(|n| (1..=MAX_ENTRIES).contains(n))
        .ok_or_else(|| {
            SumJobError::Invalid(format!(
                "length {}: an update's vector holds 1 to {MAX_ENTRIES} numbers",
                request.length
            ))
        })?;
    if job.state == JobState::Running {
        return Err(SumJobError::Running(id.clone()));
    }
    let sites: Vec<(PeerId, String)> = job
        .tasks
        .values()
        .filter(|t| t.state == TaskState::Succeeded)
        .map(|t| (t.peer_id, t.node.clone()))
        .collect();
    // Refused here, before any site computes, if it cannot hold the sum
    // over every site that could take part.
    let privacy = request.privacy().map_err(SumJobError::Invalid)?;
    let fixed = FixedPoint::declared(request.range, request.resolution)
        .and_then(|fixed| {
            // The weight and the count of clipped values are two more.
            check_room(&fixed, privacy.as_ref(), sites.len().max(1), entries + 2).map(|()| fixed)
        })
        .map_err(|e| SumJobError::Invalid(e.to_string()))?;
    let coordinator = Coordinator {
        membership: membership.clone(),
    };
    let mut outcome = coordinator
        .run(id, &request.file, entries, fixed, privacy, &sites)
        .await
        .map_err(SumJobError::Sum)?;
    // Sites whose task did not succeed are not in it either.
    for task in job
        .tasks
        .values()
        .filter(|t| t.state != TaskState::Succeeded)
    {
        outcome
            .dropped
            .push(format!("{} (its task {})", task.node, task.state));
    }
    let dest =
        WorkspacePath::parse(&format!("gathered/{id}/sum.json")).map_err(SumJobError::Invalid)?;
    outcome.path = dest.to_string();
    let json = serde_json::to_vec_pretty(&outcome).expect("sums serialize");
    files
        .write_local(&dest, json)
        .await
        .map_err(SumJobError::Keep)?;
    Ok(outcome)
}
