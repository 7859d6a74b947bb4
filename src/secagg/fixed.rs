//! Fixed point in Z/2⁶⁴: a real number x becomes round(x·2^f) as a two's
//! complement u64, so sums wrap exactly as integers do and the masks, added
//! mod 2⁶⁴, leave no trace of the encoding. Values beyond ±`limit`
//! (infinities too) are clipped to it before they are encoded: refusing
//! them would tell the master that a site's value was out of range, and
//! an error that named it would tell the value. NaN is refused.
//!
//! The job declares the range and the resolution it needs
//! ([`FixedPoint::declared`]): sums of squares around 10⁹ need a wide
//! range, gradients a fine resolution. What cannot fit in 64 bits for the
//! number of sites is refused before any site computes.

use serde::{Deserialize, Serialize};

use super::SecAggError;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FixedPoint {
    /// Bits after the binary point.
    pub frac_bits: u32,
    /// The largest magnitude an entry may have.
    pub limit: f64,
}

impl Default for FixedPoint {
    /// 2⁻³² resolution (about 2·10⁻¹⁰), entries up to ±10⁶: room for a sum
    /// of 255 of them.
    fn default() -> Self {
        Self {
            frac_bits: 32,
            limit: 1e6,
        }
    }
}

/// The finest resolution: 2⁻⁵², below which an f64 near 1 has no bits.
pub const FINEST_RESOLUTION: f64 = f64::EPSILON;
/// The widest range any sum of up to 255 sites can hold at resolution 1.
pub const WIDEST_RANGE: f64 = 1e16;

impl FixedPoint {
    /// The encoding a job asks for: entries up to ±`range` (10⁶ if not
    /// given), kept to `resolution` or finer (the next power of two down;
    /// 2⁻³² if not given). Checked for itself here; whether its sum fits
    /// depends on the number of sites ([`FixedPoint::check_sum_of`]).
    pub fn declared(range: Option<f64>, resolution: Option<f64>) -> Result<Self, SecAggError> {
        let default = Self::default();
        let limit = range.unwrap_or(default.limit);
        if !(limit.is_finite() && limit > 0.0 && limit <= WIDEST_RANGE) {
            return Err(SecAggError::Invalid(format!(
                "a range of {limit}: it must be above 0 and at most {WIDEST_RANGE:e}"
            )));
        }
        let frac_bits = match resolution {
            None => default.frac_bits,
            Some(r) if r.is_finite() && (FINEST_RESOLUTION..=1.0).contains(&r) => {
                (-r.log2()).ceil() as u32
            }
            Some(r) => {
                return Err(SecAggError::Invalid(format!(
                    "a resolution of {r}: it must be from {FINEST_RESOLUTION:e} to 1"
                )))
            }
        };
        Ok(Self { frac_bits, limit })
    }

    /// Units per 1: 2^frac_bits.
    pub fn scale(&self) -> f64 {
        (self.frac_bits as f64).exp2()
    }

    /// Refuses an encoding whose sum over `n` inputs could overflow.
    pub fn check_sum_of(&self, n: usize) -> Result<(), SecAggError> {
        self.check_noisy_sum_of(n, 0.0)
    }

    /// Refuses an encoding whose sum over `n` inputs, each with noise of
    /// up to `noise` units an entry, could overflow.
    pub fn check_noisy_sum_of(&self, n: usize, noise: f64) -> Result<(), SecAggError> {
        let largest = (self.limit * self.scale() + noise) * n as f64;
        if !(self.limit.is_finite() && self.limit > 0.0)
            || self.frac_bits > 52
            || largest >= 2f64.powi(62)
        {
            return Err(SecAggError::Invalid(format!(
                "a sum over {n} sites of entries up to ±{:e} at a resolution of 2^-{} could \
                 overflow 64 bits: declare a smaller range or a coarser resolution",
                self.limit, self.frac_bits
            )));
        }
        Ok(())
    }

    /// `x` within ±`limit`: the nearest end of the range for a value
    /// beyond it, infinities included.
    pub fn clip(&self, x: f64) -> f64 {
        x.clamp(-self.limit, self.limit)
    }

    /// Whether `x` lies beyond the range (and is clipped).
    pub fn is_beyond(&self, x: f64) -> bool {
        x.abs() > self.limit
    }

    /// Encodes one vector, each entry clipped to ±`limit`. NaN has no
    /// place in a sum: it is refused, without saying where.
    pub fn encode(&self, values: &[f64]) -> Result<Vec<u64>, SecAggError> {
        let scale = self.scale();
        values
            .iter()
            .map(|x| {
                if x.is_nan() {
                    return Err(SecAggError::Invalid("an entry is not a number".into()));
                }
                Ok(((self.clip(*x) * scale).round() as i64) as u64)
            })
            .collect()
    }

    /// Decodes a sum.
    pub fn decode(&self, sum: &[u64]) -> Vec<f64> {
        let scale = self.scale();
        sum.iter().map(|v| (*v as i64) as f64 / scale).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_out_of_range_ones_are_clipped() {
        let fixed = FixedPoint::default();
        let encoded = fixed.encode(&[1.5, -2.25, 0.0]).unwrap();
        assert_eq!(fixed.decode(&encoded), [1.5, -2.25, 0.0]);
        let sum: Vec<u64> = vec![encoded[0].wrapping_add(encoded[1])];
        assert_eq!(fixed.decode(&sum), [-0.75]);
        let clipped = fixed.encode(&[f64::INFINITY, -2e6, 27641994.04]).unwrap();
        assert_eq!(fixed.decode(&clipped), [1e6, -1e6, 1e6]);
        let err = fixed.encode(&[0.0, f64::NAN]).unwrap_err().to_string();
        assert!(!err.contains('1') && err.contains("not a number"), "{err}");
        assert!(FixedPoint {
            frac_bits: 40,
            limit: 1e6
        }
        .check_sum_of(10)
        .is_err());
        assert!(FixedPoint::default().check_sum_of(255).is_ok());
    }

    /// Sums of squares of real columns (around 10⁹) need a range a job
    /// declares; a resolution becomes the power of two at or below it.
    #[test]
    fn a_declared_range_and_resolution_hold_real_statistics() {
        let fixed = FixedPoint::declared(Some(1e10), Some(1e-3)).unwrap();
        assert_eq!(fixed.frac_bits, 10);
        fixed.check_sum_of(255).unwrap();
        let encoded = fixed.encode(&[2.5e9, -1234.5678]).unwrap();
        let decoded = fixed.decode(&encoded);
        assert_eq!(decoded[0], 2.5e9);
        assert!((decoded[1] + 1234.5678).abs() < 1e-3, "{decoded:?}");
        assert!(fixed.is_beyond(2e10) && !fixed.is_beyond(-1e10));
        assert_eq!(
            FixedPoint::declared(None, None).unwrap(),
            FixedPoint::default()
        );
        assert_eq!(FixedPoint::declared(None, Some(1.0)).unwrap().frac_bits, 0);
        for (range, resolution) in [
            (Some(0.0), None),
            (Some(f64::INFINITY), None),
            (Some(-1.0), None),
            (Some(1e17), None),
            (None, Some(0.0)),
            (None, Some(2.0)),
            (None, Some(f64::NAN)),
        ] {
            assert!(
                FixedPoint::declared(range, resolution).is_err(),
                "{range:?} {resolution:?}"
            );
        }
        // Fine and wide at once does not fit 64 bits, and says what to do.
        let greedy = FixedPoint::declared(Some(1e10), Some(1e-10)).unwrap();
        let err = greedy.check_sum_of(3).unwrap_err().to_string();
        assert!(
            err.contains("smaller range or a coarser resolution"),
            "{err}"
        );
    }
}
