use super::*;
use crate::privacy::lazy_bernoulli::exp_neg_bounds;
use rand::{rngs::StdRng, SeedableRng};

fn rng() -> StdRng {
    StdRng::seed_from_u64(0x1715)
}

/// The sampler with 8 buckets, where the acceptance decides much.
fn coarse(variance: u128) -> DiscreteGaussian {
    DiscreteGaussian::with_buckets(variance, 8).unwrap()
}

/// The same with every acceptance decided by the exact path.
fn exact_only(variance: u128) -> DiscreteGaussian {
    let mut noise = coarse(variance);
    noise.margin = f64::INFINITY;
    noise
}

/// The exact probability mass of N_Z(0, σ²), by summing the series far
/// enough that the rest is below f64's precision.
fn mass(variance: f64) -> impl Fn(i64) -> f64 {
    let weight = move |x: f64| (-x * x / (2.0 * variance)).exp();
    let reach = (variance.sqrt() * 40.0) as i64 + 2;
    let total: f64 = (-reach..=reach).map(|x| weight(x as f64)).sum();
    move |y| weight(y as f64) / total
}

/// A chi-square test against the exact mass, over the values with an
/// expected count of 20 or more and the two tails lumped together.
fn chi_square_fits(noise: &DiscreteGaussian, draws: usize) {
    let mut rng = rng();
    let mut counts = std::collections::BTreeMap::<i64, u64>::new();
    for _ in 0..draws {
        *counts.entry(noise.sample(&mut rng)).or_default() += 1;
    }
    let sigma2 = noise.variance() as f64;
    let mass = mass(sigma2);
    let reach = (sigma2.sqrt() * 6.0) as i64 + 1;
    let (mut chi2, mut cells, mut tail_expected, mut tail_seen) = (0.0, 0, 0.0, 0.0);
    for y in -reach..=reach {
        let expected = mass(y) * draws as f64;
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
    tail_expected += draws as f64 - (-reach..=reach).map(&mass).sum::<f64>() * draws as f64;
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
    for variance in [1, 2, 9, 100] {
        chi_square_fits(
            &DiscreteGaussian::with_variance_at_least(variance).unwrap(),
            200_000,
        );
    }
    // σ = 1000: buckets 32 wide, where the offset in a bucket matters.
    let wide = DiscreteGaussian::with_variance_at_least(1_000_000).unwrap();
    assert_eq!(wide.buckets[1].start, 32);
    chi_square_fits(&wide, 400_000);
}

/// With buckets of 2σ, where the acceptance shapes the Gaussian inside
/// each bucket: the float comparison, and the exact path alone (as the
/// float one falls back on it), give the same distribution.
#[test]
fn the_acceptance_shapes_wide_buckets_in_floats_and_exactly() {
    let coarse = coarse(10_000);
    assert_eq!(coarse.buckets[1].start, 256);
    chi_square_fits(&coarse, 200_000);
    chi_square_fits(&exact_only(9), 20_000);
    chi_square_fits(&exact_only(10_000), 20_000);
}

/// The histogram lies above the Gaussian: in every bucket, ρ times the
/// Gaussian at its inner edge is at most 1, checked in integers.
#[test]
fn no_acceptance_is_above_one() {
    for variance in [1u128, 2, 9, 100, 1_000_000, 1 << 68, MAX_VARIANCE] {
        let noise = DiscreteGaussian::with_variance_at_least(variance).unwrap();
        assert!(noise.buckets.len() as u64 <= MOST_BUCKETS);
        assert_eq!(
            noise.buckets.last().map(|b| b.start + b.width),
            Some(noise.reach + 1)
        );
        for bucket in &noise.buckets {
            let chance = noise.chance(bucket, bucket.start);
            let precision = 256;
            let (_, high) = exp_neg_bounds(
                &chance.gamma_numerator,
                &chance.gamma_denominator,
                precision,
            );
            assert!(
                chance.ratio_numerator * high <= chance.ratio_denominator << precision,
                "σ² = {variance}, bucket at {}",
                bucket.start
            );
        }
    }
}

#[test]
fn a_wide_gaussian_has_its_variance_and_no_bias_and_stays_in_reach() {
    // σ = 2³⁴: the size of the noise on a vector in 32 fraction bits.
    let noise = DiscreteGaussian::with_variance_at_least(1 << 68).unwrap();
    assert_eq!(noise.variance(), 1 << 68);
    assert_eq!(noise.reach(), 40 << 34);
    let mut rng = rng();
    let n = 100_000;
    let draws: Vec<i64> = (0..n).map(|_| noise.sample(&mut rng)).collect();
    assert!(draws.iter().all(|y| y.unsigned_abs() <= noise.reach()));
    let draws: Vec<f64> = draws.into_iter().map(|y| y as f64).collect();
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

/// The last bucket, out to 40σ, is decided exactly: its acceptance at
/// its inner edge (12σ) is about 2⁻⁴⁷ for σ = 3.
#[test]
fn the_last_bucket_accepts_what_its_chance_says() {
    let noise = DiscreteGaussian::with_variance_at_least(9).unwrap();
    let last = noise.buckets.last().unwrap();
    assert!(!last.fast);
    assert_eq!(last.start, 36);
    let mut rng = rng();
    assert!(noise.accepts(last, 36, 0, &mut rng));
    assert!(!noise.accepts(last, 36, 1 << 20, &mut rng));
    assert!(!noise.accepts(last, noise.reach(), 1, &mut rng));
}

#[test]
fn no_noise_is_zero_and_too_much_is_refused() {
    let none = DiscreteGaussian::with_variance_at_least(0).unwrap();
    assert_eq!(none.sample(&mut rng()), 0);
    assert_eq!(none.reach(), 0);
    assert!(DiscreteGaussian::with_variance_at_least(MAX_VARIANCE + 1).is_none());
    let most = DiscreteGaussian::with_variance_at_least(MAX_VARIANCE).unwrap();
    let mut rng = rng();
    for _ in 0..1000 {
        assert!(most.sample(&mut rng).unsigned_abs() <= most.reach());
    }
    assert_eq!(
        DiscreteGaussian::with_variance_at_least(1000)
            .unwrap()
            .variance(),
        1000
    );
}
