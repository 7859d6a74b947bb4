//! Who may read a job's outputs: only the node that asked for the job.

use iris_behaviours::{libp2p::PeerId, Refusal};

use crate::{
    egress::Release,
    jobs::Jobs,
    workspace::{Area, WorkspacePath},
};

/// A job's outputs are read only by the node that asked for the job;
/// `public/` and `image/` by any member (the files service refuses every
/// other area itself). For a job's output, returns the job and where the
/// release of its outputs stands.
pub(super) async fn may_read(
    jobs: &Jobs,
    peer: PeerId,
    path: &str,
) -> Result<Option<(String, Release)>, Refusal> {
    let Ok(place) = WorkspacePath::parse(path) else {
        return Ok(None); // the files service says what is wrong with it
    };
    if place.area != Area::Outputs {
        return Ok(None);
    }
    let job = place.job().unwrap_or_default();
    if let Some((origin, release)) = jobs.runner.origin(&job).await {
        if origin == peer {
            return Ok(Some((job, release)));
        }
    }
    tracing::warn!(%peer, "refused to serve {path}: the job is not theirs");
    Err(Refusal::forbidden(format!(
        "forbidden: the outputs of job {job} are only for the node that asked for it"
    )))
}
