//! Zero-concentrated differential privacy (zCDP), as the accounting is
//! done here: small formulas, each from a paper, each tested.
//!
//! - A release of a sum whose L2 sensitivity is Δ, with Gaussian noise of
//!   variance σ² on every entry (discrete or not), is ρ-zCDP with
//!   ρ = Δ²/(2σ²) (Bun and Steinke 2016, Proposition 1.6; for the
//!   discrete Gaussian, Canonne, Kamath and Steinke 2020, Theorem 4).
//! - Releases compose by adding their ρ (Bun and Steinke 2016, Lemma 1.7).
//! - ρ-zCDP implies (ε, δ)-DP for every δ > 0 with
//!   ε = ρ + 2·√(ρ·ln(1/δ)) (Bun and Steinke 2016, Proposition 1.3).
//!
//! An owner thinks in (ε, δ), so the budget is stated so and converted
//! with the last formula, solved for ρ: with L = ln(1/δ),
//! √ρ = √(L + ε) − √L.

/// The ρ that costs exactly `epsilon` at `delta`: the inverse of
/// [`epsilon_of`]. Both must be checked first (ε > 0, 0 < δ < 1).
pub fn rho_of(epsilon: f64, delta: f64) -> f64 {
    let l = (1.0 / delta).ln();
    let root = (l + epsilon).sqrt() - l.sqrt();
    root * root
}

/// The ε that `rho` of zCDP costs at `delta`.
pub fn epsilon_of(rho: f64, delta: f64) -> f64 {
    rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()
}

/// The variance of Gaussian noise that makes a release of sensitivity
/// `sensitivity` cost `rho`: σ² = Δ²/(2ρ).
pub fn variance_for(sensitivity: f64, rho: f64) -> f64 {
    sensitivity * sensitivity / (2.0 * rho)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epsilon_and_rho_are_inverse_and_match_worked_values() {
        // ε = 1 at δ = 10⁻⁶: L = 13.8155…, √ρ = √14.8155 − √13.8155.
        let rho = rho_of(1.0, 1e-6);
        assert!((rho - 0.017_468_9).abs() < 1e-6, "{rho}");
        for (epsilon, delta) in [(0.1, 1e-5), (1.0, 1e-6), (8.0, 1e-9), (50.0, 0.01)] {
            let back = epsilon_of(rho_of(epsilon, delta), delta);
            assert!(
                (back - epsilon).abs() < 1e-9 * epsilon.max(1.0),
                "{epsilon}"
            );
        }
        // Bun and Steinke's worked bound: ρ = 0.5 at δ = e⁻¹ gives
        // 0.5 + 2·√0.5 ≈ 1.9142.
        assert!((epsilon_of(0.5, (-1f64).exp()) - 1.914_213_6).abs() < 1e-6);
    }

    #[test]
    fn releases_add_up_and_noise_follows_the_sensitivity() {
        // Two releases at ρ each cost more than one, less than twice the ε.
        let rho = rho_of(1.0, 1e-6);
        let two = epsilon_of(2.0 * rho, 1e-6);
        assert!(two > 1.0 && two < 2.0, "{two}");
        // σ² = Δ²/(2ρ): doubling Δ quadruples the variance.
        assert_eq!(variance_for(1.0, 0.5), 1.0);
        assert_eq!(variance_for(2.0, 0.5), 4.0);
    }
}
