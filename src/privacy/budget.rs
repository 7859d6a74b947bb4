//! The privacy budget of one dataset, as the ledger counts it: ε at δ as
//! the owner states it, ρ (zCDP) as it adds up.

/// The budget an owner gives a dataset: what all the releases from it
/// may cost together, as (ε, δ).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Budget {
    pub epsilon: f64,
    pub delta: f64,
}

impl Budget {
    /// The budget in zCDP, which adds up over releases.
    pub fn rho(&self) -> f64 {
        super::zcdp::rho_of(self.epsilon, self.delta)
    }

    /// What `rho` spent costs in ε at this budget's δ.
    pub fn epsilon_spent(&self, rho: f64) -> f64 {
        if rho <= 0.0 {
            0.0
        } else {
            super::zcdp::epsilon_of(rho, self.delta)
        }
    }
}
