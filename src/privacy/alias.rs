//! Walker's alias method (Walker 1977, in Vose's construction, 1991) over
//! integer weights: index i is picked with probability exactly
//! weight_i / 2^[`TOTAL_BITS`], from one random word and with no loop or
//! search, so that a sampler can pick one of hundreds of buckets in a few
//! nanoseconds and still be exact.
//!
//! The table is built in integers: there are 2^k columns, each holding
//! 2^(TOTAL_BITS − k) units, split between its own index (below its
//! threshold) and one alias. A draw takes k bits for the column and
//! TOTAL_BITS − k bits for the place in it.

/// The weights add up to 2 to this power.
pub const TOTAL_BITS: u32 = 52;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasTable {
    column_bits: u32,
    /// Per column: the units below which the column picks its own index,
    /// and the index it picks above.
    columns: Vec<(u64, u32)>,
}

impl AliasTable {
    /// The table for `weights`, which must add up to exactly
    /// 2^[`TOTAL_BITS`] and be at most 2^16 in number.
    pub fn new(weights: &[u64]) -> Self {
        assert!(!weights.is_empty() && weights.len() <= 1 << 16);
        let total: u128 = weights.iter().map(|w| *w as u128).sum();
        assert_eq!(total, 1u128 << TOTAL_BITS, "the weights must add up");
        let column_bits = weights.len().next_power_of_two().trailing_zeros();
        let capacity = 1u64 << (TOTAL_BITS - column_bits);
        let columns_count = 1usize << column_bits;
        let mut left: Vec<u64> = (0..columns_count)
            .map(|i| weights.get(i).copied().unwrap_or(0))
            .collect();
        let mut columns = vec![(capacity, 0u32); columns_count];
        for (i, column) in columns.iter_mut().enumerate() {
            column.1 = i as u32;
        }
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..columns_count).partition(|i| left[*i] < capacity);
        // Each small column is topped up from a large one, which keeps
        // what is left of it: every step settles one column, in integers.
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            columns[s] = (left[s], l as u32);
            left[l] -= capacity - left[s];
            if left[l] < capacity {
                large.pop();
                small.push(l);
            }
        }
        // What remains holds exactly a column each (the units add up), and
        // keeps the full threshold set above.
        Self {
            column_bits,
            columns,
        }
    }

    /// The index the low [`TOTAL_BITS`] bits of `word` pick.
    pub fn pick(&self, word: u64) -> usize {
        let column = (word & ((1 << self.column_bits) - 1)) as usize;
        let place = (word >> self.column_bits) & ((1 << (TOTAL_BITS - self.column_bits)) - 1);
        let (threshold, alias) = self.columns[column];
        if place < threshold {
            column
        } else {
            alias as usize
        }
    }

    /// The units of 2^TOTAL_BITS each index is picked with, read back from
    /// the table: for the tests.
    #[cfg(test)]
    fn masses(&self, count: usize) -> Vec<u64> {
        let capacity = 1u64 << (TOTAL_BITS - self.column_bits);
        let mut masses = vec![0u64; count.max(self.columns.len())];
        for (column, (threshold, alias)) in self.columns.iter().enumerate() {
            masses[column] += threshold;
            masses[*alias as usize] += capacity - threshold;
        }
        masses
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, RngExt, SeedableRng};

    /// Weights that add up, from arbitrary ones: the rest goes to the first.
    fn adding_up(raw: &[u64]) -> Vec<u64> {
        let mut weights = raw.to_vec();
        let sum: u64 = weights.iter().sum();
        weights[0] += (1u64 << TOTAL_BITS) - sum;
        weights
    }

    #[test]
    fn every_index_has_exactly_its_weight() {
        let mut rng = StdRng::seed_from_u64(3);
        for count in [1usize, 2, 3, 7, 64, 100, 511, 512, 513] {
            let raw: Vec<u64> = (0..count)
                .map(|_| rng.random_range(0..(1u64 << 40)))
                .collect();
            let weights = adding_up(&raw);
            let table = AliasTable::new(&weights);
            let masses = table.masses(count);
            assert_eq!(&masses[..count], &weights[..], "{count} weights");
            assert!(masses[count..].iter().all(|m| *m == 0));
        }
        // Zero weights are never picked; a weight of one unit is kept.
        let weights = adding_up(&[0, 1, 0, 5, 0]);
        let masses = AliasTable::new(&weights).masses(5);
        assert_eq!(masses[..5], weights[..]);
    }

    #[test]
    fn picks_follow_the_weights() {
        let quarter = 1u64 << (TOTAL_BITS - 2);
        let table = AliasTable::new(&[2 * quarter, quarter, quarter, 0]);
        let mut rng = StdRng::seed_from_u64(4);
        let mut counts = [0u32; 4];
        let draws = 100_000;
        for _ in 0..draws {
            counts[table.pick(rng.next_u64())] += 1;
        }
        assert_eq!(counts[3], 0);
        for (count, p) in counts.iter().zip([0.5, 0.25, 0.25]) {
            let sd = (draws as f64 * p * (1.0 - p)).sqrt();
            assert!(
                (*count as f64 - p * draws as f64).abs() < 5.0 * sd,
                "{counts:?}"
            );
        }
    }
}
