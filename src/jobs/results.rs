//! What a job leaves the node that submitted it: each task's released
//! outputs, gathered (a secure sum of them is `secagg::job_sum`).

use iris_behaviours::libp2p::PeerId;

use super::{record::JobRecord, JobError};
use crate::{
    api_types::Gathered,
    files::{FileError, Files},
    workspace::WorkspacePath,
};

/// Pulls every task's released outputs into this node's (`local`)
/// `gathered/<id>/<node>/`, which no container writes and no peer reads;
/// says which nodes' owners hold theirs.
pub(super) async fn gather(
    job: &JobRecord,
    local: PeerId,
    files: &Files,
) -> Result<Gathered, JobError> {
    let id = &job.id;
    let mut gathered = Vec::new();
    let mut held = Vec::new();
    let mut unnamed = Vec::new();
    for task in job.tasks.values() {
        if let Some(reason) = &task.held {
            held.push(format!("{}: {reason}", task.node));
        }
        for name in &task.unnamed_outputs {
            unnamed.push(format!("{}: {name}", task.node));
        }
        for file in &task.outputs {
            let failed = |source| JobError::Gather {
                file: file.clone(),
                node: task.node.clone(),
                source: Box::new(source),
            };
            let source = format!("outputs/{id}/{file}");
            // The file names come from the node's report: checked here.
            let dest = WorkspacePath::parse(&format!("gathered/{id}/{}/{file}", task.node))
                .map_err(|e| failed(FileError::Invalid(e)))?;
            if task.peer_id == local {
                files.copy_local(&source, &dest).await.map_err(failed)?;
            } else {
                files
                    .fetch(task.peer_id, &source, &dest)
                    .await
                    .map_err(failed)?;
            }
            gathered.push(dest.to_string());
        }
    }
    Ok(Gathered {
        files: gathered,
        held,
        unnamed,
    })
}
