//! What a secure sum gives: the sum, who is in it, and who is not.

use serde::{Deserialize, Serialize};

use super::shapes;

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

/// `POST /v1/jobs/{id}/secure-sum`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecureSumRequest {
    /// The update file each task wrote in its outputs:
    /// `{"vector": [numbers], "weight": w}`.
    pub file: String,
    /// How many numbers each update's vector holds. The master says it, so
    /// that a site's answer is only whether its update fits: a length a
    /// site's code chose would tell the master something of its data.
    #[serde(deserialize_with = "shapes::whole")]
    #[schema(minimum = 1, maximum = 134217726)]
    pub length: u64,
    /// The largest magnitude of any number summed: each weight·entry, and
    /// the weight itself (10⁶ if not given). A site clips what lies beyond
    /// it; the outcome says how many were clipped, over all sites.
    #[serde(default)]
    #[schema(exclusive_minimum = 0.0, maximum = 1e16)]
    pub range: Option<f64>,
    /// The finest step the sum must keep; it keeps the power of two at or
    /// below it (2⁻³², about 2.3·10⁻¹⁰, if not given). A range and a
    /// resolution whose sum over the job's sites cannot fit 64 bits are
    /// refused before any site computes.
    #[serde(default)]
    #[schema(minimum = 2.220446049250313e-16, maximum = 1.0)]
    pub resolution: Option<f64>,
}
