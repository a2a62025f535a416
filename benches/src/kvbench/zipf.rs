//! YCSB's key choosers: a Zipfian generator (Gray et al., "Quickly generating billion-record
//! synthetic databases", SIGMOD 1994, as YCSB's `ZipfianGenerator` implements it), its
//! scrambled form (`ScrambledZipfianGenerator`: ranks hashed with FNV-1a so the hot keys are
//! spread over the key space) and the "latest" form of workload D (`SkewedLatestGenerator`:
//! rank 0 is the newest key).

use crate::Rng;

/// YCSB's default skew.
pub const YCSB_THETA: f64 = 0.99;

/// Draws ranks in `0..n` with `P(rank) ∝ 1 / (rank + 1)^theta`.
#[derive(Debug, Clone)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zeta_n: f64,
    eta: f64,
}

impl Zipfian {
    /// A generator over `0..n` (`n` at least 1) with skew `theta` in `(0, 1)`. Computing
    /// `zeta(n)` takes `O(n)`: about 10 ms per million items.
    #[must_use]
    pub fn new(n: u64, theta: f64) -> Self {
        let n = n.max(1);
        let zeta = |count: u64| {
            (1..=count)
                .map(|i| 1.0 / (i as f64).powf(theta))
                .sum::<f64>()
        };
        let zeta_n = zeta(n);
        let zeta_2 = zeta(2.min(n));
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n);
        Self {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta_n,
            eta,
        }
    }

    /// The next rank: 0 is the most frequent.
    pub fn next(&self, rng: &mut Rng) -> u64 {
        let u = unit(rng);
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        let rank = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.n - 1)
    }

    /// The next item of YCSB's scrambled Zipfian: a rank hashed onto `0..items`, so popular
    /// items are scattered instead of clustered at the start of the key space.
    pub fn next_scrambled(&self, rng: &mut Rng, items: u64) -> u64 {
        fnv1a(self.next(rng)) % items.max(1)
    }
}

/// A uniform number in `[0, 1)` with 53 random bits.
fn unit(rng: &mut Rng) -> f64 {
    (rng.below(1 << 53) as f64) / (1u64 << 53) as f64
}

/// FNV-1a of the eight little-endian bytes of `v`, as YCSB's `Utils.fnvhash64`.
fn fnv1a(v: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in v.to_le_bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ranks 0 and 1 are drawn exactly; larger ranks by Gray et al.'s continuous approximation,
    /// which YCSB shares: checked on the mass of ranges of ranks rather than single ranks.
    #[test]
    fn ranks_follow_the_zipf_law_within_a_few_percent() {
        let n = 10_000;
        let z = Zipfian::new(n, YCSB_THETA);
        let mut rng = Rng(1);
        let draws = 400_000;
        let mut ranks: Vec<u64> = (0..draws).map(|_| z.next(&mut rng)).collect();
        assert!(ranks.iter().all(|&r| r < n));
        ranks.sort_unstable();
        let law = |r: u64| 1.0 / ((r + 1) as f64).powf(YCSB_THETA) / z.zeta_n;
        for (lo, hi) in [(0, 1), (1, 2), (0, 100), (100, 1000), (1000, n)] {
            let want: f64 = (lo..hi).map(law).sum();
            let got =
                ranks.iter().filter(|&&r| (lo..hi).contains(&r)).count() as f64 / draws as f64;
            assert!(
                (got - want).abs() < want * 0.05,
                "ranks {lo}..{hi}: frequency {got:.4}, Zipf law {want:.4}"
            );
        }
    }

    #[test]
    fn scrambling_spreads_the_hot_ranks_and_stays_in_range() {
        let z = Zipfian::new(1000, YCSB_THETA);
        let mut rng = Rng(2);
        let picks: Vec<u64> = (0..10_000)
            .map(|_| z.next_scrambled(&mut rng, 1000))
            .collect();
        assert!(picks.iter().all(|&p| p < 1000));
        // The hottest rank is not item 0: the hash moved it.
        assert_ne!(fnv1a(0) % 1000, 0);
    }
}
