//! The master's side of a secure sum over the sites of a finished job: it
//! drives each step on every site at once, drops the sites that fail a
//! step, and writes the sum, or says why there is none.

use std::sync::Arc;

use iris_behaviours::libp2p::PeerId;

use super::{
    wire::{Collect, Fetch, Page, Probe, Roster, Setup, Step, Survivors, Unmask, PAGE_WORDS},
    Aggregator, FixedPoint, Params, SecAggError, MIN_INPUTS,
};
use crate::{
    api_types::{SumOutcome, SumPrivacy},
    membership::Membership,
    privacy::Privacy,
};

pub struct Coordinator {
    pub membership: Arc<Membership>,
}

/// Why a secure sum ended with no sum. Each names the sites that dropped
/// out on the way, with the step and why (in the sites' closed words).
#[derive(Debug, thiserror::Error)]
pub enum SumError {
    /// Too few sites have an update that fits: nothing was started.
    #[error(
        "a secure sum needs {MIN_INPUTS} sites or more with an update of {entries} entries; \
         {have} have it ({})", dropped.join("; ")
    )]
    TooFew {
        entries: usize,
        have: usize,
        dropped: Vec<String>,
    },
    /// The protocol stopped: too few keys, sharers or survivors were left,
    /// or a site's share was falsified.
    #[error("{cause}{}", with_dropped(dropped))]
    Aborted {
        cause: SecAggError,
        dropped: Vec<String>,
    },
}

fn with_dropped(dropped: &[String]) -> String {
    match dropped {
        [] => String::new(),
        some => format!("; dropped: {}", some.join("; ")),
    }
}

/// Each site's answer to a step, or why it has none.
type Answers<S> = Vec<(PeerId, Result<<S as Step>::Answer, String>)>;

/// The sites that answered a step; the others go to `dropped`, with why.
fn keep<A>(
    answers: Vec<(PeerId, Result<A, String>)>,
    step: &str,
    dropped: &mut Vec<String>,
    name_of: &dyn Fn(&PeerId) -> String,
) -> Vec<(PeerId, A)> {
    let mut kept = Vec::new();
    for (peer, answer) in answers {
        match answer {
            Ok(answer) => kept.push((peer, answer)),
            Err(e) => dropped.push(format!("{} ({step}: {e})", name_of(&peer))),
        }
    }
    kept
}

impl Coordinator {
    fn local(&self) -> PeerId {
        self.membership.local_peer()
    }

    /// Asks `peer` one step, and reads the answer as that step's.
    async fn ask<S: Step>(&self, peer: PeerId, step: S) -> Result<S::Answer, String> {
        super::wire::ask(&self.membership, peer, step).await
    }

    /// One step on every site at once.
    async fn ask_all<S: Step>(&self, peers: &[PeerId], step: impl Fn(PeerId) -> S) -> Answers<S> {
        let asks = peers.iter().map(|peer| {
            let step = step(*peer);
            async move { (*peer, self.ask(*peer, step).await) }
        });
        futures::future::join_all(asks).await
    }

    /// The secure sum of the update file `file`, a vector of `entries`
    /// entries encoded as `fixed`, of the sites in `sites` (peer and name)
    /// that ran task `job_id`.
    pub async fn run(
        &self,
        job_id: &str,
        file: &str,
        entries: usize,
        fixed: FixedPoint,
        privacy: Option<Privacy>,
        sites: &[(PeerId, String)],
    ) -> Result<SumOutcome, SumError> {
        let name_of = |peer: &PeerId| {
            sites
                .iter()
                .find(|(p, _)| p == peer)
                .map_or(peer.to_string(), |(_, n)| n.clone())
        };
        let mut dropped: Vec<String> = Vec::new();
        let peers: Vec<PeerId> = sites.iter().map(|(p, _)| *p).collect();
        let probe = |_| Probe {
            job_id: job_id.into(),
            file: file.into(),
            entries: entries as u64,
        };
        let participants: Vec<PeerId> = keep(
            self.ask_all(&peers, probe).await,
            "probe",
            &mut dropped,
            &name_of,
        )
        .into_iter()
        .map(|(peer, _fits)| peer)
        .collect();
        if participants.len() < MIN_INPUTS {
            return Err(SumError::TooFew {
                entries,
                have: participants.len(),
                dropped,
            });
        }
        let abort = |cause: SecAggError, dropped: &[String]| SumError::Aborted {
            cause,
            dropped: dropped.to_vec(),
        };
        let params = Params::new(
            job_id.into(),
            crate::now_ms(),
            self.local(),
            participants,
            // The weight and the count of clipped values are summed too,
            // as the last two entries.
            entries + 2,
            fixed,
            privacy,
        )
        .map_err(|e| abort(e, &dropped))?;
        let noise = params.noise().map_err(|e| abort(e, &dropped))?;
        let mut aggregator = Aggregator::new(params.clone()).map_err(|e| abort(e, &dropped))?;
        let session = aggregator.session();

        let setup = |_| Setup {
            params: params.clone(),
            file: file.into(),
        };
        for (peer, key) in keep(
            self.ask_all(&params.participants, setup).await,
            "setup",
            &mut dropped,
            &name_of,
        ) {
            let added = if key.peer == peer {
                aggregator.add_key(key).map_err(|e| e.to_string())
            } else {
                Err("a key signed for another node".into())
            };
            if let Err(e) = added {
                dropped.push(format!("{} (its key: {e})", name_of(&peer)));
            }
        }
        let roster = aggregator.roster().map_err(|e| abort(e, &dropped))?;
        let keyed: Vec<PeerId> = roster.iter().map(|k| k.peer).collect();
        let share = |_| Roster {
            session,
            roster: roster.clone(),
        };
        let shared: Vec<PeerId> = keep(
            self.ask_all(&keyed, share).await,
            "sharing",
            &mut dropped,
            &name_of,
        )
        .into_iter()
        .map(|(p, _)| p)
        .collect();
        let sharers = aggregator
            .fix_sharers(&shared)
            .map_err(|e| abort(e, &dropped))?;

        let collect = |_| Collect {
            session,
            sharers: sharers.clone(),
        };
        let masked = keep(
            self.ask_all(&sharers, collect).await,
            "masking",
            &mut dropped,
            &name_of,
        );
        let fetches = masked.iter().map(|(peer, _)| async move {
            (*peer, self.fetch(*peer, session, params.length).await)
        });
        for (peer, vector) in futures::future::join_all(fetches).await {
            match vector.map(|v| aggregator.add_upload(peer, v).map_err(|e| e.to_string())) {
                Ok(Ok(())) => {}
                Ok(Err(e)) | Err(e) => dropped.push(format!("{} (upload: {e})", name_of(&peer))),
            }
        }
        let survivors = aggregator.fix_survivors().map_err(|e| abort(e, &dropped))?;
        let sign = |_| Survivors {
            session,
            survivors: survivors.clone(),
        };
        for (peer, signature) in keep(
            self.ask_all(&sharers, sign).await,
            "signing",
            &mut dropped,
            &name_of,
        ) {
            if let Err(e) = aggregator.add_signature(peer, signature.bytes) {
                dropped.push(format!("{} (its signature: {e})", name_of(&peer)));
            }
        }
        let signatures = aggregator.signatures();
        let unmask = |_| Unmask {
            session,
            survivors: survivors.clone(),
            signatures: signatures.clone(),
        };
        for (peer, unmasking) in keep(
            self.ask_all(&sharers, unmask).await,
            "unmasking",
            &mut dropped,
            &name_of,
        ) {
            aggregator.add_unmasking(peer, unmasking);
        }
        let sum = aggregator.finish().map_err(|e| abort(e, &dropped))?;
        let (values, clipped) = sum.values.split_at(sum.values.len().saturating_sub(1));
        let mut decoded = params.fixed.decode(values);
        let weight = decoded.pop().unwrap_or(0.0);
        // Every site asked that is not in the sum, whenever it fell out.
        let mut gone: Vec<String> = sites
            .iter()
            .filter(|(peer, _)| !sum.survivors.contains(peer))
            .map(|(_, name)| name.clone())
            .collect();
        gone.sort();
        // Each dropped site once, with the first reason it had.
        let dropped = gone
            .into_iter()
            .map(|name| {
                dropped
                    .iter()
                    .find(|d| d.starts_with(&format!("{name} (")))
                    .cloned()
                    .unwrap_or(name)
            })
            .collect();
        // Every site in the sum added its own noise to every entry; this
        // node, if it is one, added none to its own data.
        let noisy = sum.survivors.iter().filter(|p| **p != self.local()).count();
        let privacy = privacy.zip(noise).map(|(p, noise)| SumPrivacy {
            clip: p.clip,
            epsilon: p.epsilon,
            delta: p.delta,
            noise_sd: (noise.variance() as f64 * noisy as f64).sqrt() / params.fixed.scale(),
        });
        Ok(SumOutcome {
            vector: decoded,
            weight,
            clipped: clipped.first().copied().unwrap_or(0),
            privacy,
            nodes: sum.survivors.iter().map(name_of).collect(),
            dropped,
            session: hex::encode(session.0),
            path: String::new(),
        })
    }

    /// A site's masked vector, a page at a time.
    async fn fetch(
        &self,
        peer: PeerId,
        session: super::SessionId,
        length: usize,
    ) -> Result<Vec<u64>, String> {
        let mut vector = Vec::with_capacity(length);
        while vector.len() < length {
            let fetch = Fetch {
                session,
                offset: vector.len() as u64,
            };
            let Page { bytes } = self.ask(peer, fetch).await?;
            if bytes.is_empty() || bytes.len() % 8 != 0 || bytes.len() > PAGE_WORDS * 8 {
                return Err("a malformed page of its vector".into());
            }
            vector.extend(
                bytes
                    .chunks_exact(8)
                    .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes"))),
            );
        }
        vector.truncate(length);
        Ok(vector)
    }
}
