//! The one egress gate. Everything that leaves this node and derives from
//! a job or a session passes [`Egress::pass`]: a task's output files (their
//! manifest and every chunk), the names of its outputs in its reports, its
//! logs, and the output of a command run in a session. The gate applies the
//! owner's policy as it stands now and writes the audit entry before the
//! bytes go; what it refuses does not leave.
//!
//! Requests reach the gate only through the router (files, logs, exec) and
//! the task runner (reports), and only for the node that asked for the job.

use std::{collections::HashSet, sync::Arc};

use iris_behaviours::{libp2p::PeerId, Refusal};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    audit::{AuditEvent, AuditLog, ContributionPrivacy, DecidedBy},
    policy::{Allowance, LogPolicy, Policy, ReleasePolicy},
    privacy::{Budget, PrivacyLedger, Spend, SpendError},
};

/// Where a task's outputs stand, as the node that ran it keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Release {
    /// The task has not ended.
    #[default]
    Pending,
    /// This node asked for the task itself: its outputs never leave.
    Own,
    /// May go back to the node that asked, by the policy or by the owner.
    Released { by: DecidedBy },
    /// Waiting for the owner (`release = "review"`).
    Held,
    /// The owner refused to release them.
    Denied { reason: String },
    /// Only as an input of a secure sum (`release = "aggregate"`).
    AggregateOnly,
}

/// What is about to leave.
pub enum Outgoing<'a> {
    /// A file of a task's outputs: its manifest, which starts a transfer.
    OutputFile {
        job_id: &'a str,
        path: &'a str,
        bytes: u64,
        blake3: &'a str,
    },
    /// A chunk of a file whose manifest went to the same peer.
    OutputChunk { job_id: &'a str, path: &'a str },
    /// A task's logs from the given offsets; cut to what the policy lets go.
    Logs {
        job_id: &'a str,
        offsets: (u64, u64),
        stdout: &'a mut Vec<u8>,
        stderr: &'a mut Vec<u8>,
    },
    /// What a command printed in a session.
    Exec {
        name: &'a str,
        stdout: &'a [u8],
        stderr: &'a [u8],
    },
    /// A task's output as a masked input of a secure sum of at least
    /// `threshold` of the `participants`.
    SecureSumInput {
        job_id: &'a str,
        session: &'a str,
        length: u64,
        /// Every site whose vector is masked with this one's.
        sites: &'a [PeerId],
        /// This node, one of `sites`.
        local: PeerId,
        threshold: usize,
        /// With differential privacy: what it spends of which dataset.
        privacy: Option<ContributionPrivacy>,
    },
}

/// The most (peer, file) releases remembered for their chunks; the oldest
/// are forgotten first, and their transfers ask for the manifest again.
const MAX_OPEN_RELEASES: usize = 4096;

pub struct Egress {
    policy: Arc<Policy>,
    audit: Arc<AuditLog>,
    /// What each dataset's privacy budget has spent.
    ledger: PrivacyLedger,
    /// Files whose manifest went to a peer: their chunks may follow.
    released: std::sync::Mutex<OpenReleases>,
}

/// (peer, path) pairs released, and the order they came in.
#[derive(Default)]
struct OpenReleases {
    set: HashSet<(PeerId, String)>,
    order: std::collections::VecDeque<(PeerId, String)>,
}

impl Egress {
    pub fn new(policy: Arc<Policy>, audit: Arc<AuditLog>, ledger: PrivacyLedger) -> Arc<Self> {
        Arc::new(Self {
            policy,
            audit,
            ledger,
            released: Default::default(),
        })
    }

    fn name(&self) -> &str {
        self.policy.node_name()
    }

    /// The policy the gate applies, which also decides what may run here.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The log the gate writes to.
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// Whether a task's outputs, standing at `release`, may leave now:
    /// the policy in force is checked again, so an owner who tightens it
    /// stops what was released under the old one.
    pub fn outputs_may_leave(&self, job_id: &str, release: &Release) -> Result<(), String> {
        let name = self.name();
        let policy = self.policy.get();
        if policy.release == ReleasePolicy::Aggregate || *release == Release::AggregateOnly {
            return Err(format!(
                "{name}'s policy lets outputs leave only through secure aggregation \
                 (release = aggregate): ask for a secure sum (iris job run --secure-sum FILE --sum-length N)"
            ));
        }
        match release {
            Release::Released { by } => {
                if policy.release == ReleasePolicy::Review && *by != DecidedBy::Owner {
                    return Err(format!(
                        "the outputs of job {job_id} are held for review by {name}'s owner"
                    ));
                }
                Ok(())
            }
            Release::Own => Ok(()),
            Release::Pending => Err(format!("job {job_id} has not ended on {name}")),
            Release::Held => Err(format!(
                "the outputs of job {job_id} are held for review by {name}'s owner"
            )),
            Release::Denied { reason } => Err(format!(
                "{name}'s owner denied the release of job {job_id}'s outputs: {reason}"
            )),
            Release::AggregateOnly => unreachable!("refused above"),
        }
    }

    /// Whether a task's logs may leave: only when shared (`logs =
    /// share`), and then only as far as its outputs may. A job can print
    /// what it could write, so logs never widen the release: under `auto`
    /// they stream while the task runs, under `review` they wait for the
    /// owner's release with the outputs, under `aggregate` they never
    /// leave.
    pub fn logs_may_leave(&self, job_id: &str, release: &Release) -> Result<(), String> {
        let name = self.name();
        let policy = self.policy.get();
        if policy.logs != LogPolicy::Share {
            return Err(format!("withheld by {name}'s policy (logs = withhold)"));
        }
        match (&policy.release, release) {
            (ReleasePolicy::Aggregate, _) | (_, Release::AggregateOnly) => Err(format!(
                "withheld by {name}'s policy: no log leaves under release = aggregate"
            )),
            (ReleasePolicy::Auto, Release::Pending) => Ok(()),
            _ => self.outputs_may_leave(job_id, release),
        }
    }

    /// Whether a task's outputs may go into a secure sum that unmasks only
    /// with `threshold` inputs or more: under `auto` and `aggregate`, with
    /// at least the owner's `min_aggregate`; never while held for review.
    pub fn secure_sum_allowed(
        &self,
        job_id: &str,
        release: &Release,
        threshold: usize,
    ) -> Result<(), String> {
        let name = self.name();
        let policy = self.policy.get();
        if policy.release == ReleasePolicy::Review {
            return Err(format!(
                "the outputs of job {job_id} are held for review by {name}'s owner"
            ));
        }
        match release {
            Release::Released { .. } | Release::AggregateOnly | Release::Own => {}
            other => return self.outputs_may_leave(job_id, other),
        }
        if threshold < policy.min_aggregate as usize {
            return Err(format!(
                "{name}'s policy takes part only in sums of {} inputs or more (min_aggregate), \
                 and this one may unmask {threshold}",
                policy.min_aggregate
            ));
        }
        Ok(())
    }

    /// Whether a secure sum over `sites`, run by `master`, is one this
    /// owner takes part in: at least `min_aggregate` of its sites are
    /// recognised ([`PolicyConfig::recognised_among`]: this node counted,
    /// the master's own node never), so that a master cannot make up a sum
    /// with nodes of its own around one site and subtract them; and the
    /// sites it does not recognise are fewer than `threshold`, so that
    /// they cannot rebuild any secret of the sum without a recognised one.
    /// The reasons name no site: the master learns that this sum was
    /// refused, not whom the owner trusts.
    ///
    /// [`PolicyConfig::recognised_among`]: crate::policy::PolicyConfig::recognised_among
    pub fn sum_sites_allowed(
        &self,
        sites: &[PeerId],
        local: PeerId,
        master: PeerId,
        threshold: usize,
    ) -> Result<(), String> {
        if local == master {
            // The master's own data: it learns the sum anyway.
            return Ok(());
        }
        let name = self.name();
        let policy = self.policy.get();
        let known = policy.recognised_among(sites, local, master);
        if known < policy.min_aggregate as usize {
            return Err(format!(
                "{name} takes part only in secure sums with {} sites or more that its owner \
                 recognises (min_aggregate, the master's own node not counted); this one has fewer",
                policy.min_aggregate
            ));
        }
        if sites.len() - known >= threshold {
            return Err(format!(
                "{name} takes part only in secure sums that the sites its owner does not \
                 recognise cannot unmask by themselves; this one's threshold is too low for that"
            ));
        }
        Ok(())
    }

    /// Whether this node takes part in a secure sum run by `master`
    /// without noise: only where the owner chose it (`noise_free_sums =
    /// allow`), or for the master's own node, whose data is its own.
    pub fn noise_free_allowed(&self, local: PeerId, master: PeerId) -> Result<(), String> {
        if local == master || self.policy.get().noise_free_sums == Allowance::Allow {
            return Ok(());
        }
        Err(format!(
            "{} takes part only in secure sums with differential privacy (noise_free_sums = \
             deny): declare a clip and an epsilon",
            self.name()
        ))
    }

    /// Whether `spend` fits in what is left of its dataset's budget, ahead
    /// of the work: [`Egress::pass`] checks again as it spends.
    pub async fn budget_fits(&self, spend: &Spend) -> Result<(), String> {
        let budget = self.budget_for(&spend.dataset);
        self.ledger
            .fits(spend, &budget)
            .await
            .map_err(|e| format!("{}: {e}", self.name()))
    }

    /// The privacy budget of `dataset` (`private/` for the whole area), as
    /// the owner's policy has it now.
    pub fn budget_for(&self, dataset: &str) -> Budget {
        let own = self.policy.get().budget_for(dataset);
        Budget {
            epsilon: own.epsilon,
            delta: own.delta,
        }
    }

    /// What each dataset's budget has spent.
    pub fn ledger(&self) -> &PrivacyLedger {
        &self.ledger
    }

    /// The output names a report to `to` may list (`names`, and the
    /// escaped ones that are not UTF-8: a name is a message too), and why
    /// none are listed if they may not. A report to this node lists all.
    pub fn report_outputs(
        &self,
        job_id: &str,
        release: &Release,
        names: Vec<String>,
        unnamed: Vec<String>,
    ) -> (Vec<String>, Vec<String>, Option<String>) {
        match self.outputs_may_leave(job_id, release) {
            Ok(()) => (names, unnamed, None),
            Err(_) if names.is_empty() && unnamed.is_empty() => (names, unnamed, None),
            Err(held) => (Vec::new(), Vec::new(), Some(held)),
        }
    }

    /// Lets a command run in a session on another node's behalf only if
    /// its output could then leave.
    pub fn exec_allowed(&self) -> Result<(), Refusal> {
        let policy = self.policy.get();
        let name = self.name();
        if policy.sessions != Allowance::Allow {
            return Err(Refusal::forbidden(format!(
                "sessions are refused by {name}'s policy (sessions = deny)"
            )));
        }
        if policy.release != ReleasePolicy::Auto {
            return Err(Refusal::forbidden(format!(
                "a session's output would bypass {name}'s release policy (release = {}): \
                 sessions need release = auto",
                crate::config::word(&policy.release)
            )));
        }
        Ok(())
    }

    /// Applies the policy to `what`, on its way to `to`, and records it in
    /// the audit log (on disk) before it may go. `release` is where the
    /// task's outputs stand (ignored for exec output).
    pub async fn pass(
        &self,
        to: PeerId,
        what: Outgoing<'_>,
        release: &Release,
    ) -> Result<(), Refusal> {
        let event = match what {
            Outgoing::OutputFile {
                job_id,
                path,
                bytes,
                blake3,
            } => {
                self.outputs_may_leave(job_id, release)
                    .map_err(Refusal::forbidden)?;
                self.remember(to, path);
                AuditEvent::OutputReleased {
                    job_id: job_id.to_string(),
                    path: path.to_string(),
                    to,
                    bytes,
                    sha256: None,
                    blake3: Some(blake3.to_string()),
                }
            }
            Outgoing::OutputChunk { job_id, path } => {
                self.outputs_may_leave(job_id, release)
                    .map_err(Refusal::forbidden)?;
                let key = (to, path.to_string());
                if !self.released.lock().expect("lock").set.contains(&key) {
                    return Err(Refusal::forbidden(format!(
                        "ask for the manifest of {path} first: its release is recorded then"
                    )));
                }
                return Ok(()); // recorded with the manifest
            }
            Outgoing::Logs {
                job_id,
                offsets,
                stdout,
                stderr,
            } => {
                let policy = self.policy.get();
                if let Err(why) = self.logs_may_leave(job_id, release) {
                    stdout.clear();
                    stderr.clear();
                    return Err(Refusal::forbidden(why));
                }
                // The cap counts what already left, from the offsets.
                let mut room = policy
                    .max_shared_log_bytes
                    .saturating_sub(offsets.0.saturating_add(offsets.1));
                for stream in [&mut *stdout, &mut *stderr] {
                    let keep = (stream.len() as u64).min(room);
                    stream.truncate(keep as usize);
                    room -= keep;
                }
                let bytes = (stdout.len() + stderr.len()) as u64;
                if bytes == 0 {
                    return Ok(());
                }
                AuditEvent::LogsReleased {
                    job_id: job_id.to_string(),
                    to,
                    bytes,
                }
            }
            Outgoing::Exec {
                name,
                stdout,
                stderr,
            } => {
                self.exec_allowed()?;
                let mut hash = Sha256::new();
                hash.update(stdout);
                hash.update(stderr);
                AuditEvent::ExecReleased {
                    name: name.to_string(),
                    to,
                    bytes: (stdout.len() + stderr.len()) as u64,
                    sha256: hex::encode(hash.finalize()),
                }
            }
            Outgoing::SecureSumInput {
                job_id,
                session,
                length,
                sites,
                local,
                threshold,
                privacy,
            } => {
                self.secure_sum_allowed(job_id, release, threshold)
                    .map_err(Refusal::forbidden)?;
                self.sum_sites_allowed(sites, local, to, threshold)
                    .map_err(Refusal::forbidden)?;
                if privacy.is_none() {
                    self.noise_free_allowed(local, to)
                        .map_err(Refusal::forbidden)?;
                }
                let spend = privacy.as_ref().map(|p| Spend {
                    dataset: p.dataset.clone(),
                    rho: p.rho,
                });
                let event = AuditEvent::Contribution {
                    job_id: job_id.to_string(),
                    session: session.to_string(),
                    to,
                    length,
                    participants: sites.len() as u64,
                    threshold: threshold as u64,
                    sites: sites.to_vec(),
                    privacy,
                };
                if let Some(spend) = spend {
                    // The spend and the record are one audit entry.
                    let budget = self.budget_for(&spend.dataset);
                    return self
                        .ledger
                        .spend(&spend, &budget, &self.audit, event)
                        .await
                        .map_err(|e| match e {
                            SpendError::Exhausted { .. } => {
                                Refusal::forbidden(format!("{}: {e}", self.name()))
                            }
                            SpendError::Record(_) => Refusal::failed(e.to_string()),
                        });
                }
                event
            }
        };
        self.audit.append(event).await.map_err(|e| {
            Refusal::failed(format!("cannot record the release in the audit log: {e}"))
        })
    }

    fn remember(&self, to: PeerId, path: &str) {
        let mut released = self.released.lock().expect("lock");
        let key = (to, path.to_string());
        if released.set.insert(key.clone()) {
            released.order.push_back(key);
            if released.order.len() > MAX_OPEN_RELEASES {
                if let Some(oldest) = released.order.pop_front() {
                    released.set.remove(&oldest);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "egress_tests.rs"]
mod tests;
