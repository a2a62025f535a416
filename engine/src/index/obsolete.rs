//! [`ObsoleteFiles`]: table files no version holds any more, closed and deleted off the read
//! path.
//!
//! A table leaves the current version when an edit removes it, but readers may still pin
//! older versions that hold it, so its file is deleted only when the last reference to its
//! open reader (`Table`) goes. That last reference may be a reader's: a get or an iterator that
//! pinned the old version. Closing and unlinking a file can block for milliseconds (on a file
//! system mounted with `discard`, whichever of the last close and the unlink comes second waits
//! for the discard of the file's blocks), which a reader must not pay. So the `Table`'s drop
//! only queues its open file and path here ([`ObsoleteFiles::retire`]), and one of these
//! empties the queue ([`ObsoleteFiles::delete_queued`]):
//!
//! - the background thread `extentdb-obsolete` (`worker.rs`), woken by each queued file;
//! - an index compaction: it runs under [`ObsoleteFiles::deleting_in_place`] and releases the
//!   version it replaced only after its version-set and super-version locks, so when no reader
//!   pins that version its files are gone before the compaction returns, as they always were
//!   (`Db::compact` callers see the old tables gone); it also deletes what readers queued;
//! - closing the database ([`ObsoleteFiles::close`]): the last `Db` handle empties the queue
//!   once the background threads have stopped. From then on a drop deletes in place: no thread
//!   is left to do it, and nothing is left behind at close.
//!
//! Invariants: a file is unlinked only after the last reference to its reader is gone (it is
//! queued by that drop, carrying the reader's file handle, which the deleting thread closes
//! after the unlink), so no read of it can be in flight or start again; and every file queued
//! before [`ObsoleteFiles::close`] returns is deleted by it or before it. A failed unlink
//! leaves an orphan, which the next open deletes (`DbInner::delete_obsolete_files`); nothing
//! reads it again, and no caller could act on the error.
//!
//! Thread safety: `Send + Sync`. The queue's mutex is a leaf (`docs/locking.md`): the last
//! reference to a table may go under any engine lock (a super version replaced under the
//! super version's write lock, for one), and no lock is taken while it is held. Files are
//! closed and unlinked with no lock held, except the job lock of the compaction that deletes
//! in place.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;

use crate::fs::{FileSystem, ReadableFile};
use crate::sync::Rank;
use crate::sync::ordered::{Condvar, Mutex};

thread_local! {
    /// Set inside [`ObsoleteFiles::deleting_in_place`].
    static IN_PLACE: Cell<bool> = const { Cell::new(false) };
}

/// See [`ObsoleteFiles::deleting_in_place`]. Bound to its thread (`!Send`).
#[derive(Debug)]
pub(crate) struct InPlace {
    outer: bool,
    _thread: std::marker::PhantomData<*const ()>,
}

impl Drop for InPlace {
    fn drop(&mut self) {
        IN_PLACE.set(self.outer);
    }
}

/// One table file to delete: its path and its open handle (the last reference to it).
type Retired = (PathBuf, Arc<dyn ReadableFile>);

#[derive(Debug, Default)]
struct Queue {
    files: Vec<Retired>,
    /// Set by [`ObsoleteFiles::close`]: files are deleted where they are retired.
    closed: bool,
}

/// Table files waiting to be closed and deleted. See the module doc.
#[derive(Debug)]
pub(crate) struct ObsoleteFiles {
    fs: Arc<dyn FileSystem>,
    queue: Mutex<Queue>,
    queued: Condvar,
}

impl ObsoleteFiles {
    /// An empty queue deleting through `fs`.
    pub fn new(fs: Arc<dyn FileSystem>) -> Self {
        Self {
            fs,
            queue: Mutex::ranked(Rank::Leaf, Queue::default()),
            queued: Condvar::new(),
        }
    }

    /// Hands over `file` (the last reference to the open table at `path`) to be closed and
    /// deleted: queued while the database is open, deleted here once it is closed or inside
    /// [`Self::deleting_in_place`].
    ///
    /// # Locking
    /// Takes the queue's leaf mutex briefly; the caller may hold any engine lock. Never blocks
    /// on I/O while the database is open, except inside [`Self::deleting_in_place`].
    pub fn retire(&self, path: PathBuf, file: Arc<dyn ReadableFile>) {
        if IN_PLACE.get() {
            self.delete(path, file);
            return;
        }
        let mut queue = self.queue.lock();
        if queue.closed {
            drop(queue);
            self.delete(path, file);
            return;
        }
        queue.files.push((path, file));
        drop(queue);
        self.queued.notify_all();
    }

    /// Until the returned guard is dropped, every file this thread's drops retire is deleted
    /// in this thread instead of being queued: for a thread that does I/O anyway, such as a
    /// compaction releasing the versions and tables it replaced.
    ///
    /// # Locking
    /// While the guard lives, the thread must not release a version or a table under a lock
    /// that readers take (the version set's, the super version's), since that drop may do I/O.
    pub fn deleting_in_place() -> InPlace {
        InPlace {
            outer: IN_PLACE.replace(true),
            _thread: std::marker::PhantomData,
        }
    }

    /// Closes and deletes every queued file in the calling thread.
    ///
    /// # Locking
    /// REQUIRES: no engine lock held (it does I/O). Takes the queue's mutex briefly.
    pub fn delete_queued(&self) {
        let files = std::mem::take(&mut self.queue.lock().files);
        for (path, file) in files {
            self.delete(path, file);
        }
    }

    /// The body of the background deleting thread: deletes queued files as they come, until
    /// [`Self::close`].
    pub fn run(&self) {
        loop {
            {
                let mut queue = self.queue.lock();
                while queue.files.is_empty() && !queue.closed {
                    self.queued.wait(&mut queue);
                }
                if queue.files.is_empty() {
                    return;
                }
            }
            self.delete_queued();
        }
    }

    /// Stops queueing: deletes every queued file, and from now on [`Self::retire`] deletes in
    /// place. Wakes the background thread, which then returns.
    ///
    /// # Locking
    /// As [`Self::delete_queued`].
    pub fn close(&self) {
        self.queue.lock().closed = true;
        self.queued.notify_all();
        self.delete_queued();
    }

    /// Unlinks `path`, then closes `file`: the last step of the file's life.
    fn delete(&self, path: PathBuf, file: Arc<dyn ReadableFile>) {
        // A failure leaves an orphan that the next open deletes (see the module doc).
        let _ = self.fs.remove_file(&path);
        drop(file);
    }
}
