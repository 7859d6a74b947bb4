//! The secure sum of a finished job's updates, as the node that submitted
//! the job asks for it: over the sites whose tasks succeeded, kept in
//! `gathered/<job>/sum.json`.

use std::sync::Arc;

use iris_behaviours::{libp2p::PeerId, TaskState};

use super::{Coordinator, SumOutcome, MAX_LENGTH};
use crate::{
    api_types::Job, files::Files, jobs::JobError, membership::Membership, workspace::WorkspacePath,
};

/// Most numbers in an update's vector: the weight is one more entry.
const MAX_ENTRIES: usize = MAX_LENGTH;

/// The secure sum of each succeeded task's `file` (`{"vector": [...],
/// "weight": w}`, with `entries` numbers in the vector): the sum of wᵢ·vᵢ
/// and of wᵢ, with no site's vector seen; kept in `gathered/<id>/sum.json`.
pub async fn sum_job(
    membership: &Arc<Membership>,
    job: &Job,
    file: &str,
    entries: u64,
    files: &Files,
) -> Result<SumOutcome, JobError> {
    let id = &job.id;
    let entries = usize::try_from(entries)
        .ok()
        .filter(|n| (1..MAX_ENTRIES).contains(n))
        .ok_or_else(|| {
            JobError::Invalid(format!(
                "length {entries}: an update's vector holds 1 to {} numbers",
                MAX_ENTRIES - 1
            ))
        })?;
    if !job.finished() {
        return Err(JobError::Invalid(format!("job {id} has not ended yet")));
    }
    let sites: Vec<(PeerId, String)> = job
        .tasks
        .values()
        .filter(|t| t.state == TaskState::Succeeded)
        .map(|t| (t.peer_id, t.node.clone()))
        .collect();
    let coordinator = Coordinator {
        membership: membership.clone(),
    };
    let mut outcome = coordinator
        .run(id, file, entries, &sites)
        .await
        .map_err(JobError::SecureSum)?;
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
        WorkspacePath::parse(&format!("gathered/{id}/sum.json")).map_err(JobError::Invalid)?;
    outcome.path = dest.to_string();
    let json = serde_json::to_vec_pretty(&outcome).expect("sums serialize");
    files
        .write_local(&dest, json)
        .await
        .map_err(|e| JobError::Gather {
            file: "sum.json".into(),
            node: "this node".into(),
            source: Box::new(e),
        })?;
    Ok(outcome)
}
