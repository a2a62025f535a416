//! [`FaultFs`]: a [`FileSystem`] that wraps another, counts every call it and its files make,
//! and fails the calls a test asks for, to show how the engine reacts to I/O errors.
//!
//! Every call of the [`FileSystem`], [`WritableFile`], [`ReadableFile`] and [`SegmentFile`]
//! traits that reaches the wrapped file system is one call of a [`CallKind`] (only the
//! accessors `len`, `is_empty` and `path` are not). Each is numbered in the order it arrives,
//! counted per kind, and the first of each kind is remembered, so a test can say which kinds a
//! workload reached and where. A failure is injected in two ways:
//!
//! - a [`Trigger`]: the N-th call (counting every kind, or only some) fails, once or, sticky,
//!   with every counted call after it, as a device that stays broken;
//! - switches, flipped while the engine runs: `fail_writes` fails creations, appends, flushes,
//!   segment writes, creations of a segment and hole punches; `fail_syncs` fails file, segment
//!   and directory syncs; `no_punch` makes hole punching unsupported, as on a file system
//!   without it.
//!
//! An injected failure is an `Error::Io` whose message names the call kind, the path and the
//! call's number; the call does not reach the wrapped file system, so it changes nothing.
//! With [`FaultFs::skip_syncs`], syncs are counted (and can fail) but not passed on: tests that
//! simulate no power loss run several times faster without the `fdatasync`s.
//!
//! Thread safety: a `FaultFs` and its clones share their counters, trigger and switches; every
//! file it opened checks them on each call. Call numbers are assigned under one lock, so
//! concurrent calls get distinct numbers (in an order the scheduler picks).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{FileLock, FileSystem, ReadableFile, RealFs, SegmentFile, WritableFile};
use crate::error::{Error, Result};

/// The kinds of call a [`FaultFs`] counts and can fail: one per I/O method of the file system
/// traits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallKind {
    /// [`FileSystem::create_dir_all`].
    CreateDirAll,
    /// [`FileSystem::create`].
    Create,
    /// [`FileSystem::open`].
    Open,
    /// [`FileSystem::rename`].
    Rename,
    /// [`FileSystem::link_or_copy`].
    LinkOrCopy,
    /// [`FileSystem::remove_file`].
    RemoveFile,
    /// [`FileSystem::list_dir`].
    ListDir,
    /// [`FileSystem::sync_dir`].
    SyncDir,
    /// [`FileSystem::exists`].
    Exists,
    /// [`FileSystem::lock`].
    Lock,
    /// [`FileSystem::lock_shared`].
    LockShared,
    /// [`FileSystem::open_segment`].
    OpenSegment,
    /// [`FileSystem::open_segment_read_only`].
    OpenSegmentReadOnly,
    /// [`WritableFile::append`].
    Append,
    /// [`WritableFile::flush`].
    Flush,
    /// [`WritableFile::sync`].
    Sync,
    /// [`WritableFile::start_writeback`].
    Writeback,
    /// [`ReadableFile::read_exact_at`].
    Read,
    /// [`SegmentFile::read_exact_at`].
    SegmentRead,
    /// [`SegmentFile::write_all_at`].
    SegmentWrite,
    /// [`SegmentFile::sync`].
    SegmentSync,
    /// [`SegmentFile::start_writeback`].
    SegmentWriteback,
    /// [`SegmentFile::punch_hole`].
    PunchHole,
    /// [`SegmentFile::map`].
    Map,
    /// [`SegmentFile::allocated_bytes`].
    AllocatedBytes,
}

impl CallKind {
    /// Every kind, in declaration order.
    pub const ALL: [CallKind; 25] = [
        CallKind::CreateDirAll,
        CallKind::Create,
        CallKind::Open,
        CallKind::Rename,
        CallKind::LinkOrCopy,
        CallKind::RemoveFile,
        CallKind::ListDir,
        CallKind::SyncDir,
        CallKind::Exists,
        CallKind::Lock,
        CallKind::LockShared,
        CallKind::OpenSegment,
        CallKind::OpenSegmentReadOnly,
        CallKind::Append,
        CallKind::Flush,
        CallKind::Sync,
        CallKind::Writeback,
        CallKind::Read,
        CallKind::SegmentRead,
        CallKind::SegmentWrite,
        CallKind::SegmentSync,
        CallKind::SegmentWriteback,
        CallKind::PunchHole,
        CallKind::Map,
        CallKind::AllocatedBytes,
    ];

    /// The method's name, as in error messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            CallKind::CreateDirAll => "create_dir_all",
            CallKind::Create => "create",
            CallKind::Open => "open",
            CallKind::Rename => "rename",
            CallKind::RemoveFile => "remove_file",
            CallKind::LinkOrCopy => "link_or_copy",
            CallKind::ListDir => "list_dir",
            CallKind::SyncDir => "sync_dir",
            CallKind::Exists => "exists",
            CallKind::Lock => "lock",
            CallKind::LockShared => "lock_shared",
            CallKind::OpenSegment => "open_segment",
            CallKind::OpenSegmentReadOnly => "open_segment_read_only",
            CallKind::Append => "append",
            CallKind::Flush => "flush",
            CallKind::Sync => "sync",
            CallKind::Writeback => "write-back",
            CallKind::Read => "read",
            CallKind::SegmentRead => "segment read",
            CallKind::SegmentWrite => "segment write",
            CallKind::SegmentSync => "segment sync",
            CallKind::SegmentWriteback => "segment write-back",
            CallKind::PunchHole => "punch_hole",
            CallKind::Map => "map",
            CallKind::AllocatedBytes => "allocated_bytes",
        }
    }

    /// The kinds that change what is on disk or make it durable (creations, writes, syncs,
    /// renames, removals, links, hole punches), as opposed to reads, listings, locks and maps.
    #[must_use]
    pub fn is_mutating(self) -> bool {
        matches!(
            self,
            CallKind::CreateDirAll
                | CallKind::Create
                | CallKind::Rename
                | CallKind::RemoveFile
                | CallKind::LinkOrCopy
                | CallKind::SyncDir
                | CallKind::OpenSegment
                | CallKind::Append
                | CallKind::Flush
                | CallKind::Sync
                | CallKind::SegmentWrite
                | CallKind::SegmentSync
                | CallKind::PunchHole
        )
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for CallKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which call a [`FaultFs`] fails: the `nth` counted call after [`FaultFs::arm`], and with
/// [`Trigger::sticky`] every counted call after it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Trigger {
    nth: u64,
    sticky: bool,
    kinds: u32,
}

impl Trigger {
    /// The `nth` call (counting from 1) of any kind fails; `0` fails none.
    pub fn nth(nth: u64) -> Self {
        Self {
            nth,
            sticky: false,
            kinds: u32::MAX,
        }
    }

    /// Every counted call from the `nth` on fails, as on a device that stays broken.
    pub fn sticky(mut self) -> Self {
        self.sticky = true;
        self
    }

    /// Counts only calls of `kinds`; the others are never failed by this trigger.
    pub fn only(mut self, kinds: &[CallKind]) -> Self {
        self.kinds = kinds.iter().fold(0, |mask, k| mask | k.bit());
        self
    }

    fn counts(&self, kind: CallKind) -> bool {
        self.kinds & kind.bit() != 0
    }
}

/// A call a [`FaultFs`] made fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    /// The call's number, counting every call of every kind from 1.
    pub call: u64,
    /// Its kind.
    pub kind: CallKind,
    /// The path it concerned (for a rename or link, the source).
    pub path: PathBuf,
}

/// The first call of one kind a [`FaultFs`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstCall {
    /// Its number, counting every call of every kind from 1.
    pub call: u64,
    /// The path it concerned.
    pub path: PathBuf,
}

#[derive(Debug, Default)]
struct Armed {
    trigger: Option<Trigger>,
    /// Calls the trigger counted since it was armed.
    seen: u64,
}

#[derive(Debug, Default)]
struct Ledger {
    /// Calls of every kind since creation or the last reset.
    calls: u64,
    per_kind: [u64; CallKind::ALL.len()],
    first: [Option<FirstCall>; CallKind::ALL.len()],
    injected: Vec<Injected>,
}

#[derive(Debug, Default)]
struct State {
    fail_writes: bool,
    fail_syncs: bool,
    no_punch: bool,
    skip_syncs: bool,
    armed: Armed,
    ledger: Ledger,
}

impl State {
    /// Numbers one call of `kind` on `path` and says whether it is to fail. `creates_segment`:
    /// the call is an `open_segment` that creates the file, a write for `fail_writes`.
    fn call(&mut self, kind: CallKind, path: &Path, creates_segment: bool) -> Result<()> {
        let ledger = &mut self.ledger;
        ledger.calls += 1;
        let call = ledger.calls;
        if let Some(n) = ledger.per_kind.get_mut(kind.index()) {
            *n += 1;
        }
        if let Some(first @ None) = ledger.first.get_mut(kind.index()) {
            *first = Some(FirstCall {
                call,
                path: path.to_path_buf(),
            });
        }
        // The trigger counts the call even when a switch fails it.
        let triggered = self.triggered(kind);
        let fails = triggered || (creates_segment && self.fail_writes) || self.switched_off(kind);
        if !fails {
            return Ok(());
        }
        self.ledger.injected.push(Injected {
            call,
            kind,
            path: path.to_path_buf(),
        });
        Err(Error::Io(std::io::Error::other(format!(
            "injected failure of {kind} {} (call {call})",
            path.display()
        ))))
    }

    fn switched_off(&self, kind: CallKind) -> bool {
        match kind {
            CallKind::Create
            | CallKind::Append
            | CallKind::Flush
            | CallKind::SegmentWrite
            | CallKind::PunchHole => self.fail_writes,
            CallKind::Sync | CallKind::SegmentSync | CallKind::SyncDir => self.fail_syncs,
            _ => false,
        }
    }

    fn triggered(&mut self, kind: CallKind) -> bool {
        let armed = &mut self.armed;
        let Some(trigger) = armed.trigger.filter(|t| t.counts(kind)) else {
            return false;
        };
        armed.seen += 1;
        trigger.nth != 0
            && (armed.seen == trigger.nth || (trigger.sticky && armed.seen > trigger.nth))
    }
}

/// A file system that counts every call and fails the ones it is told to; see the module
/// documentation.
///
/// ```
/// # fn main() -> extentdb::Result<()> {
/// # let dir = tempfile::tempdir()?;
/// use std::sync::Arc;
/// use extentdb::fs::{CallKind, FaultFs, Trigger};
///
/// let fs = FaultFs::default(); // over the host's file system
/// let db = extentdb::Options::new().file_system(Arc::new(fs.clone())).open(dir.path())?;
/// fs.arm(Trigger::nth(1).only(&[CallKind::Append]));
/// assert!(db.put("k", "v").is_err()); // the log's append failed
/// assert!(matches!(db.put("k", "v"), Err(extentdb::Error::Poisoned)));
/// assert_eq!(fs.injected()[0].kind, CallKind::Append);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct FaultFs {
    inner: Arc<dyn FileSystem>,
    state: Arc<Mutex<State>>,
}

impl Default for FaultFs {
    /// Over the host's file system ([`RealFs`]).
    fn default() -> Self {
        Self::new(Arc::new(RealFs))
    }
}

impl FaultFs {
    /// Wraps `inner`, with no fault armed and every switch off.
    #[must_use]
    pub fn new(inner: Arc<dyn FileSystem>) -> Self {
        Self {
            inner,
            state: Arc::default(),
        }
    }

    /// Arms `trigger`, counting its calls from here; replaces any trigger armed before.
    pub fn arm(&self, trigger: Trigger) {
        self.state.lock().armed = Armed {
            trigger: Some(trigger),
            seen: 0,
        };
    }

    /// Disarms the trigger: no call fails because of it any more.
    pub fn disarm(&self) {
        self.state.lock().armed = Armed::default();
    }

    /// While `on`, creations, appends, flushes, segment writes, creations of a missing segment
    /// and hole punches fail.
    pub fn fail_writes(&self, on: bool) {
        self.state.lock().fail_writes = on;
    }

    /// While `on`, file, segment and directory syncs fail.
    pub fn fail_syncs(&self, on: bool) {
        self.state.lock().fail_syncs = on;
    }

    /// While `on`, hole punching is unsupported: `punch_hole` returns `Ok(false)` and leaves
    /// the range alone.
    pub fn no_punch(&self, on: bool) {
        self.state.lock().no_punch = on;
    }

    /// While `on`, syncs are counted (and fail when told to) but not passed on: a writable
    /// file's sync only flushes it, segment and directory syncs do nothing. Nothing is then
    /// durable against power loss, so this is for tests that simulate none.
    pub fn skip_syncs(&self, on: bool) {
        self.state.lock().skip_syncs = on;
    }

    /// Calls of every kind since creation or [`Self::reset_counts`].
    #[must_use]
    pub fn calls(&self) -> u64 {
        self.state.lock().ledger.calls
    }

    /// Calls per kind since creation or [`Self::reset_counts`]; kinds never called are left out.
    #[must_use]
    pub fn counts(&self) -> BTreeMap<CallKind, u64> {
        let state = self.state.lock();
        CallKind::ALL
            .into_iter()
            .zip(state.ledger.per_kind)
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The first call of each kind reached since creation or [`Self::reset_counts`].
    #[must_use]
    pub fn first_calls(&self) -> BTreeMap<CallKind, FirstCall> {
        let state = self.state.lock();
        CallKind::ALL
            .into_iter()
            .zip(state.ledger.first.iter())
            .filter_map(|(kind, first)| Some((kind, first.clone()?)))
            .collect()
    }

    /// Every call made to fail since creation or [`Self::reset_counts`], in order.
    #[must_use]
    pub fn injected(&self) -> Vec<Injected> {
        self.state.lock().ledger.injected.clone()
    }

    /// Forgets the calls counted and the failures injected; numbering starts again from 1.
    pub fn reset_counts(&self) {
        self.state.lock().ledger = Ledger::default();
    }

    fn call(&self, kind: CallKind, path: &Path) -> Result<()> {
        self.state.lock().call(kind, path, false)
    }

    fn skips_syncs(&self) -> bool {
        self.state.lock().skip_syncs
    }

    fn file<T>(&self, inner: T) -> Faulty<T> {
        Faulty {
            inner,
            fs: self.clone(),
        }
    }
}

impl FileSystem for FaultFs {
    fn create_dir_all(&self, path: &Path) -> Result<()> {
        self.call(CallKind::CreateDirAll, path)?;
        self.inner.create_dir_all(path)
    }

    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        self.call(CallKind::Create, path)?;
        Ok(Box::new(self.file(self.inner.create(path)?)))
    }

    fn open(&self, path: &Path) -> Result<Arc<dyn ReadableFile>> {
        self.call(CallKind::Open, path)?;
        Ok(Arc::new(self.file(self.inner.open(path)?)))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.call(CallKind::Rename, from)?;
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        self.call(CallKind::RemoveFile, path)?;
        self.inner.remove_file(path)
    }

    fn link_or_copy(&self, from: &Path, to: &Path) -> Result<()> {
        self.call(CallKind::LinkOrCopy, from)?;
        self.inner.link_or_copy(from, to)
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        self.call(CallKind::ListDir, path)?;
        self.inner.list_dir(path)
    }

    fn sync_dir(&self, path: &Path) -> Result<()> {
        self.call(CallKind::SyncDir, path)?;
        if self.skips_syncs() {
            return Ok(());
        }
        self.inner.sync_dir(path)
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        self.call(CallKind::Exists, path)?;
        self.inner.exists(path)
    }

    fn lock(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        self.call(CallKind::Lock, path)?;
        self.inner.lock(path)
    }

    fn lock_shared(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        self.call(CallKind::LockShared, path)?;
        self.inner.lock_shared(path)
    }

    fn open_segment(
        &self,
        path: &Path,
        len_bytes: u64,
        create: bool,
    ) -> Result<Arc<dyn SegmentFile>> {
        // Opening an existing segment writes nothing, so `fail_writes` fails only a creation.
        let creates = create && self.state.lock().fail_writes && !self.inner.exists(path)?;
        self.state
            .lock()
            .call(CallKind::OpenSegment, path, creates)?;
        let inner = self.inner.open_segment(path, len_bytes, create)?;
        Ok(Arc::new(self.file(inner)))
    }

    fn open_segment_read_only(&self, path: &Path, len_bytes: u64) -> Result<Arc<dyn SegmentFile>> {
        self.call(CallKind::OpenSegmentReadOnly, path)?;
        let inner = self.inner.open_segment_read_only(path, len_bytes)?;
        Ok(Arc::new(self.file(inner)))
    }
}

/// A file opened through a [`FaultFs`]: every call is counted and may fail before it reaches
/// `inner`.
#[derive(Debug)]
struct Faulty<T> {
    inner: T,
    fs: FaultFs,
}

impl WritableFile for Faulty<Box<dyn WritableFile>> {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.fs.call(CallKind::Append, self.inner.path())?;
        self.inner.append(data)
    }

    fn flush(&mut self) -> Result<()> {
        self.fs.call(CallKind::Flush, self.inner.path())?;
        self.inner.flush()
    }

    fn sync(&mut self) -> Result<()> {
        self.fs.call(CallKind::Sync, self.inner.path())?;
        if self.fs.skips_syncs() {
            return self.inner.flush();
        }
        self.inner.sync()
    }

    fn start_writeback(&mut self, offset: u64, len: u64) -> Result<()> {
        self.fs.call(CallKind::Writeback, self.inner.path())?;
        self.inner.start_writeback(offset, len)
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn path(&self) -> &Path {
        self.inner.path()
    }
}

impl ReadableFile for Faulty<Arc<dyn ReadableFile>> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.fs.call(CallKind::Read, self.inner.path())?;
        self.inner.read_exact_at(offset, buf)
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn path(&self) -> &Path {
        self.inner.path()
    }
}

impl SegmentFile for Faulty<Arc<dyn SegmentFile>> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.fs.call(CallKind::SegmentRead, self.inner.path())?;
        self.inner.read_exact_at(offset, buf)
    }

    fn write_all_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.fs.call(CallKind::SegmentWrite, self.inner.path())?;
        self.inner.write_all_at(offset, data)
    }

    fn sync(&self) -> Result<()> {
        self.fs.call(CallKind::SegmentSync, self.inner.path())?;
        if self.fs.skips_syncs() {
            return Ok(());
        }
        self.inner.sync()
    }

    fn start_writeback(&self, offset: u64, len: u64) -> Result<()> {
        self.fs
            .call(CallKind::SegmentWriteback, self.inner.path())?;
        self.inner.start_writeback(offset, len)
    }

    fn punch_hole(&self, offset: u64, len: u64) -> Result<bool> {
        self.fs.call(CallKind::PunchHole, self.inner.path())?;
        if self.fs.state.lock().no_punch {
            return Ok(false);
        }
        self.inner.punch_hole(offset, len)
    }

    fn map(&self) -> Result<Arc<memmap2::Mmap>> {
        self.fs.call(CallKind::Map, self.inner.path())?;
        self.inner.map()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn allocated_bytes(&self) -> Result<u64> {
        self.fs.call(CallKind::AllocatedBytes, self.inner.path())?;
        self.inner.allocated_bytes()
    }

    fn path(&self) -> &Path {
        self.inner.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 8192;

    /// Makes one call of every kind, in `CallKind::ALL` order, under `dir`.
    fn call_every_kind(fs: &FaultFs, dir: &Path) -> Result<()> {
        let sub = dir.join("sub");
        fs.create_dir_all(&sub)?;
        let mut file = fs.create(&sub.join("a"))?;
        let readable = fs.open(&sub.join("a"))?;
        fs.rename(&sub.join("a"), &sub.join("b"))?;
        fs.link_or_copy(&sub.join("b"), &sub.join("c"))?;
        fs.remove_file(&sub.join("c"))?;
        fs.list_dir(&sub)?;
        fs.sync_dir(&sub)?;
        fs.exists(&sub)?;
        drop(fs.lock(&sub.join("LOCK"))?);
        drop(fs.lock_shared(&sub.join("LOCK"))?);
        let seg = fs.open_segment(&sub.join("000000.seg"), SEG, true)?;
        fs.open_segment_read_only(&sub.join("000000.seg"), SEG)?;
        file.append(b"hello")?;
        file.flush()?;
        file.sync()?;
        file.start_writeback(0, 5)?;
        // Opened empty: its length is fixed at open.
        readable.read_exact_at(0, &mut [])?;
        seg.read_exact_at(0, &mut [0; 5])?;
        seg.write_all_at(0, b"x")?;
        seg.sync()?;
        seg.start_writeback(0, 4096)?;
        seg.punch_hole(0, 4096)?;
        seg.map()?;
        seg.allocated_bytes()?;
        Ok(())
    }

    #[test]
    fn every_kind_is_counted_and_its_first_call_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::default();
        call_every_kind(&fs, dir.path()).unwrap();
        let counts = fs.counts();
        assert_eq!(counts.len(), CallKind::ALL.len(), "{counts:?}");
        assert!(counts.values().all(|&n| n == 1), "{counts:?}");
        assert_eq!(fs.calls(), CallKind::ALL.len() as u64);
        let first = fs.first_calls();
        for (i, kind) in CallKind::ALL.into_iter().enumerate() {
            assert_eq!(first[&kind].call, i as u64 + 1, "{kind}");
        }
        assert_eq!(first[&CallKind::Create].path, dir.path().join("sub/a"));
        assert_eq!(
            first[&CallKind::Map].path,
            dir.path().join("sub/000000.seg")
        );
        assert!(fs.injected().is_empty());
        fs.reset_counts();
        assert_eq!(fs.calls(), 0);
        assert!(fs.counts().is_empty() && fs.first_calls().is_empty());
    }

    #[test]
    fn every_kind_can_be_failed_and_the_failed_call_changes_nothing() {
        for (i, kind) in CallKind::ALL.into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let fs = FaultFs::default();
            fs.arm(Trigger::nth(1).only(&[kind]));
            let err = call_every_kind(&fs, dir.path()).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, Error::Io(_)), "{kind}: {err}");
            assert!(msg.contains(kind.name()) && msg.contains("sub"), "{msg}");
            let injected = fs.injected();
            assert_eq!(injected.len(), 1, "{kind}: {injected:?}");
            assert_eq!(injected[0].kind, kind);
            assert_eq!(injected[0].call, i as u64 + 1, "{kind}");
            assert_eq!(
                fs.calls(),
                i as u64 + 1,
                "{kind}: the first failure ends the calls"
            );
        }
        // A failed append writes nothing, a failed rename moves nothing.
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::default();
        let mut file = fs.create(&dir.path().join("f")).unwrap();
        fs.arm(Trigger::nth(1).only(&[CallKind::Append]));
        assert!(file.append(b"lost").is_err());
        file.append(b"kept").unwrap();
        file.flush().unwrap();
        fs.arm(Trigger::nth(1).only(&[CallKind::Rename]));
        assert!(
            fs.rename(&dir.path().join("f"), &dir.path().join("g"))
                .is_err()
        );
        assert!(!dir.path().join("g").exists());
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"kept");
    }

    #[test]
    fn a_trigger_fails_its_nth_counted_call_once_or_from_then_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let fs = FaultFs::default();
        let mut file = fs.create(&path).unwrap();
        let outcomes = |file: &mut Box<dyn WritableFile>, fs: &FaultFs| {
            (0..5)
                .map(|_| {
                    // Only appends count: the exists calls between them never fail.
                    fs.exists(&path).unwrap();
                    file.append(b"x").is_ok()
                })
                .collect::<Vec<_>>()
        };
        fs.arm(Trigger::nth(3).only(&[CallKind::Append]));
        assert_eq!(outcomes(&mut file, &fs), [true, true, false, true, true]);
        fs.arm(Trigger::nth(2).only(&[CallKind::Append]).sticky());
        assert_eq!(outcomes(&mut file, &fs), [true, false, false, false, false]);
        fs.disarm();
        assert_eq!(outcomes(&mut file, &fs), [true; 5]);
        // Counting every kind: the exists calls count too.
        fs.arm(Trigger::nth(4));
        assert_eq!(outcomes(&mut file, &fs), [true, false, true, true, true]);
        fs.arm(Trigger::nth(0).sticky());
        assert_eq!(outcomes(&mut file, &fs), [true; 5]);
        let failed: Vec<_> = fs.injected().iter().map(|f| f.call).collect();
        // 1 create, then (exists, append) pairs: the append of the m-th pair is call 3 + 2m.
        assert_eq!(failed, [2, 6, 7, 8, 9, 16].map(|m| 3 + 2 * m));
    }

    #[test]
    fn switches_fail_segment_writes_syncs_and_punches() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::default();
        let seg = fs
            .open_segment(&dir.path().join("000000.seg"), SEG, true)
            .unwrap();
        seg.write_all_at(0, b"before").unwrap();
        seg.sync().unwrap();

        fs.fail_writes(true);
        assert!(seg.write_all_at(0, b"during").is_err());
        assert!(seg.punch_hole(0, 4096).is_err());
        assert!(
            fs.open_segment(&dir.path().join("000001.seg"), SEG, true)
                .is_err()
        );
        // Opening an existing segment writes nothing.
        fs.open_segment(&dir.path().join("000000.seg"), SEG, true)
            .unwrap();
        seg.sync().unwrap();
        let mut buf = [0u8; 6];
        seg.read_exact_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"before", "a failed write changes nothing");
        fs.fail_writes(false);

        fs.fail_syncs(true);
        seg.write_all_at(0, b"after!").unwrap();
        assert!(seg.sync().is_err());
        assert!(fs.sync_dir(dir.path()).is_err());
        fs.fail_syncs(false);
        seg.sync().unwrap();

        fs.no_punch(true);
        assert!(!seg.punch_hole(0, 4096).unwrap());
        seg.read_exact_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"after!", "an unsupported punch changes nothing");
        let kinds: Vec<_> = fs.injected().iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [
                CallKind::SegmentWrite,
                CallKind::PunchHole,
                CallKind::OpenSegment,
                CallKind::SegmentSync,
                CallKind::SyncDir
            ]
        );
    }

    /// A `FaultFs` wraps any file system, another `FaultFs` included: the inner one sees what
    /// the outer one passes on, and with `skip_syncs` that is no sync at all.
    #[test]
    fn skipped_syncs_are_counted_but_not_passed_on() {
        let dir = tempfile::tempdir().unwrap();
        let inner = FaultFs::default();
        let outer = FaultFs::new(Arc::new(inner.clone()));
        outer.skip_syncs(true);
        let mut file = outer.create(&dir.path().join("f")).unwrap();
        file.append(b"x").unwrap();
        file.sync().unwrap();
        let seg = outer
            .open_segment(&dir.path().join("000000.seg"), SEG, true)
            .unwrap();
        seg.sync().unwrap();
        outer.sync_dir(dir.path()).unwrap();
        let outer_counts = outer.counts();
        for kind in [CallKind::Sync, CallKind::SegmentSync, CallKind::SyncDir] {
            assert_eq!(outer_counts.get(&kind), Some(&1), "{kind}");
            assert_eq!(inner.counts().get(&kind), None, "{kind}");
        }
        assert_eq!(inner.counts().get(&CallKind::Flush), Some(&1));
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"x");
        // A skipped sync still fails when told to.
        outer.arm(Trigger::nth(1).only(&[CallKind::SyncDir]));
        assert!(outer.sync_dir(dir.path()).is_err());
    }
}
