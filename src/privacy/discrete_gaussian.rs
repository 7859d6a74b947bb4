//! An exact sampler of the discrete Gaussian N_Z(0, σ²): the integer y
//! with probability proportional to exp(−y²/(2σ²)). Integers, so that the
//! noise adds into Z/2⁶⁴ with the masks and the fixed-point values, and
//! exact, so that no floating-point rounding weakens the guarantee
//! (Mironov 2012 showed how a float sampler leaks).
//!
//! The algorithms are those of Canonne, Kamath and Steinke, "The Discrete
//! Gaussian for Differential Privacy" (NeurIPS 2020), Algorithms 1 to 3:
//! Bernoulli(exp(−γ)) from Bernoulli trials of rationals, a discrete
//! Laplace from those, and the Gaussian by rejection from the Laplace.
//! Every random draw comes from a reviewed CSPRNG (`rand`'s ChaCha,
//! seeded by the operating system): a uniform integer below a bound
//! (with `rand`'s `unbiased` feature, so no modulo bias), or a coin flip
//! read a few bits at a time ([`Coins`]).
//!
//! Why not a crate's sampler: the one a reviewed crate offers (prio's
//! `dp::distributions`) computes on big rationals, tens of microseconds a
//! draw, and a site draws one per entry of a vector of a million. Here
//! the variance is an integer S = t·m with t = ⌊√S₀⌋ + 1 (S₀ the variance
//! asked for, rounded up to a multiple of t, so at least as much noise):
//! σ²/t is then the integer m and every quantity fits in 128 bits. The
//! rejection step of Algorithm 3 is exact for any t > 0; t near σ keeps
//! it efficient.

use rand::{distr::Uniform, prelude::Distribution, Rng};

use super::coins::Coins;

/// The largest variance sampled: σ up to 2⁵⁰, so that every square below
/// fits in 128 bits.
pub const MAX_VARIANCE: u128 = 1 << 100;

/// The discrete Gaussian of variance parameter σ² = `t`·`m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscreteGaussian {
    /// The scale of the Laplace proposals, ⌊√S₀⌋ + 1.
    t: u128,
    /// σ²/t.
    m: u128,
    /// Uniform draws below t and below 2σ², set up once: the draws of
    /// every sample are bounded by them.
    below_t: Uniform<u64>,
    below_twice_variance: Uniform<u128>,
}

impl DiscreteGaussian {
    /// The discrete Gaussian of variance parameter at least `variance`
    /// (rounded up to a multiple of t), or none beyond [`MAX_VARIANCE`].
    /// A variance of 0 is no noise.
    pub fn with_variance_at_least(variance: u128) -> Option<Self> {
        if variance > MAX_VARIANCE {
            return None;
        }
        let t = variance.isqrt() + 1;
        let m = variance.div_ceil(t);
        Some(Self {
            t,
            m,
            below_t: Uniform::new(0, u64::try_from(t).ok()?).ok()?,
            below_twice_variance: Uniform::new(0, (2 * t * m).max(1)).ok()?,
        })
    }

    /// σ², the variance parameter in use.
    pub fn variance(&self) -> u128 {
        self.t * self.m
    }

    /// One draw (Algorithm 3): a discrete Laplace proposal y, accepted
    /// with probability exp(−(|y| − σ²/t)²/(2σ²)).
    pub fn sample(&self, rng: &mut impl Rng) -> i64 {
        self.draw(&mut Coins::new(rng))
    }

    /// Adds one draw to each word, in Z/2⁶⁴, with one source of coin
    /// flips for them all.
    pub fn add_to(&self, words: &mut [u64], rng: &mut impl Rng) {
        let mut coins = Coins::new(rng);
        for word in words {
            *word = word.wrapping_add(self.draw(&mut coins) as u64);
        }
    }

    fn draw<R: Rng>(&self, coins: &mut Coins<R>) -> i64 {
        if self.m == 0 {
            return 0;
        }
        let double_variance = 2 * self.variance();
        loop {
            let Some(y) = self.laplace(coins) else {
                continue;
            };
            let distance = (y.unsigned_abs() as u128).abs_diff(self.m);
            // γ = distance²/(2σ²): ⌊γ⌋ trials of exp(−1), then one of
            // the fraction (Algorithm 1, second branch). The whole part
            // is taken off one 2σ² at a time: the trials stop at the
            // first failure, after 1.6 on average, where a division of
            // 128-bit numbers costs more than the rest of a draw.
            let mut gamma = distance * distance;
            let mut accepted = true;
            while accepted && gamma >= double_variance {
                accepted = coins.exp_minus_one();
                gamma -= double_variance;
            }
            if accepted
                && exp_minus(coins, |coins| {
                    self.below_twice_variance.sample(coins.rng()) < gamma
                })
            {
                return y;
            }
        }
    }

    /// A discrete Laplace draw of scale t (Algorithm 2 with s = 1), or
    /// none for one beyond ±2⁶², which is rejected like the others: its
    /// probability is below exp(−2¹²) for any t here.
    fn laplace<R: Rng>(&self, coins: &mut Coins<R>) -> Option<i64> {
        loop {
            let u = self.below_t.sample(coins.rng());
            // Bernoulli(exp(−u/t)).
            if u > 0 && !exp_minus(coins, |coins| self.below_t.sample(coins.rng()) < u) {
                continue;
            }
            let mut v: u128 = 0;
            while coins.exp_minus_one() {
                v += 1;
            }
            let x = v.checked_mul(self.t)?.checked_add(u as u128)?;
            let negative = coins.flip();
            if negative && x == 0 {
                continue;
            }
            let x = i64::try_from(x).ok().filter(|x| *x <= 1 << 62)?;
            return Some(if negative { -x } else { x });
        }
    }
}

/// Bernoulli(exp(−γ)) for γ in [0, 1], given `trial`, a draw of
/// Bernoulli(γ) (Algorithm 1, first branch): count trials of
/// Bernoulli(γ/k) for k = 1, 2, … until one fails; true when it was an
/// odd k. Bernoulli(γ/k) is Bernoulli(1/k) and Bernoulli(γ) at once; the
/// cheap coin goes first, so the trial is drawn only when it matters.
fn exp_minus<R: Rng>(coins: &mut Coins<R>, mut trial: impl FnMut(&mut Coins<R>) -> bool) -> bool {
    let mut k: u64 = 1;
    loop {
        if !(coins.one_in(k) && trial(coins)) {
            return k % 2 == 1;
        }
        k += 1;
    }
}

/// Bernoulli(exp(−`numerator`/`denominator`)) for any ratio ≥ 0, by the
/// same steps as a sample's acceptance: for the tests.
#[cfg(test)]
fn bernoulli_exp(rng: &mut impl Rng, numerator: u128, denominator: u128) -> bool {
    let below = Uniform::new(0, denominator).unwrap();
    let mut coins = Coins::new(rng);
    for _ in 0..numerator / denominator {
        if !coins.exp_minus_one() {
            return false;
        }
    }
    let fraction = numerator % denominator;
    exp_minus(&mut coins, |coins| below.sample(coins.rng()) < fraction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    fn rng() -> StdRng {
        StdRng::seed_from_u64(0x1715)
    }

    /// The exact probability mass of N_Z(0, σ²) at each y, by summing the
    /// series far enough that the rest is below f64's precision.
    fn mass(variance: f64, y: i64) -> f64 {
        let weight = |x: f64| (-x * x / (2.0 * variance)).exp();
        let reach = (variance.sqrt() * 40.0) as i64 + 2;
        let total: f64 = (-reach..=reach).map(|x| weight(x as f64)).sum();
        weight(y as f64) / total
    }

    /// A chi-square test against the exact mass, over the values with an
    /// expected count of 20 or more and the two tails lumped together.
    fn chi_square_fits(variance: u128, draws: usize) {
        let noise = DiscreteGaussian::with_variance_at_least(variance).unwrap();
        let mut rng = rng();
        let mut counts = std::collections::BTreeMap::<i64, u64>::new();
        for _ in 0..draws {
            *counts.entry(noise.sample(&mut rng)).or_default() += 1;
        }
        let sigma2 = noise.variance() as f64;
        let reach = (sigma2.sqrt() * 6.0) as i64 + 1;
        let (mut chi2, mut cells, mut tail_expected, mut tail_seen) = (0.0, 0, 0.0, 0.0);
        for y in -reach..=reach {
            let expected = mass(sigma2, y) * draws as f64;
            let seen = *counts.get(&y).unwrap_or(&0) as f64;
            if expected >= 20.0 {
                chi2 += (seen - expected).powi(2) / expected;
                cells += 1;
            } else {
                tail_expected += expected;
                tail_seen += seen;
            }
        }
        let beyond: u64 = counts
            .iter()
            .filter(|(y, _)| y.abs() > reach)
            .map(|(_, c)| c)
            .sum();
        tail_seen += beyond as f64;
        tail_expected +=
            draws as f64 - (-reach..=reach).map(|y| mass(sigma2, y)).sum::<f64>() * draws as f64;
        if tail_expected >= 20.0 {
            chi2 += (tail_seen - tail_expected).powi(2) / tail_expected;
            cells += 1;
        }
        // The 99.99th percentile of χ² with k degrees of freedom is below
        // k + 4.5·√(2k) + 15 for the k here (Wilson–Hilferty).
        let k = (cells - 1) as f64;
        assert!(
            chi2 < k + 4.5 * (2.0 * k).sqrt() + 15.0,
            "σ² = {sigma2}: χ² = {chi2} over {cells} cells"
        );
    }

    #[test]
    fn draws_follow_the_exact_mass_for_small_and_larger_variances() {
        chi_square_fits(1, 200_000);
        chi_square_fits(2, 200_000);
        chi_square_fits(9, 200_000);
        chi_square_fits(100, 200_000);
    }

    #[test]
    fn a_wide_gaussian_has_its_variance_and_no_bias() {
        // σ = 2³⁴: the size of the noise on a vector in 32 fraction bits.
        let noise = DiscreteGaussian::with_variance_at_least(1 << 68).unwrap();
        assert!(noise.variance() >= 1 << 68);
        let mut rng = rng();
        let n = 100_000;
        let draws: Vec<f64> = (0..n).map(|_| noise.sample(&mut rng) as f64).collect();
        let sigma = (noise.variance() as f64).sqrt();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let variance = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        // The mean's standard error is σ/√n; the variance's about σ²·√(2/n).
        assert!(mean.abs() < 5.0 * sigma / (n as f64).sqrt(), "{mean}");
        assert!(
            (variance / sigma.powi(2) - 1.0).abs() < 5.0 * (2.0 / n as f64).sqrt(),
            "{variance}"
        );
    }

    #[test]
    fn no_noise_is_zero_and_too_much_is_refused() {
        let none = DiscreteGaussian::with_variance_at_least(0).unwrap();
        assert_eq!(none.sample(&mut rng()), 0);
        assert!(DiscreteGaussian::with_variance_at_least(MAX_VARIANCE + 1).is_none());
        let most = DiscreteGaussian::with_variance_at_least(MAX_VARIANCE).unwrap();
        let mut rng = rng();
        for _ in 0..1000 {
            most.sample(&mut rng);
        }
        // Rounded up to a multiple of t, never down.
        let noise = DiscreteGaussian::with_variance_at_least(1000).unwrap();
        assert_eq!(noise.variance() % 32, 0);
        assert!(noise.variance() >= 1000);
    }

    /// Bernoulli(exp(−γ)) at γ = 0, ½, 1, 2.5: its frequency is within
    /// five standard errors of exp(−γ).
    #[test]
    fn bernoulli_of_exp_minus_gamma_has_its_probability() {
        let mut rng = rng();
        let n = 200_000;
        for (numerator, denominator) in [(0u128, 1u128), (1, 2), (1, 1), (5, 2)] {
            let hits = (0..n)
                .filter(|_| bernoulli_exp(&mut rng, numerator, denominator))
                .count() as f64;
            let p = (-(numerator as f64) / denominator as f64).exp();
            let error = 5.0 * (p * (1.0 - p) / n as f64).sqrt() + 1e-12;
            assert!(
                (hits / n as f64 - p).abs() <= error,
                "γ = {numerator}/{denominator}"
            );
        }
    }
}
