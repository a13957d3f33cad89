//! Release statistics of a real-time task: lateness (start minus programmed release) in a
//! log-linear histogram, its percentiles, and the deadline misses and overruns.
//!
//! The histogram is HdrHistogram's idea in a fixed array: values below 16 ns each have a bucket;
//! above, every power of two is split into 16 equal buckets, so a bucket is at most 1/16 of its
//! values wide and a percentile read from it (its bucket's upper edge) is never below the true
//! sample and at most 6.25% above it. 512 buckets reach 2^34 ns (17 s); larger values land in
//! the last bucket and `max` keeps them exactly. Hand-written because the histogram crates
//! (hdrhistogram) allocate, and rt-task has no allocator.

/// Sub-buckets per power of two: 2^SUB_BITS.
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// Buckets in all.
pub const BUCKETS: usize = 512;

/// The bucket of a value.
pub const fn bucket(value: u64) -> usize {
    if value < SUB as u64 {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = ((value >> shift) as usize) - SUB;
    let index = SUB + shift as usize * SUB + sub;
    if index < BUCKETS {
        index
    } else {
        BUCKETS - 1
    }
}

/// The largest value that falls into bucket `index`.
pub const fn bucket_upper(index: usize) -> u64 {
    if index < SUB {
        return index as u64;
    }
    let shift = ((index - SUB) / SUB) as u32;
    let sub = ((index - SUB) % SUB) as u64;
    ((SUB as u64 + sub) << shift) + (1u64 << shift) - 1
}

/// A task's release statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Releases {
    counts: [u32; BUCKETS],
    /// Releases recorded.
    pub releases: u64,
    /// Releases that completed after their deadline, and releases that never ran (skipped:
    /// `periodic` adds them).
    pub misses: u64,
    /// Releases that ran longer than their budget.
    pub overruns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    pub sum_ns: u64,
}

impl Default for Releases {
    fn default() -> Self {
        Releases { counts: [0; BUCKETS], releases: 0, misses: 0, overruns: 0, min_ns: u64::MAX, max_ns: 0, sum_ns: 0 }
    }
}

/// The summary `tzctl rt stats` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub releases: u64,
    pub misses: u64,
    pub overruns: u64,
    pub min_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub mean_ns: u64,
}

impl Releases {
    /// One release: its lateness, whether it completed by its deadline, whether it overran.
    pub fn record(&mut self, lateness_ns: u64, missed: bool, overran: bool) {
        let index = bucket(lateness_ns);
        self.counts[index] = self.counts[index].saturating_add(1);
        self.releases += 1;
        self.misses += u64::from(missed);
        self.overruns += u64::from(overran);
        self.min_ns = self.min_ns.min(lateness_ns);
        self.max_ns = self.max_ns.max(lateness_ns);
        self.sum_ns = self.sum_ns.saturating_add(lateness_ns);
    }

    /// The lateness at or below which `parts_per_million` of the releases fall (the upper edge
    /// of its bucket, at most `max`); 0 with no release.
    pub fn percentile(&self, parts_per_million: u32) -> u64 {
        let recorded: u64 = self.counts.iter().map(|&c| u64::from(c)).sum();
        if recorded == 0 {
            return 0;
        }
        let ppm = u128::from(parts_per_million.min(1_000_000));
        let rank = ((recorded as u128 * ppm).div_ceil(1_000_000)).max(1) as u64;
        let mut seen = 0u64;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += u64::from(count);
            if seen >= rank {
                // The last bucket also holds everything above its edge: only max is sure.
                if index == BUCKETS - 1 {
                    return self.max_ns;
                }
                return bucket_upper(index).min(self.max_ns);
            }
        }
        self.max_ns
    }

    pub fn summary(&self) -> Summary {
        Summary {
            releases: self.releases,
            misses: self.misses,
            overruns: self.overruns,
            min_ns: if self.releases == 0 { 0 } else { self.min_ns },
            p50_ns: self.percentile(500_000),
            p99_ns: self.percentile(990_000),
            p999_ns: self.percentile(999_000),
            max_ns: self.max_ns,
            mean_ns: self.sum_ns.checked_div(self.releases).unwrap_or(0),
        }
    }

    /// The histogram by powers of two: `out[k]` counts the releases with lateness in
    /// `[2^k, 2^(k+1))` ns (`out[0]` also the zeros); the last takes everything above.
    pub fn log2_histogram(&self, out: &mut [u32]) {
        out.iter_mut().for_each(|c| *c = 0);
        let Some(last) = out.len().checked_sub(1) else { return };
        for (index, &count) in self.counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            // Every value of a bucket has the same most significant bit.
            let upper = bucket_upper(index);
            let k = if upper == 0 { 0 } else { (63 - upper.leading_zeros()) as usize };
            out[k.min(last)] = out[k.min(last)].saturating_add(count);
        }
    }

    /// Forgets everything (a new measurement).
    pub fn reset(&mut self) {
        *self = Releases::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_tile_the_values() {
        // Contiguous and ordered: every bucket starts right after the previous one ends.
        for index in 1..BUCKETS {
            assert_eq!(bucket(bucket_upper(index - 1) + 1), index, "bucket {index}");
            assert_eq!(bucket(bucket_upper(index)), index);
        }
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(15), 15);
        assert_eq!(bucket(16), 16);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert!(bucket_upper(BUCKETS - 1) >= 1 << 34);
    }

    #[test]
    fn a_summary() {
        let mut r = Releases::default();
        assert_eq!(r.summary(), Summary::default());
        for lateness in 1..=1000u64 {
            r.record(lateness * 1000, lateness == 1000, false);
        }
        let s = r.summary();
        assert_eq!((s.releases, s.misses, s.overruns, s.min_ns, s.max_ns), (1000, 1, 0, 1000, 1_000_000));
        assert_eq!(s.mean_ns, 500_500);
        assert!((500_000..=500_000 + 500_000 / 16).contains(&s.p50_ns), "{s:?}");
        assert!((990_000..=1_000_000).contains(&s.p99_ns), "{s:?}");
        assert_eq!(r.percentile(1_000_000), 1_000_000, "p100 is the max");
        let mut log2 = [0u32; 32];
        r.log2_histogram(&mut log2);
        assert_eq!(log2.iter().sum::<u32>(), 1000);
        // 1 us in [2^9, 2^10), 2 us in [2^10, 2^11), 3 and 4 us in [2^11, 2^12), 525..=1000 us in
        // [2^19, 2^20).
        assert_eq!((log2[9], log2[10], log2[11], log2[19]), (1, 1, 2, 476));
        r.reset();
        assert_eq!(r.releases, 0);
    }

    proptest! {
        /// A percentile is never below the exact one and at most 1/16 above it.
        #[test]
        fn percentiles_are_within_a_bucket(mut samples in proptest::collection::vec(0u64..1 << 36, 1..400), ppm in 1u32..=1_000_000) {
            let mut r = Releases::default();
            for &s in &samples {
                r.record(s, false, false);
            }
            samples.sort_unstable();
            let rank = ((samples.len() as u128 * u128::from(ppm)).div_ceil(1_000_000)).max(1) as usize;
            let exact = samples[rank - 1];
            let got = r.percentile(ppm);
            prop_assert!(got >= exact, "{} < exact {}", got, exact);
            prop_assert!(got <= exact + exact / 16 + 1 || got == r.max_ns, "{} vs exact {}", got, exact);
        }
    }
}
