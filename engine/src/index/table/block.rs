//! Blocks of sorted key/value entries with prefix-compressed keys and restart points: the
//! form of data blocks and of the index block.
//!
//! Layout (`docs/format/table.md`):
//! `entry* restart:u32* num_restarts:u32`, each
//! `entry = shared:varint unshared:varint value_len:varint key_delta[unshared] value[value_len]`.
//! A key is `shared` bytes of the previous key followed by `key_delta`; at a restart point
//! `shared` is 0, so a reader can start decoding there. Keys are on-disk internal keys
//! (user key ++ 8-byte trailer) in strictly increasing internal order.
//!
//! Invariants checked by [`Block::new`] (once, before a block enters the cache): at least one
//! restart, the first at offset 0, offsets strictly increasing and inside the entry region.
//! Entry decoding checks every length against the bytes left, so a damaged block is a
//! `Corruption`, never a panic or an over-read.
//!
//! Thread safety: a [`Block`] is immutable and cheap to clone (it shares its `Bytes`);
//! a [`BlockBuilder`] has one owner.
//!
//! Read next: `bloom.rs`, then `reader.rs`.

use std::cmp::Ordering;
use std::ops::Range;
use std::path::Path;

use bytes::Bytes;

use super::format::{self, MAX_BLOCK_SIZE_BYTES};
use crate::coding::{self, Decoder};
use crate::error::{Error, Result};
use crate::key::{self, Entry, EntryRef, InternalKey, SeqNo, ValueKind};

/// Bytes of the restart array entry and of the restart count.
const RESTART_BYTES: usize = 4;
/// Entries per restart point that tables are written with (`TableOptions::restart_interval`'s
/// default), and what a decoder expects when it sizes its buffers for a block.
pub(crate) const DEFAULT_RESTART_INTERVAL: usize = 16;
/// Bytes of entries after which data blocks start a restart point however few entries that is
/// (`TableOptions::restart_bytes`'s default): a seek scans at most about this much past the
/// restart point it found, eight cache lines, whatever the entries' size.
pub(crate) const DEFAULT_RESTART_BYTES: usize = 512;
/// The smallest entry: three one-byte header varints and nothing else.
const MIN_ENTRY_BYTES: usize = 3;

/// Builds one block's contents from keys added in increasing order.
#[derive(Debug)]
pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    restart_interval: usize,
    restart_bytes: usize,
    since_restart: usize,
    last_key: Vec<u8>,
    entries: usize,
}

impl BlockBuilder {
    /// A builder that starts a restart point every `restart_interval` entries (at least 1).
    #[must_use]
    pub fn new(restart_interval: usize) -> Self {
        Self {
            buf: Vec::new(),
            restarts: vec![0],
            restart_interval: restart_interval.max(1),
            restart_bytes: usize::MAX,
            since_restart: 0,
            last_key: Vec::new(),
            entries: 0,
        }
    }

    /// Also starts a restart point before an entry once `bytes` or more of entries were
    /// written since the last one, however few entries that is.
    #[must_use]
    pub fn with_restart_bytes(mut self, bytes: usize) -> Self {
        self.restart_bytes = bytes;
        self
    }

    /// Appends an entry. REQUIRES: `key` sorts after every key added since the last
    /// `finish`, and the block stays under [`MAX_BLOCK_SIZE_BYTES`] (the table builder checks
    /// both).
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        let last_restart = self.restarts.last().map_or(0, |&r| r as usize);
        let due = self.since_restart >= self.restart_interval
            || (self.since_restart > 0 && self.buf.len() - last_restart >= self.restart_bytes);
        let shared = if due {
            self.restarts.push(self.offset_u32());
            self.since_restart = 0;
            0
        } else {
            common_prefix_len(&self.last_key, key)
        };
        let delta = key.get(shared..).unwrap_or_default();
        coding::put_varint(&mut self.buf, shared as u64);
        coding::put_varint(&mut self.buf, delta.len() as u64);
        coding::put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(delta);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(delta);
        self.since_restart += 1;
        self.entries += 1;
    }

    fn offset_u32(&self) -> u32 {
        debug_assert!(self.buf.len() <= MAX_BLOCK_SIZE_BYTES);
        // The table builder keeps blocks under MAX_BLOCK_SIZE_BYTES, far below u32::MAX.
        u32::try_from(self.buf.len()).unwrap_or(u32::MAX)
    }

    /// The size of the contents if the block were finished now.
    #[must_use]
    pub fn size_estimate_bytes(&self) -> usize {
        self.buf.len() + RESTART_BYTES * (self.restarts.len() + 1)
    }

    /// An upper bound on the bytes one more entry adds to the block.
    #[must_use]
    pub fn entry_size_bound_bytes(key: &[u8], value: &[u8]) -> usize {
        const VARINTS_MAX_BYTES: usize = 3 * 10;
        key.len() + value.len() + VARINTS_MAX_BYTES + RESTART_BYTES
    }

    /// True if no entry was added since the last `finish`.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Returns the finished contents and resets the builder for the next block.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        for &restart in &self.restarts {
            coding::put_u32(&mut out, restart);
        }
        coding::put_u32(
            &mut out,
            u32::try_from(self.restarts.len()).unwrap_or(u32::MAX),
        );
        self.restarts.clear();
        self.restarts.push(0);
        self.since_restart = 0;
        self.last_key.clear();
        self.entries = 0;
        out
    }
}

/// The length of the longest prefix `a` and `b` share.
pub(super) fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A checked, immutable block: the unit the block cache holds.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    data: Bytes,
    /// Where the entries end and the restart array begins.
    restarts_offset: usize,
    num_restarts: usize,
    /// The block's offset in its file, for error messages.
    file_offset: u64,
}

/// The entries of one block, decoded for a walk that lends them out in place: user keys back
/// to back in one buffer, values left in the block. A scan reuses one `BlockEntries` from block
/// to block, so decoding a block allocates nothing once the buffers have grown.
#[derive(Debug, Default)]
pub(crate) struct BlockEntries {
    /// The decoded block; `None` when empty.
    block: Option<Block>,
    keys: Vec<u8>,
    slots: Vec<Slot>,
    /// The key buffer the decoder rebuilds prefix-compressed keys in.
    scratch: Vec<u8>,
}

/// Where one decoded entry lies: its user key ends at `key_end` in `BlockEntries::keys` (and
/// starts where the previous one ended), its value is `value` within the block.
#[derive(Debug, Clone)]
struct Slot {
    key_end: usize,
    seq: SeqNo,
    kind: ValueKind,
    value: Range<usize>,
}

impl BlockEntries {
    /// Empties it, keeping its buffers.
    pub fn clear(&mut self) {
        self.block = None;
        self.keys.clear();
        self.slots.clear();
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Entry `i`, borrowed from the buffers and the block.
    pub fn get(&self, i: usize) -> Option<EntryRef<'_>> {
        let slot = self.slots.get(i)?;
        let key_start = match i.checked_sub(1) {
            Some(prev) => self.slots.get(prev)?.key_end,
            None => 0,
        };
        Some(EntryRef {
            user_key: self.keys.get(key_start..slot.key_end)?,
            seq: slot.seq,
            kind: slot.kind,
            value: self.block.as_ref()?.data.get(slot.value.clone())?,
        })
    }

    /// The last entry.
    pub fn last(&self) -> Option<EntryRef<'_>> {
        self.get(self.len().checked_sub(1)?)
    }

    /// The index of the first entry at or after `user_key@seq` (`len()` if none is).
    pub fn lower_bound(&self, user_key: &[u8], seq: SeqNo) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let before = self.get(mid).is_some_and(|e| {
                key::compare_internal(e.user_key, e.seq, user_key, seq) == Ordering::Less
            });
            if before {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// One decoded entry header: where its value lies and where the next entry starts.
struct RawEntry {
    shared: usize,
    value: Range<usize>,
    next: usize,
}

/// The first entry at or after a seek target.
#[derive(Debug)]
pub(crate) struct SeekHit {
    /// True if the entry's user key equals the target's.
    pub user_key_matches: bool,
    /// The entry's sequence number.
    pub seq: SeqNo,
    /// The entry's kind.
    pub kind: ValueKind,
    /// The entry's value, sharing the block's bytes.
    pub value: Bytes,
}

impl Block {
    /// Checks the restart array of `data`, the contents of the block at `file_offset`.
    ///
    /// # Errors
    /// `Corruption` if the restart array is damaged.
    pub fn new(data: Bytes, path: &Path, file_offset: u64) -> Result<Self> {
        let corrupt = |what: String| Error::corruption(path, file_offset, what);
        let Some(count_at) = data.len().checked_sub(RESTART_BYTES) else {
            return Err(corrupt(format!(
                "block of {} bytes is too short",
                data.len()
            )));
        };
        let mut d = Decoder::new(&data, path, file_offset, "block restart array");
        d.bytes(count_at)?;
        let num_restarts = usize::try_from(d.u32()?).unwrap_or(usize::MAX);
        let restarts_offset = num_restarts
            .checked_mul(RESTART_BYTES)
            .and_then(|n| count_at.checked_sub(n))
            .filter(|_| num_restarts > 0);
        let Some(restarts_offset) = restarts_offset else {
            return Err(corrupt(format!("bad restart count {num_restarts}")));
        };
        let block = Self {
            data,
            restarts_offset,
            num_restarts,
            file_offset,
        };
        block.check_restarts(path)?;
        Ok(block)
    }

    fn check_restarts(&self, path: &Path) -> Result<()> {
        let mut previous = None;
        for i in 0..self.num_restarts {
            let restart = self.restart(path, i)?;
            let ordered = previous.is_none_or(|p| restart > p);
            let first_ok = i > 0 || restart == 0;
            let inside = restart < self.restarts_offset || self.restarts_offset == 0;
            if !(ordered && first_ok && inside) {
                let at = self.file_offset + (self.restarts_offset + i * RESTART_BYTES) as u64;
                return Err(Error::corruption(
                    path,
                    at,
                    format!("bad restart {restart}"),
                ));
            }
            previous = Some(restart);
        }
        Ok(())
    }

    /// The size of the block's contents.
    #[must_use]
    pub fn size_bytes(&self) -> usize {
        self.data.len()
    }

    fn restart(&self, path: &Path, i: usize) -> Result<usize> {
        let at = self.restarts_offset + i * RESTART_BYTES;
        let bytes = self.data.get(at..).unwrap_or_default();
        if let Some(word) = bytes.first_chunk::<RESTART_BYTES>() {
            return Ok(usize::try_from(u32::from_le_bytes(*word)).unwrap_or(usize::MAX));
        }
        let mut d = Decoder::new(bytes, path, self.file_offset + at as u64, "block restart");
        Ok(usize::try_from(d.u32()?).unwrap_or(usize::MAX))
    }

    /// Decodes the entry at `pos`, rebuilding its key in `key` (which holds the previous key).
    fn entry_at(&self, path: &Path, pos: usize, key: &mut Vec<u8>) -> Result<RawEntry> {
        let region = self.data.get(pos..self.restarts_offset).unwrap_or_default();
        if let Some(raw) = entry_short(region, pos, key) {
            return Ok(raw);
        }
        let mut d = Decoder::new(region, path, self.file_offset + pos as u64, "block entry");
        let shared = d.varint_len(key.len())?;
        let unshared = d.varint_len(MAX_BLOCK_SIZE_BYTES)?;
        let value_len = d.varint_len(MAX_BLOCK_SIZE_BYTES)?;
        let delta = d.bytes(unshared)?;
        let value_start = pos + d.position();
        d.bytes(value_len)?;
        key.truncate(shared);
        key.extend_from_slice(delta);
        Ok(RawEntry {
            shared,
            value: value_start..value_start + value_len,
            next: pos + d.position(),
        })
    }

    fn corrupt_key(&self, path: &Path, pos: usize) -> Error {
        Error::corruption(
            path,
            self.file_offset + pos as u64,
            "block entry: bad internal key",
        )
    }

    /// Compares the on-disk internal key `encoded` with `user_key@seq`.
    fn compare_key(
        &self,
        path: &Path,
        pos: usize,
        encoded: &[u8],
        user_key: &[u8],
        seq: SeqNo,
    ) -> Result<Ordering> {
        let (k, s, _) =
            format::decode_internal_key(encoded).ok_or_else(|| self.corrupt_key(path, pos))?;
        Ok(key::compare_internal(k, s, user_key, seq))
    }

    /// The internal key of the entry at restart point `i` and its offset, read in place: an
    /// entry at a restart point shares no prefix with the one before it.
    fn restart_key(&self, path: &Path, i: usize) -> Result<(usize, &[u8])> {
        let pos = self.restart(path, i)?;
        let region = self.data.get(pos..self.restarts_offset).unwrap_or_default();
        // The common header, as in `entry_short`: no shared prefix, and the key's and the
        // value's lengths one byte each.
        if let [0, unshared @ 0..0x80, 0..0x80, rest @ ..] = region
            && let Some(key) = rest.get(..usize::from(*unshared))
        {
            return Ok((pos, key));
        }
        let mut d = Decoder::new(region, path, self.file_offset + pos as u64, "block entry");
        if d.varint()? != 0 {
            return Err(self.entry_error(path, pos, "shared prefix at a restart point"));
        }
        let unshared = d.varint_len(MAX_BLOCK_SIZE_BYTES)?;
        d.varint_len(MAX_BLOCK_SIZE_BYTES)?;
        let start = d.position();
        let key = start
            .checked_add(unshared)
            .and_then(|end| region.get(start..end))
            .ok_or_else(|| self.entry_error(path, pos, "key past the end of the entries"))?;
        Ok((pos, key))
    }

    /// The last restart point whose entry is before `user_key@seq`, or 0: the first entry at
    /// or after the target lies at or after it.
    fn restart_before(&self, path: &Path, user_key: &[u8], seq: SeqNo) -> Result<usize> {
        // `new` guarantees at least one restart.
        let (mut left, mut right) = (0, self.num_restarts.saturating_sub(1));
        while left < right {
            let mid = left + (right - left).div_ceil(2);
            let (pos, key) = self.restart_key(path, mid)?;
            if self.compare_key(path, pos, key, user_key, seq)? == Ordering::Less {
                left = mid;
            } else {
                right = mid - 1;
            }
        }
        Ok(left)
    }

    /// The first entry whose internal key is at or after `user_key@seq`, if any.
    /// Binary-searches the restart points (reading their keys in place), then scans at most one
    /// restart interval onward, so the only allocation is the buffer the scanned keys are
    /// rebuilt in.
    ///
    /// # Errors
    /// `Corruption` if a decoded entry is damaged.
    pub fn seek(&self, path: &Path, user_key: &[u8], seq: SeqNo) -> Result<Option<SeekHit>> {
        let left = self.restart_before(path, user_key, seq)?;
        let mut key = Vec::new();
        let mut pos = self.restart(path, left)?;
        while pos < self.restarts_offset {
            let raw = self.entry_at(path, pos, &mut key)?;
            let (k, s, kind) =
                format::decode_internal_key(&key).ok_or_else(|| self.corrupt_key(path, pos))?;
            if key::compare_internal(k, s, user_key, seq) != Ordering::Less {
                let value = self.value(path, pos, raw.value)?;
                return Ok(Some(SeekHit {
                    user_key_matches: k == user_key,
                    seq: s,
                    kind,
                    value,
                }));
            }
            pos = raw.next;
        }
        Ok(None)
    }

    fn value(&self, path: &Path, pos: usize, range: Range<usize>) -> Result<Bytes> {
        slice_checked(&self.data, range).ok_or_else(|| {
            Error::corruption(
                path,
                self.file_offset + pos as u64,
                "block entry: bad value",
            )
        })
    }

    /// Decodes every entry into `out`, replacing what it held, and checks that keys strictly
    /// increase and that restart points fall on entries with no shared prefix.
    ///
    /// # Errors
    /// `Corruption` if the block is damaged; `out` is then empty.
    pub fn decode_into(&self, path: &Path, out: &mut BlockEntries) -> Result<()> {
        self.decode_from(path, 0, out)
    }

    /// Decodes into `out`, as [`Block::decode_into`] does, the entries from the last restart
    /// point before `user_key@seq` on: the first entry at or after it is among them, and a
    /// seek need not decode the block's first half on average.
    ///
    /// # Errors
    /// `Corruption` if the block is damaged; `out` is then empty.
    pub fn decode_seek_into(
        &self,
        path: &Path,
        user_key: &[u8],
        seq: SeqNo,
        out: &mut BlockEntries,
    ) -> Result<()> {
        match self.restart_before(path, user_key, seq) {
            Ok(restart) => self.decode_from(path, restart, out),
            Err(e) => {
                out.clear();
                Err(e)
            }
        }
    }

    fn decode_from(&self, path: &Path, first_restart: usize, out: &mut BlockEntries) -> Result<()> {
        out.clear();
        if out.slots.capacity() == 0 {
            // A new scan's first block: its buffers are sized for it at once rather than grown
            // entry by entry (a short scan decodes one block of every table it touches).
            // Never more slots than the block can hold entries, whatever its restarts claim.
            let restarts = self.num_restarts.saturating_sub(first_restart);
            let entries = restarts
                .saturating_mul(DEFAULT_RESTART_INTERVAL)
                .min(self.restarts_offset / MIN_ENTRY_BYTES);
            out.slots.reserve(entries);
            out.keys.reserve(self.restarts_offset);
        }
        out.block = Some(self.clone());
        let mut key = std::mem::take(&mut out.scratch);
        key.clear();
        let result = self.decode_each(path, first_restart, &mut key, out);
        out.scratch = key;
        if result.is_err() {
            out.clear();
        }
        result
    }

    fn decode_each(
        &self,
        path: &Path,
        first_restart: usize,
        key: &mut Vec<u8>,
        out: &mut BlockEntries,
    ) -> Result<()> {
        let mut pos = self.restart(path, first_restart)?;
        let mut next_restart = first_restart;
        while pos < self.restarts_offset {
            let restart = self.restart_or_end(path, next_restart)?;
            let at_restart = restart == pos;
            if at_restart {
                next_restart += 1;
            } else if restart < pos {
                return Err(self.entry_error(path, pos, "restart point inside an entry"));
            }
            let raw = self.entry_at(path, pos, key)?;
            if at_restart && raw.shared != 0 {
                return Err(self.entry_error(path, pos, "shared prefix at a restart point"));
            }
            let (user_key, seq, kind) =
                format::decode_internal_key(key).ok_or_else(|| self.corrupt_key(path, pos))?;
            if let Some(prev) = out.last()
                && key::compare_internal(prev.user_key, prev.seq, user_key, seq) != Ordering::Less
            {
                return Err(self.entry_error(path, pos, "keys out of order"));
            }
            out.keys.extend_from_slice(user_key);
            out.slots.push(Slot {
                key_end: out.keys.len(),
                seq,
                kind,
                value: raw.value,
            });
            pos = raw.next;
        }
        Ok(())
    }

    /// Decodes every entry as an owned [`Entry`], with the checks of [`Block::decode_into`].
    /// All keys of the block share one buffer; values share the block's bytes.
    ///
    /// # Errors
    /// `Corruption` if the block is damaged.
    pub fn entries(&self, path: &Path) -> Result<Vec<Entry>> {
        let mut decoded = BlockEntries::default();
        self.decode_into(path, &mut decoded)?;
        let keys = Bytes::from(std::mem::take(&mut decoded.keys));
        let mut key_start = 0;
        Ok(decoded
            .slots
            .iter()
            .map(|slot| {
                let user_key = keys.slice(key_start..slot.key_end);
                key_start = slot.key_end;
                Entry {
                    key: InternalKey::new(user_key, slot.seq, slot.kind),
                    value: self.data.slice(slot.value.clone()),
                }
            })
            .collect())
    }

    fn restart_or_end(&self, path: &Path, i: usize) -> Result<usize> {
        if i < self.num_restarts {
            self.restart(path, i)
        } else {
            Ok(usize::MAX)
        }
    }

    fn entry_error(&self, path: &Path, pos: usize, what: &str) -> Error {
        Error::corruption(
            path,
            self.file_offset + pos as u64,
            format!("block entry: {what}"),
        )
    }
}

/// The common entry, decoded without the general decoder (LevelDB's `DecodeEntry` fast path):
/// all three header varints one byte long, the shared prefix within the previous key (`key`)
/// and the entry within `region`, which starts at block offset `pos`. `None`, with `key`
/// untouched, for anything else: [`Block::entry_at`] then decodes it, or reports the damage.
fn entry_short(region: &[u8], pos: usize, key: &mut Vec<u8>) -> Option<RawEntry> {
    let [shared, unshared, value_len, rest @ ..] = region else {
        return None;
    };
    if (shared | unshared | value_len) & 0x80 != 0 {
        return None;
    }
    let (shared, unshared, value_len) = (
        usize::from(*shared),
        usize::from(*unshared),
        usize::from(*value_len),
    );
    if shared > key.len() {
        return None;
    }
    let delta = rest.get(..unshared)?;
    rest.get(unshared..unshared + value_len)?;
    key.truncate(shared);
    key.extend_from_slice(delta);
    let value_start = pos + 3 + unshared;
    Some(RawEntry {
        shared,
        value: value_start..value_start + value_len,
        next: value_start + value_len,
    })
}

/// `bytes[range]`, or `None` if the range is out of bounds (instead of `Bytes::slice`'s panic).
fn slice_checked(bytes: &Bytes, range: Range<usize>) -> Option<Bytes> {
    (range.start <= range.end && range.end <= bytes.len()).then(|| bytes.slice(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ikey(user_key: &str, seq: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        format::encode_internal_key(&mut buf, user_key.as_bytes(), SeqNo(seq), ValueKind::Put);
        buf
    }

    fn build(keys: &[(&str, u64)], restart_interval: usize) -> Block {
        let mut b = BlockBuilder::new(restart_interval);
        for (i, (k, s)) in keys.iter().enumerate() {
            b.add(&ikey(k, *s), format!("v{i}").as_bytes());
        }
        Block::new(Bytes::from(b.finish()), Path::new("t"), 0).unwrap()
    }

    #[test]
    fn entries_round_trip_with_every_restart_interval() {
        let keys = [
            ("a", 1),
            ("ab", 9),
            ("ab", 3),
            ("abc", 2),
            ("b", 5),
            ("bcd", 1),
        ];
        for interval in 1..=7 {
            let block = build(&keys, interval);
            let entries = block.entries(Path::new("t")).unwrap();
            assert_eq!(entries.len(), keys.len());
            for (i, (e, (k, s))) in entries.iter().zip(keys).enumerate() {
                assert_eq!(&e.key.user_key[..], k.as_bytes());
                assert_eq!(e.key.seq, SeqNo(s));
                assert_eq!(e.value, format!("v{i}").as_bytes());
            }
        }
    }

    #[test]
    fn entries_with_one_and_two_byte_headers_decode_alike() {
        // Keys and values of lengths either side of 128 mix the one-byte-header path of
        // `entry_short` with the general decoder, within one block and across restarts.
        let long_key = "k".repeat(150);
        let keys: Vec<(String, Vec<u8>)> = (0..40)
            .map(|i| {
                let key = if i % 3 == 0 {
                    format!("{long_key}{i:03}")
                } else {
                    format!("k{i:03}")
                };
                (key, vec![i as u8; (i * 7) % 300])
            })
            .collect();
        let mut keys = keys;
        keys.sort();
        let mut b = BlockBuilder::new(4);
        for (k, v) in &keys {
            b.add(&ikey(k, 1), v);
        }
        let block = Block::new(Bytes::from(b.finish()), Path::new("t"), 0).unwrap();
        let entries = block.entries(Path::new("t")).unwrap();
        assert_eq!(entries.len(), keys.len());
        for (e, (k, v)) in entries.iter().zip(&keys) {
            assert_eq!(&e.key.user_key[..], k.as_bytes());
            assert_eq!(&e.value[..], &v[..]);
        }
    }

    #[test]
    fn a_shared_prefix_longer_than_the_previous_key_is_corruption() {
        let mut b = BlockBuilder::new(16);
        let first = ikey("abc", 1);
        b.add(&first, b"v0");
        b.add(&ikey("abd", 1), b"v1");
        let mut data = b.finish();
        // The second entry's header starts after the first's three one-byte varints, key
        // and value; its first byte is the shared prefix length.
        let second = 3 + first.len() + 2;
        assert!(data[second] > 0, "second entry shares no prefix");
        data[second] = u8::try_from(first.len() + 1).unwrap();
        let block = Block::new(Bytes::from(data), Path::new("t"), 0).unwrap();
        let err = block.entries(Path::new("t")).unwrap_err();
        assert!(err.is_corruption(), "{err}");
    }

    #[test]
    fn seek_finds_the_first_entry_at_or_after_the_target() {
        let keys = [
            ("a", 1),
            ("ab", 9),
            ("ab", 3),
            ("abc", 2),
            ("b", 5),
            ("bcd", 1),
        ];
        for interval in 1..=4 {
            let block = build(&keys, interval);
            let p = Path::new("t");
            let hit = block.seek(p, b"ab", SeqNo(5)).unwrap().unwrap();
            assert!(hit.user_key_matches && hit.seq == SeqNo(3) && hit.value == "v2");
            let hit = block.seek(p, b"ab", SeqNo(2)).unwrap().unwrap();
            assert!(!hit.user_key_matches && hit.value == "v3");
            let hit = block.seek(p, b"", SeqNo(0)).unwrap().unwrap();
            assert_eq!(hit.value, "v0");
            assert!(block.seek(p, b"bcd", SeqNo(0)).unwrap().is_none());
            assert!(block.seek(p, b"z", SeqNo::MAX).unwrap().is_none());
        }
    }

    /// A fresh scan buffer is sized for the block, but never for more entries than its bytes
    /// can hold, however many restart points it has.
    #[test]
    fn a_fresh_buffer_is_sized_within_what_the_block_can_hold() {
        let names: Vec<String> = (0..200).map(|i| format!("k{i:04}")).collect();
        let keys: Vec<(&str, u64)> = names.iter().map(|k| (k.as_str(), 1)).collect();
        for interval in [1, 16] {
            let block = build(&keys, interval);
            let mut out = BlockEntries::default();
            block.decode_from(Path::new("t"), 0, &mut out).unwrap();
            assert_eq!(out.len(), 200);
            assert!(out.slots.capacity() >= 200, "interval {interval}");
            assert!(
                out.slots.capacity() <= block.restarts_offset / MIN_ENTRY_BYTES,
                "interval {interval}: {} slots",
                out.slots.capacity()
            );
        }
    }

    /// Restart points come every `restart_bytes` of entries when entries are large, every
    /// `restart_interval` entries when they are small, and a seek finds every key either way.
    #[test]
    fn restart_points_come_by_bytes_or_by_count_whichever_is_first() {
        let names: Vec<String> = (0..200).map(|i| format!("k{i:04}")).collect();
        for value_bytes in [100, 1] {
            let mut b = BlockBuilder::new(16).with_restart_bytes(512);
            for (i, k) in names.iter().enumerate() {
                b.add(&ikey(k, 1), &vec![i as u8; value_bytes]);
            }
            let block = Block::new(Bytes::from(b.finish()), Path::new("t"), 0).unwrap();
            let restarts: Vec<usize> = (0..block.num_restarts)
                .map(|i| block.restart(Path::new("t"), i).unwrap())
                .collect();
            if value_bytes == 1 {
                // 200 entries of about 13 bytes: by count, 13 restart points.
                assert_eq!(restarts.len(), 13, "{restarts:?}");
            } else {
                // Entries of 112 to 116 bytes: a restart once 512 or more bytes follow the last.
                for pair in restarts.windows(2) {
                    let gap = pair[1] - pair[0];
                    assert!(
                        (512..640).contains(&gap),
                        "gap of {gap} bytes: {restarts:?}"
                    );
                }
            }
            for (i, k) in names.iter().enumerate() {
                let hit = block.seek(Path::new("t"), k.as_bytes(), SeqNo(1)).unwrap();
                let hit = hit.unwrap();
                assert!(hit.user_key_matches && hit.value == vec![i as u8; value_bytes]);
            }
        }
    }

    #[test]
    fn empty_block_has_no_entries() {
        let block = build(&[], 16);
        assert!(block.entries(Path::new("t")).unwrap().is_empty());
        assert!(
            block
                .seek(Path::new("t"), b"a", SeqNo::MAX)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn damaged_restart_arrays_are_corruption() {
        let mut good = BlockBuilder::new(1);
        good.add(&ikey("a", 1), b"x");
        good.add(&ikey("b", 1), b"y");
        let good = good.finish();
        for bad in [
            vec![],
            vec![0, 0, 0],
            vec![0, 0, 0, 0],
            vec![0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(
                Block::new(Bytes::from(bad), Path::new("t"), 0)
                    .unwrap_err()
                    .is_corruption()
            );
        }
        // Restart 1 pointing past the entries.
        let mut bad = good.clone();
        let at = bad.len() - 8;
        bad[at] = 200;
        assert!(
            Block::new(Bytes::from(bad), Path::new("t"), 0)
                .unwrap_err()
                .is_corruption()
        );
    }

    #[test]
    fn out_of_order_keys_are_corruption() {
        let mut b = BlockBuilder::new(16);
        b.add(&ikey("b", 1), b"");
        b.add(&ikey("a", 1), b"");
        let block = Block::new(Bytes::from(b.finish()), Path::new("t"), 0).unwrap();
        assert!(block.entries(Path::new("t")).unwrap_err().is_corruption());
    }
}
