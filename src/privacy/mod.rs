//! Differential privacy added by a site's node to what it contributes to a
//! secure sum, and the privacy budget its owner keeps per dataset.
//!
//! A secure sum hides each site's vector inside the sum, but a master that
//! chooses the queries can still take differences of sums over chosen
//! subsets, or repeat one. Noise added where the data is, with a budget
//! the data's owner keeps, bounds what any sequence of queries reveals.
//! The job declares a bound `clip` on the L2 norm of each site's vector
//! and the (ε, δ) it asks for; the site's node (never the job's code and
//! never the master) clips its vector, encodes it, and adds discrete
//! Gaussian noise ([`DiscreteGaussian`]) so that its own noise alone
//! gives the declared guarantee: it trusts no other site to add any.
//! The accounting is zCDP ([`zcdp`]); docs/secure-aggregation.md has the
//! formulas and the papers.

mod alias;
mod budget;
mod discrete_gaussian;
mod lazy_bernoulli;
mod ledger;
pub mod zcdp;

pub use budget::Budget;
pub use discrete_gaussian::{DiscreteGaussian, MAX_VARIANCE};
pub use ledger::{PrivacyLedger, Spend, SpendError};

use serde::{Deserialize, Serialize};

/// What a job asks of one secure sum: each site's vector (the weighted
/// entries and the weight) clipped to L2 norm `clip`, and noise such that
/// the release costs `epsilon` at `delta`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Privacy {
    pub clip: f64,
    pub epsilon: f64,
    pub delta: f64,
}

/// The δ a job's ε is stated at when it names none.
pub const DEFAULT_DELTA: f64 = 1e-6;

impl Privacy {
    /// Checks what a job declared: a positive, finite clip and ε, and a δ
    /// strictly between 0 and 1.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return Err(format!("a clip of {}: it must be above 0", self.clip));
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0 && self.epsilon <= 100.0) {
            return Err(format!(
                "an epsilon of {}: it must be above 0 and at most 100",
                self.epsilon
            ));
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(format!(
                "a delta of {}: it must be above 0 and below 1",
                self.delta
            ));
        }
        Ok(())
    }

    /// The zCDP cost of one release.
    pub fn rho(&self) -> f64 {
        zcdp::rho_of(self.epsilon, self.delta)
    }

    /// The noise each site adds to each entry of a vector of `entries`
    /// entries kept at `scale` units per 1: its sensitivity in units is the
    /// clip plus what rounding each entry to a unit can add (½ an entry),
    /// and its variance, rounded up, costs at most [`Privacy::rho`].
    pub fn noise(&self, scale: f64, entries: usize) -> Result<DiscreteGaussian, String> {
        let sensitivity = self.clip * scale + (entries as f64).sqrt() / 2.0;
        // A hair more than the formula, so that f64 rounding never gives
        // less noise than the cost charged.
        let variance = zcdp::variance_for(sensitivity, self.rho()) * (1.0 + 1e-9);
        let too_much = || {
            format!(
                "noise of standard deviation {:.3e} (clip {} at epsilon {}) does not fit the \
                 encoding: declare a coarser resolution",
                variance.sqrt() / scale,
                self.clip,
                self.epsilon
            )
        };
        if !(variance.is_finite() && variance <= MAX_VARIANCE as f64) {
            return Err(too_much());
        }
        DiscreteGaussian::with_variance_at_least(variance.ceil() as u128).ok_or_else(too_much)
    }
}

/// Adds a draw of `noise` to every word of `words` (two's complement in
/// Z/2⁶⁴, where the masks and the fixed point live). Blocking: a draw per
/// entry, on as many threads as the machine has cores (up to 8), each
/// with its own generator seeded by the operating system.
pub fn add_noise(words: &mut [u64], noise: &DiscreteGaussian) -> Result<(), String> {
    use rand::{rngs::StdRng, SeedableRng};
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let part = words.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let drawers: Vec<_> = words
            .chunks_mut(part)
            .map(|chunk| {
                scope.spawn(move || {
                    let mut rng = StdRng::try_from_rng(&mut rand::rngs::SysRng)
                        .map_err(|e| format!("no randomness for the noise: {e}"))?;
                    noise.add_to(chunk, &mut rng);
                    Ok(())
                })
            })
            .collect();
        // The scope joins every thread, the ones after an error too.
        drawers.into_iter().try_for_each(|drawer| {
            drawer
                .join()
                .unwrap_or(Err("a noise thread panicked".into()))
        })
    })
}

/// Scales `values` down so that their L2 norm is at most `clip`; a vector
/// within it is left as it is.
pub fn clip_norm(values: &mut [f64], clip: f64) {
    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm > clip {
        let factor = clip / norm;
        for v in values.iter_mut() {
            *v *= factor;
        }
        // Rounding may leave the norm a hair above the clip.
        let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > clip {
            let factor = (clip / norm) * (1.0 - 1e-12);
            values.iter_mut().for_each(|v| *v *= factor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declaration_is_checked_and_names_what_is_wrong() {
        let ok = Privacy {
            clip: 1.0,
            epsilon: 1.0,
            delta: DEFAULT_DELTA,
        };
        ok.validate().unwrap();
        for (bad, word) in [
            (Privacy { clip: 0.0, ..ok }, "clip"),
            (
                Privacy {
                    clip: f64::NAN,
                    ..ok
                },
                "clip",
            ),
            (
                Privacy {
                    epsilon: -1.0,
                    ..ok
                },
                "epsilon",
            ),
            (
                Privacy {
                    epsilon: f64::INFINITY,
                    ..ok
                },
                "epsilon",
            ),
            (Privacy { delta: 1.0, ..ok }, "delta"),
            (Privacy { delta: 0.0, ..ok }, "delta"),
        ] {
            let err = bad.validate().unwrap_err();
            assert!(err.contains(word), "{err}");
        }
    }

    #[test]
    fn noise_is_calibrated_to_the_clip_and_epsilon() {
        let privacy = Privacy {
            clip: 1.0,
            epsilon: 1.0,
            delta: 1e-6,
        };
        let scale = 2f64.powi(32);
        let noise = privacy.noise(scale, 100).unwrap();
        let sigma = (noise.variance() as f64).sqrt() / scale;
        // σ = Δ/√(2ρ) with Δ ≈ 1 and ρ ≈ 0.01747: about 5.35.
        let expected = 1.0 / (2.0 * privacy.rho()).sqrt();
        assert!(
            (sigma / expected - 1.0).abs() < 1e-6,
            "{sigma} vs {expected}"
        );
        // Its cost, from its own variance, is never above what was asked.
        let units = privacy.clip * scale + 5.0;
        let rho = units * units / (2.0 * noise.variance() as f64);
        assert!(rho <= privacy.rho(), "{rho}");
        // A resolution so fine that the noise cannot be held is refused.
        let err = privacy.noise(2f64.powi(52), 100).unwrap_err();
        assert!(err.contains("coarser resolution"), "{err}");
    }

    /// Every word gets noise of its own: over a long vector of zeros the
    /// draws have the variance asked for, in every part a thread drew.
    #[test]
    fn noise_reaches_every_word_with_its_variance() {
        let noise = DiscreteGaussian::with_variance_at_least(10_000).unwrap();
        let mut words = vec![0u64; 40_000];
        add_noise(&mut words, &noise).unwrap();
        for part in words.chunks(10_000) {
            let draws: Vec<f64> = part.iter().map(|w| *w as i64 as f64).collect();
            let variance = draws.iter().map(|x| x * x).sum::<f64>() / draws.len() as f64;
            assert!(
                (variance / noise.variance() as f64 - 1.0).abs() < 0.1,
                "{variance}"
            );
        }
    }

    #[test]
    fn a_vector_is_clipped_to_its_norm_and_no_further() {
        let mut long = vec![3.0, 4.0];
        clip_norm(&mut long, 1.0);
        let norm = (long[0] * long[0] + long[1] * long[1]).sqrt();
        assert!(norm <= 1.0 && norm > 0.999_999, "{norm}");
        assert!((long[0] / long[1] - 0.75).abs() < 1e-12);
        let mut short = vec![0.3, 0.4];
        clip_norm(&mut short, 1.0);
        assert_eq!(short, [0.3, 0.4]);
    }
}
