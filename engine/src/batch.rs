//! [`WriteBatch`]: writes applied atomically, and their encoding in the write-ahead log.
//!
//! A batch is kept encoded from the start, so committing it writes its bytes to the log
//! without another copy. Layout (`docs/format/wal.md`, "batch payload"):
//!
//! ```text
//! batch := seq:u64 count:u32 op{count}
//! op    := 0x00 key                      delete
//!        | 0x01 key value                put
//!        | 0x03 key pointer              put of a value kept in a value file
//!        | 0x02 start 0x00               delete_range start..
//!        | 0x02 start 0x01 end           delete_range start..end
//! key, value, start, end := varint length, bytes
//! ```
//!
//! Operation `i` gets sequence number `seq + i`, so later operations in a batch win.
//!
//! Users' batches hold every value inline. At commit, values at or above the threshold are
//! written to a value file and their `put` becomes a pointer `put` (`separate_values`), so the
//! log and the index carry pointers, not large values.

use std::ops::{Bound, RangeBounds};
use std::path::Path;

use bytes::Bytes;

use crate::coding::{Decoder, put_bytes};
use crate::error::{Error, Result};
use crate::key::{RangeTombstone, SeqNo};
use crate::options::{MAX_BATCH_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use crate::value::pointer::ValuePointer;

const HEADER_BYTES: usize = 12;
const OP_DELETE: u8 = 0;
const OP_PUT: u8 = 1;
const OP_DELETE_RANGE: u8 = 2;
const OP_PUT_POINTER: u8 = 3;
/// The most a put adds to a batch besides its key and value: the operation byte and the two
/// lengths' varints (a length below 2^32 takes at most 5 bytes).
const PUT_FRAMING_BYTES: usize = 1 + 5 + 5;

/// A group of writes applied atomically by [`Db::write`](crate::Db::write): after a crash
/// either all of them are present or none.
#[derive(Clone)]
pub struct WriteBatch {
    rep: Vec<u8>,
    count: u32,
    invalid: Option<String>,
    /// The largest inline value, so commit can skip batches with nothing to separate.
    largest_value: usize,
}

impl std::fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatch")
            .field("operations", &self.count)
            .field("encoded_bytes", &self.rep.len())
            .finish()
    }
}

impl Default for WriteBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl WriteBatch {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty batch with room for `bytes` of keys and values before it reallocates (each
    /// operation also takes a few bytes of framing).
    #[must_use]
    pub fn with_capacity(bytes: usize) -> Self {
        let mut rep = Vec::with_capacity(HEADER_BYTES.saturating_add(bytes));
        rep.resize(HEADER_BYTES, 0);
        Self {
            rep,
            count: 0,
            invalid: None,
            largest_value: 0,
        }
    }

    /// An empty batch with exactly the room one put of `key_len` and `value_len` bytes
    /// takes: [`Db::put`](crate::Db::put) builds its batch in one allocation, rather than
    /// growing it past a large value.
    #[must_use]
    pub(crate) fn with_capacity_for_put(key_len: usize, value_len: usize) -> Self {
        Self::with_capacity(
            key_len
                .saturating_add(value_len)
                .saturating_add(PUT_FRAMING_BYTES),
        )
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> &mut Self {
        let (key, value) = (key.as_ref(), value.as_ref());
        if self.check_key(key) && self.check(value.len() <= MAX_VALUE_BYTES, "value too large") {
            self.rep
                .reserve(PUT_FRAMING_BYTES + key.len() + value.len());
            self.rep.push(OP_PUT);
            put_bytes(&mut self.rep, key);
            put_bytes(&mut self.rep, value);
            self.count += 1;
            self.largest_value = self.largest_value.max(value.len());
        }
        self
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        let key = key.as_ref();
        if self.check_key(key) {
            self.rep.push(OP_DELETE);
            put_bytes(&mut self.rep, key);
            self.count += 1;
        }
        self
    }

    /// Deletes every key in `range`. An empty range is no operation.
    pub fn delete_range<K: AsRef<[u8]>, R: RangeBounds<K>>(&mut self, range: R) -> &mut Self {
        let start = as_slice_bound(range.start_bound());
        let end = as_slice_bound(range.end_bound());
        // The sequence number is assigned at commit; only the bounds matter here.
        let Some(t) = RangeTombstone::from_bounds(start, end, SeqNo(0)) else {
            return self;
        };
        let end_len = t.end.as_ref().map_or(0, Bytes::len);
        if !self.check(
            t.start.len() <= MAX_KEY_BYTES + 1 && end_len <= MAX_KEY_BYTES + 1,
            "key too long",
        ) {
            return self;
        }
        self.rep.push(OP_DELETE_RANGE);
        put_bytes(&mut self.rep, &t.start);
        match &t.end {
            None => self.rep.push(0),
            Some(end) => {
                self.rep.push(1);
                put_bytes(&mut self.rep, end);
            }
        }
        self.count += 1;
        self
    }

    /// Number of operations.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True if the batch holds no operation.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Removes every operation.
    pub fn clear(&mut self) {
        self.rep.truncate(HEADER_BYTES);
        self.count = 0;
        self.invalid = None;
        self.largest_value = 0;
    }

    /// Size of the encoded batch in bytes.
    #[must_use]
    pub fn encoded_bytes(&self) -> usize {
        self.rep.len()
    }

    fn check_key(&mut self, key: &[u8]) -> bool {
        self.check(key.len() <= MAX_KEY_BYTES, "key too long")
    }

    fn check(&mut self, ok: bool, what: &str) -> bool {
        if !ok && self.invalid.is_none() {
            self.invalid = Some(format!(
                "{what} (limits: keys {MAX_KEY_BYTES} bytes, values {MAX_VALUE_BYTES} bytes)"
            ));
        }
        ok
    }

    /// Refuses a batch that broke a limit while it was built.
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(what) = &self.invalid {
            return Err(Error::invalid(what.clone()));
        }
        if self.rep.len() > MAX_BATCH_BYTES {
            return Err(Error::invalid(format!(
                "batch of {} bytes exceeds the limit of {MAX_BATCH_BYTES} bytes",
                self.rep.len()
            )));
        }
        Ok(())
    }

    /// Stamps the first sequence number into the header and returns the encoded batch.
    pub(crate) fn seal(&mut self, first: SeqNo) -> &[u8] {
        let mut header = Vec::with_capacity(HEADER_BYTES);
        crate::coding::put_u64(&mut header, first.0);
        crate::coding::put_u32(&mut header, self.count);
        for (dst, src) in self.rep.iter_mut().zip(header) {
            *dst = src;
        }
        &self.rep
    }
}

impl WriteBatch {
    /// The encoded batch, as [`Self::seal`] last stamped it.
    pub(crate) fn encoded(&self) -> &[u8] {
        &self.rep
    }

    /// Moves every value of at least `threshold_bytes` out of the batch: `store` writes it to a
    /// value file and returns its pointer, and the `put` becomes a pointer `put`. Each large
    /// value is copied once, from the batch to the value file.
    ///
    /// # Errors
    /// The first error of `store`; the batch is then unchanged.
    pub(crate) fn separate_values(
        &mut self,
        threshold_bytes: usize,
        mut store: impl FnMut(&[u8]) -> Result<ValuePointer>,
    ) -> Result<()> {
        if self.largest_value < threshold_bytes {
            return Ok(());
        }
        // Room for keys and pointers, not for the values that move out: allocating (and
        // faulting in) that much per commit cost a third of a 4 KiB put. It grows if needed.
        let mut out =
            Vec::with_capacity(self.rep.len().min(HEADER_BYTES + self.count as usize * 64));
        out.extend_from_slice(self.rep.get(..HEADER_BYTES).unwrap_or_default());
        let body = self.rep.get(HEADER_BYTES..).unwrap_or_default();
        let mut d = Decoder::new(
            body,
            Path::new("write batch"),
            HEADER_BYTES as u64,
            "write batch",
        );
        while !d.is_empty() {
            let op = d.u8()?;
            let key = d.length_prefixed(MAX_KEY_BYTES + 1)?;
            match op {
                OP_PUT => {
                    let value = d.length_prefixed(MAX_VALUE_BYTES)?;
                    if value.len() >= threshold_bytes {
                        out.push(OP_PUT_POINTER);
                        put_bytes(&mut out, key);
                        put_bytes(&mut out, &store(value)?.encode());
                    } else {
                        out.push(OP_PUT);
                        put_bytes(&mut out, key);
                        put_bytes(&mut out, value);
                    }
                }
                OP_DELETE => {
                    out.push(OP_DELETE);
                    put_bytes(&mut out, key);
                }
                OP_DELETE_RANGE => {
                    out.push(OP_DELETE_RANGE);
                    put_bytes(&mut out, key);
                    if d.u8()? == 0 {
                        out.push(0);
                    } else {
                        out.push(1);
                        put_bytes(&mut out, d.length_prefixed(MAX_KEY_BYTES + 1)?);
                    }
                }
                _ => return Err(d.error("unknown operation in a batch being committed")),
            }
        }
        self.rep = out;
        self.largest_value = 0;
        Ok(())
    }
}

fn as_slice_bound<K: AsRef<[u8]>>(b: Bound<&K>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_ref()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// One decoded operation of a batch, with its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BatchOp {
    Put {
        key: Bytes,
        value: Bytes,
        seq: SeqNo,
    },
    /// A put whose value is in a value file; `pointer` is the encoded `ValuePointer`, and
    /// `value_len` the length of the value it points at.
    PutPointer {
        key: Bytes,
        pointer: Bytes,
        value_len: u64,
        seq: SeqNo,
    },
    Delete {
        key: Bytes,
        seq: SeqNo,
    },
    DeleteRange(RangeTombstone),
}

impl BatchOp {
    /// The operation's sequence number, and the operation borrowed.
    pub fn as_op(&self) -> (SeqNo, OpRef<'_>) {
        match self {
            BatchOp::Put { key, value, seq } => (*seq, OpRef::Put { key, value }),
            BatchOp::PutPointer {
                key,
                pointer,
                value_len,
                seq,
            } => (
                *seq,
                OpRef::PutPointer {
                    key,
                    pointer,
                    value_len: *value_len,
                },
            ),
            BatchOp::Delete { key, seq } => (*seq, OpRef::Delete { key }),
            BatchOp::DeleteRange(t) => (
                t.seq,
                OpRef::DeleteRange {
                    start: &t.start,
                    end: t.end.as_deref(),
                },
            ),
        }
    }
}

/// A decoded batch: its first sequence number and its operations.
#[derive(Debug)]
pub(crate) struct DecodedBatch {
    pub first: SeqNo,
    pub ops: Vec<BatchOp>,
}

impl DecodedBatch {
    /// The sequence number of the last operation (`first - 1` for an empty batch).
    pub fn last(&self) -> SeqNo {
        SeqNo((self.first.0 + self.ops.len() as u64).saturating_sub(1))
    }
}

/// One operation of an encoded batch, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OpRef<'a> {
    Put {
        key: &'a [u8],
        value: &'a [u8],
    },
    PutPointer {
        key: &'a [u8],
        pointer: &'a [u8],
        value_len: u64,
    },
    Delete {
        key: &'a [u8],
    },
    DeleteRange {
        start: &'a [u8],
        end: Option<&'a [u8]>,
    },
}

/// Decodes a batch read from the log at `offset` of `file`. Key and value bytes are slices of
/// `payload`, not copies.
pub(crate) fn decode(payload: Bytes, file: &Path, offset: u64) -> Result<DecodedBatch> {
    let mut ops = Vec::new();
    let slice = |s: &[u8]| payload.slice_ref(s);
    let first = decode_each(&payload, file, offset, |seq, op| {
        ops.push(match op {
            OpRef::Put { key, value } => BatchOp::Put {
                key: slice(key),
                value: slice(value),
                seq,
            },
            OpRef::PutPointer {
                key,
                pointer,
                value_len,
            } => BatchOp::PutPointer {
                key: slice(key),
                pointer: slice(pointer),
                value_len,
                seq,
            },
            OpRef::Delete { key } => BatchOp::Delete {
                key: slice(key),
                seq,
            },
            OpRef::DeleteRange { start, end } => BatchOp::DeleteRange(RangeTombstone {
                start: slice(start),
                end: end.map(slice),
                seq,
            }),
        });
    })?;
    Ok(DecodedBatch { first, ops })
}

/// Decodes a batch read from the log at `offset` of `file` (or one being committed), handing
/// each operation with its sequence number to `each`, in order, without copying or allocating;
/// returns the batch's first sequence number.
///
/// # Errors
/// `Corruption` at the first malformed operation, after `each` saw the ones before it.
pub(crate) fn decode_each<'a>(
    payload: &'a [u8],
    file: &'a Path,
    offset: u64,
    mut each: impl FnMut(SeqNo, OpRef<'a>),
) -> Result<SeqNo> {
    let mut d = Decoder::new(payload, file, offset, "write batch");
    let first = SeqNo(d.u64()?);
    let count = d.u32()?;
    if first > SeqNo::MAX
        || first
            .0
            .checked_add(u64::from(count))
            .is_none_or(|end| end > SeqNo::MAX.0)
    {
        return Err(d.error("sequence number out of range"));
    }
    for i in 0..u64::from(count) {
        let seq = SeqNo(first.0 + i);
        let op = match d.u8()? {
            OP_PUT => OpRef::Put {
                key: d.length_prefixed(MAX_KEY_BYTES)?,
                value: d.length_prefixed(MAX_VALUE_BYTES)?,
            },
            OP_DELETE => OpRef::Delete {
                key: d.length_prefixed(MAX_KEY_BYTES)?,
            },
            OP_PUT_POINTER => {
                let key = d.length_prefixed(MAX_KEY_BYTES)?;
                let at = offset + d.position() as u64;
                let pointer = d.length_prefixed(64)?;
                let value_len = ValuePointer::decode(pointer, file, at)?.len;
                OpRef::PutPointer {
                    key,
                    pointer,
                    value_len,
                }
            }
            OP_DELETE_RANGE => {
                let start = d.length_prefixed(MAX_KEY_BYTES + 1)?;
                let end = match d.u8()? {
                    0 => None,
                    1 => Some(d.length_prefixed(MAX_KEY_BYTES + 1)?),
                    _ => return Err(d.error("bad range end flag")),
                };
                OpRef::DeleteRange { start, end }
            }
            _ => return Err(d.error("unknown operation")),
        };
        each(seq, op);
    }
    if !d.is_empty() {
        return Err(d.error("trailing bytes after the last operation"));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_each_hands_out_what_decode_returns_and_stops_at_a_bad_operation() {
        let mut b = WriteBatch::new();
        b.put("a", "1")
            .delete("b")
            .delete_range("c".."f")
            .put("g", "2");
        let payload = Bytes::copy_from_slice(b.seal(SeqNo(10)));
        let owned = decode(payload.clone(), Path::new("wal"), 0).unwrap();
        let mut seen = Vec::new();
        let first = decode_each(&payload, Path::new("wal"), 0, |seq, op| {
            seen.push(format!("{seq:?} {op:?}"));
        })
        .unwrap();
        assert_eq!(first, owned.first);
        let expected: Vec<String> = owned
            .ops
            .iter()
            .map(|op| {
                let (seq, op) = op.as_op();
                format!("{seq:?} {op:?}")
            })
            .collect();
        assert_eq!(seen, expected);
        // An unknown operation code in the third operation: the two before it are handed out,
        // then the error.
        let third = HEADER_BYTES + (1 + 1 + 1 + 1 + 1) + (1 + 1 + 1);
        let mut damaged = payload.to_vec();
        damaged[third] = 0xee;
        let mut seen = 0;
        let r = decode_each(&damaged, Path::new("wal"), 0, |_, _| seen += 1);
        assert!(r.unwrap_err().is_corruption());
        assert_eq!(seen, 2);
    }

    #[test]
    fn operations_decode_in_order_with_consecutive_sequence_numbers() {
        let mut b = WriteBatch::new();
        b.put("a", "1")
            .delete("b")
            .delete_range("c".."f")
            .delete_range::<&str, _>(..);
        let payload = Bytes::copy_from_slice(b.seal(SeqNo(10)));
        let d = decode(payload, Path::new("wal"), 0).unwrap();
        assert_eq!(d.first, SeqNo(10));
        assert_eq!(d.last(), SeqNo(13));
        assert_eq!(
            d.ops[0],
            BatchOp::Put {
                key: Bytes::from("a"),
                value: Bytes::from("1"),
                seq: SeqNo(10)
            }
        );
        assert_eq!(
            d.ops[1],
            BatchOp::Delete {
                key: Bytes::from("b"),
                seq: SeqNo(11)
            }
        );
        assert_eq!(
            d.ops[2],
            BatchOp::DeleteRange(RangeTombstone {
                start: Bytes::from("c"),
                end: Some(Bytes::from("f")),
                seq: SeqNo(12)
            })
        );
        assert_eq!(
            d.ops[3],
            BatchOp::DeleteRange(RangeTombstone {
                start: Bytes::new(),
                end: None,
                seq: SeqNo(13)
            })
        );
    }

    #[test]
    fn worked_example_in_the_wal_doc_encodes_byte_for_byte() {
        let mut b = WriteBatch::new();
        b.put("a", "1");
        let expected = [7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, b'a', 1, b'1'];
        assert_eq!(b.seal(SeqNo(7)), expected);
    }

    #[test]
    fn a_batch_sized_for_one_put_holds_it_without_growing() {
        for (key_len, value_len) in [(0, 0), (1, 127), (16, 4096), (300, 1 << 20)] {
            let mut b = WriteBatch::with_capacity_for_put(key_len, value_len);
            let before = b.rep.capacity();
            b.put(vec![7; key_len], vec![9; value_len]);
            assert!(b.validate().is_ok());
            assert_eq!(b.rep.capacity(), before, "{key_len} + {value_len}");
        }
    }

    #[test]
    fn empty_ranges_add_no_operation() {
        let mut b = WriteBatch::new();
        b.delete_range("b".."a").delete_range("b".."b");
        assert!(b.is_empty());
    }

    #[test]
    fn oversized_key_is_refused_at_commit() {
        let mut b = WriteBatch::new();
        b.put(vec![0u8; MAX_KEY_BYTES + 1], "v");
        assert!(matches!(b.validate(), Err(Error::InvalidArgument(_))));
        b.clear();
        b.put(vec![0u8; MAX_KEY_BYTES], "v");
        assert!(b.validate().is_ok());
    }

    #[test]
    fn every_truncation_of_a_batch_is_corruption() {
        let mut b = WriteBatch::new();
        b.put("key", "value").delete("k2").delete_range("a".."z");
        let full = b.seal(SeqNo(1)).to_vec();
        for len in 0..full.len() {
            let r = decode(Bytes::copy_from_slice(&full[..len]), Path::new("wal"), 0);
            assert!(r.unwrap_err().is_corruption(), "length {len}");
        }
    }
}
