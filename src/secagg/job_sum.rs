//! The secure sum of a finished job's updates, as the node that submitted
//! the job asks for it: over the sites whose tasks succeeded, kept in
//! `gathered/<job>/sum.json`.

use std::sync::Arc;

use iris_behaviours::{libp2p::PeerId, TaskState};

use super::{Coordinator, SecureSums, SumOutcome};
use crate::{api_types::Job, files::Files, jobs::JobError, workspace::WorkspacePath};

impl SecureSums {
    /// The secure sum of each succeeded task's `file` (`{"vector": [...],
    /// "weight": w}`): the sum of wᵢ·vᵢ and of wᵢ, with no site's vector
    /// seen; kept in `gathered/<id>/sum.json`.
    pub async fn sum_job(
        self: &Arc<Self>,
        job: &Job,
        file: &str,
        files: &Files,
    ) -> Result<SumOutcome, JobError> {
        let id = &job.id;
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
            membership: self.membership.clone(),
            sites: self.clone(),
        };
        let mut outcome = coordinator
            .run(id, file, &sites)
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
}
