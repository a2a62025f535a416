//! [`MemFs`]: a [`FileSystem`] held in memory that knows which of its bytes and names would
//! survive a power loss, and can produce the state a power loss would leave
//! ([`MemFs::after_power_loss`]).
//!
//! A database runs on it like on the host file system (tests, ephemeral stores); the
//! power-loss test (`engine/tests/power_loss.rs`) runs a workload on it, cuts the power at a
//! chosen sync ([`MemFs::cut_power_at_sync`]) and reopens the database on what survived.
//!
//! # The durability model
//!
//! A POSIX file system with ordered metadata, taken at its word and no further: only what a
//! sync promises is durable. Files are inodes; a directory maps names to inodes (or to
//! subdirectories); one inode may have several names (`link_or_copy`) or none (removed while
//! open: it is written and read through its handles and is gone at power loss).
//!
//! - **File contents.** Each file has its contents now and its contents as of its last
//!   `sync` (`WritableFile::sync`, `SegmentFile::sync`, which both cover every completed
//!   write, append, hole punch and length change of the file, through any handle). Writes
//!   are visible to every reader at once (there is no user-space buffer: `flush` does
//!   nothing), and are durable only once synced.
//! - **Directory entries.** Each directory has its entries now and its entries as of its last
//!   `sync_dir`: creating (`create`, `open_segment`, `lock`, `create_dir_all`), renaming,
//!   linking and removing change only the former. At power loss a file whose creation was
//!   never dir-synced vanishes (even if its contents were synced), a rename reverts, a removed
//!   file reappears with its durable contents. A rename between two directories is a removal
//!   from one and a creation in the other, each durable with its own directory. Syncing a file
//!   makes none of its names durable, nor does syncing a directory make its files' contents
//!   durable. A directory's own creation is an entry of its parent: a directory created and
//!   never made durable in its parent vanishes with everything under it.
//! - **The root** `/` always exists. Relative paths are taken from the root.
//!
//! # What a power loss leaves
//!
//! [`MemFs::after_power_loss`] returns a new `MemFs` that holds the durable state, plus what
//! the [`Unsynced`] choice keeps of the rest. [`Unsynced::Lost`] keeps nothing unsynced.
//! [`Unsynced::Torn`] makes seeded choices, each one a real disk and file system can make:
//!
//! - *Directory*: a prefix of the changes since its last `sync_dir`, in the order they were
//!   made (a journal commits metadata in order), from none to all.
//! - *Appended bytes* (past the synced length, by `append`): none, all, or a prefix ending on
//!   a 512-byte sector. Never a hole inside what is kept: with ordered metadata the size on
//!   disk advances only over data already written (ext4 `data=ordered`, XFS). A file system
//!   that writes sizes before data (ext4 `data=writeback`) can leave zeros inside the tail;
//!   that is outside this model (see `docs/durability.md`).
//! - *A length set at once* (a segment's `set_len` when created): the whole new length or
//!   none of it (a size is one field; it is never half written); the pages written in the new
//!   length are then each kept or a hole (the size came from `ftruncate`, not from data).
//! - *Writes in place and hole punches* (below the synced length): per 4 KiB page, the page as
//!   it is now or as it was at the last sync (the page cache writes back whole pages, in any
//!   order).
//! - *A truncation* (`create` of an existing file): either it is durable (and the new bytes
//!   torn as above) or it never happened (the file keeps its durable contents, torn as above).
//!
//! A power loss never changes bytes that were durable and not written since, and never makes
//! up bytes: every byte of the result was, at some point, the byte there, or zero.
//!
//! # Cutting the power during a run
//!
//! Every `WritableFile::sync`, `SegmentFile::sync` and `sync_dir` is a numbered *sync point*
//! ([`MemFs::sync_count`]). [`MemFs::cut_power_at_sync`] picks one: when it is reached, the
//! power goes off just before the sync takes effect or just after (the sync's caller never
//! learns that it succeeded), and from then on every call on the file system and its open
//! files fails with `Io` (`BrokenPipe`), as if the machine had died. [`MemFs::cut_power`] does
//! it at once. The state stays as it was at that moment, for `after_power_loss`.
//! [`MemFs::ignore_syncs`] makes chosen syncs succeed without effect (a disk that ignores
//! flushes), so a test can show that its durability checks fail when a sync is missing.
//!
//! # Not modelled
//!
//! Process crashes (every write reaches the file system at once, so there is nothing a
//! process crash loses that a clean exit keeps), read errors, full disks, and bit rot: other
//! layers inject those. Directories cannot be renamed or removed (the engine does neither).
//!
//! # Memory maps
//!
//! Each file is an anonymous memory file (`memfd_create`), so a segment's memory map is a real
//! `memmap2::Mmap`, a hole punch is a real `fallocate`, and `allocated_bytes` counts what the
//! memory file holds. Linux and Android only. One difference from a disk file system: reading
//! a hole through the map allocates its page (the memory file has no shared zero page), so
//! `allocated_bytes` counts holes read that way. A memory file is never shrunk: a truncation
//! gives the inode a new memory file, so a map made before it keeps the old bytes instead of
//! faulting.
//!
//! Thread safety: `MemFs` is `Send + Sync` and cheap to clone (clones share one file system).
//! The directory tree is one mutex; each inode has its own, held across each write so that a
//! page's durable copy is taken before the write changes it. Reads copy from the memory file
//! without the inode's lock. No lock is held while another is taken, except the tree's while
//! each inode's is taken in turn to image it (`after_power_loss`); the power switch's locks
//! are leaves.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use memmap2::Mmap;
use parking_lot::Mutex;

use super::{FileLock, FileSystem, ReadableFile, SegmentFile, WritableFile, check_range, io_at};
use crate::error::{Error, Result};

/// The page size of writeback and hole punching: in-place writes survive per page.
const PAGE_BYTES: u64 = 4096;
/// The unit a disk writes atomically: an appended tail survives up to a sector boundary.
const SECTOR_BYTES: u64 = 512;

/// What [`MemFs::after_power_loss`] keeps of what was not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsynced {
    /// Nothing: exactly the synced state.
    Lost,
    /// Parts of it, chosen by a generator seeded with `seed` (the module documentation lists
    /// the choices). The same seed on the same state gives the same result.
    Torn {
        /// The seed of the choices.
        seed: u64,
    },
}

/// Where, around the chosen sync, [`MemFs::cut_power_at_sync`] cuts the power.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutAt {
    /// The sync does not take effect.
    BeforeSync,
    /// The sync takes effect, but its caller gets an error, as if the power went off before
    /// the call could return.
    AfterSync,
}

/// An in-memory file system that models what survives a power loss (see the module
/// documentation for the model).
#[derive(Debug, Clone)]
pub struct MemFs {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    tree: Mutex<Tree>,
    power: Power,
}

impl Default for MemFs {
    fn default() -> Self {
        Self::new()
    }
}

impl MemFs {
    /// An empty file system: only the root directory `/`, which is durable.
    #[must_use]
    pub fn new() -> Self {
        Self::with_tree(Tree::new())
    }

    fn with_tree(tree: Tree) -> Self {
        Self {
            shared: Arc::new(Shared {
                tree: Mutex::new(tree),
                power: Power::default(),
            }),
        }
    }

    /// The state a power loss would leave now: a new, powered `MemFs` with every durable
    /// file and directory, plus what `unsynced` keeps of the rest. No lock is held in it.
    /// This file system is not changed, and may be imaged again (with the power off too).
    ///
    /// # Errors
    /// `Io` if a memory file cannot be created or copied (out of memory).
    pub fn after_power_loss(&self, unsynced: Unsynced) -> Result<MemFs> {
        let mut tears = match unsynced {
            Unsynced::Lost => None,
            Unsynced::Torn { seed } => Some(Rng::new(seed)),
        };
        let tree = self.shared.tree.lock();
        let image = tree.after_power_loss(&mut tears)?;
        Ok(Self::with_tree(image))
    }

    /// How many sync points (file, segment and directory syncs, failed ones included) have
    /// been reached so far.
    #[must_use]
    pub fn sync_count(&self) -> u64 {
        self.shared.power.syncs.load(Ordering::SeqCst)
    }

    /// Cuts the power at sync point `sync_number` (the first is 1), at `at`; see the module
    /// documentation. Replaces an earlier choice; a number already passed never comes.
    pub fn cut_power_at_sync(&self, sync_number: u64, at: CutAt) {
        *self.shared.power.cut_at.lock() = Some((sync_number, at));
    }

    /// Cuts the power now: every later call fails.
    pub fn cut_power(&self) {
        self.shared.power.on.store(false, Ordering::SeqCst);
    }

    /// False once the power has been cut.
    #[must_use]
    pub fn has_power(&self) -> bool {
        self.shared.power.on.load(Ordering::SeqCst)
    }

    /// Makes every later sync (of a file or a directory) whose path `lies_about` accepts
    /// return success without making anything durable, as a disk whose write cache ignores
    /// flushes would. It is still a sync point. For tests that must show a durability check
    /// can fail; replaces an earlier choice.
    pub fn ignore_syncs(&self, lies_about: impl Fn(&Path) -> bool + Send + Sync + 'static) {
        *self.shared.power.ignored.lock() = Some(Box::new(lies_about));
    }
}

/// Which syncs [`MemFs::ignore_syncs`] ignores.
type SyncFilter = Box<dyn Fn(&Path) -> bool + Send + Sync>;

/// The power switch, the sync-point counter and the syncs a lying disk ignores.
struct Power {
    on: AtomicBool,
    syncs: AtomicU64,
    cut_at: Mutex<Option<(u64, CutAt)>>,
    ignored: Mutex<Option<SyncFilter>>,
}

impl std::fmt::Debug for Power {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Power")
            .field("on", &self.on)
            .field("syncs", &self.syncs)
            .field("cut_at", &self.cut_at)
            .field("ignores_syncs", &self.ignored.lock().is_some())
            .finish()
    }
}

impl Default for Power {
    fn default() -> Self {
        Self {
            on: AtomicBool::new(true),
            syncs: AtomicU64::new(0),
            cut_at: Mutex::new(None),
            ignored: Mutex::new(None),
        }
    }
}

impl Power {
    /// `Io` once the power is off.
    fn check(&self) -> Result<()> {
        if self.on.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Error::Io(std::io::Error::new(
                ErrorKind::BrokenPipe,
                "the power is off",
            )))
        }
    }

    /// Runs `sync` of `path`, the next sync point, unless the power is cut there or the
    /// disk ignores it.
    fn sync_point(&self, path: &Path, sync: impl FnOnce() -> Result<()>) -> Result<()> {
        self.check()?;
        let number = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        let lies = self.ignored.lock().as_ref().is_some_and(|lies| lies(path));
        let sync = || if lies { Ok(()) } else { sync() };
        let cut = match *self.cut_at.lock() {
            Some((at, when)) if at == number => Some(when),
            _ => None,
        };
        match cut {
            None => sync(),
            Some(CutAt::BeforeSync) => {
                self.on.store(false, Ordering::SeqCst);
                self.check()
            }
            Some(CutAt::AfterSync) => {
                sync()?;
                self.on.store(false, Ordering::SeqCst);
                self.check()
            }
        }
    }
}

fn io_error(kind: ErrorKind, op: &str, path: &Path, why: &str) -> Error {
    Error::Io(std::io::Error::new(
        kind,
        format!("{op} {}: {why}", path.display()),
    ))
}

fn not_found(op: &str, path: &Path) -> Error {
    io_error(ErrorKind::NotFound, op, path, "no such file or directory")
}

// ---------------------------------------------------------------------------------------------
// The directory tree.

/// An entry of a directory.
#[derive(Debug, Clone)]
enum Entry {
    File(Arc<Inode>),
    /// A subdirectory; its entries are in [`Tree::dirs`] under its path.
    Dir,
}

#[derive(Debug, Default)]
struct Dir {
    entries: BTreeMap<String, Entry>,
    /// The entries as of the last `sync_dir`.
    durable: BTreeMap<String, Entry>,
    /// The changes since then, in order: a name set to an entry, or removed.
    pending: Vec<(String, Option<Entry>)>,
}

impl Dir {
    fn set(&mut self, name: &str, entry: Option<Entry>) {
        match &entry {
            Some(e) => self.entries.insert(name.to_owned(), e.clone()),
            None => self.entries.remove(name),
        };
        self.pending.push((name.to_owned(), entry));
    }

    fn sync(&mut self) {
        self.durable = self.entries.clone();
        self.pending.clear();
    }

    /// The entries a power loss leaves: the durable ones and a prefix of the changes.
    fn after_power_loss(&self, tears: &mut Option<Rng>) -> BTreeMap<String, Entry> {
        let kept = tears
            .as_mut()
            .map_or(0, |rng| rng.below(self.pending.len() as u64 + 1) as usize);
        let mut entries = self.durable.clone();
        for (name, entry) in self.pending.iter().take(kept) {
            match entry {
                Some(e) => entries.insert(name.clone(), e.clone()),
                None => entries.remove(name),
            };
        }
        entries
    }
}

/// Advisory locks held on one inode.
#[derive(Debug, Default, Clone, Copy)]
struct Holders {
    exclusive: bool,
    shared: usize,
}

#[derive(Debug)]
struct Tree {
    /// Every directory, by normalized absolute path; the root is `/`.
    dirs: BTreeMap<PathBuf, Dir>,
    /// Advisory locks by inode id.
    locks: HashMap<u64, Holders>,
    next_inode: u64,
}

/// `path` made absolute (from `/`) with `.` and `..` resolved, and as a directory and a name.
fn split(path: &Path) -> Result<(PathBuf, String)> {
    let full = normalize(path);
    let name = full
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::invalid(format!("{} names no file", path.display())))?
        .to_owned();
    let parent = full.parent().map_or_else(root, Path::to_path_buf);
    Ok((parent, name))
}

fn root() -> PathBuf {
    PathBuf::from("/")
}

fn normalize(path: &Path) -> PathBuf {
    let mut full = root();
    for part in path.components() {
        match part {
            Component::Normal(name) => full.push(name),
            Component::ParentDir => {
                full.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    full
}

impl Tree {
    fn new() -> Self {
        let mut dirs = BTreeMap::new();
        dirs.insert(root(), Dir::default());
        Self {
            dirs,
            locks: HashMap::new(),
            next_inode: 0,
        }
    }

    fn new_inode(&mut self) -> Result<Arc<Inode>> {
        self.next_inode += 1;
        Ok(Arc::new(Inode {
            id: self.next_inode,
            state: Mutex::new(InodeState {
                now: Contents::new()?,
                before_truncation: None,
            }),
        }))
    }

    fn dir(&self, dir: &Path, op: &str, path: &Path) -> Result<&Dir> {
        self.dirs.get(dir).ok_or_else(|| not_found(op, path))
    }

    fn dir_mut(&mut self, dir: &Path, op: &str, path: &Path) -> Result<&mut Dir> {
        self.dirs.get_mut(dir).ok_or_else(|| not_found(op, path))
    }

    /// The entry at `path`, if its directory exists.
    fn entry(&self, path: &Path, op: &str) -> Result<Option<Entry>> {
        let full = normalize(path);
        if full == root() {
            return Ok(Some(Entry::Dir));
        }
        let (dir, name) = split(path)?;
        Ok(self.dir(&dir, op, path)?.entries.get(&name).cloned())
    }

    /// The file at `path`: `NotFound` if missing, an error if it is a directory.
    fn file(&self, path: &Path, op: &str) -> Result<Arc<Inode>> {
        match self.entry(path, op)? {
            Some(Entry::File(inode)) => Ok(inode),
            Some(Entry::Dir) => Err(is_a_directory(op, path)),
            None => Err(not_found(op, path)),
        }
    }

    /// The file at `path`, created empty if missing (its directory must exist).
    fn file_or_new(&mut self, path: &Path, op: &str) -> Result<(Arc<Inode>, bool)> {
        if let Some(inode) = self.entry(path, op)? {
            return match inode {
                Entry::File(inode) => Ok((inode, false)),
                Entry::Dir => Err(is_a_directory(op, path)),
            };
        }
        let inode = self.new_inode()?;
        let (dir, name) = split(path)?;
        self.dir_mut(&dir, op, path)?
            .set(&name, Some(Entry::File(Arc::clone(&inode))));
        Ok((inode, true))
    }

    fn create_dir_all(&mut self, path: &Path) -> Result<()> {
        let full = normalize(path);
        let mut at = root();
        for part in full.components().skip(1) {
            let Component::Normal(name) = part else {
                continue;
            };
            let name = name
                .to_str()
                .ok_or_else(|| Error::invalid(format!("{} is not UTF-8", path.display())))?;
            let child = at.join(name);
            match self.dir(&at, "create directory", path)?.entries.get(name) {
                Some(Entry::Dir) => {}
                Some(Entry::File(_)) => {
                    return Err(io_error(
                        ErrorKind::AlreadyExists,
                        "create directory",
                        path,
                        "a file is in the way",
                    ));
                }
                None => {
                    self.dir_mut(&at, "create directory", path)?
                        .set(name, Some(Entry::Dir));
                    self.dirs.insert(child.clone(), Dir::default());
                }
            }
            at = child;
        }
        Ok(())
    }

    fn rename(&mut self, from: &Path, to: &Path) -> Result<()> {
        let inode = self.file(from, "rename")?;
        if let Some(Entry::Dir) = self.entry(to, "rename")? {
            return Err(is_a_directory("rename", to));
        }
        if normalize(from) == normalize(to) {
            return Ok(());
        }
        let (to_dir, to_name) = split(to)?;
        self.dir_mut(&to_dir, "rename", to)?
            .set(&to_name, Some(Entry::File(inode)));
        let (from_dir, from_name) = split(from)?;
        self.dir_mut(&from_dir, "rename", from)?
            .set(&from_name, None);
        Ok(())
    }

    fn remove_file(&mut self, path: &Path) -> Result<()> {
        self.file(path, "remove")?;
        let (dir, name) = split(path)?;
        self.dir_mut(&dir, "remove", path)?.set(&name, None);
        Ok(())
    }

    /// A new tree of what survives: the directories reachable from the root through surviving
    /// entries, each surviving inode imaged once (names of one inode keep sharing it).
    fn after_power_loss(&self, tears: &mut Option<Rng>) -> Result<Tree> {
        let mut image = Tree::new();
        let mut inodes: HashMap<u64, Arc<Inode>> = HashMap::new();
        let mut todo = vec![root()];
        while let Some(path) = todo.pop() {
            let Some(dir) = self.dirs.get(&path) else {
                continue;
            };
            let mut entries = BTreeMap::new();
            for (name, entry) in dir.after_power_loss(tears) {
                let entry = match entry {
                    Entry::Dir => {
                        todo.push(path.join(&name));
                        Entry::Dir
                    }
                    Entry::File(inode) => {
                        if let Some(copy) = inodes.get(&inode.id) {
                            Entry::File(Arc::clone(copy))
                        } else {
                            image.next_inode += 1;
                            let copy = Arc::new(inode.after_power_loss(image.next_inode, tears)?);
                            inodes.insert(inode.id, Arc::clone(&copy));
                            Entry::File(copy)
                        }
                    }
                };
                entries.insert(name, entry);
            }
            image.dirs.insert(
                path,
                Dir {
                    durable: entries.clone(),
                    entries,
                    pending: Vec::new(),
                },
            );
        }
        Ok(image)
    }
}

fn is_a_directory(op: &str, path: &Path) -> Error {
    io_error(ErrorKind::IsADirectory, op, path, "is a directory")
}

// ---------------------------------------------------------------------------------------------
// Files.

#[derive(Debug)]
struct Inode {
    id: u64,
    state: Mutex<InodeState>,
}

#[derive(Debug)]
struct InodeState {
    now: Contents,
    /// The contents before a truncation not yet synced: what a power loss may bring back.
    before_truncation: Option<Contents>,
}

/// The bytes of a file now, and enough to rebuild them as of the last sync.
///
/// Invariant: every page that overlaps `[0, synced_len)` and was changed since the last sync
/// has its synced bytes (those below `synced_len`) in `saved`; every other byte below
/// `synced_len` is the same now as at the sync.
#[derive(Debug)]
struct Contents {
    file: Arc<File>,
    len: u64,
    synced_len: u64,
    /// The length was set at once (`set_len`) since the last sync, rather than grown by
    /// appends.
    set_len_since_sync: bool,
    /// Synced bytes of changed pages, by page number.
    saved: BTreeMap<u64, Vec<u8>>,
}

impl Contents {
    fn new() -> Result<Self> {
        let file = memory_file().map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("create a memory file: {e}"),
            ))
        })?;
        Ok(Self {
            file: Arc::new(file),
            len: 0,
            synced_len: 0,
            set_len_since_sync: false,
            saved: BTreeMap::new(),
        })
    }

    /// Keeps the synced bytes of every page that `[offset, offset + len)` touches.
    fn save_pages(&mut self, offset: u64, len: u64) -> std::io::Result<()> {
        let end = offset.saturating_add(len).min(self.synced_len);
        if len == 0 || offset >= end {
            return Ok(());
        }
        for page in offset / PAGE_BYTES..end.div_ceil(PAGE_BYTES) {
            if self.saved.contains_key(&page) {
                continue;
            }
            let start = page * PAGE_BYTES;
            let n = (self.synced_len - start).min(PAGE_BYTES);
            let mut bytes = vec![0; n as usize];
            self.file.read_exact_at(&mut bytes, start)?;
            self.saved.insert(page, bytes);
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.save_pages(offset, data.len() as u64)?;
        self.file.write_all_at(data, offset)?;
        self.len = self.len.max(offset + data.len() as u64);
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)?;
        self.len = len;
        self.set_len_since_sync = true;
        Ok(())
    }

    fn punch(&mut self, offset: u64, len: u64) -> std::io::Result<bool> {
        self.save_pages(offset, len)?;
        punch_hole(&self.file, offset, len)
    }

    fn sync(&mut self) {
        self.synced_len = self.len;
        self.set_len_since_sync = false;
        self.saved.clear();
    }

    /// A new memory file with what a power loss leaves of these contents.
    fn after_power_loss(&self, tears: &mut Option<Rng>) -> std::io::Result<Contents> {
        let grown = self.len.saturating_sub(self.synced_len);
        let kept = match tears.as_mut() {
            None => 0,
            // A size set at once is one field: all of it or none.
            Some(rng) if self.set_len_since_sync => grown * u64::from(rng.chance()),
            // Appended bytes: the size on disk advances only over data already written.
            Some(rng) => match rng.below(4) {
                0 => 0,
                1 => grown,
                _ => {
                    let first = self.synced_len.div_ceil(SECTOR_BYTES);
                    let last = self.len / SECTOR_BYTES;
                    let sectors = (last + 1).saturating_sub(first);
                    ((first + rng.below(sectors)) * SECTOR_BYTES)
                        .saturating_sub(self.synced_len)
                        .min(grown)
                }
            },
        };
        let kept_len = self.synced_len + kept;
        let out = memory_file()?;
        out.set_len(kept_len)?;
        copy_data(&self.file, &out, kept_len)?;
        for (&page, bytes) in &self.saved {
            if !tears.as_mut().is_some_and(Rng::chance) {
                restore(&out, page * PAGE_BYTES, bytes)?;
            }
        }
        // The pages of a length set at once: each written back or still a hole.
        if self.set_len_since_sync
            && kept > 0
            && let Some(rng) = tears.as_mut()
        {
            let mut at = self.synced_len;
            while at < kept_len {
                let end = ((at / PAGE_BYTES + 1) * PAGE_BYTES).min(kept_len);
                if !rng.chance() {
                    punch_hole(&out, at, end - at)?;
                }
                at = end;
            }
        }
        Ok(Contents {
            file: Arc::new(out),
            len: kept_len,
            synced_len: kept_len,
            set_len_since_sync: false,
            saved: BTreeMap::new(),
        })
    }
}

/// Writes `bytes` back at `offset`, as a hole where they are all zeros.
fn restore(out: &File, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
    if bytes.iter().all(|&b| b == 0) {
        punch_hole(out, offset, bytes.len() as u64).map(|_| ())
    } else {
        out.write_all_at(bytes, offset)
    }
}

/// Copies the data (not the holes) of `[0, len)` of `from` into `to`.
fn copy_data(from: &File, to: &File, len: u64) -> std::io::Result<()> {
    use rustix::fs::{SeekFrom, seek};
    use rustix::io::Errno;

    let mut at = 0;
    let mut buf = Vec::new();
    while at < len {
        let start = match seek(from, SeekFrom::Data(at)) {
            Ok(start) => start,
            // No data past `at`.
            Err(Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        if start >= len {
            break;
        }
        let end = seek(from, SeekFrom::Hole(start))?.min(len);
        buf.resize((end - start) as usize, 0);
        from.read_exact_at(&mut buf, start)?;
        to.write_all_at(&buf, start)?;
        at = end;
    }
    Ok(())
}

impl Inode {
    /// The memory file now, to read from without the lock.
    fn file(&self) -> Arc<File> {
        Arc::clone(&self.state.lock().now.file)
    }

    fn len(&self) -> u64 {
        self.state.lock().now.len
    }

    /// Empties the file; a power loss may undo it until the next sync.
    fn truncate(&self) -> Result<()> {
        let fresh = Contents::new()?;
        let mut state = self.state.lock();
        let old = std::mem::replace(&mut state.now, fresh);
        if state.before_truncation.is_none() {
            state.before_truncation = Some(old);
        }
        Ok(())
    }

    fn sync(&self) {
        let mut state = self.state.lock();
        state.now.sync();
        state.before_truncation = None;
    }

    fn after_power_loss(&self, id: u64, tears: &mut Option<Rng>) -> Result<Inode> {
        let state = self.state.lock();
        let contents = match &state.before_truncation {
            Some(old) if tears.as_mut().is_none_or(|rng| !rng.chance()) => old,
            _ => &state.now,
        };
        let image = contents
            .after_power_loss(tears)
            .map_err(|e| Error::Io(std::io::Error::new(e.kind(), format!("image a file: {e}"))))?;
        Ok(Inode {
            id,
            state: Mutex::new(InodeState {
                now: image,
                before_truncation: None,
            }),
        })
    }
}

/// An anonymous memory file.
fn memory_file() -> std::io::Result<File> {
    let fd = rustix::fs::memfd_create("extentdb-memfs", rustix::fs::MemfdFlags::CLOEXEC)?;
    Ok(File::from(fd))
}

fn punch_hole(file: &File, offset: u64, len: u64) -> std::io::Result<bool> {
    use rustix::fs::{FallocateFlags, fallocate};
    use rustix::io::Errno;

    if len == 0 {
        return Ok(true);
    }
    match fallocate(
        file,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        offset,
        len,
    ) {
        Ok(()) => Ok(true),
        Err(Errno::OPNOTSUPP | Errno::NOSYS) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// The file system and its handles.

impl FileSystem for MemFs {
    fn create_dir_all(&self, path: &Path) -> Result<()> {
        self.shared.power.check()?;
        self.shared.tree.lock().create_dir_all(path)
    }

    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        self.shared.power.check()?;
        let (inode, new) = self.shared.tree.lock().file_or_new(path, "create")?;
        if !new {
            inode.truncate()?;
        }
        Ok(Box::new(MemWritable {
            inode,
            shared: Arc::clone(&self.shared),
            len: 0,
            path: path.to_path_buf(),
        }))
    }

    fn open(&self, path: &Path) -> Result<Arc<dyn ReadableFile>> {
        self.shared.power.check()?;
        let inode = self.shared.tree.lock().file(path, "open")?;
        let len = inode.len();
        Ok(Arc::new(MemReadable {
            inode,
            shared: Arc::clone(&self.shared),
            len,
            path: path.to_path_buf(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.shared.power.check()?;
        self.shared.tree.lock().rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        self.shared.power.check()?;
        self.shared.tree.lock().remove_file(path)
    }

    /// A hard link if `to` is free; otherwise, like the host's fallback, a synced copy over it.
    fn link_or_copy(&self, from: &Path, to: &Path) -> Result<()> {
        self.shared.power.check()?;
        let mut tree = self.shared.tree.lock();
        let source = tree.file(from, "link")?;
        let target = match tree.entry(to, "link")? {
            None => {
                let (dir, name) = split(to)?;
                tree.dir_mut(&dir, "link", to)?
                    .set(&name, Some(Entry::File(source)));
                return Ok(());
            }
            Some(Entry::Dir) => return Err(is_a_directory("link", to)),
            Some(Entry::File(target)) => target,
        };
        drop(tree);
        if target.id == source.id {
            return Ok(());
        }
        let len = source.len();
        let mut bytes =
            vec![0; usize::try_from(len).map_err(|_| Error::invalid("file too large"))?];
        source
            .file()
            .read_exact_at(&mut bytes, 0)
            .map_err(io_at(from, "copy"))?;
        target.truncate()?;
        target
            .state
            .lock()
            .now
            .write_at(0, &bytes)
            .map_err(io_at(to, "copy"))?;
        target.sync();
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        self.shared.power.check()?;
        let tree = self.shared.tree.lock();
        let dir = tree.dir(&normalize(path), "list", path)?;
        Ok(dir.entries.keys().cloned().collect())
    }

    fn sync_dir(&self, path: &Path) -> Result<()> {
        self.shared.power.sync_point(path, || {
            let mut tree = self.shared.tree.lock();
            tree.dir_mut(&normalize(path), "sync directory", path)?
                .sync();
            Ok(())
        })
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        self.shared.power.check()?;
        match self.shared.tree.lock().entry(path, "stat") {
            Ok(entry) => Ok(entry.is_some()),
            // A missing directory on the way: the path does not exist either.
            Err(Error::Io(e)) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn lock(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        self.shared.power.check()?;
        let mut tree = self.shared.tree.lock();
        let (inode, _) = tree.file_or_new(path, "open lock file")?;
        take_lock(&mut tree, &self.shared, inode.id, true, path)
    }

    fn lock_shared(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        self.shared.power.check()?;
        let mut tree = self.shared.tree.lock();
        let inode = tree.file(path, "open lock file")?;
        take_lock(&mut tree, &self.shared, inode.id, false, path)
    }

    fn open_segment(
        &self,
        path: &Path,
        len_bytes: u64,
        create: bool,
    ) -> Result<Arc<dyn SegmentFile>> {
        self.shared.power.check()?;
        let mut tree = self.shared.tree.lock();
        let inode = if create {
            tree.file_or_new(path, "open segment")?.0
        } else {
            tree.file(path, "open segment")?
        };
        drop(tree);
        if create {
            let mut state = inode.state.lock();
            if state.now.len == 0 {
                state
                    .now
                    .set_len(len_bytes)
                    .map_err(io_at(path, "set length of"))?;
            }
        }
        self.segment(inode, path, len_bytes, true)
    }

    fn open_segment_read_only(&self, path: &Path, len_bytes: u64) -> Result<Arc<dyn SegmentFile>> {
        self.shared.power.check()?;
        let inode = self.shared.tree.lock().file(path, "open segment")?;
        self.segment(inode, path, len_bytes, false)
    }
}

impl MemFs {
    /// The segment over `inode`, which must be `len_bytes` long.
    fn segment(
        &self,
        inode: Arc<Inode>,
        path: &Path,
        len_bytes: u64,
        writable: bool,
    ) -> Result<Arc<dyn SegmentFile>> {
        let len = inode.len();
        if len != len_bytes {
            return Err(Error::corruption(
                path,
                len,
                format!("segment file is {len} bytes long, expected {len_bytes}"),
            ));
        }
        Ok(Arc::new(MemSegment {
            inode,
            shared: Arc::clone(&self.shared),
            len: len_bytes,
            writable,
            path: path.to_path_buf(),
            map: Mutex::new(None),
        }))
    }
}

fn take_lock(
    tree: &mut Tree,
    shared: &Arc<Shared>,
    inode: u64,
    exclusive: bool,
    path: &Path,
) -> Result<Box<dyn FileLock>> {
    let holders = tree.locks.entry(inode).or_default();
    if holders.exclusive || (exclusive && holders.shared > 0) {
        return Err(Error::Locked(path.parent().unwrap_or(path).to_path_buf()));
    }
    if exclusive {
        holders.exclusive = true;
    } else {
        holders.shared += 1;
    }
    Ok(Box::new(MemLock {
        shared: Arc::clone(shared),
        inode,
        exclusive,
    }))
}

/// A held advisory lock; dropping it releases it.
#[derive(Debug)]
struct MemLock {
    shared: Arc<Shared>,
    inode: u64,
    exclusive: bool,
}

impl FileLock for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        let mut tree = self.shared.tree.lock();
        if let Some(holders) = tree.locks.get_mut(&self.inode) {
            if self.exclusive {
                holders.exclusive = false;
            } else {
                holders.shared = holders.shared.saturating_sub(1);
            }
            if !holders.exclusive && holders.shared == 0 {
                tree.locks.remove(&self.inode);
            }
        }
    }
}

#[derive(Debug)]
struct MemWritable {
    inode: Arc<Inode>,
    shared: Arc<Shared>,
    len: u64,
    path: PathBuf,
}

impl WritableFile for MemWritable {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.shared.power.check()?;
        let mut state = self.inode.state.lock();
        let end = state.now.len;
        state
            .now
            .write_at(end, data)
            .map_err(io_at(&self.path, "write"))?;
        self.len += data.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.shared.power.check()
    }

    fn start_writeback(&mut self, offset: u64, len: u64) -> Result<()> {
        // As for segments: nothing to start, and nothing it would promise.
        self.shared.power.check()?;
        check_range(&self.path, self.len, offset, len)
    }

    fn sync(&mut self) -> Result<()> {
        let inode = &self.inode;
        self.shared.power.sync_point(&self.path, || {
            inode.sync();
            Ok(())
        })
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug)]
struct MemReadable {
    inode: Arc<Inode>,
    shared: Arc<Shared>,
    len: u64,
    path: PathBuf,
}

impl ReadableFile for MemReadable {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.shared.power.check()?;
        self.inode
            .file()
            .read_exact_at(buf, offset)
            .map_err(io_at(&self.path, "read"))
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug)]
struct MemSegment {
    inode: Arc<Inode>,
    shared: Arc<Shared>,
    len: u64,
    writable: bool,
    path: PathBuf,
    /// Created on the first `map` and shared afterwards, as on the host.
    map: Mutex<Option<Arc<Mmap>>>,
}

impl MemSegment {
    fn check_writable(&self, op: &str) -> Result<()> {
        self.shared.power.check()?;
        if self.writable {
            Ok(())
        } else {
            Err(io_error(
                ErrorKind::PermissionDenied,
                op,
                &self.path,
                "segment opened read-only",
            ))
        }
    }
}

impl SegmentFile for MemSegment {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.shared.power.check()?;
        check_range(&self.path, self.len, offset, buf.len() as u64)?;
        self.inode
            .file()
            .read_exact_at(buf, offset)
            .map_err(io_at(&self.path, "read"))
    }

    fn write_all_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.check_writable("write")?;
        check_range(&self.path, self.len, offset, data.len() as u64)?;
        self.inode
            .state
            .lock()
            .now
            .write_at(offset, data)
            .map_err(io_at(&self.path, "write"))
    }

    fn sync(&self) -> Result<()> {
        self.check_writable("sync")?;
        self.shared.power.sync_point(&self.path, || {
            self.inode.sync();
            Ok(())
        })
    }

    fn start_writeback(&self, offset: u64, len: u64) -> Result<()> {
        // Nothing to start: what a sync makes durable here is decided by the power model
        // alone, and a write-back that has begun promises nothing.
        self.check_writable("start write-back of")?;
        check_range(&self.path, self.len, offset, len)
    }

    fn punch_hole(&self, offset: u64, len: u64) -> Result<bool> {
        self.check_writable("punch hole in")?;
        check_range(&self.path, self.len, offset, len)?;
        self.inode
            .state
            .lock()
            .now
            .punch(offset, len)
            .map_err(io_at(&self.path, "punch hole in"))
    }

    fn map(&self) -> Result<Arc<Mmap>> {
        self.shared.power.check()?;
        let mut slot = self.map.lock();
        if let Some(map) = slot.as_ref() {
            return Ok(Arc::clone(map));
        }
        let file = self.inode.file();
        // SAFETY: `Mmap::map` is unsound if the mapped file shrinks (an access past the new
        // end raises SIGBUS) or if the bytes change while Rust code holds a reference to them.
        // - The memory file is private to this process (it has no name) and `MemFs` never
        //   shrinks one: a segment's writes stay inside its length, hole punches keep the
        //   size, and a truncation gives the inode a fresh memory file instead (`Inode::
        //   truncate`), so this mapping keeps the old bytes rather than fault. Removing the
        //   file drops only a name; the mapping keeps the memory alive.
        // - As on the host (`real.rs`), blocks are rewritten only after the allocator has
        //   released them, once no fill can still read them, and readers copy bytes out.
        let map = unsafe { Mmap::map(&*file) }.map_err(io_at(&self.path, "map"))?;
        let map = Arc::new(map);
        *slot = Some(Arc::clone(&map));
        Ok(map)
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn allocated_bytes(&self) -> Result<u64> {
        self.shared.power.check()?;
        let meta = self
            .inode
            .file()
            .metadata()
            .map_err(io_at(&self.path, "stat"))?;
        Ok(meta.blocks().saturating_mul(512))
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

// ---------------------------------------------------------------------------------------------

/// SplitMix64: small, seedable and good enough to pick tears.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)`; 0 if `n` is 0.
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn chance(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 4 * PAGE_BYTES;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    fn write_file(fs: &MemFs, path: &str, data: &[u8], sync: bool) -> Box<dyn WritableFile> {
        let mut f = fs.create(&p(path)).unwrap();
        f.append(data).unwrap();
        if sync {
            f.sync().unwrap();
        }
        f
    }

    fn lost(fs: &MemFs) -> MemFs {
        fs.after_power_loss(Unsynced::Lost).unwrap()
    }

    fn read(fs: &MemFs, path: &str) -> Option<Vec<u8>> {
        match fs.read_all(&p(path)) {
            Ok(bytes) => Some(bytes),
            Err(Error::Io(e)) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => panic!("{e}"),
        }
    }

    fn segment_bytes(fs: &MemFs, path: &str) -> Vec<u8> {
        let seg = fs.open_segment(&p(path), SEG, false).unwrap();
        let mut buf = vec![0; SEG as usize];
        seg.read_exact_at(0, &mut buf).unwrap();
        buf
    }

    #[test]
    fn synced_appends_survive_and_unsynced_ones_are_lost() {
        let fs = MemFs::new();
        let mut f = write_file(&fs, "/a", b"durable", true);
        fs.sync_dir(&p("/")).unwrap();
        f.append(b" and not").unwrap();
        f.flush().unwrap();
        assert_eq!(read(&fs, "/a").unwrap(), b"durable and not");
        assert_eq!(read(&lost(&fs), "/a").unwrap(), b"durable");
    }

    #[test]
    fn a_file_whose_creation_was_never_dir_synced_vanishes() {
        let fs = MemFs::new();
        write_file(&fs, "/a", b"synced contents", true);
        assert!(fs.exists(&p("/a")).unwrap());
        assert_eq!(read(&lost(&fs), "/a"), None);
        fs.sync_dir(&p("/")).unwrap();
        assert_eq!(read(&lost(&fs), "/a").unwrap(), b"synced contents");
    }

    #[test]
    fn a_rename_not_dir_synced_reverts() {
        let fs = MemFs::new();
        write_file(&fs, "/old", b"x", true);
        write_file(&fs, "/target", b"replaced", true);
        fs.sync_dir(&p("/")).unwrap();
        fs.rename(&p("/old"), &p("/target")).unwrap();
        assert_eq!(read(&fs, "/target").unwrap(), b"x");
        let image = lost(&fs);
        assert_eq!(read(&image, "/old").unwrap(), b"x");
        assert_eq!(read(&image, "/target").unwrap(), b"replaced");
        fs.sync_dir(&p("/")).unwrap();
        let image = lost(&fs);
        assert_eq!(read(&image, "/old"), None);
        assert_eq!(read(&image, "/target").unwrap(), b"x");
    }

    #[test]
    fn a_remove_not_dir_synced_reappears_with_its_durable_contents() {
        let fs = MemFs::new();
        let mut f = write_file(&fs, "/a", b"durable", true);
        fs.sync_dir(&p("/")).unwrap();
        fs.remove_file(&p("/a")).unwrap();
        // Written through the open handle after the removal, never synced.
        f.append(b" then more").unwrap();
        assert!(!fs.exists(&p("/a")).unwrap());
        assert_eq!(read(&lost(&fs), "/a").unwrap(), b"durable");
        fs.sync_dir(&p("/")).unwrap();
        assert_eq!(read(&lost(&fs), "/a"), None);
    }

    #[test]
    fn a_directory_not_made_durable_in_its_parent_vanishes_with_its_files() {
        let fs = MemFs::new();
        fs.create_dir_all(&p("/x/y")).unwrap();
        write_file(&fs, "/x/y/a", b"data", true);
        fs.sync_dir(&p("/x/y")).unwrap();
        fs.sync_dir(&p("/x")).unwrap();
        let image = lost(&fs);
        assert!(!image.exists(&p("/x")).unwrap());
        assert!(!image.exists(&p("/x/y/a")).unwrap());
        fs.sync_dir(&p("/")).unwrap();
        assert_eq!(read(&lost(&fs), "/x/y/a").unwrap(), b"data");
    }

    #[test]
    fn syncing_a_file_does_not_sync_its_directory_nor_the_reverse() {
        let fs = MemFs::new();
        let mut f = write_file(&fs, "/a", b"", false);
        fs.sync_dir(&p("/")).unwrap();
        f.append(b"unsynced").unwrap();
        fs.sync_dir(&p("/")).unwrap();
        assert_eq!(read(&lost(&fs), "/a").unwrap(), b"");
    }

    #[test]
    fn a_truncation_not_synced_is_undone() {
        let fs = MemFs::new();
        write_file(&fs, "/a", b"old contents", true);
        fs.sync_dir(&p("/")).unwrap();
        let mut f = write_file(&fs, "/a", b"new", false);
        assert_eq!(read(&lost(&fs), "/a").unwrap(), b"old contents");
        f.sync().unwrap();
        assert_eq!(read(&lost(&fs), "/a").unwrap(), b"new");
    }

    #[test]
    fn segment_writes_and_punches_survive_only_once_synced() {
        let fs = MemFs::new();
        let seg = fs.open_segment(&p("/s"), SEG, true).unwrap();
        fs.sync_dir(&p("/")).unwrap();
        seg.write_all_at(0, &vec![1; SEG as usize]).unwrap();
        seg.sync().unwrap();
        seg.write_all_at(PAGE_BYTES + 10, b"new").unwrap();
        assert!(seg.punch_hole(2 * PAGE_BYTES, PAGE_BYTES).unwrap());
        let image = lost(&fs);
        assert_eq!(segment_bytes(&image, "/s"), vec![1; SEG as usize]);
        seg.sync().unwrap();
        let bytes = segment_bytes(&lost(&fs), "/s");
        assert_eq!(&bytes[PAGE_BYTES as usize + 10..][..3], b"new");
        assert!(
            bytes[2 * PAGE_BYTES as usize..][..PAGE_BYTES as usize]
                .iter()
                .all(|&b| b == 0)
        );
    }

    #[test]
    fn a_segment_whose_length_was_never_synced_comes_back_empty() {
        let fs = MemFs::new();
        let seg = fs.open_segment(&p("/s"), SEG, true).unwrap();
        fs.sync_dir(&p("/")).unwrap();
        seg.write_all_at(0, b"never synced").unwrap();
        let image = lost(&fs);
        assert_eq!(image.open(&p("/s")).unwrap().len(), 0);
        // The engine's recovery of such a file: opening it to create gives it its length.
        let again = image.open_segment(&p("/s"), SEG, true).unwrap();
        assert_eq!(again.len(), SEG);
    }

    #[test]
    fn torn_segment_pages_are_each_old_or_new_and_both_happen() {
        let fs = MemFs::new();
        let seg = fs.open_segment(&p("/s"), SEG, true).unwrap();
        fs.sync_dir(&p("/")).unwrap();
        seg.write_all_at(0, &vec![1; SEG as usize]).unwrap();
        seg.sync().unwrap();
        seg.write_all_at(0, &vec![2; SEG as usize]).unwrap();
        let (mut old, mut new) = (0, 0);
        for seed in 0..32 {
            let bytes = segment_bytes(&fs.after_power_loss(Unsynced::Torn { seed }).unwrap(), "/s");
            for page in bytes.chunks(PAGE_BYTES as usize) {
                assert!(page.iter().all(|&b| b == page[0]), "a page is torn inside");
                match page[0] {
                    1 => old += 1,
                    2 => new += 1,
                    b => panic!("byte {b} was never written"),
                }
            }
        }
        assert!(old > 0 && new > 0, "old {old}, new {new}");
    }

    #[test]
    fn torn_appends_keep_a_prefix_ending_on_a_sector() {
        let fs = MemFs::new();
        let mut f = write_file(&fs, "/a", &[1; 1000], true);
        fs.sync_dir(&p("/")).unwrap();
        let tail: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8 + 1).collect();
        f.append(&tail).unwrap();
        let (mut dropped, mut whole, mut part) = (false, false, false);
        for seed in 0..64 {
            let image = fs.after_power_loss(Unsynced::Torn { seed }).unwrap();
            let bytes = read(&image, "/a").unwrap();
            let len = bytes.len();
            assert!(
                len == 1000 || len == 5000 || len.is_multiple_of(SECTOR_BYTES as usize),
                "{len}"
            );
            assert_eq!(&bytes[..1000], &[1; 1000]);
            assert_eq!(&bytes[1000..], &tail[..len - 1000], "not a prefix");
            dropped |= len == 1000;
            whole |= len == 5000;
            part |= len > 1000 && len < 5000;
        }
        assert!(dropped && whole && part, "{dropped} {whole} {part}");
    }

    #[test]
    fn a_torn_new_segment_keeps_its_whole_length_or_none_and_pages_or_holes() {
        let fs = MemFs::new();
        let seg = fs.open_segment(&p("/s"), SEG, true).unwrap();
        fs.sync_dir(&p("/")).unwrap();
        seg.write_all_at(0, &vec![5; SEG as usize]).unwrap();
        let (mut empty, mut kept, mut hole) = (false, false, false);
        for seed in 0..32 {
            let image = fs.after_power_loss(Unsynced::Torn { seed }).unwrap();
            let len = image.open(&p("/s")).unwrap().len();
            assert!(len == 0 || len == SEG, "{len}");
            empty |= len == 0;
            if len == SEG {
                for page in segment_bytes(&image, "/s").chunks(PAGE_BYTES as usize) {
                    assert!(page.iter().all(|&b| b == page[0]) && (page[0] == 0 || page[0] == 5));
                    kept |= page[0] == 5;
                    hole |= page[0] == 0;
                }
            }
        }
        assert!(empty && kept && hole, "{empty} {kept} {hole}");
    }

    #[test]
    fn torn_directories_keep_a_prefix_of_their_changes() {
        let fs = MemFs::new();
        write_file(&fs, "/a", b"a", true);
        write_file(&fs, "/b", b"b", true);
        fs.remove_file(&p("/a")).unwrap();
        // The states after 0, 1, 2 and 3 of the changes.
        let prefixes = [vec![], vec!["a"], vec!["a", "b"], vec!["b"]];
        let mut seen = [false; 4];
        for seed in 0..64 {
            let image = fs.after_power_loss(Unsynced::Torn { seed }).unwrap();
            let mut names = image.list_dir(&p("/")).unwrap();
            names.sort();
            let at = prefixes.iter().position(|p| *p == names);
            seen[at.unwrap_or_else(|| panic!("{names:?} is no prefix"))] = true;
        }
        assert_eq!(seen, [true; 4]);
    }

    #[test]
    fn a_hard_link_survives_as_one_file_under_two_names() {
        let fs = MemFs::new();
        write_file(&fs, "/a", b"shared", true);
        fs.link_or_copy(&p("/a"), &p("/b")).unwrap();
        fs.sync_dir(&p("/")).unwrap();
        let image = lost(&fs);
        assert_eq!(read(&image, "/b").unwrap(), b"shared");
        let mut f = image.create(&p("/a")).unwrap();
        f.append(b"changed").unwrap();
        assert_eq!(read(&image, "/b").unwrap(), b"changed");
    }

    #[test]
    fn link_or_copy_over_an_existing_file_copies_and_syncs() {
        let fs = MemFs::new();
        write_file(&fs, "/a", b"source", false);
        write_file(&fs, "/b", b"target", true);
        fs.sync_dir(&p("/")).unwrap();
        fs.link_or_copy(&p("/a"), &p("/b")).unwrap();
        assert_eq!(read(&lost(&fs), "/b").unwrap(), b"source");
    }

    #[test]
    fn locks_exclude_like_flock_and_are_released_on_drop() {
        let fs = MemFs::new();
        let path = p("/LOCK");
        assert!(
            fs.lock_shared(&path).is_err(),
            "a shared lock never creates the file"
        );
        let held = fs.lock(&path).unwrap();
        assert!(matches!(fs.lock(&path), Err(Error::Locked(_))));
        assert!(matches!(fs.lock_shared(&path), Err(Error::Locked(_))));
        drop(held);
        let r1 = fs.lock_shared(&path).unwrap();
        let r2 = fs.lock_shared(&path).unwrap();
        assert!(matches!(fs.lock(&path), Err(Error::Locked(_))));
        drop((r1, r2));
        let _held = fs.lock(&path).unwrap();
        // A power loss ends the process that held it.
        let _again = fs.after_power_loss(Unsynced::Lost).unwrap().lock(&path);
    }

    #[test]
    fn missing_files_are_not_found() {
        let fs = MemFs::new();
        for err in [
            fs.open(&p("/nope")).err(),
            fs.remove_file(&p("/nope")).err(),
            fs.rename(&p("/nope"), &p("/b")).err(),
            fs.open_segment(&p("/nope"), SEG, false).err(),
            fs.create(&p("/no/dir")).err(),
            fs.list_dir(&p("/no")).err(),
            fs.read_all(&p("/nope")).err(),
        ] {
            assert!(
                matches!(&err, Some(Error::Io(e)) if e.kind() == ErrorKind::NotFound),
                "{err:?}"
            );
        }
        assert!(!fs.exists(&p("/no/dir/file")).unwrap());
        let err = fs.create(&p("/")).unwrap_err();
        assert!(
            matches!(&err, Error::Io(e) if e.kind() == ErrorKind::IsADirectory),
            "{err}"
        );
    }

    #[test]
    fn segments_map_punch_and_count_allocated_bytes() {
        let fs = MemFs::new();
        let seg = fs.open_segment(&p("/s"), SEG, true).unwrap();
        assert_eq!(seg.allocated_bytes().unwrap(), 0);
        seg.write_all_at(0, &vec![7; SEG as usize]).unwrap();
        assert!(seg.allocated_bytes().unwrap() >= SEG);
        let map = seg.map().unwrap();
        assert!(Arc::ptr_eq(&map, &seg.map().unwrap()));
        assert!(seg.punch_hole(PAGE_BYTES, 2 * PAGE_BYTES).unwrap());
        assert_eq!(seg.allocated_bytes().unwrap(), SEG - 2 * PAGE_BYTES);
        // Reading the hole through the map allocates its pages again (see the module docs).
        assert!(
            map[PAGE_BYTES as usize..3 * PAGE_BYTES as usize]
                .iter()
                .all(|&b| b == 0)
        );
        assert_eq!(map[0], 7);
        assert!(seg.write_all_at(SEG - 1, b"ab").is_err());
        let err = fs.open_segment(&p("/s"), SEG * 2, false).unwrap_err();
        assert!(err.is_corruption(), "{err}");
        let ro = fs.open_segment_read_only(&p("/s"), SEG).unwrap();
        assert!(ro.write_all_at(0, b"x").is_err());
        assert!(ro.sync().is_err());
    }

    #[test]
    fn the_power_goes_off_at_the_chosen_sync_before_or_after_it() {
        for (at, survives) in [(CutAt::BeforeSync, false), (CutAt::AfterSync, true)] {
            let fs = MemFs::new();
            let mut f = write_file(&fs, "/a", b"one", false);
            fs.cut_power_at_sync(2, at);
            fs.sync_dir(&p("/")).unwrap();
            assert_eq!(fs.sync_count(), 1);
            assert!(f.sync().is_err());
            assert!(!fs.has_power());
            assert_eq!(fs.sync_count(), 2);
            assert!(f.append(b"x").is_err());
            assert!(fs.open(&p("/a")).is_err());
            assert!(fs.sync_dir(&p("/")).is_err());
            let image = lost(&fs);
            assert!(image.has_power());
            let want: &[u8] = if survives { b"one" } else { b"" };
            assert_eq!(read(&image, "/a").unwrap(), want);
        }
    }

    #[test]
    fn an_ignored_sync_makes_nothing_durable_but_still_counts() {
        let fs = MemFs::new();
        fs.ignore_syncs(|path| path.extension().is_some_and(|e| e == "log"));
        write_file(&fs, "/a.log", b"lost", true);
        write_file(&fs, "/a.tbl", b"kept", true);
        fs.sync_dir(&p("/")).unwrap();
        assert_eq!(fs.sync_count(), 3);
        let image = lost(&fs);
        assert_eq!(read(&image, "/a.log").unwrap(), b"");
        assert_eq!(read(&image, "/a.tbl").unwrap(), b"kept");
    }

    #[test]
    fn a_database_runs_on_it_and_survives_a_clean_reopen() {
        use crate::Options;

        let fs = MemFs::new();
        let open = |fs: &MemFs| {
            Options::new()
                .file_system(Arc::new(fs.clone()))
                .memtable_bytes(4 << 10)
                .block_size_bytes(256)
                .value_threshold_bytes(128)
                .value_file_bytes(16 << 10)
                .value_segment_bytes(64 << 10)
                .background_compaction(false)
                .open("/data/db")
                .unwrap()
        };
        let db = open(&fs);
        let large = |i: u32| vec![i as u8; 3000 + i as usize];
        for i in 0..60u32 {
            db.put(format!("k{i:03}"), large(i)).unwrap();
            db.put(format!("s{i:03}"), b"small").unwrap();
        }
        db.delete_range(b"k010".as_slice()..b"k030".as_slice())
            .unwrap();
        db.delete(b"s005").unwrap();
        db.flush().unwrap();
        db.compact().unwrap();
        db.verify().unwrap();
        drop(db);
        let db = open(&fs);
        for i in 0..60u32 {
            let got = db.get(format!("k{i:03}")).unwrap();
            if (10..30).contains(&i) {
                assert!(got.is_none());
            } else {
                assert_eq!(got.as_deref(), Some(large(i).as_slice()));
            }
        }
        assert!(db.get(b"s005").unwrap().is_none());
        assert_eq!(
            db.get(b"s006").unwrap().as_deref(),
            Some(b"small".as_slice())
        );
        db.verify().unwrap();
    }
}
