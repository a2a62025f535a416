//! What kvbench writes and how it checks what it reads back.
//!
//! Keys are [`crate::key`]: `key:` and 12 decimal digits, so key order is number order. A value
//! of key `i` written for the `g`-th time ("generation" `g`) is
//!
//! ```text
//! [i: u64 LE][g: u32 LE][length: u32 LE][payload: length - 16 bytes]
//! ```
//!
//! where the payload is a window of a fixed random pattern starting at an offset drawn from
//! `(i, g)`. Values are thus incompressible, cheap to make (one copy) and self-checking: a value
//! read back is checked against its key, its length and its payload (one compare), and against
//! the generation the workload expects when it knows it. [`Expected`] tracks, per key, which
//! generation is live or that the key is deleted.

use super::{Result, error};
use crate::Rng;

/// Bytes of the header before the payload.
pub const HEADER_BYTES: usize = 16;

/// The smallest value size: a header and no payload.
pub const MIN_VALUE_BYTES: usize = HEADER_BYTES;

/// Payload windows start at offsets below this; the pattern is this plus the largest value long.
const PATTERN_SPAN_BYTES: usize = 1 << 20;

/// Makes and checks values of one size.
#[derive(Debug)]
pub struct Values {
    value_bytes: usize,
    pattern: Vec<u8>,
}

impl Values {
    /// Values of `value_bytes` each (at least [`MIN_VALUE_BYTES`]).
    ///
    /// # Errors
    /// `value_bytes` below [`MIN_VALUE_BYTES`].
    pub fn new(value_bytes: usize) -> Result<Self> {
        if value_bytes < MIN_VALUE_BYTES {
            return Err(error(format!(
                "values must be at least {MIN_VALUE_BYTES} bytes, got {value_bytes}"
            )));
        }
        let mut rng = Rng(0x006b_7662_656e_6368);
        let mut pattern = vec![0u8; PATTERN_SPAN_BYTES + value_bytes];
        for chunk in pattern.chunks_mut(8) {
            let word = rng.below(u64::MAX).to_le_bytes();
            chunk.copy_from_slice(word.get(..chunk.len()).unwrap_or_default());
        }
        Ok(Self {
            value_bytes,
            pattern,
        })
    }

    /// The size of every value.
    #[must_use]
    pub fn value_bytes(&self) -> usize {
        self.value_bytes
    }

    /// Writes the value of key `index`, generation `generation`, into `out`.
    pub fn make(&self, index: u64, generation: u32, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&generation.to_le_bytes());
        let len = u32::try_from(self.value_bytes).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(self.payload(index, generation));
    }

    /// Checks that `value` is a value of key `index`, of generation `expected` when given, and
    /// returns its generation.
    ///
    /// # Errors
    /// A message naming the key and what is wrong with the value.
    pub fn check(&self, index: u64, expected: Option<u32>, value: &[u8]) -> Result<u32> {
        let bad = |what: &str| error(format!("key {index}: {what}"));
        if value.len() != self.value_bytes {
            return Err(bad(&format!(
                "value of {} bytes, expected {}",
                value.len(),
                self.value_bytes
            )));
        }
        let (header, payload) = value.split_at(HEADER_BYTES);
        let field = |at: usize, n: usize| header.get(at..at + n).unwrap_or_default();
        let got_index = u64::from_le_bytes(field(0, 8).try_into().unwrap_or_default());
        let generation = u32::from_le_bytes(field(8, 4).try_into().unwrap_or_default());
        if got_index != index {
            return Err(bad(&format!("holds the value of key {got_index}")));
        }
        if let Some(want) = expected
            && want != generation
        {
            return Err(bad(&format!(
                "holds generation {generation}, expected {want}"
            )));
        }
        if payload != self.payload(index, generation) {
            return Err(bad(&format!(
                "payload of generation {generation} differs from what was written"
            )));
        }
        Ok(generation)
    }

    /// The payload window of `(index, generation)`.
    fn payload(&self, index: u64, generation: u32) -> &[u8] {
        let mut rng = Rng(index.rotate_left(32) ^ u64::from(generation));
        let span = u64::try_from(PATTERN_SPAN_BYTES).unwrap_or(u64::MAX);
        let start = usize::try_from(rng.below(span)).unwrap_or(0);
        self.pattern
            .get(start..start + self.value_bytes - HEADER_BYTES)
            .unwrap_or_default()
    }
}

/// Marks a deleted key in [`Expected`].
const DELETED: u32 = u32::MAX;

/// The generation every key should hold, or that it is deleted; keys past the end were never
/// written.
#[derive(Debug, Default, Clone)]
pub struct Expected {
    generations: Vec<u32>,
    live: u64,
}

impl Expected {
    /// Room for keys `0..n`, none of them written yet.
    #[must_use]
    pub fn empty(n: u64) -> Self {
        Self {
            generations: vec![DELETED; usize::try_from(n).unwrap_or(usize::MAX)],
            live: 0,
        }
    }

    /// Keys `0..n`, all at generation 0.
    #[must_use]
    pub fn filled(n: u64) -> Self {
        Self {
            generations: vec![0; usize::try_from(n).unwrap_or(usize::MAX)],
            live: n,
        }
    }

    /// The number of keys ever written (the next insert's index).
    #[must_use]
    pub fn keys(&self) -> u64 {
        self.generations.len() as u64
    }

    /// The number of live keys.
    #[must_use]
    pub fn live(&self) -> u64 {
        self.live
    }

    /// The live generation of `index`; `None` when deleted or never written.
    #[must_use]
    pub fn generation(&self, index: u64) -> Option<u32> {
        let g = *self.generations.get(usize::try_from(index).ok()?)?;
        (g != DELETED).then_some(g)
    }

    /// Records that `index` now holds `generation`; `index` may be the next new key.
    pub fn set(&mut self, index: u64, generation: u32) {
        let Ok(i) = usize::try_from(index) else {
            return;
        };
        debug_assert!(
            i <= self.generations.len(),
            "key {index} skips keys never written"
        );
        if i == self.generations.len() {
            self.generations.push(DELETED);
        }
        if let Some(slot) = self.generations.get_mut(i) {
            if *slot == DELETED {
                self.live += 1;
            }
            *slot = generation;
        }
    }

    /// Records that `index` is deleted.
    pub fn delete(&mut self, index: u64) {
        if let Some(slot) = usize::try_from(index)
            .ok()
            .and_then(|i| self.generations.get_mut(i))
            && *slot != DELETED
        {
            *slot = DELETED;
            self.live -= 1;
        }
    }

    /// The generation a rewrite of `index` should write next.
    #[must_use]
    pub fn next_generation(&self, index: u64) -> u32 {
        self.generation(index).map_or(0, |g| (g + 1) % DELETED)
    }
}

/// The key index a kvbench key stands for.
///
/// # Errors
/// A key that is not of [`crate::key`]'s form.
pub fn parse_key(key: &[u8]) -> Result<u64> {
    let digits = key
        .strip_prefix(b"key:")
        .filter(|d| d.len() == 12 && d.iter().all(u8::is_ascii_digit))
        .ok_or_else(|| {
            error(format!(
                "unexpected key {:?}",
                key.escape_ascii().to_string()
            ))
        })?;
    Ok(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_checks_against_its_own_key_and_generation_only() -> Result<()> {
        let values = Values::new(100)?;
        let mut v = Vec::new();
        values.make(7, 3, &mut v);
        assert_eq!(v.len(), 100);
        assert_eq!(values.check(7, Some(3), &v)?, 3);
        assert_eq!(values.check(7, None, &v)?, 3);
        assert!(values.check(8, None, &v).is_err());
        assert!(values.check(7, Some(2), &v).is_err());
        let mut flipped = v.clone();
        if let Some(b) = flipped.last_mut() {
            *b ^= 1;
        }
        assert!(values.check(7, None, &flipped).is_err());
        assert!(
            values
                .check(7, None, v.get(..99).unwrap_or_default())
                .is_err()
        );
        Ok(())
    }

    #[test]
    fn expected_counts_live_keys_through_deletes_and_inserts() {
        let mut e = Expected::filled(3);
        e.delete(1);
        e.delete(1);
        assert_eq!((e.live(), e.generation(1)), (2, None));
        e.set(3, 0);
        e.set(1, 5);
        assert_eq!((e.live(), e.keys(), e.generation(1)), (4, 4, Some(5)));
        assert_eq!(e.next_generation(1), 6);
    }

    #[test]
    fn keys_parse_back_to_their_index() -> Result<()> {
        assert_eq!(parse_key(&crate::key(123_456))?, 123_456);
        assert!(parse_key(b"key:12").is_err());
        Ok(())
    }
}
