//! The privacy budget an owner gives one dataset, where the default
//! (`privacy_epsilon` at `privacy_delta`) is not what it should have.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetBudget {
    /// A dataset of this node, or `private/` for tasks that read the whole
    /// private area.
    pub dataset: String,
    /// What every noisy secure sum from it may cost together, as ε at δ.
    pub epsilon: f64,
    pub delta: f64,
}

impl DatasetBudget {
    /// Checks the numbers, naming the dataset.
    pub fn validate(&self) -> Result<(), String> {
        check_budget(&self.dataset, self.epsilon, self.delta)
    }
}

/// A budget's ε must be above 0 (and at most 1000, beyond which it
/// protects nothing), its δ strictly between 0 and 1.
pub fn check_budget(what: &str, epsilon: f64, delta: f64) -> Result<(), String> {
    if !(epsilon.is_finite() && epsilon > 0.0 && epsilon <= 1000.0) {
        return Err(format!(
            "the privacy budget of {what}: epsilon {epsilon} must be above 0 and at most 1000"
        ));
    }
    if !(delta > 0.0 && delta < 1.0) {
        return Err(format!(
            "the privacy budget of {what}: delta {delta} must be above 0 and below 1"
        ));
    }
    Ok(())
}
