//! A fetch one node asks of another ("pull this file from there"): the
//! target answers at once with an id and pulls in the background; the
//! asker follows it with short status requests. Every answer comes within
//! the plain deadline, so a target that dies or never answers fails the
//! asker's command in seconds, not after the day a whole transfer may take.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use iris_behaviours::{
    libp2p::PeerId, FetchFile, FetchProgress, FetchStarted, FetchStatus, Refusal, RefusalKind,
};

use super::{FileError, Files, DESTINATIONS};
use crate::{
    membership::{Membership, MembershipError},
    workspace::WorkspacePath,
};

/// Fetches a node runs for others at once; more are refused as busy.
const MAX_RUNNING: usize = 16;
/// How long the outcome of a finished fetch waits for its asker.
const KEEP_OUTCOME: Duration = Duration::from_secs(600);
/// How often the asker asks how a fetch is going.
const POLL: Duration = Duration::from_millis(200);

/// The fetches this node runs for others.
#[derive(Default)]
pub(super) struct Pushes {
    next: Mutex<u64>,
    table: Mutex<HashMap<u64, Push>>,
}

/// How a fetch ended: its bytes and BLAKE3 hash, or why it failed.
type FetchOutcome = Result<(u64, String), Refusal>;

struct Push {
    /// The node that asked: the only one told how it went.
    origin: PeerId,
    /// When and how it ended; `None` while it runs.
    outcome: Option<(Instant, FetchOutcome)>,
}

impl Pushes {
    /// A peer's [`FetchFile`]: starts the pull (by `files`, in its crew)
    /// and answers with its id.
    pub fn start(
        &self,
        files: &Arc<Files>,
        origin: PeerId,
        FetchFile { from, path, dest }: FetchFile,
    ) -> Result<FetchStarted, Refusal> {
        let dest = WorkspacePath::parse(&dest)
            .and_then(|d| d.require(&DESTINATIONS, "a destination"))
            .map_err(Refusal::invalid)?;
        let id = {
            let mut table = self.table.lock().expect("lock");
            table.retain(|_, p| {
                p.outcome
                    .as_ref()
                    .is_none_or(|(at, _)| at.elapsed() < KEEP_OUTCOME)
            });
            if table.values().filter(|p| p.outcome.is_none()).count() >= MAX_RUNNING {
                return Err(Refusal::new(
                    RefusalKind::Busy,
                    "too many fetches at once; try again",
                ));
            }
            let mut next = self.next.lock().expect("lock");
            *next += 1;
            table.insert(
                *next,
                Push {
                    origin,
                    outcome: None,
                },
            );
            *next
        };
        let (crew, files) = (files.crew.clone(), files.clone());
        crew.spawn(async move {
            let outcome = files
                .fetch_and_load(from, &path, &dest)
                .await
                .map(|t| (t.bytes, t.blake3))
                .map_err(|e| {
                    tracing::warn!(%origin, "fetch of {path} asked by {origin} failed: {e}");
                    match e {
                        FileError::Invalid(reason) => Refusal::invalid(reason),
                        other => Refusal::failed(other.to_string()),
                    }
                });
            if let Some(push) = files.pushes.table.lock().expect("lock").get_mut(&id) {
                push.outcome = Some((Instant::now(), outcome));
            }
        });
        Ok(FetchStarted { id })
    }

    /// A peer's [`FetchStatus`]: still fetching, or how it ended (told
    /// once).
    pub fn status(
        &self,
        origin: PeerId,
        FetchStatus { id }: FetchStatus,
    ) -> Result<FetchProgress, Refusal> {
        let mut table = self.table.lock().expect("lock");
        let Some(push) = table.get(&id).filter(|p| p.origin == origin) else {
            return Err(Refusal::not_found(format!("no fetch {id} of yours here")));
        };
        if push.outcome.is_none() {
            return Ok(FetchProgress::Running);
        }
        let (_, outcome) = table
            .remove(&id)
            .and_then(|p| p.outcome)
            .expect("checked above");
        outcome.map(|(bytes, blake3)| FetchProgress::Done { bytes, blake3 })
    }
}

/// Has `target` pull `path` from `from` into its `dest`, and waits
/// until it has: bytes and SHA-256.
pub async fn fetch_on(
    membership: &Membership,
    target: PeerId,
    from: PeerId,
    path: String,
    dest: String,
) -> Result<(u64, String), MembershipError> {
    let fetch = FetchFile { from, path, dest };
    let FetchStarted { id } = membership.call(target, fetch).await?;
    loop {
        tokio::time::sleep(POLL).await;
        match membership.call(target, FetchStatus { id }).await? {
            FetchProgress::Running => {}
            FetchProgress::Done { bytes, blake3 } => return Ok((bytes, blake3)),
        }
    }
}
