//! Fixed point in Z/2⁶⁴: a real number x becomes round(x·2^f) as a two's
//! complement u64, so sums wrap exactly as integers do and the masks, added
//! mod 2⁶⁴, leave no trace of the encoding. Values beyond ±`limit`
//! (infinities too) are clipped to it before they are encoded: refusing
//! them would tell the master that a site's value was out of range, and
//! an error that named it would tell the value. NaN is refused.

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

impl FixedPoint {
    fn scale(&self) -> f64 {
        (self.frac_bits as f64).exp2()
    }

    /// Refuses an encoding whose sum over `n` inputs could overflow.
    pub fn check_sum_of(&self, n: usize) -> Result<(), SecAggError> {
        let largest = self.limit * self.scale() * n as f64;
        if !(self.limit.is_finite() && self.limit > 0.0)
            || self.frac_bits > 52
            || largest >= 2f64.powi(62)
        {
            return Err(SecAggError::Invalid(format!(
                "{n} entries of up to ±{} at 2^-{} resolution could overflow a 64-bit sum",
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
}
