//! The data owner's policy: what other nodes may run here and what may
//! leave. It lives in `[policy]` of `iris.toml`; `iris policy set` changes
//! it through the running node, which writes the file and the audit entry
//! and applies the change at once, without a restart.
//!
//! The defaults protect an owner who changed nothing: another node's job
//! runs only with an image digest the owner approved, without a network;
//! sessions from other nodes are refused; logs stay here. Outputs of an
//! approved image go back to the node that asked for them (`release =
//! "auto"`), unless the owner chooses to review them or to let them leave
//! only through secure aggregation.

mod command_rule;
mod dataset_budget;
mod known_site;

pub use command_rule::CommandRule;
pub use dataset_budget::DatasetBudget;
use iris_behaviours::libp2p::PeerId;
pub use known_site::KnownSite;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditLog, SavedFile};

/// Whether another node's job or session needs an approved image digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImagePolicy {
    #[default]
    Approve,
    Any,
}

/// A yes or no of the owner's, with no as the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Allowance {
    #[default]
    Deny,
    Allow,
}

/// When a task's outputs may go back to the node that asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleasePolicy {
    /// As soon as the task ends (its image was approved to run here).
    #[default]
    Auto,
    /// When the owner releases them (`iris releases approve JOB`).
    Review,
    /// Only as an input of a secure sum.
    Aggregate,
}

/// Whether a job's logs go back to the node that asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogPolicy {
    #[default]
    Withhold,
    Share,
}

/// An image digest the owner approved with the commands it may run, and
/// the name it was approved under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovedImage {
    /// The engine's image id (`sha256:...`): the content, not a tag.
    pub digest: String,
    pub name: String,
    /// Approved for this dataset's jobs only; none: for any job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// What may run from it.
    #[serde(default)]
    pub command: CommandRule,
}

impl std::fmt::Display for ApprovedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}), {}", self.name, self.digest, self.command)?;
        if let Some(dataset) = &self.dataset {
            write!(f, ", for dataset {dataset}")?;
        }
        Ok(())
    }
}

/// `[policy]` of `iris.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub images: ImagePolicy,
    pub network: Allowance,
    pub sessions: Allowance,
    pub release: ReleasePolicy,
    pub logs: LogPolicy,
    /// The fewest participants of a secure sum this node contributes to.
    pub min_aggregate: u32,
    /// With `logs = "share"`: the most of a task's logs (stdout and stderr
    /// together) that leave.
    pub max_shared_log_bytes: u64,
    /// Under `release = review | aggregate`: the most tasks from other
    /// nodes that run on one dataset (or `private/` as a whole) in any
    /// hour, each of which tells the master a few bits.
    pub max_tasks_per_hour: u32,
    /// Image digests approved ahead of time.
    pub approved: Vec<ApprovedImage>,
    /// The sites this owner recognises as co-participants of secure sums:
    /// this node takes part in a sum only when at least `min_aggregate`
    /// of its sites, itself included and the master's own node never, are
    /// among them. Empty by default: no secure sum until the owner picks.
    pub recognised: Vec<KnownSite>,
    /// Whether this node takes part in secure sums without differential
    /// privacy. A noise-free sum over chosen subsets of sites, or repeated,
    /// lets the master work out this site's vector exactly; deny (the
    /// default) takes part only in sums that add noise and spend budget.
    pub noise_free_sums: Allowance,
    /// The privacy budget of each dataset (and of `private/` as a whole),
    /// as ε at `privacy_delta`, spent by every noisy secure sum over its
    /// whole life: when it is spent, no more sums from that dataset.
    pub privacy_epsilon: f64,
    pub privacy_delta: f64,
    /// Budgets of datasets that do not have the default.
    pub budgets: Vec<DatasetBudget>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            images: ImagePolicy::default(),
            network: Allowance::default(),
            sessions: Allowance::default(),
            release: ReleasePolicy::default(),
            logs: LogPolicy::default(),
            min_aggregate: 3,
            max_shared_log_bytes: 1 << 20,
            max_tasks_per_hour: 240,
            approved: Vec::new(),
            recognised: Vec::new(),
            noise_free_sums: Allowance::default(),
            privacy_epsilon: 1.0,
            privacy_delta: 1e-6,
            budgets: Vec::new(),
        }
    }
}

/// The settings `iris policy set` takes, with the values each accepts.
pub const SETTINGS: &[(&str, &str)] = &[
    ("images", "approve|any"),
    ("network", "deny|allow"),
    ("sessions", "deny|allow"),
    ("release", "auto|review|aggregate"),
    ("logs", "withhold|share"),
    ("min_aggregate", "a number, 2 or more"),
    ("max_shared_log_bytes", "a number of bytes"),
    ("max_tasks_per_hour", "a number, 1 or more"),
    ("noise_free_sums", "deny|allow"),
    ("privacy_epsilon", "a number above 0"),
    ("privacy_delta", "a number above 0 and below 1"),
];

impl PolicyConfig {
    /// Sets one setting from its text, as `iris policy set KEY VALUE` gives it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        fn word<T: serde::de::DeserializeOwned>(key: &str, value: &str) -> Result<T, String> {
            serde_json::from_value(serde_json::Value::String(value.to_string())).map_err(|_| {
                let accepted = SETTINGS.iter().find(|(k, _)| *k == key).map_or("", |s| s.1);
                format!("policy {key}: '{value}' is not one of {accepted}")
            })
        }
        let number = |min: u64| -> Result<u64, String> {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= min)
                .ok_or_else(|| format!("policy {key}: '{value}' is not a number of at least {min}"))
        };
        match key {
            "images" => self.images = word(key, value)?,
            "network" => self.network = word(key, value)?,
            "sessions" => self.sessions = word(key, value)?,
            "release" => self.release = word(key, value)?,
            "logs" => self.logs = word(key, value)?,
            "min_aggregate" => {
                self.min_aggregate = u32::try_from(number(2)?)
                    .map_err(|_| format!("policy {key}: '{value}' is too large"))?
            }
            "max_shared_log_bytes" => self.max_shared_log_bytes = number(0)?,
            "noise_free_sums" => self.noise_free_sums = word(key, value)?,
            "privacy_epsilon" | "privacy_delta" => {
                let number = value
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .ok_or_else(|| format!("policy {key}: '{value}' is not a number"))?;
                if key == "privacy_epsilon" {
                    self.privacy_epsilon = number;
                } else {
                    self.privacy_delta = number;
                }
            }
            "max_tasks_per_hour" => {
                self.max_tasks_per_hour = u32::try_from(number(1)?)
                    .map_err(|_| format!("policy {key}: '{value}' is too large"))?
            }
            _ => {
                let keys: Vec<&str> = SETTINGS.iter().map(|(k, _)| *k).collect();
                return Err(format!(
                    "no policy setting '{key}': the settings are {}",
                    keys.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// An approval that lets `argv` run from image id `digest` in a task
    /// reading `dataset` (or the whole private area, for none): one for
    /// any job, or for that dataset.
    pub fn approved_for(
        &self,
        digest: &str,
        dataset: Option<&str>,
        argv: &[String],
    ) -> Option<&ApprovedImage> {
        self.approved.iter().find(|a| {
            a.digest == digest
                && (a.dataset.is_none() || a.dataset.as_deref() == dataset)
                && a.command.allows(argv)
        })
    }

    /// How many of a secure sum's `sites` this owner recognises, `local`
    /// (this node) counted and `master` never: a master's own node is the
    /// one that learns the sum.
    pub fn recognised_among(&self, sites: &[PeerId], local: PeerId, master: PeerId) -> usize {
        sites
            .iter()
            .filter(|site| **site != master)
            .filter(|site| **site == local || self.recognised.iter().any(|k| k.peer_id == **site))
            .count()
    }

    /// The privacy budget of `dataset` (`private/` for the whole area):
    /// its own, or the default.
    pub fn budget_for(&self, dataset: &str) -> DatasetBudget {
        self.budgets
            .iter()
            .find(|b| b.dataset == dataset)
            .cloned()
            .unwrap_or_else(|| DatasetBudget {
                dataset: dataset.to_string(),
                epsilon: self.privacy_epsilon,
                delta: self.privacy_delta,
            })
    }

    pub fn validate(&self) -> Result<(), String> {
        dataset_budget::check_budget(
            "every dataset (privacy_epsilon, privacy_delta)",
            self.privacy_epsilon,
            self.privacy_delta,
        )?;
        for budget in &self.budgets {
            budget.validate()?;
        }
        if self.min_aggregate < 2 {
            return Err("policy.min_aggregate must be 2 or more".into());
        }
        if self.max_tasks_per_hour < 1 {
            return Err("policy.max_tasks_per_hour must be 1 or more".into());
        }
        for image in &self.approved {
            image
                .command
                .validate()
                .map_err(|e| format!("policy.approved {}: {e}", image.name))?;
            let hex = image.digest.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!(
                    "policy.approved: '{}' is not an image digest (sha256:<64 hex digits>)",
                    image.digest
                ));
            }
        }
        Ok(())
    }
}

/// Writes a policy beside where the node keeps it (`[policy]` of
/// `iris.toml`), in place once committed; blocking, run on a blocking
/// thread.
pub type SavePolicy =
    Box<dyn Fn(&PolicyConfig) -> Result<crate::store::StagedFile, String> + Send + Sync>;

/// Saves a policy as TOML at `path`, for tests that need no config.
#[cfg(test)]
pub fn save_to(path: std::path::PathBuf) -> SavePolicy {
    Box::new(move |policy| {
        let text = format!("{policy:?}");
        crate::store::StagedFile::write(&path, text.as_bytes()).map_err(|e| e.to_string())
    })
}

/// The node's policy as it stands, kept in memory and in `iris.toml`.
pub struct Policy {
    /// This node's name, for the reasons other nodes read.
    name: String,
    save: std::sync::Arc<SavePolicy>,
    audit: std::sync::Arc<AuditLog>,
    current: std::sync::RwLock<PolicyConfig>,
    /// One change at a time, from the audit entry to the file.
    changes: tokio::sync::Mutex<()>,
}

impl Policy {
    pub fn new(
        name: String,
        save: SavePolicy,
        initial: PolicyConfig,
        audit: std::sync::Arc<AuditLog>,
    ) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            name,
            save: std::sync::Arc::new(save),
            audit,
            current: std::sync::RwLock::new(initial),
            changes: tokio::sync::Mutex::new(()),
        })
    }

    /// The node's name, as other nodes know it.
    pub fn node_name(&self) -> &str {
        &self.name
    }

    /// The policy now.
    pub fn get(&self) -> PolicyConfig {
        self.current.read().expect("lock").clone()
    }

    /// Applies `change`, writes the new `iris.toml` beside the old one,
    /// records the change, puts the file in place and lets it take
    /// effect: in that order, so a change is in the audit log before it
    /// does anything, and only once everything that needs disk space has
    /// been written (the rename after the entry needs none). A full disk
    /// refuses the change whole, with nothing recorded and nothing left.
    pub async fn change(
        &self,
        what: String,
        change: impl FnOnce(&mut PolicyConfig) -> Result<(), String>,
    ) -> Result<PolicyConfig, PolicyError> {
        let _one_at_a_time = self.changes.lock().await;
        let mut next = self.get();
        change(&mut next).map_err(PolicyError::Invalid)?;
        next.validate().map_err(PolicyError::Invalid)?;
        let (save, policy) = (self.save.clone(), next.clone());
        let (staged, saved) = tokio::task::spawn_blocking(move || {
            let staged = save(&policy)?;
            let saved = staged
                .blake3()
                .and_then(|hash| SavedFile::new(staged.path(), hash))
                .map_err(|e| format!("cannot read it back: {e}"))?;
            Ok::<_, String>((staged, saved))
        })
        .await
        .map_err(|e| PolicyError::Local(e.to_string()))?
        .map_err(PolicyError::Local)?;
        crate::faults::crash_if("IRIS_FAULT_CRASH_AFTER_STAGING");
        let saved = vec![saved];
        self.audit
            .append(AuditEvent::PolicyChanged {
                change: what,
                saved,
            })
            .await
            .map_err(|e| PolicyError::Local(format!("cannot record the change: {e}")))?;
        crate::faults::crash_if("IRIS_FAULT_CRASH_AFTER_RECORDING");
        tokio::task::spawn_blocking(move || staged.commit())
            .await
            .map_err(|e| PolicyError::Local(e.to_string()))?
            .map_err(|e| PolicyError::Local(format!("cannot save the change: {e}")))?;
        *self.current.write().expect("lock") = next.clone();
        Ok(next)
    }
}

/// Why a policy change was not made.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// The change does not fit this node as it is (recognising itself).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Local(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_take_their_words_and_refuse_others_by_name() {
        let mut policy = PolicyConfig::default();
        assert_eq!(policy.images, ImagePolicy::Approve);
        assert_eq!(policy.logs, LogPolicy::Withhold);
        policy.set("release", "review").unwrap();
        assert_eq!(policy.release, ReleasePolicy::Review);
        policy.set("min_aggregate", "5").unwrap();
        assert_eq!(policy.min_aggregate, 5);
        let err = policy.set("release", "sometimes").unwrap_err();
        assert!(err.contains("auto|review|aggregate"), "{err}");
        let err = policy.set("colour", "blue").unwrap_err();
        assert!(err.contains("no policy setting 'colour'"), "{err}");
        assert!(policy.set("min_aggregate", "1").is_err());
        assert_eq!(policy.min_aggregate, 5, "a refused value changes nothing");
    }

    #[test]
    fn a_sum_counts_this_node_and_the_recognised_sites_never_the_master() {
        let [local, master, bob, carol, stranger] = [(); 5].map(|_| PeerId::random());
        let mut policy = PolicyConfig::default();
        for (name, peer_id) in [("bob", bob), ("carol", carol)] {
            policy.recognised.push(KnownSite {
                name: name.into(),
                peer_id,
            });
        }
        let count = |sites: &[PeerId]| policy.recognised_among(sites, local, master);
        assert_eq!(count(&[local, bob, carol]), 3);
        assert_eq!(count(&[local, bob, stranger]), 2);
        assert_eq!(count(&[local, master, stranger]), 1);
        // A master that this owner recognises is still not counted.
        policy.recognised.push(KnownSite {
            name: "alice".into(),
            peer_id: master,
        });
        assert_eq!(
            policy.recognised_among(&[local, master, bob], local, master),
            2
        );
    }
}
