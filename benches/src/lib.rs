//! Helpers shared by the criterion benches and the `valuebench` binary: fixed-width keys, a
//! small seeded generator and a shuffle, so every measurement builds its workload the same way;
//! and [`kvbench`], the peer comparison harness behind the `kvbench` binary.

pub mod kvbench;

/// `key:` and 12 decimal digits, without allocating.
#[must_use]
pub fn key(i: u64) -> [u8; 16] {
    let mut k = *b"key:000000000000";
    let mut n = i;
    for digit in k.iter_mut().rev().take(12) {
        *digit = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
    }
    k
}

/// SplitMix64: cheap, seeded, enough to spread keys.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// The numbers `0..n` in an order drawn from `rng` (Fisher-Yates), for fills in random key order
/// and for picking a random subset of keys without repeats.
#[must_use]
pub fn shuffled(n: u64, rng: &mut Rng) -> Vec<u64> {
    let mut out: Vec<u64> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        out.swap(
            usize::try_from(i).unwrap_or(usize::MAX),
            usize::try_from(j).unwrap_or(usize::MAX),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_like_their_numbers() {
        assert_eq!(&key(42), b"key:000000000042");
        assert!(key(9) < key(10));
    }

    #[test]
    fn shuffled_is_a_permutation() {
        let mut order = shuffled(1000, &mut Rng(3));
        assert_ne!(order, (0..1000).collect::<Vec<_>>());
        order.sort_unstable();
        assert_eq!(order, (0..1000).collect::<Vec<_>>());
    }
}
