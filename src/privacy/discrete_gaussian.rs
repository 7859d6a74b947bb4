//! An exact sampler of the discrete Gaussian N_Z(0, σ²): the integer y
//! with probability proportional to exp(−y²/(2σ²)), |y| up to 40σ.
//! Integers, so that the noise adds into Z/2⁶⁴ with the masks and the
//! fixed-point values, and exact, so that no floating-point rounding
//! weakens the guarantee (Mironov 2012 showed how a float sampler leaks).
//!
//! A site draws one per entry of vectors of a million, so the sampler is
//! built for many draws at one σ. It is rejection sampling (Devroye,
//! "Non-Uniform Random Variate Generation", 1986, II.3) from a histogram
//! that lies above the Gaussian:
//! - |y| is proposed from buckets: out to 12σ, buckets of one width W (a
//!   power of two near σ/32), then one bucket to the reach. A bucket is
//!   picked with an integer weight at least proportional to the
//!   Gaussian's height at its inner edge (Walker's alias method, exact in
//!   integers: [`AliasTable`]), the offset in it uniformly, and the sign
//!   by a fair bit (a proposed 0 with a minus sign is rejected, so that
//!   0 counts once).
//! - The proposal is accepted with probability ρ·e^(−y²/(2σ²)) ≤ 1, with
//!   ρ = scale·W/weight fixed per bucket: the height over the histogram's.
//!   In the buckets out to 12σ, more than 98% of proposals are accepted.
//! - The acceptance compares a uniform U with that value. In floating
//!   point the value is within 2⁻⁴³ of the truth: out to 12σ (and a
//!   bucket) γ = y²/(2σ²) is below 110, y², γ, exp and the product each
//!   round by at most a unit in the last place (2⁻⁵³ relative; glibc's
//!   exp stays within one), and an error of γ moves e^(−γ) by as much.
//!   When U is more than 2⁻³² away, the float comparison gives the exact
//!   answer.
//!   Otherwise, about once in 2³¹ draws, and always in the last bucket,
//!   it is decided exactly, in integers ([`ScaledExp`]).
//!
//! The outcome is N_Z(0, σ²) conditioned on |y| ≤ 40σ, exactly: the tail
//! beyond has probability below e⁻⁸⁰⁰, and cutting it is what lets the
//! secure sum's room check hold for every draw. Every random word comes
//! from a reviewed CSPRNG (`rand`'s ChaCha, seeded by the operating
//! system), with unbiased bounded draws.
//!
//! Why not a crate's sampler: the one a reviewed crate offers (prio's
//! `dp::distributions`) computes on big rationals, tens of microseconds a
//! draw. Canonne, Kamath and Steinke's algorithms ("The Discrete Gaussian
//! for Differential Privacy", NeurIPS 2020), which this module used
//! before, take about ten unpredictable random decisions a draw: about
//! 90 ns, against about three words and one exp here.

use num_bigint::BigUint;
use rand::{Rng, RngExt};

use super::alias::{AliasTable, TOTAL_BITS};
use super::lazy_bernoulli::ScaledExp;

/// The largest variance sampled: σ up to 2⁵⁰, so that 40σ fits an i64
/// and every square below fits 128 bits.
pub const MAX_VARIANCE: u128 = 1 << 100;

/// How far out a draw may land, in standard deviations.
pub const REACH_SIGMAS: f64 = 40.0;

/// The buckets of one width reach this many standard deviations; beyond
/// (probability below e⁻⁷²) one bucket holds the rest.
const CORE_SIGMAS: f64 = 12.0;

/// The most buckets, so that the alias table stays in the first cache.
const MOST_BUCKETS: u64 = 512;

/// How far U must be from the float value of the acceptance for the float
/// comparison to decide: 2⁻³², against an error below 2⁻⁴³.
const MARGIN: f64 = 1.0 / (1u64 << 32) as f64;

/// One bucket of the histogram: magnitudes start..start + width.
#[derive(Debug, Clone)]
struct Bucket {
    start: u64,
    width: u64,
    /// Its integer weight among all (2^TOTAL_BITS in all).
    weight: u64,
    /// ρ = scale·width/weight, as a float for the fast path.
    ratio: f64,
    /// The scale's mantissa times the width: ρ's numerator, with the
    /// scale's power of two.
    ratio_numerator: u128,
    /// Whether the float comparison may decide here (the buckets out to
    /// 12σ, where γ is below 110 and every float in the way is normal).
    fast: bool,
}

/// The discrete Gaussian of variance σ² (an integer), truncated at 40σ.
#[derive(Debug, Clone)]
pub struct DiscreteGaussian {
    variance: u128,
    reach: u64,
    buckets: Vec<Bucket>,
    picker: Option<AliasTable>,
    /// 2σ², for the float γ = y²/(2σ²).
    twice_variance: f64,
    /// The power of two of the scale (scale = mantissa·2^exponent).
    scale_exponent: i32,
    margin: f64,
}

impl DiscreteGaussian {
    /// The discrete Gaussian of variance `variance`, or none beyond
    /// [`MAX_VARIANCE`]. A variance of 0 is no noise.
    pub fn with_variance_at_least(variance: u128) -> Option<Self> {
        Self::with_buckets(variance, MOST_BUCKETS)
    }

    /// The discrete Gaussian of `variance` with at most `most_buckets`
    /// buckets (at least 2): fewer, wider buckets make the acceptance
    /// decide more, which the tests use.
    fn with_buckets(variance: u128, most_buckets: u64) -> Option<Self> {
        if variance > MAX_VARIANCE {
            return None;
        }
        let mut noise = Self {
            variance,
            reach: 0,
            buckets: Vec::new(),
            picker: None,
            twice_variance: 2.0 * variance as f64,
            scale_exponent: 0,
            margin: MARGIN,
        };
        if variance == 0 {
            return Some(noise);
        }
        let sigma = (variance as f64).sqrt();
        // σ ≥ 1, so the reach (40σ) is past the core (12σ + W ≤ 13σ).
        noise.reach = (REACH_SIGMAS * sigma).ceil() as u64;
        let core_reach = (CORE_SIGMAS * sigma).ceil() as u64;
        let mut width = 1u64;
        while core_reach.div_ceil(width) > most_buckets - 1 {
            width *= 2;
        }
        let core = core_reach.div_ceil(width);
        let mut spans: Vec<(u64, u64)> = (0..core).map(|i| (i * width, width)).collect();
        spans.push((core * width, noise.reach + 1 - core * width));

        // The histogram's heights: width times the Gaussian at the inner
        // edge, its highest point in the bucket. The weights are the
        // heights scaled to add up to a little under 2^TOTAL_BITS, raised
        // by 2⁻³⁰ (far above the floats' error) and rounded up, so each is
        // at least scale·width·e^(−start²/(2σ²)): ρ·e^(−start²/(2σ²)) ≤ 1.
        let heights: Vec<f64> = spans
            .iter()
            .map(|(start, width)| {
                *width as f64 * (-(*start as f64).powi(2) / noise.twice_variance).exp()
            })
            .collect();
        let scale =
            (1u64 << TOTAL_BITS) as f64 * (1.0 - 1.0 / 1024.0) / heights.iter().sum::<f64>();
        let mut weights: Vec<u64> = heights
            .iter()
            .map(|height| ((scale * height * (1.0 + 2f64.powi(-30))).ceil() as u64).max(1))
            .collect();
        // The rest goes to the first bucket: a larger weight only lowers
        // its ρ, never above the bound.
        weights[0] += (1u64 << TOTAL_BITS) - weights.iter().sum::<u64>();
        let (mantissa, exponent) = dyadic(scale);
        noise.scale_exponent = exponent;
        noise.buckets = spans
            .iter()
            .zip(&weights)
            .enumerate()
            .map(|(i, (&(start, width), &weight))| Bucket {
                start,
                width,
                weight,
                ratio: scale * width as f64 / weight as f64,
                ratio_numerator: mantissa as u128 * width as u128,
                fast: (i as u64) < core,
            })
            .collect();
        noise.picker = Some(AliasTable::new(&weights));
        Some(noise)
    }

    /// σ², the variance parameter in use.
    pub fn variance(&self) -> u128 {
        self.variance
    }

    /// The largest magnitude a draw can have: ⌈40σ⌉.
    pub fn reach(&self) -> u64 {
        self.reach
    }

    /// Adds one draw to each word, in Z/2⁶⁴.
    pub fn add_to(&self, words: &mut [u64], rng: &mut impl Rng) {
        for word in words {
            *word = word.wrapping_add(self.sample(rng) as u64);
        }
    }

    /// One draw.
    pub fn sample(&self, rng: &mut impl Rng) -> i64 {
        let Some(picker) = &self.picker else {
            return 0;
        };
        loop {
            let word = rng.next_u64();
            let bucket = &self.buckets[picker.pick(word)];
            let negative = word >> 63 == 1;
            let offset = if bucket.width.is_power_of_two() {
                rng.next_u64() & (bucket.width - 1)
            } else {
                rng.random_range(0..bucket.width)
            };
            let magnitude = bucket.start + offset;
            if magnitude == 0 && negative {
                continue;
            }
            let uniform = rng.next_u64();
            if self.accepts(bucket, magnitude, uniform, rng) {
                let magnitude = magnitude as i64;
                return if negative { -magnitude } else { magnitude };
            }
        }
    }

    /// Bernoulli(ρ·e^(−m²/(2σ²))): whether U, whose first 64 bits are
    /// `u`, is below that value; in floats when they tell, else exactly.
    fn accepts(&self, bucket: &Bucket, magnitude: u64, u: u64, rng: &mut impl Rng) -> bool {
        if bucket.fast {
            let m = magnitude as f64;
            let chance = bucket.ratio * (-(m * m) / self.twice_variance).exp();
            // U's first 53 bits: U itself is at most 2⁻⁵³ above.
            let gap = (u >> 11) as f64 * 2f64.powi(-53) - chance;
            if gap < -self.margin {
                return true;
            }
            if gap > self.margin {
                return false;
            }
        }
        self.chance(bucket, magnitude).exceeds_uniform(u, rng)
    }

    /// The exact acceptance of `magnitude` in `bucket`.
    fn chance(&self, bucket: &Bucket, magnitude: u64) -> ScaledExp {
        let mut numerator = BigUint::from(bucket.ratio_numerator);
        let mut denominator = BigUint::from(bucket.weight);
        if self.scale_exponent >= 0 {
            numerator <<= self.scale_exponent as u32;
        } else {
            denominator <<= self.scale_exponent.unsigned_abs();
        }
        let magnitude = BigUint::from(magnitude);
        ScaledExp {
            ratio_numerator: numerator,
            ratio_denominator: denominator,
            gamma_numerator: &magnitude * &magnitude,
            gamma_denominator: BigUint::from(self.variance) << 1u32,
        }
    }
}

/// A positive, normal float as mantissa·2^exponent, exactly.
fn dyadic(x: f64) -> (u64, i32) {
    debug_assert!(x.is_normal() && x > 0.0);
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32 - 1075;
    (bits & ((1 << 52) - 1) | (1 << 52), exponent)
}

#[cfg(test)]
#[path = "discrete_gaussian_tests.rs"]
mod tests;
