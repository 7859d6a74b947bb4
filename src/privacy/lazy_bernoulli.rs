//! Deciding exactly whether a uniform U in [0, 1) lies below ρ·e^(−γ),
//! for rationals ρ and γ ≥ 0: the slow path of the discrete Gaussian
//! sampler, taken when its floating-point fast path cannot tell (about
//! once in 2³¹ draws), and the only path of its far tail.
//!
//! U is known to 64 bits and read further only as needed; e^(−γ) is
//! bounded from both sides in fixed point, by the alternating Taylor
//! series of e^(−z) for z = γ/2^r ≤ 1 squared r times, every step rounded
//! away from the true value, at twice the precision each time U is
//! extended. The answer is exact: it is "U < ρ·e^(−γ)" itself, decided
//! as soon as U's interval falls on one side of the value's. This is the
//! way Karney decides such comparisons ("Sampling exactly from the normal
//! distribution", ACM TOMS 2016): read only as many bits as it takes.

use num_bigint::BigUint;
use num_traits::{One, Zero};
use rand::Rng;

/// The value ρ·e^(−γ), ρ = `ratio_numerator`/`ratio_denominator` and
/// γ = `gamma_numerator`/`gamma_denominator`.
pub struct ScaledExp {
    pub ratio_numerator: BigUint,
    pub ratio_denominator: BigUint,
    pub gamma_numerator: BigUint,
    pub gamma_denominator: BigUint,
}

impl ScaledExp {
    /// Whether U < ρ·e^(−γ), where U's first 64 bits are `known` and its
    /// further bits come from `rng`.
    pub fn exceeds_uniform(&self, known: u64, rng: &mut impl Rng) -> bool {
        let mut u = BigUint::from(known);
        let mut bits = 64u64;
        let mut precision = 128u64;
        loop {
            let (low, high) =
                exp_neg_bounds(&self.gamma_numerator, &self.gamma_denominator, precision);
            // U ∈ [u, u+1)/2^bits; the value ∈ [n·low, n·high]/(d·2^precision).
            let scale_u = &self.ratio_denominator << precision;
            if (&u + 1u32) * &scale_u <= (&self.ratio_numerator * low) << bits {
                return true;
            }
            if &u * &scale_u >= (&self.ratio_numerator * high) << bits {
                return false;
            }
            u = (u << 64u32) + rng.next_u64();
            bits += 64;
            precision *= 2;
        }
    }
}

/// Integers low ≤ 2^`precision`·e^(−γ) ≤ high for γ = `numerator` /
/// `denominator` ≥ 0, at most a few units apart.
pub fn exp_neg_bounds(
    numerator: &BigUint,
    denominator: &BigUint,
    precision: u64,
) -> (BigUint, BigUint) {
    // r halvings bring γ to z = γ/2^r ≤ 1: 2^r > ⌈γ⌉.
    let ceiling = (numerator + denominator - 1u32) / denominator;
    let halvings = ceiling.bits();
    // Each squaring at most doubles the error: work with room for it.
    let work = precision + halvings + 16;
    let one = BigUint::one() << work;
    let z_denominator = denominator << halvings;

    // e^(−z) = Σ (−z)^k/k!: the terms shrink (z ≤ 1), so a sum that stops
    // after a negative term is below e^(−z) and one after a positive term
    // above. Each term is rounded away from the bound it goes into.
    let (mut positive_low, mut positive_high) = (one.clone(), one.clone());
    let (mut negative_low, mut negative_high) = (BigUint::zero(), BigUint::zero());
    let mut term_numerator = BigUint::one();
    let mut term_denominator = BigUint::one();
    let mut k = 0u32;
    loop {
        k += 1;
        term_numerator *= numerator;
        term_denominator *= &z_denominator * k;
        let scaled = &term_numerator << work;
        let floor = &scaled / &term_denominator;
        let ceil = (&scaled + &term_denominator - 1u32) / &term_denominator;
        if k % 2 == 1 {
            negative_low += &floor;
            negative_high += &ceil;
            // Stop after a negative term once the next term is below a
            // unit: the low sum ends on this term, and the high sum, one
            // positive term further, is at most a unit above it.
            let next = (&term_numerator * numerator) << work;
            if next < &term_denominator * &z_denominator * (k + 1) {
                break;
            }
        } else {
            positive_low += &floor;
            positive_high += &ceil;
        }
    }
    let mut low = if positive_low > negative_high {
        positive_low - negative_high
    } else {
        BigUint::zero()
    };
    let mut high = (positive_high + 1u32 - negative_low).min(one.clone());
    for _ in 0..halvings {
        low = (&low * &low) >> work;
        high = ((&high * &high) + &one - 1u32) >> work;
    }
    let drop = work - precision;
    let high = (high + (BigUint::one() << drop) - 1u32) >> drop;
    (low >> drop, high)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    fn big(n: u128) -> BigUint {
        BigUint::from(n)
    }

    /// n/2^precision as a float, from n's top 60 bits.
    fn as_f64(n: &BigUint, precision: u64) -> f64 {
        let shift = n.bits().saturating_sub(60);
        let top = (n >> shift).to_u64_digits().first().copied().unwrap_or(0) as f64;
        top * 2f64.powi(shift as i32 - precision as i32)
    }

    #[test]
    fn the_bounds_hold_e_to_the_minus_gamma_and_close_in() {
        for (numerator, denominator) in [
            (0u128, 1u128),
            (1, 2),
            (1, 1),
            (3, 1),
            (5, 2),
            (72, 1),
            (800, 1),
            (1 << 100, 3 << 99),
            (12345, 1 << 40),
        ] {
            let gamma = numerator as f64 / denominator as f64;
            let exact = (-gamma).exp();
            for precision in [64u64, 256, 2048] {
                let (low, high) = exp_neg_bounds(&big(numerator), &big(denominator), precision);
                assert!(low <= high);
                if exact > 2f64.powi(8 - precision as i32) {
                    let (l, h) = (as_f64(&low, precision), as_f64(&high, precision));
                    assert!(l <= exact * (1.0 + 1e-12), "γ = {gamma}: {l} > {exact}");
                    assert!(h >= exact * (1.0 - 1e-12), "γ = {gamma}: {h} < {exact}");
                }
                // Close: within a few units of the precision.
                assert!(&high - &low <= big(4), "γ = {gamma}, precision {precision}");
            }
        }
        // γ = 0 is exactly one.
        let (low, high) = exp_neg_bounds(&big(0), &big(1), 100);
        assert_eq!((low, high), (big(1) << 100u32, big(1) << 100u32));
    }

    #[test]
    fn a_comparison_is_decided_as_the_value_says() {
        let mut rng = StdRng::seed_from_u64(5);
        // ρ·e^(−γ) = (3/4)·e^(−1/2) ≈ 0.45490.
        let value = 0.75 * (-0.5f64).exp();
        let below = ScaledExp {
            ratio_numerator: big(3),
            ratio_denominator: big(4),
            gamma_numerator: big(1),
            gamma_denominator: big(2),
        };
        let at = (value * 2f64.powi(64)) as u64;
        for (known, expected) in [
            (0u64, true),
            (at - (1 << 20), true),
            (at + (1 << 20), false),
            (u64::MAX, false),
        ] {
            assert_eq!(below.exceeds_uniform(known, &mut rng), expected, "{known}");
        }
        // A dyadic ratio with γ = 0: U < 1/2 exactly when its first bit is 0.
        let half = ScaledExp {
            ratio_numerator: big(1),
            ratio_denominator: big(2),
            gamma_numerator: big(0),
            gamma_denominator: big(1),
        };
        assert!(half.exceeds_uniform((1 << 63) - 1, &mut rng));
        assert!(!half.exceeds_uniform(1 << 63, &mut rng));
        // U's first 64 bits equal to those of 1/3: the bits after them
        // decide, and U is below 1/3 a third of the time (2⁶⁴ = 3k + 1).
        let third = ScaledExp {
            ratio_numerator: big(1),
            ratio_denominator: big(3),
            gamma_numerator: big(0),
            gamma_denominator: big(1),
        };
        let tie = u64::MAX / 3;
        let below_third = (0..3000)
            .filter(|_| third.exceeds_uniform(tie, &mut rng))
            .count();
        assert!((870..1130).contains(&below_third), "{below_third}");
    }
}
