//! The bloom filter of a table: one bit array over all the table's user keys, so a point
//! read of an absent key usually skips the data block read.
//!
//! Layout (`docs/format/table.md`): `bits[n] num_probes:u8`. A key sets `num_probes` bits
//! chosen by double hashing of [`bloom_hash`]: with `h = bloom_hash(key)`,
//! `delta = h.rotate_left(32)`, probe `i` is bit `(h + i * delta) mod (8 * n)` (wrapping
//! 64-bit arithmetic), bit `b` being bit `b % 8` of byte `b / 8`. An empty bit array matches
//! every key: it is what a table with no keys, or built with 0 bits per key, stores.
//!
//! Invariants: no false negatives; with 10 bits per key about 0.8 % false positives. The hash
//! is part of the format: changing it needs a new format version.
//!
//! Thread safety: a [`BloomFilter`] is immutable; a [`BloomBuilder`] has one owner.
//!
//! Read next: `cache.rs`.

use std::path::Path;

use bytes::Bytes;

use crate::error::{Error, Result};

/// The most probes a filter may ask for; more is either damage or a useless filter.
const MAX_PROBES: u8 = 30;

/// A 64-bit hash of a key, stable across platforms and releases (it is stored on disk).
/// Each 8-byte little-endian word is mixed in with a multiply and shift; the length is mixed
/// in first so that keys differing only in trailing zero bytes differ; the result goes through
/// the MurmurHash3 finalizer so that every input bit affects the high and low halves.
#[must_use]
pub(crate) fn bloom_hash(key: &[u8]) -> u64 {
    const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
    const MULTIPLIER: u64 = 0xff51_afd7_ed55_8ccd;
    let mut h = SEED ^ (key.len() as u64).wrapping_mul(MULTIPLIER);
    for chunk in key.chunks(8) {
        // The word is the chunk read little-endian, zero-padded.
        let word = chunk
            .iter()
            .rev()
            .fold(0u64, |w, &b| (w << 8) | u64::from(b));
        h = (h ^ word).wrapping_mul(MULTIPLIER);
        h ^= h >> 29;
    }
    finalize(h)
}

fn finalize(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The bit positions a key with hash `h` sets or tests in a filter of `bits` bits.
fn probes(h: u64, num_probes: u8, bits: u64) -> impl Iterator<Item = u64> {
    let delta = h.rotate_left(32);
    (0..u64::from(num_probes)).map(move |i| h.wrapping_add(i.wrapping_mul(delta)) % bits)
}

/// Collects the hashes of a table's user keys and builds its filter.
#[derive(Debug)]
pub(crate) struct BloomBuilder {
    hashes: Vec<u64>,
    bits_per_key: u32,
}

impl BloomBuilder {
    /// A builder spending about `bits_per_key` bits per distinct key (0: no filtering).
    #[must_use]
    pub fn new(bits_per_key: u32) -> Self {
        Self {
            hashes: Vec::new(),
            bits_per_key,
        }
    }

    /// Adds a user key. The caller adds each distinct key once.
    pub fn add_key(&mut self, user_key: &[u8]) {
        if self.bits_per_key > 0 {
            self.hashes.push(bloom_hash(user_key));
        }
    }

    /// The size the filter block would have now.
    #[must_use]
    pub fn size_estimate_bytes(&self) -> usize {
        self.bit_array_bytes() + 1
    }

    fn bit_array_bytes(&self) -> usize {
        if self.hashes.is_empty() {
            return 0;
        }
        // At least 64 bits: tiny filters would otherwise have a high false-positive rate.
        let bits = (self.hashes.len() * self.bits_per_key as usize).max(64);
        bits.div_ceil(8)
    }

    /// The number of probes that minimises false positives: `bits_per_key * ln 2`, rounded.
    fn num_probes(&self) -> u8 {
        let probes = (u64::from(self.bits_per_key) * 69 + 50) / 100;
        u8::try_from(probes.clamp(1, u64::from(MAX_PROBES))).unwrap_or(MAX_PROBES)
    }

    /// The filter block's contents: the bit array, then the probe count.
    #[must_use]
    pub fn finish(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.bit_array_bytes()];
        let bits = out.len() as u64 * 8;
        let num_probes = self.num_probes();
        if bits > 0 {
            for &h in &self.hashes {
                for bit in probes(h, num_probes, bits) {
                    if let Some(byte) = usize::try_from(bit / 8).ok().and_then(|i| out.get_mut(i)) {
                        *byte |= 1 << (bit % 8);
                    }
                }
            }
        }
        out.push(num_probes);
        out
    }
}

/// A table's filter, read at open and kept in memory.
#[derive(Debug, Clone)]
pub(crate) struct BloomFilter {
    bits: Bytes,
    num_probes: u8,
}

impl BloomFilter {
    /// Decodes the contents of the filter block at `file_offset`.
    ///
    /// # Errors
    /// `Corruption` if the block is empty or the probe count is out of range.
    pub fn decode(mut contents: Bytes, path: &Path, file_offset: u64) -> Result<Self> {
        let Some(split) = contents.len().checked_sub(1) else {
            return Err(Error::corruption(path, file_offset, "filter block: empty"));
        };
        let num_probes = contents.get(split).copied().unwrap_or_default();
        if num_probes == 0 || num_probes > MAX_PROBES {
            let what = format!("filter block: bad probe count {num_probes}");
            return Err(Error::corruption(path, file_offset + split as u64, what));
        }
        contents.truncate(split);
        Ok(Self {
            bits: contents,
            num_probes,
        })
    }

    /// False only if `user_key` is certainly not in the table.
    #[must_use]
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        let bits = self.bits.len() as u64 * 8;
        if bits == 0 {
            return true;
        }
        probes(bloom_hash(user_key), self.num_probes, bits).all(|bit| {
            usize::try_from(bit / 8)
                .ok()
                .and_then(|i| self.bits.get(i))
                .is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter_of(keys: impl Iterator<Item = Vec<u8>>, bits_per_key: u32) -> BloomFilter {
        let mut b = BloomBuilder::new(bits_per_key);
        for k in keys {
            b.add_key(&k);
        }
        BloomFilter::decode(Bytes::from(b.finish()), Path::new("t"), 0).unwrap()
    }

    fn key(i: u32) -> Vec<u8> {
        format!("key{i:08}").into_bytes()
    }

    #[test]
    fn bloom_filter_has_no_false_negatives() {
        for n in [1, 7, 100, 10_000] {
            let f = filter_of((0..n).map(key), 10);
            assert!((0..n).all(|i| f.may_contain(&key(i))), "n = {n}");
        }
    }

    #[test]
    fn false_positive_rate_is_near_the_expected_one_percent() {
        let n = 10_000;
        let f = filter_of((0..n).map(key), 10);
        let probes = 100_000;
        let false_positives = (n..n + probes).filter(|&i| f.may_contain(&key(i))).count();
        let rate = false_positives as f64 / f64::from(probes);
        // Theory for 10 bits/key and 7 probes: 0.82 %.
        assert!(rate > 0.002 && rate < 0.015, "false-positive rate {rate}");
    }

    #[test]
    fn empty_filter_matches_everything() {
        let f = filter_of(std::iter::empty(), 10);
        assert!(f.may_contain(b"anything"));
        let f = filter_of((0..10).map(key), 0);
        assert!(f.may_contain(b"anything"));
    }

    #[test]
    fn hash_is_stable_and_sensitive_to_trailing_zeros() {
        assert_eq!(bloom_hash(b""), bloom_hash(b""));
        assert_ne!(bloom_hash(b"a"), bloom_hash(b"a\0"));
        assert_ne!(bloom_hash(b"abcdefgh"), bloom_hash(b"abcdefgh\0"));
    }

    #[test]
    fn bad_probe_counts_are_corruption() {
        for bad in [vec![], vec![0xff, 0], vec![0xff, 31]] {
            let err = BloomFilter::decode(Bytes::from(bad), Path::new("t"), 0).unwrap_err();
            assert!(err.is_corruption());
        }
    }
}
