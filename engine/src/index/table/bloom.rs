//! The bloom filter of a table: one filter over all the table's user keys, so a point read of
//! an absent key usually skips the data block read.
//!
//! Layout (`docs/format/table.md`): `bits[n] num_probes:u8`. A key sets `num_probes` bits
//! chosen from [`bloom_hash`]; bit `b` of the array is bit `b % 8` of byte `b / 8`. Where the
//! probes go depends on the table's format version ([`FilterLayout`]):
//!
//! - **Flat** (version 1): probe `i` of hash `h` is bit `(h + i * h.rotate_left(32)) mod (8 *
//!   n)` (wrapping 64-bit arithmetic), anywhere in the array: up to `num_probes` cache misses
//!   per lookup, and a 64-bit division per probe.
//! - **Blocked** (version 2): the array is lines of 64 bytes, and all of a key's probes fall in
//!   one line, `((h >> 32) * lines) >> 32`. With `x` the low 32 bits of `h`, a probe takes
//!   bit `x >> 23` of the line, then `x = x * 0x9e3779b9` (wrapping). One cache miss per
//!   lookup, which matters most for the tables a writer has just made, whose filters are
//!   not yet cached; the price is a slightly higher false-positive rate (1 % against 0.8 %
//!   at 10 bits per key).
//!
//! An empty bit array matches every key: it is what a table with no keys, or built with 0
//! bits per key, stores.
//!
//! Invariants: no false negatives. The hash and the probe rules are part of the format:
//! changing either needs a new format version.
//!
//! Thread safety: a [`BloomFilter`] is immutable; a [`BloomBuilder`] has one owner.
//!
//! Read next: `cache.rs`.

use std::path::Path;
use std::sync::Arc;

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
        h = (h ^ le_word(chunk)).wrapping_mul(MULTIPLIER);
        h ^= h >> 29;
    }
    finalize(h)
}

/// Up to 8 bytes read as a little-endian word, zero-padded.
fn le_word(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |w, &b| (w << 8) | u64::from(b))
}

fn finalize(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Bytes of a line of a blocked filter: one cache line.
const LINE_BYTES: usize = 64;
/// Bits of a line of a blocked filter.
const LINE_BITS: u64 = 8 * LINE_BYTES as u64;
/// The multiplier that moves a blocked filter's probe state on: the golden ratio's 32-bit
/// fraction, odd, so every step is a bijection and the top bits stay well mixed.
const PROBE_STEP: u32 = 0x9e37_79b9;

/// Where a filter puts a key's probes: a property of the table's format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterLayout {
    /// Anywhere in the bit array (format version 1).
    Flat,
    /// All in one 64-byte line (format version 2).
    Blocked,
}

/// The bit positions a key with hash `h` sets or tests in a flat filter of `bits` bits.
fn flat_probes(h: u64, num_probes: u8, bits: u64) -> impl Iterator<Item = u64> {
    let delta = h.rotate_left(32);
    (0..u64::from(num_probes)).map(move |i| h.wrapping_add(i.wrapping_mul(delta)) % bits)
}

/// The line of a blocked filter of `lines` lines that a key with hash `h` uses: the hash's
/// high half scaled to `0..lines`. `lines` is below 2^32 (a filter block is under
/// `MAX_BLOCK_SIZE_BYTES`), so the product fits.
fn line_of(h: u64, lines: usize) -> usize {
    let scaled = ((h >> 32) * lines as u64) >> 32;
    usize::try_from(scaled).unwrap_or(0)
}

/// The bit positions (below [`LINE_BITS`]) a key with hash `h` sets or tests in its line.
fn line_probes(h: u64, num_probes: u8) -> impl Iterator<Item = u64> {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the low half of the hash seeds the probes; the high half picked the line"
    )]
    let mut x = h as u32;
    (0..num_probes).map(move |_| {
        let bit = u64::from(x >> 23);
        x = x.wrapping_mul(PROBE_STEP);
        bit
    })
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

    /// The size the filter block would have now (in the blocked layout, the larger).
    #[must_use]
    pub fn size_estimate_bytes(&self) -> usize {
        self.bit_array_bytes(FilterLayout::Blocked) + 1
    }

    fn bit_array_bytes(&self, layout: FilterLayout) -> usize {
        if self.hashes.is_empty() {
            return 0;
        }
        // At least 64 bits: tiny filters would otherwise have a high false-positive rate.
        let bits = (self.hashes.len() * self.bits_per_key as usize).max(64);
        match layout {
            FilterLayout::Flat => bits.div_ceil(8),
            FilterLayout::Blocked => bits.div_ceil(LINE_BITS as usize) * LINE_BYTES,
        }
    }

    /// The number of probes that minimises false positives: `bits_per_key * ln 2`, rounded.
    fn num_probes(&self) -> u8 {
        let probes = (u64::from(self.bits_per_key) * 69 + 50) / 100;
        u8::try_from(probes.clamp(1, u64::from(MAX_PROBES))).unwrap_or(MAX_PROBES)
    }

    /// The filter block's contents in `layout`: the bit array, then the probe count.
    #[must_use]
    pub fn finish(&self, layout: FilterLayout) -> Vec<u8> {
        let mut out = vec![0u8; self.bit_array_bytes(layout)];
        let num_probes = self.num_probes();
        let mut set = |bit: u64| {
            if let Some(byte) = usize::try_from(bit / 8).ok().and_then(|i| out.get_mut(i)) {
                *byte |= 1 << (bit % 8);
            }
        };
        match layout {
            FilterLayout::Flat => {
                let bits = self.bit_array_bytes(layout) as u64 * 8;
                if bits > 0 {
                    for &h in &self.hashes {
                        flat_probes(h, num_probes, bits).for_each(&mut set);
                    }
                }
            }
            FilterLayout::Blocked => {
                let lines = self.bit_array_bytes(layout) / LINE_BYTES;
                for &h in &self.hashes {
                    let first = line_of(h, lines) as u64 * LINE_BITS;
                    line_probes(h, num_probes).for_each(|bit| set(first + bit));
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
    bits: Bits,
    num_probes: u8,
}

#[derive(Debug, Clone)]
enum Bits {
    Flat(Bytes),
    /// Copied out of the block into memory aligned to cache lines, so that a lookup touches
    /// one line and not two.
    Blocked(Arc<[Line]>),
}

/// One line of a blocked filter: bit `b` is bit `b % 64` of word `b / 64`, which is where
/// the little-endian words put bit `b % 8` of byte `b / 8`.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([u64; LINE_BYTES / 8]);

impl Line {
    fn has(&self, bit: u64) -> bool {
        usize::try_from(bit / 64)
            .ok()
            .and_then(|w| self.0.get(w))
            .is_some_and(|word| word & (1 << (bit % 64)) != 0)
    }
}

impl BloomFilter {
    /// Decodes the contents of the filter block at `file_offset`, laid out as `layout`.
    ///
    /// # Errors
    /// `Corruption` if the block is empty, the probe count is out of range, or a blocked
    /// filter's bit array is not whole lines.
    pub fn decode(
        mut contents: Bytes,
        layout: FilterLayout,
        path: &Path,
        file_offset: u64,
    ) -> Result<Self> {
        let Some(split) = contents.len().checked_sub(1) else {
            return Err(Error::corruption(path, file_offset, "filter block: empty"));
        };
        let num_probes = contents.get(split).copied().unwrap_or_default();
        if num_probes == 0 || num_probes > MAX_PROBES {
            let what = format!("filter block: bad probe count {num_probes}");
            return Err(Error::corruption(path, file_offset + split as u64, what));
        }
        contents.truncate(split);
        let bits = match layout {
            FilterLayout::Flat => Bits::Flat(contents),
            FilterLayout::Blocked => {
                if !contents.len().is_multiple_of(LINE_BYTES) {
                    let what = format!(
                        "filter block: {} bytes of bits are not whole lines of {LINE_BYTES}",
                        contents.len()
                    );
                    return Err(Error::corruption(path, file_offset, what));
                }
                Bits::Blocked(
                    contents
                        .chunks_exact(LINE_BYTES)
                        .map(|chunk| {
                            let mut line = Line::default();
                            for (word, bytes) in line.0.iter_mut().zip(chunk.chunks_exact(8)) {
                                *word = le_word(bytes);
                            }
                            line
                        })
                        .collect(),
                )
            }
        };
        Ok(Self { bits, num_probes })
    }

    /// False only if `user_key` is certainly not in the table.
    #[must_use]
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        self.may_contain_hash(bloom_hash(user_key))
    }

    /// [`Self::may_contain`] for the key whose [`bloom_hash`] is `h`: a read that asks many
    /// filters hashes its key once.
    #[must_use]
    pub fn may_contain_hash(&self, h: u64) -> bool {
        match &self.bits {
            Bits::Flat(bytes) => {
                let bits = bytes.len() as u64 * 8;
                bits == 0
                    || flat_probes(h, self.num_probes, bits).all(|bit| {
                        usize::try_from(bit / 8)
                            .ok()
                            .and_then(|i| bytes.get(i))
                            .is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
                    })
            }
            Bits::Blocked(lines) => lines
                .get(line_of(h, lines.len()))
                .is_none_or(|line| line_probes(h, self.num_probes).all(|bit| line.has(bit))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUTS: [FilterLayout; 2] = [FilterLayout::Flat, FilterLayout::Blocked];

    fn filter_of(
        keys: impl Iterator<Item = Vec<u8>>,
        bits_per_key: u32,
        layout: FilterLayout,
    ) -> BloomFilter {
        let mut b = BloomBuilder::new(bits_per_key);
        for k in keys {
            b.add_key(&k);
        }
        BloomFilter::decode(Bytes::from(b.finish(layout)), layout, Path::new("t"), 0).unwrap()
    }

    fn key(i: u32) -> Vec<u8> {
        format!("key{i:08}").into_bytes()
    }

    #[test]
    fn bloom_filter_has_no_false_negatives() {
        for layout in LAYOUTS {
            for n in [1, 7, 100, 10_000] {
                let f = filter_of((0..n).map(key), 10, layout);
                assert!(
                    (0..n).all(|i| f.may_contain(&key(i))),
                    "{layout:?}, n = {n}"
                );
            }
        }
    }

    #[test]
    fn false_positive_rate_is_near_the_expected_one_percent() {
        // Theory for 10 bits/key and 7 probes: 0.82 % flat; a little more blocked, as lines
        // fill unevenly.
        for (layout, below) in [(FilterLayout::Flat, 0.012), (FilterLayout::Blocked, 0.015)] {
            let n = 10_000;
            let f = filter_of((0..n).map(key), 10, layout);
            let probes = 100_000;
            let false_positives = (n..n + probes).filter(|&i| f.may_contain(&key(i))).count();
            let rate = false_positives as f64 / f64::from(probes);
            assert!(rate > 0.002 && rate < below, "{layout:?}: rate {rate}");
        }
    }

    /// Every probe of a key lands in one line, the one its hash picks; lines are used evenly.
    #[test]
    fn a_blocked_filter_keeps_each_key_in_one_line() {
        let n = 4096;
        let mut b = BloomBuilder::new(10);
        b.add_key(&key(0));
        let one = b.finish(FilterLayout::Blocked);
        let set: Vec<usize> = (0..one.len() - 1)
            .filter(|&byte| one[byte] != 0)
            .map(|byte| byte / LINE_BYTES)
            .collect();
        assert!(
            !set.is_empty() && set.iter().all(|&l| l == set[0]),
            "{set:?}"
        );
        let lines = n as usize * 10 / 512;
        let mut per_line = vec![0u32; lines];
        for i in 0..n {
            per_line[line_of(bloom_hash(&key(i)), lines)] += 1;
        }
        // 51 keys a line on average; a line of none or of twice that means a skewed mapping.
        assert!(
            per_line.iter().all(|&c| (15..110).contains(&c)),
            "{per_line:?}"
        );
    }

    #[test]
    fn blocked_lines_are_cache_line_aligned() {
        let f = filter_of((0..1000).map(key), 10, FilterLayout::Blocked);
        let Bits::Blocked(lines) = &f.bits else {
            panic!("not blocked");
        };
        assert_eq!(lines.len(), 1000 * 10 / 512 + 1);
        assert_eq!(lines.as_ptr() as usize % LINE_BYTES, 0);
    }

    #[test]
    fn empty_filter_matches_everything() {
        for layout in LAYOUTS {
            let f = filter_of(std::iter::empty(), 10, layout);
            assert!(f.may_contain(b"anything"));
            let f = filter_of((0..10).map(key), 0, layout);
            assert!(f.may_contain(b"anything"));
        }
    }

    #[test]
    fn hash_is_stable_and_sensitive_to_trailing_zeros() {
        assert_eq!(bloom_hash(b""), bloom_hash(b""));
        assert_ne!(bloom_hash(b"a"), bloom_hash(b"a\0"));
        assert_ne!(bloom_hash(b"abcdefgh"), bloom_hash(b"abcdefgh\0"));
    }

    #[test]
    fn bad_probe_counts_are_corruption() {
        for layout in LAYOUTS {
            for bad in [vec![], vec![0xff, 0], vec![0xff, 31]] {
                let err =
                    BloomFilter::decode(Bytes::from(bad), layout, Path::new("t"), 0).unwrap_err();
                assert!(err.is_corruption());
            }
        }
    }

    #[test]
    fn a_blocked_filter_of_part_of_a_line_is_corruption() {
        let mut contents = vec![0xffu8; LINE_BYTES + 8];
        contents.push(7);
        let err = BloomFilter::decode(
            Bytes::from(contents),
            FilterLayout::Blocked,
            Path::new("t"),
            0,
        )
        .unwrap_err();
        assert!(err.to_string().contains("whole lines"), "{err}");
    }
}
