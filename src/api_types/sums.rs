//! What a secure sum gives: the sum, who is in it, and who is not.

use serde::{Deserialize, Serialize};

/// `sum.json`, and what the API answers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SumOutcome {
    /// Σ wᵢ·vᵢ over the sites in the sum.
    pub vector: Vec<f64>,
    /// Σ wᵢ.
    pub weight: f64,
    /// How many numbers, over all the sites in the sum, lay beyond the
    /// declared range and were clipped to it: the total only, never a
    /// site's own count.
    #[serde(default)]
    pub clipped: u64,
    /// The sites whose vectors are in the sum.
    pub nodes: Vec<String>,
    /// The job's sites that are not, each with why.
    pub dropped: Vec<String>,
    /// The session's id.
    pub session: String,
    /// Where the master keeps it: `gathered/<job>/sum.json`.
    #[serde(default)]
    pub path: String,
}
