//! What each dataset's privacy budget has spent, kept where nothing is
//! forgotten: every spend is the audit entry of the contribution that
//! made it, written (and synced) before the contribution leaves, and the
//! ledger is the sum of those entries, read again when the node starts.
//! A crash can lose a spend only together with its contribution, which
//! then never left. The totals are also kept whole in `privacy.json`, so
//! that an owner who starts a new audit log (after a damaged one) does not
//! hand every dataset a fresh budget: the node starts from the larger of
//! the two for each dataset.

use std::{collections::HashMap, path::PathBuf};

use super::Budget;
use crate::audit::{AuditEntry, AuditEvent, AuditLog};

/// One contribution's cost, charged to a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Spend {
    /// The dataset the task read, or `private/` for the whole area.
    pub dataset: String,
    pub rho: f64,
}

/// Why a spend was not made.
#[derive(Debug, thiserror::Error)]
pub enum SpendError {
    /// The dataset's budget would be exceeded.
    #[error("the privacy budget of {dataset} is spent: this sum would cost more than is left")]
    Exhausted { dataset: String },
    /// The audit entry could not be written, so nothing left.
    #[error("cannot record the spend in the audit log: {0}")]
    Record(String),
}

/// ρ spent per dataset.
#[derive(Debug, Default)]
pub struct PrivacyLedger {
    spent: tokio::sync::Mutex<HashMap<String, f64>>,
    /// `privacy.json`: the totals, written whole after every spend.
    copy: Option<PathBuf>,
}

impl PrivacyLedger {
    /// The spends of a log's entries, or those kept in `copy` where it has
    /// more (the log was started anew). A `copy` that cannot be read stops
    /// the node: going on could forget spends.
    pub fn open(copy: PathBuf, entries: &[AuditEntry]) -> Result<Self, String> {
        let mut ledger = Self::from_entries(entries);
        match std::fs::read(&copy) {
            Ok(bytes) => {
                let kept: HashMap<String, f64> = serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "{} is not what this node wrote ({e}): it keeps what each dataset's \
                         privacy budget has spent. Restore it, or move it aside knowingly \
                         (the audit log's spends are then all that is counted)",
                        copy.display()
                    )
                })?;
                let spent = ledger.spent.get_mut();
                for (dataset, rho) in kept {
                    let total = spent.entry(dataset).or_default();
                    if rho.is_finite() && rho > *total {
                        *total = rho;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", copy.display())),
        }
        ledger.copy = Some(copy);
        Ok(ledger)
    }

    /// The spends recorded in a log's entries.
    pub fn from_entries(entries: &[AuditEntry]) -> Self {
        let mut spent: HashMap<String, f64> = HashMap::new();
        for entry in entries {
            if let AuditEvent::Contribution {
                privacy: Some(privacy),
                ..
            } = &entry.event
            {
                *spent.entry(privacy.dataset.clone()).or_default() += privacy.rho;
            }
        }
        Self {
            spent: tokio::sync::Mutex::new(spent),
            copy: None,
        }
    }

    /// ρ spent so far on `dataset`.
    pub async fn spent(&self, dataset: &str) -> f64 {
        self.spent.lock().await.get(dataset).copied().unwrap_or(0.0)
    }

    /// ρ spent on every dataset that has spent any.
    pub async fn all(&self) -> HashMap<String, f64> {
        self.spent.lock().await.clone()
    }

    /// Whether `spend` fits in `budget` now (a check ahead of the work,
    /// which [`PrivacyLedger::spend`] makes again when it counts).
    pub async fn fits(&self, spend: &Spend, budget: &Budget) -> Result<(), SpendError> {
        let spent = self.spent(&spend.dataset).await;
        check(spent, spend, budget)
    }

    /// Charges `spend` to its dataset if it fits in `budget`, writing
    /// `event` (which records it) to `audit` first: one spend at a time,
    /// so two sums at once cannot both take the last of a budget.
    pub async fn spend(
        &self,
        spend: &Spend,
        budget: &Budget,
        audit: &AuditLog,
        event: AuditEvent,
    ) -> Result<(), SpendError> {
        let mut spent = self.spent.lock().await;
        let so_far = spent.get(&spend.dataset).copied().unwrap_or(0.0);
        check(so_far, spend, budget)?;
        audit
            .append(event)
            .await
            .map_err(|e| SpendError::Record(e.to_string()))?;
        *spent.entry(spend.dataset.clone()).or_default() += spend.rho;
        if let Some(copy) = &self.copy {
            // The audit entry holds the spend already; the copy only
            // outlives a new log, so a failure to write it is a warning.
            let (copy, totals) = (copy.clone(), serde_json::to_vec(&*spent));
            let written = tokio::task::spawn_blocking(move || {
                crate::store::write_private(&copy, &totals.map_err(std::io::Error::other)?)
                    .map_err(std::io::Error::other)
            })
            .await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!("cannot keep the privacy budgets' totals in privacy.json");
            }
        }
        Ok(())
    }
}

fn check(spent: f64, spend: &Spend, budget: &Budget) -> Result<(), SpendError> {
    if spent + spend.rho > budget.rho() {
        return Err(SpendError::Exhausted {
            dataset: spend.dataset.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::ContributionPrivacy;
    use iris_behaviours::libp2p::{identity::Keypair, PeerId};

    fn contribution(dataset: &str, rho: f64) -> AuditEvent {
        AuditEvent::Contribution {
            job_id: "j".into(),
            session: "s".into(),
            to: PeerId::random(),
            length: 3,
            participants: 3,
            threshold: 3,
            sites: Vec::new(),
            privacy: Some(ContributionPrivacy {
                dataset: dataset.into(),
                clip: 1.0,
                epsilon: 1.0,
                delta: 1e-6,
                rho,
            }),
        }
    }

    /// Spends are refused past the budget, per dataset, and a node that
    /// starts again from its log has forgotten none of them.
    #[tokio::test]
    async fn a_budget_ends_the_spends_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let keypair = Keypair::generate_ed25519();
        let audit = AuditLog::create(path.clone(), keypair, None).unwrap();
        let budget = Budget {
            epsilon: 1.0,
            delta: 1e-6,
        };
        let third = budget.rho() / 3.0 * (1.0 - 1e-9);
        let ledger = PrivacyLedger::default();
        let cohort = Spend {
            dataset: "cohort".into(),
            rho: third,
        };
        for _ in 0..3 {
            ledger
                .spend(&cohort, &budget, &audit, contribution("cohort", third))
                .await
                .unwrap();
        }
        let err = ledger
            .spend(&cohort, &budget, &audit, contribution("cohort", third))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("budget of cohort is spent"),
            "{err}"
        );
        assert!(ledger.fits(&cohort, &budget).await.is_err());
        // Another dataset has a budget of its own.
        let other = Spend {
            dataset: "other".into(),
            rho: third,
        };
        ledger.fits(&other, &budget).await.unwrap();

        let entries = crate::audit::read(&path).unwrap();
        let again = PrivacyLedger::from_entries(&entries);
        assert!((again.spent("cohort").await - 3.0 * third).abs() < 1e-12);
        assert!(again.fits(&cohort, &budget).await.is_err());
        assert!(budget.epsilon_spent(again.spent("cohort").await) <= 1.0);
        assert_eq!(budget.epsilon_spent(0.0), 0.0);
    }

    /// An owner who starts a new audit log does not give the datasets
    /// their budgets back: privacy.json keeps the totals. One that was
    /// tampered with stops the node instead of being ignored.
    #[tokio::test]
    async fn a_new_audit_log_forgets_no_spend_and_a_damaged_copy_stops_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("privacy.json");
        let audit = AuditLog::create(
            dir.path().join("audit.log"),
            Keypair::generate_ed25519(),
            None,
        )
        .unwrap();
        let budget = Budget {
            epsilon: 1.0,
            delta: 1e-6,
        };
        let spend = Spend {
            dataset: "cohort".into(),
            rho: budget.rho() * 0.6,
        };
        let ledger = PrivacyLedger::open(copy.clone(), &[]).unwrap();
        ledger
            .spend(&spend, &budget, &audit, contribution("cohort", spend.rho))
            .await
            .unwrap();
        // A new log: no entry at all, and the spend is still there.
        let again = PrivacyLedger::open(copy.clone(), &[]).unwrap();
        assert!((again.spent("cohort").await - spend.rho).abs() < 1e-15);
        assert!(again.fits(&spend, &budget).await.is_err());
        std::fs::write(&copy, b"{\"cohort\": ").unwrap();
        let err = PrivacyLedger::open(copy, &[]).unwrap_err();
        assert!(
            err.contains("privacy.json") && err.contains("move it aside"),
            "{err}"
        );
    }
}
