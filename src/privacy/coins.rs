//! The coin flips of the discrete Gaussian sampler, read a few bits at a
//! time from one random word instead of a word each.
//!
//! Most of a draw's random decisions are a fair coin (the sign) or a
//! Bernoulli(1/k) for a small k (the steps of Bernoulli(exp(−γ))). Drawn
//! as a bounded integer, each takes a whole 64-bit word of the CSPRNG;
//! read as 8-bit digits against the binary expansion of 1/k, each takes
//! 8 bits almost always, so one word serves eight decisions. Exact: a
//! uniform U in [0, 1) is compared with 1/k digit by digit, and the
//! answer is U < 1/k as soon as a digit differs (a tie, probability
//! 2⁻⁸, reads the next digit).

use rand::Rng;

/// Bits per digit of the comparison.
const DIGIT_BITS: u32 = 8;

/// The first digit of 1/k and what remains of it (2⁸ = digit·k + rest),
/// for the k that come up nearly always.
const FIRST_DIGITS: [(u64, u64); 17] = first_digits();

const fn first_digits() -> [(u64, u64); 17] {
    let mut table = [(0, 0); 17];
    let mut k = 1;
    while k < 17 {
        table[k] = ((1 << DIGIT_BITS) / k as u64, (1 << DIGIT_BITS) % k as u64);
        k += 1;
    }
    table
}

/// ⌊2⁶⁴/k!⌋ and 2⁶⁴ mod k! for k = 2..=20 (20! is the last below 2⁶⁴):
/// a uniform U in [0, 1) is below 1/k! when its first 64 bits are below
/// the first, and on a tie when the rest is below (2⁶⁴ mod k!)/k!.
const FACTORIALS: usize = 20;
const FACTORIAL_THRESHOLDS: [(u64, u64, u64); FACTORIALS + 1] = factorial_thresholds();

const fn factorial_thresholds() -> [(u64, u64, u64); FACTORIALS + 1] {
    let mut table = [(0, 0, 0); FACTORIALS + 1];
    let mut factorial: u128 = 1;
    let mut k = 2;
    while k <= FACTORIALS {
        factorial *= k as u128;
        let whole = (1u128 << 64) / factorial;
        let rest = (1u128 << 64) % factorial;
        table[k] = (whole as u64, rest as u64, factorial as u64);
        k += 1;
    }
    table
}

/// A random source that hands out bits from a word it keeps.
pub struct Coins<'r, R> {
    rng: &'r mut R,
    word: u64,
    left: u32,
}

impl<'r, R: Rng> Coins<'r, R> {
    pub fn new(rng: &'r mut R) -> Self {
        Self {
            rng,
            word: 0,
            left: 0,
        }
    }

    /// The random source itself, for a whole uniform draw.
    pub fn rng(&mut self) -> &mut R {
        self.rng
    }

    /// `count` (at most 64) fresh uniform bits. Bits left over when a
    /// word runs short are dropped, never reused.
    fn bits(&mut self, count: u32) -> u64 {
        if self.left < count {
            self.word = self.rng.next_u64();
            self.left = 64;
        }
        let bits = if count == 64 {
            self.word
        } else {
            self.word & ((1 << count) - 1)
        };
        self.word = self.word.checked_shr(count).unwrap_or(0);
        self.left -= count;
        bits
    }

    /// A fair coin.
    pub fn flip(&mut self) -> bool {
        self.bits(1) == 1
    }

    /// Bernoulli(exp(−1)), exactly, from one word almost always.
    ///
    /// Algorithm 1 of Canonne, Kamath and Steinke with γ = 1 runs steps
    /// k = 1, 2, … that each go on with probability 1/k, and answers
    /// whether the first step that stops is odd. It has gone past step k
    /// with probability 1/k!, so one uniform U tells how far it goes: past
    /// every k with U < 1/k!. Past step 20 (probability 1/20!, about
    /// 2⁻⁶¹) the steps go on one coin at a time, as the algorithm does.
    pub fn exp_minus_one(&mut self) -> bool {
        let word = self.rng.next_u64();
        // Step 1 always goes on; count the steps from 2 that U goes past
        // (the thresholds fall, so the first one U is not below ends it).
        let mut past = 1;
        while past < FACTORIALS && word < FACTORIAL_THRESHOLDS[past + 1].0 {
            past += 1;
        }
        if let Some((whole, rest, factorial)) = FACTORIAL_THRESHOLDS.get(past + 1) {
            // A tie with the next threshold: U's next bits decide.
            if word == *whole && self.below_ratio(*rest as u128, *factorial as u128) {
                past += 1;
            }
        }
        if past == FACTORIALS {
            while self.one_in(past as u64 + 1) {
                past += 1;
            }
        }
        // The first step that stops is past + 1.
        past % 2 == 0
    }

    /// Bernoulli(`numerator`/`denominator`) for a ratio in [0, 1], by
    /// the digits of the ratio: the slow path of rare ties.
    fn below_ratio(&mut self, numerator: u128, denominator: u128) -> bool {
        let mut rest = numerator;
        loop {
            let shifted = rest << DIGIT_BITS;
            let digit = (shifted / denominator) as u64;
            rest = shifted % denominator;
            let drawn = self.bits(DIGIT_BITS);
            if drawn != digit {
                return drawn < digit;
            }
            if rest == 0 {
                return false;
            }
        }
    }

    /// Bernoulli(1/k) for k ≥ 1, exactly.
    pub fn one_in(&mut self, k: u64) -> bool {
        debug_assert!(k >= 1);
        if k == 1 {
            return true;
        }
        // k past 2⁵⁶ would overflow the next digit's numerator; 1/k is
        // then below 2⁻⁵⁶, and the exp(−γ) steps never get there.
        let k = k.min(1 << 56);
        let (mut digit, mut rest) = match FIRST_DIGITS.get(k as usize) {
            Some(first) => *first,
            None => ((1 << DIGIT_BITS) / k, (1 << DIGIT_BITS) % k),
        };
        loop {
            let drawn = self.bits(DIGIT_BITS);
            if drawn != digit {
                return drawn < digit;
            }
            if rest == 0 {
                // U equals 1/k in every digit so far and 1/k has no more:
                // U ≥ 1/k.
                return false;
            }
            let numerator = rest << DIGIT_BITS;
            digit = numerator / k;
            rest = numerator % k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn one_in_k_has_probability_one_over_k() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut coins = Coins::new(&mut rng);
        let draws = 400_000u32;
        for k in [1u64, 2, 3, 7, 16, 17, 255, 256, 257, 1000] {
            let hits = (0..draws).filter(|_| coins.one_in(k)).count() as f64;
            let p = 1.0 / k as f64;
            let expected = p * draws as f64;
            // Five standard deviations of a binomial count.
            let sd = (draws as f64 * p * (1.0 - p)).sqrt();
            assert!(
                (hits - expected).abs() <= 5.0 * sd + 1e-9,
                "k = {k}: {hits} hits, {expected} expected"
            );
        }
    }

    #[test]
    fn exp_minus_one_has_its_probability_and_its_thresholds_are_right() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut coins = Coins::new(&mut rng);
        let draws = 1_000_000;
        let hits = (0..draws).filter(|_| coins.exp_minus_one()).count() as f64;
        let p = (-1f64).exp();
        let sd = (draws as f64 * p * (1.0 - p)).sqrt();
        assert!((hits - p * draws as f64).abs() < 5.0 * sd, "{hits}");
        // The table against the factorials, and a tie that the rest of U
        // decides: 2⁶⁴ = whole·k! + rest.
        for (k, (whole, rest, factorial)) in FACTORIAL_THRESHOLDS.iter().enumerate().skip(2) {
            let expected: u128 = (1..=k as u128).product();
            assert_eq!(*factorial as u128, expected);
            assert_eq!(*whole as u128 * expected + *rest as u128, 1u128 << 64);
        }
        // The slow path: a ratio read digit by digit.
        let hits = (0..200_000).filter(|_| coins.below_ratio(1, 3)).count() as f64;
        assert!((hits / 200_000.0 - 1.0 / 3.0).abs() < 0.005, "{hits}");
    }

    #[test]
    fn a_flip_is_fair_and_bits_are_not_reused() {
        let mut rng = StdRng::seed_from_u64(8);
        let mut coins = Coins::new(&mut rng);
        let draws = 200_000;
        let heads = (0..draws).filter(|_| coins.flip()).count() as f64;
        assert!((heads / draws as f64 - 0.5).abs() < 5.0 * (0.25 / draws as f64).sqrt());
        // Sixty-four flips use one word; the next flip takes a new one.
        let mut counter = Counting(0);
        let mut coins = Coins::new(&mut counter);
        for _ in 0..64 {
            coins.flip();
        }
        assert_eq!(coins.rng().0, 1);
        coins.flip();
        assert_eq!(coins.rng().0, 2);
    }

    /// A source that counts the words taken from it.
    struct Counting(u64);

    impl rand::TryRng for Counting {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(self.try_next_u64()? as u32)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            self.0 += 1;
            Ok(self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            dst.fill(0);
            Ok(())
        }
    }
}
