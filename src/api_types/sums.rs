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
    /// With differential privacy: what each site clipped to and added.
    /// The count of clipped numbers is not told then (it is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<SumPrivacy>,
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

/// The differential privacy of a secure sum.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SumPrivacy {
    /// The L2 norm each site's vector (the weighted entries and the
    /// weight) was clipped to.
    pub clip: f64,
    /// What the sum cost each site's dataset, as (ε, δ).
    pub epsilon: f64,
    pub delta: f64,
    /// The standard deviation of the noise in each number of the sum
    /// (every site in it added its own).
    pub noise_sd: f64,
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
    /// Differential privacy: each site clips its vector (the weighted
    /// entries and the weight) to this L2 norm and adds discrete Gaussian
    /// noise so that the sum costs its dataset `epsilon` at `delta`. Give
    /// `clip` and `epsilon` together; a site whose owner has not allowed
    /// noise-free sums takes part only with them.
    #[serde(default)]
    #[schema(exclusive_minimum = 0.0)]
    pub clip: Option<f64>,
    #[serde(default)]
    #[schema(exclusive_minimum = 0.0, maximum = 100.0)]
    pub epsilon: Option<f64>,
    /// 10⁻⁶ if not given.
    #[serde(default)]
    #[schema(exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    pub delta: Option<f64>,
}

impl SecureSumRequest {
    /// The differential privacy asked for, checked: none without a clip
    /// and an epsilon.
    pub fn privacy(&self) -> Result<Option<crate::privacy::Privacy>, String> {
        let privacy = match (self.clip, self.epsilon) {
            (None, None) if self.delta.is_none() => return Ok(None),
            (Some(clip), Some(epsilon)) => crate::privacy::Privacy {
                clip,
                epsilon,
                delta: self.delta.unwrap_or(crate::privacy::DEFAULT_DELTA),
            },
            _ => {
                return Err(
                    "differential privacy needs both a clip and an epsilon (and a delta only \
                     with them)"
                        .into(),
                )
            }
        };
        privacy.validate()?;
        Ok(Some(privacy))
    }
}
