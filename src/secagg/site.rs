//! A node's part in secure sums, on the wire: it reads its task's update
//! file, joins the master's session, sends its shares to the other sites
//! directly, and hands over only its masked vector, through the egress
//! gate, which records the contribution before it goes.

use std::{collections::HashMap, path::Path, sync::Arc, time::Instant};

use iris_behaviours::{
    libp2p::{identity::Keypair, PeerId},
    Refusal, SecureSumStep, SumAnswer, TaskState,
};
use tokio::sync::Mutex;

use super::{
    probed::ProbedUpdate,
    update::{check_file, Update, UpdateError},
    wire::{
        decode, encode, Collect, Fetch, Fits, Masked, Page, Probe, Received, Roster, SaRequest,
        Setup, Shared, Shares, Signature, Survivors, Unmask, PAGE_WORDS,
    },
    Participant, SecAggError, SessionId, SignedMaskKey, Unmasking,
};
use crate::{
    audit::ContributionPrivacy,
    egress::{Egress, Outgoing, Release},
    membership::Membership,
    privacy::Spend,
    workspace::{Area, Workspace},
};

/// Sessions a node keeps at once, and how long an unfinished one lives.
const MAX_SESSIONS: usize = 16;
const SESSION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(600);
/// The largest update file read.
const MAX_UPDATE_BYTES: u64 = 256 << 20;

struct Session {
    participant: Participant,
    job_id: String,
    master: PeerId,
    input: Vec<u64>,
    /// With differential privacy: the noise for the input, drawn on a
    /// blocking thread from the setup on, while the sites exchange their
    /// keys and shares; added at collect, before anything is masked.
    noise: Noise,
    /// With differential privacy: what the contribution spends.
    privacy: Option<ContributionPrivacy>,
    masked: Option<Vec<u64>>,
    started: Instant,
}

/// Where a session's noise stands. Its input is masked only when it is
/// `None` (a noise-free sum, or the master's own node) or `Added`.
enum Noise {
    None,
    Drawing(tokio::task::JoinHandle<Result<Vec<u64>, String>>),
    Added,
    /// It could not be drawn: the session's input never leaves.
    Failed,
}

/// A task as a secure sum sees it.
pub struct SiteTask {
    /// The node that asked for it: the only one that may sum its output.
    pub origin: PeerId,
    pub state: TaskState,
    /// What the owner allows of its outputs.
    pub release: Release,
    /// The dataset it read (none: the whole private area), whose privacy
    /// budget a noisy sum spends.
    pub dataset: Option<String>,
}

impl SiteTask {
    /// The budget this task's sums spend: its dataset's, or that of
    /// `private/` as a whole.
    fn budget_name(&self) -> String {
        self.dataset.clone().unwrap_or_else(|| "private/".into())
    }
}

/// What a site's secure sums ask of the node's tasks. The task runner
/// answers (the node hands it in), so this module needs nothing of jobs.
pub trait SiteTasks: Send + Sync {
    fn task_of<'a>(&'a self, job_id: &'a str) -> futures::future::BoxFuture<'a, Option<SiteTask>>;
}

pub struct SecureSums {
    keypair: Keypair,
    runner: Arc<dyn SiteTasks>,
    workspace: Workspace,
    egress: Arc<Egress>,
    membership: Arc<Membership>,
    sessions: Mutex<HashMap<SessionId, Session>>,
    /// The newest probe's reading of its update, for its setup.
    probed: ProbedUpdate,
}

fn refusal(error: SecAggError) -> Refusal {
    match error {
        SecAggError::Invalid(_) => Refusal::invalid(error.to_string()),
        SecAggError::Refused(_) => Refusal::forbidden(error.to_string()),
        SecAggError::Aborted(_) => Refusal::failed(error.to_string()),
    }
}

impl SecureSums {
    pub fn new(
        keypair: Keypair,
        runner: Arc<dyn SiteTasks>,
        workspace: Workspace,
        egress: Arc<Egress>,
        membership: Arc<Membership>,
    ) -> Arc<Self> {
        Arc::new(Self {
            keypair,
            runner,
            workspace,
            egress,
            membership,
            sessions: Mutex::new(HashMap::new()),
            probed: ProbedUpdate::default(),
        })
    }

    /// Answers a step from `peer` (from the master, unless it is shares).
    pub async fn handle(
        &self,
        peer: PeerId,
        from_master: bool,
        SecureSumStep { body, .. }: SecureSumStep,
    ) -> Result<SumAnswer, Refusal> {
        let request: SaRequest = decode(&body).map_err(Refusal::invalid)?;
        if !from_master && !matches!(request, SaRequest::Shares(_)) {
            return Err(Refusal::forbidden(
                "forbidden: only the master runs a secure sum",
            ));
        }
        let body = match request {
            SaRequest::Probe(step) => encode(&self.probe(peer, step).await?),
            SaRequest::Setup(step) => encode(&self.setup(peer, step).await?),
            SaRequest::Roster(step) => encode(&self.roster(peer, step).await?),
            SaRequest::Shares(step) => encode(&self.shares(peer, step).await?),
            SaRequest::Collect(step) => encode(&self.collect(peer, step).await?),
            SaRequest::Fetch(step) => encode(&self.fetch(peer, step).await?),
            SaRequest::Survivors(step) => encode(&self.survivors(peer, step).await?),
            SaRequest::Unmask(step) => encode(&self.unmask(peer, step).await?),
        };
        Ok(SumAnswer { body })
    }

    /// This node.
    fn local(&self) -> PeerId {
        self.keypair.public().to_peer_id()
    }

    /// This node's task of `job_id`, for the master `peer`: it must be the
    /// master's own, have succeeded, and its outputs may go into a secure
    /// sum.
    async fn task_for(&self, peer: PeerId, job_id: &str) -> Result<SiteTask, Refusal> {
        let Some(task) = self.runner.task_of(job_id).await else {
            return Err(Refusal::not_found(format!("no task of job {job_id} here")));
        };
        if task.origin != peer {
            return Err(Refusal::forbidden(format!(
                "forbidden: job {job_id} is not yours"
            )));
        }
        if task.state != TaskState::Succeeded {
            return Err(Refusal::invalid(format!(
                "the task of job {job_id} did not succeed"
            )));
        }
        self.egress
            .secure_sum_allowed(job_id, &task.release, usize::MAX)
            .map_err(Refusal::forbidden)?;
        Ok(task)
    }

    /// Reads the update file `file` (a name [`check_file`] passed) of task
    /// `job_id`, a vector of `entries` entries, on a blocking thread. What
    /// is wrong with the file itself is told in the closed words of
    /// [`UpdateError`].
    async fn update_of(&self, job_id: &str, file: &str, entries: usize) -> Result<Update, Refusal> {
        let (workspace, relative) = (self.workspace.clone(), Path::new(job_id).join(file));
        let read = tokio::task::spawn_blocking(move || -> Result<Update, UpdateError> {
            use std::io::Read;
            let file = workspace
                .area(Area::Outputs)
                .and_then(|outputs| outputs.open_file(&relative))
                .map_err(|_| UpdateError::NoSuchFile)?;
            // One byte past the most read: a larger file is not an update.
            let mut bytes = Vec::new();
            file.take(MAX_UPDATE_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|_| UpdateError::NotAnUpdate)?;
            if bytes.len() as u64 > MAX_UPDATE_BYTES {
                return Err(UpdateError::NotAnUpdate);
            }
            Update::parse(&bytes, entries)
        })
        .await
        .map_err(|_| Refusal::failed("the update could not be read"))?;
        read.map_err(|e| e.refusal(file))
    }

    async fn probe(&self, peer: PeerId, step: Probe) -> Result<Fits, Refusal> {
        let Probe {
            job_id,
            file,
            entries,
        } = step;
        let entries =
            usize::try_from(entries).map_err(|_| UpdateError::OtherLength.refusal(&file))?;
        check_file(&file).map_err(|e| e.refusal(&file))?;
        self.task_for(peer, &job_id).await?;
        let update = self.update_of(&job_id, &file, entries).await?;
        self.probed.keep(&job_id, &file, entries, update);
        Ok(Fits)
    }

    async fn roster(&self, peer: PeerId, step: Roster) -> Result<Shared, Refusal> {
        let Roster { session, roster } = step;
        let bundles = self
            .with_session(session, peer, |s| s.participant.share(&roster))
            .await?;
        // Straight to each site, never through the master.
        let sends = bundles.into_iter().map(|(to, bundle)| {
            let shares = Shares { session, bundle };
            async move {
                let sent = super::wire::ask(&self.membership, to, shares).await;
                if let Err(e) = &sent {
                    tracing::warn!(%to, "secure sum: cannot send shares: {e}");
                }
                sent.is_ok()
            }
        });
        let delivered = futures::future::join_all(sends)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count();
        Ok(Shared {
            delivered: delivered as u64,
        })
    }

    async fn shares(&self, peer: PeerId, step: Shares) -> Result<Received, Refusal> {
        let mut sessions = self.sessions.lock().await;
        let s = sessions
            .get_mut(&step.session)
            .ok_or_else(|| Refusal::not_found("no such secure-sum session here"))?;
        s.participant.receive(peer, step.bundle).map_err(refusal)?;
        Ok(Received)
    }

    async fn fetch(&self, peer: PeerId, step: Fetch) -> Result<Page, Refusal> {
        let sessions = self.sessions.lock().await;
        let s = sessions
            .get(&step.session)
            .filter(|s| s.master == peer)
            .ok_or_else(|| Refusal::not_found("no such secure-sum session here"))?;
        let masked = s
            .masked
            .as_ref()
            .ok_or_else(|| Refusal::invalid("this node has not masked its vector yet"))?;
        let start = usize::try_from(step.offset)
            .unwrap_or(usize::MAX)
            .min(masked.len());
        let end = (start + PAGE_WORDS).min(masked.len());
        let bytes = masked[start..end]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        Ok(Page { bytes })
    }

    async fn survivors(&self, peer: PeerId, step: Survivors) -> Result<Signature, Refusal> {
        let keypair = self.keypair.clone();
        let bytes = self
            .with_session(step.session, peer, |s| {
                s.participant.sign(&keypair, &step.survivors)
            })
            .await?;
        Ok(Signature { bytes })
    }

    async fn unmask(&self, peer: PeerId, step: Unmask) -> Result<Unmasking, Refusal> {
        let Unmask {
            session,
            survivors,
            signatures,
        } = step;
        // The survivors' sum is what the shares unmask: it too must be
        // over enough sites this owner recognises, or the master could
        // call the others dropped and be left with this node's vector.
        let local = self.local();
        let unmasking = self
            .with_session(session, peer, |s| {
                let threshold = s.participant.params().threshold;
                self.egress
                    .sum_sites_allowed(&survivors, local, peer, threshold)
                    .map_err(SecAggError::Refused)?;
                s.participant.unmask(&survivors, &signatures)
            })
            .await?;
        // Done: the session's secrets go with it.
        self.sessions.lock().await.remove(&session);
        Ok(unmasking)
    }

    async fn with_session<T>(
        &self,
        session: SessionId,
        master: PeerId,
        step: impl FnOnce(&mut Session) -> Result<T, SecAggError>,
    ) -> Result<T, Refusal> {
        let mut sessions = self.sessions.lock().await;
        let s = sessions
            .get_mut(&session)
            .filter(|s| s.master == master)
            .ok_or_else(|| Refusal::not_found("no such secure-sum session here"))?;
        step(s).map_err(refusal)
    }

    async fn setup(&self, peer: PeerId, step: Setup) -> Result<SignedMaskKey, Refusal> {
        let Setup { params, file } = step;
        if params.master != peer {
            return Err(Refusal::forbidden(
                "forbidden: a session names its own master",
            ));
        }
        // Whom the sum is over, and whether it is noisy enough, before
        // anything of this node's is read.
        let local = self.local();
        self.egress
            .sum_sites_allowed(&params.participants, local, peer, params.threshold)
            .map_err(Refusal::forbidden)?;
        let noise = params.noise().map_err(refusal)?;
        if noise.is_none() {
            self.egress
                .noise_free_allowed(local, peer)
                .map_err(Refusal::forbidden)?;
        }
        check_file(&file).map_err(|e| e.refusal(&file))?;
        let task = self.task_for(peer, &params.job_id).await?;
        // The master's own node sums its own data for itself: it clips,
        // but adds no noise and spends nothing.
        let noise = noise.filter(|_| local != peer);
        let privacy = params
            .privacy
            .filter(|_| local != peer)
            .map(|p| ContributionPrivacy {
                dataset: task.budget_name(),
                clip: p.clip,
                epsilon: p.epsilon,
                delta: p.delta,
                rho: p.rho(),
            });
        if let Some(privacy) = &privacy {
            let spend = Spend {
                dataset: privacy.dataset.clone(),
                rho: privacy.rho,
            };
            self.egress
                .budget_fits(&spend)
                .await
                .map_err(Refusal::forbidden)?;
        }
        // The session's length counts the weight and the clipped count
        // as entries.
        let entries = params.length.saturating_sub(2);
        let update = match self.probed.take(&params.job_id, &file, entries) {
            Some(update) => update,
            None => self.update_of(&params.job_id, &file, entries).await?,
        };
        let mut summand = update.into_summand(&params.fixed);
        // Under differential privacy the vector is clipped to the declared
        // norm, and how many entries were clipped is not told (0), which
        // would leak; otherwise the count is a whole number whose sum is
        // the master's.
        let clipped = match &params.privacy {
            Some(declared) => {
                crate::privacy::clip_norm(&mut summand.values, declared.clip);
                0
            }
            None => summand.clipped,
        };
        let mut input = params.fixed.encode(&summand.values).map_err(refusal)?;
        input.push(clipped);
        let noised = input.len() - 1;
        let noise = match noise {
            Some(noise) => Noise::Drawing(tokio::task::spawn_blocking(move || {
                let mut words = vec![0u64; noised];
                crate::privacy::add_noise(&mut words, &noise).map(|()| words)
            })),
            None => Noise::None,
        };
        let job_id = params.job_id.clone();
        let (participant, key) = Participant::new(params, &self.keypair).map_err(refusal)?;
        let mut sessions = self.sessions.lock().await;
        sessions.retain(|_, s| s.started.elapsed() < SESSION_LIFETIME);
        if sessions.len() >= MAX_SESSIONS {
            return Err(Refusal::new(
                iris_behaviours::RefusalKind::Busy,
                "too many secure sums at once; try again",
            ));
        }
        sessions.insert(
            participant.session(),
            Session {
                participant,
                job_id,
                master: peer,
                input,
                noise,
                privacy,
                masked: None,
                started: Instant::now(),
            },
        );
        Ok(key)
    }

    async fn collect(&self, peer: PeerId, step: Collect) -> Result<Masked, Refusal> {
        let Collect { session, sharers } = step;
        let mut sessions = self.sessions.lock().await;
        let s = sessions
            .get_mut(&session)
            .filter(|s| s.master == peer)
            .ok_or_else(|| Refusal::not_found("no such secure-sum session here"))?;
        let release = self
            .runner
            .task_of(&s.job_id)
            .await
            .ok_or_else(|| Refusal::not_found("the task is gone"))?
            .release;
        let params = s.participant.params().clone();
        // Through the gate, which records the contribution before it leaves.
        let input = Outgoing::SecureSumInput {
            job_id: &s.job_id,
            session: &hex::encode(session.0),
            length: params.length as u64,
            sites: &sharers,
            local: self.local(),
            threshold: params.threshold,
            privacy: s.privacy.clone(),
        };
        self.egress.pass(peer, input, &release).await?;
        match std::mem::replace(&mut s.noise, Noise::Failed) {
            Noise::Drawing(drawing) => {
                let drawn = drawing
                    .await
                    .map_err(|_| "the noise could not be drawn".to_string())
                    .and_then(|drawn| drawn);
                let noise = drawn.map_err(Refusal::failed)?;
                for (word, draw) in s.input.iter_mut().zip(noise) {
                    *word = word.wrapping_add(draw);
                }
                s.noise = Noise::Added;
            }
            Noise::Failed => return Err(Refusal::failed("the noise could not be drawn")),
            done => s.noise = done,
        }
        let masked = s.participant.masked(&sharers, &s.input).map_err(refusal)?;
        let words = masked.len() as u64;
        s.masked = Some(masked);
        Ok(Masked { words })
    }
}
