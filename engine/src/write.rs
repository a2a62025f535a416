//! The write path: group commit, memtable rotation and back-pressure.
//!
//! Writers queue their batches in the [`CommitQueue`]. The first writer to find no leader
//! becomes the leader: it takes every queued batch (up to [`GROUP_MAX_BYTES`]), appends them
//! to the write-ahead log with one write and at most one `fdatasync`, inserts them into the
//! memtable, publishes the new sequence number, and wakes the others with their results.
//! Concurrent writers therefore share one log write and one sync.
//!
//! Before writing, the leader makes room: a full memtable is frozen and a new log started;
//! if too many memtables wait for flush, or level 0 has too many tables, it waits (writers
//! stall rather than let memory or read cost grow without bound).
//!
//! Any failure of a log write or sync poisons the database: the log's tail is then unknown,
//! and acknowledging later writes could leave a hole after a crash.
//!
//! Locking: commit queue mutex (held only to queue and hand over), then the WAL mutex (held
//! by the leader for the whole group), then the version set and super version.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::sync::Rank;
use crate::sync::ordered::{Condvar, Mutex};

use crate::batch::{self, WriteBatch};
use crate::db::{DbInner, apply_op};
use crate::error::{Error, Result};
use crate::filename;
use crate::index::memtable::Memtable;
use crate::key::SeqNo;
use crate::options::Durability;
use crate::stats::Counters;
use crate::wal::LogWriter;

/// A leader stops adding batches to its group past this many bytes, so one huge group does
/// not delay its first writer for long.
const GROUP_MAX_BYTES: usize = 4 << 20;
/// How long a stalled writer sleeps between checks (it is also woken by every flush).
const STALL_POLL: Duration = Duration::from_millis(100);

/// The open write-ahead log, owned by the commit leader.
#[derive(Debug)]
pub(crate) struct WalState {
    /// `None` in a read-only database, which has no log of its own.
    pub writer: Option<LogWriter>,
    pub number: u64,
    /// The last sequence number written to the log.
    pub last_seq: SeqNo,
}

impl WalState {
    /// The log, to append to or sync.
    ///
    /// # Errors
    /// `ReadOnly` in a read-only database.
    fn writer(&mut self) -> Result<&mut LogWriter> {
        self.writer.as_mut().ok_or(Error::ReadOnly)
    }
}

#[derive(Debug)]
struct Pending {
    ticket: u64,
    batch: WriteBatch,
    sync: bool,
}

#[derive(Debug, Default)]
struct QueueState {
    next_ticket: u64,
    pending: VecDeque<Pending>,
    /// Results of finished writes, taken by their writers.
    done: HashMap<u64, Result<(), GroupError>>,
    leader_active: bool,
}

/// The leader's error, as each other writer of its group gets it.
#[derive(Debug, Clone)]
enum GroupError {
    /// Nothing of the group was written: `Error::Poisoned`.
    Refused,
    /// The write may or may not be there: an I/O error with the leader's message.
    Failed(String),
}

impl GroupError {
    fn of(e: &Error) -> Self {
        match e {
            Error::Poisoned => Self::Refused,
            e => Self::Failed(e.to_string()),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Self::Refused => Error::Poisoned,
            Self::Failed(msg) => Error::Io(std::io::Error::other(msg)),
        }
    }
}

/// Writers waiting to be committed.
#[derive(Debug)]
pub(crate) struct CommitQueue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

impl Default for CommitQueue {
    fn default() -> Self {
        Self {
            state: Mutex::ranked(Rank::CommitQueue, QueueState::default()),
            changed: Condvar::new(),
        }
    }
}

impl DbInner {
    /// Commits `batch` atomically; returns once it is durable as `durability` asks.
    pub fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        batch.validate()?;
        if batch.is_empty() {
            return Ok(());
        }
        self.check_writable()?;
        let queue = &self.commit;
        let mut state = queue.state.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.pending.push_back(Pending {
            ticket,
            batch,
            sync: durability == Durability::Sync,
        });
        loop {
            if let Some(result) = state.done.remove(&ticket) {
                return result.map_err(GroupError::into_error);
            }
            if !state.leader_active {
                state.leader_active = true;
                let mut group = Vec::new();
                let mut bytes = 0;
                while let Some(p) = state.pending.pop_front() {
                    bytes += p.batch.encoded_bytes();
                    group.push(p);
                    if bytes >= GROUP_MAX_BYTES {
                        break;
                    }
                }
                drop(state);
                let result = self.commit_group(&mut group);
                state = queue.state.lock();
                state.leader_active = false;
                let mine = group.iter().any(|p| p.ticket == ticket);
                match result {
                    Ok(()) => {
                        for p in &group {
                            state.done.insert(p.ticket, Ok(()));
                        }
                    }
                    Err(e) => {
                        let shared = GroupError::of(&e);
                        for p in group.iter().filter(|p| p.ticket != ticket) {
                            state.done.insert(p.ticket, Err(shared.clone()));
                        }
                        if mine {
                            queue.changed.notify_all();
                            return Err(e);
                        }
                    }
                }
                queue.changed.notify_all();
                continue;
            }
            queue.changed.wait(&mut state);
        }
    }

    /// Writes a group to the log and the memtable. Runs on the leader, one group at a time.
    ///
    /// # Errors
    /// `Poisoned` only if nothing of the group was written: a flush or compaction that fails
    /// leaves the manifest refusing edits a moment before it poisons the database, and a batch
    /// whose value file needs the manifest in that moment may follow batches already logged.
    /// Their writers then get an I/O error, whose outcome is unknown.
    fn commit_group(&self, group: &mut [Pending]) -> Result<()> {
        let mut wal = self.wal.lock();
        self.check_writable()?;
        self.make_room(&mut wal)?;
        let mut logged = false;
        self.log_group(&mut wal, group, &mut logged)
            .map_err(|e| match e {
                Error::Poisoned if logged => Error::Io(std::io::Error::other(
                    "the database was poisoned by a concurrent failure after part of this \
                     write's group was logged: the write may or may not be there",
                )),
                e => e,
            })
    }

    /// [`Self::commit_group`] once there is room; sets `logged` once a record is in the log.
    fn log_group(
        &self,
        wal: &mut WalState,
        group: &mut [Pending],
        logged: &mut bool,
    ) -> Result<()> {
        let mut seq = wal.last_seq;
        let mut bytes = 0;
        let threshold = self.options.value_threshold_bytes;
        let synced = group.iter().any(|p| p.sync);
        for p in group.iter_mut() {
            let separated = p
                .batch
                .separate_values(threshold, |v| self.values.append(v, synced, self));
            self.poison_on_error(separated)?;
            let first = seq.next();
            seq = SeqNo(seq.0 + p.batch.len() as u64);
            let payload = p.batch.seal(first);
            bytes += payload.len();
            let r = wal.writer().and_then(|w| w.add_record(payload));
            self.poison_on_error(r)?;
            *logged = true;
        }
        let r = wal.writer().and_then(LogWriter::flush);
        self.poison_on_error(r)?;
        if synced {
            let r = self.sync_log(wal);
            self.poison_on_error(r)?;
            Counters::add(&self.counters.wal_syncs, 1);
        }
        wal.last_seq = seq;
        let sv = self.super_version.load();
        let mem = &sv.mem;
        let path = wal.writer()?.path().to_path_buf();
        for p in group.iter() {
            // The batch was encoded here and already logged: an error is a bug, and poisons.
            // Operations applied before it stay in the memtable, unseen: the visible sequence
            // number is not advanced, and a poisoned database neither flushes nor writes.
            let r = batch::decode_each(p.batch.encoded(), &path, 0, |seq, op| {
                apply_op(mem, seq, op);
            });
            self.poison_on_error(r)?;
        }
        mem.note_max_seq(seq);
        self.visible_seq
            .store(seq.0, std::sync::atomic::Ordering::Release);
        Counters::add(&self.counters.writes, group.len() as u64);
        Counters::add(&self.counters.write_groups, 1);
        Counters::add(&self.counters.wal_bytes, bytes as u64);
        Ok(())
    }

    /// Makes sure the memtable has room, freezing it or stalling as needed.
    ///
    /// # Locking
    /// Called with the WAL locked (`wal`); may wait for the flush and compaction jobs, which
    /// never take the WAL lock.
    fn make_room(&self, wal: &mut WalState) -> Result<()> {
        let mut stalled = false;
        loop {
            self.check_writable()?;
            let (full, wait_flush, wait_l0) = {
                let sv = self.super_version.load();
                // Also full once its pointers name enough value bytes: the memtable of large
                // values is small, and until it is flushed and compacted, the values its writes
                // overwrite or delete cannot be counted dead nor their space reclaimed.
                let full = sv.mem.approximate_bytes() >= self.options.memtable_bytes
                    || sv.mem.value_bytes() >= self.options.memtable_value_bytes;
                (
                    full,
                    full && sv.imm.len() >= self.options.max_immutable_memtables,
                    sv.version.levels[0].len() >= self.options.l0_stop_writes,
                )
            };
            if !wait_flush && !wait_l0 {
                if full {
                    self.rotate(wal)?;
                }
                return Ok(());
            }
            if !stalled {
                stalled = true;
                Counters::add(&self.counters.write_stalls, 1);
            }
            if self.options.background_compaction {
                self.request_jobs(wait_flush, wait_l0);
                let mut jobs = self.jobs.lock();
                let _timed_out = self.jobs_changed.wait_for(&mut jobs, STALL_POLL);
            } else if wait_flush {
                self.flush_frozen()?;
            } else if !self.compact_step()? {
                // Nothing to compact (level 0 cannot be above the stop trigger without being
                // above the compaction trigger); never spin.
                return Ok(());
            }
        }
    }

    /// Freezes the active memtable and starts a new log for its successor.
    ///
    /// # Locking
    /// Called with the WAL locked.
    fn rotate(&self, wal: &mut WalState) -> Result<()> {
        // The old log is synced first: after a power loss only the newest log may be torn,
        // so recovery can tell a torn tail from a hole.
        let r = self.sync_log(wal);
        self.poison_on_error(r)?;
        let number = self.versions.lock().new_file_number();
        let path = self.dir.join(filename::wal(number));
        let created = self
            .fs
            .create(&path)
            .and_then(|f| self.fs.sync_dir(&self.dir).map(|()| f));
        let file = self.poison_on_error(created)?;
        wal.writer = Some(LogWriter::new(file).with_writeback_bytes(self.options.writeback_bytes));
        wal.number = number;
        let mem = Arc::new(Memtable::new(number, self.options.memtable_bytes));
        self.super_version.install(|current| {
            let mut imm = Vec::with_capacity(current.imm.len() + 1);
            imm.push(Arc::clone(&current.mem));
            imm.extend(current.imm.iter().cloned());
            current.derive(mem, imm, Arc::clone(&current.version))
        });
        self.request_jobs(true, false);
        Ok(())
    }

    /// Makes the log durable, value files first: a synced log record must never point at
    /// value bytes that a power loss could still take away.
    ///
    /// # Locking
    /// Called with the WAL locked (`wal`).
    pub fn sync_log(&self, wal: &mut WalState) -> Result<()> {
        self.values.sync()?;
        wal.writer()?.sync()
    }

    /// Freezes the active memtable if it holds anything (for an explicit flush).
    pub fn freeze_memtable(&self) -> Result<()> {
        self.check_writable()?;
        let mut wal = self.wal.lock();
        if self.super_version.load().mem.is_empty() {
            return Ok(());
        }
        self.rotate(&mut wal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Db;
    use crate::fs::{CallKind, FaultFs, Trigger};
    use crate::options::Options;

    fn pending(ticket: u64, batch: WriteBatch) -> Pending {
        Pending {
            ticket,
            batch,
            sync: false,
        }
    }

    fn batch(key: &str, value: &[u8]) -> WriteBatch {
        let mut b = WriteBatch::new();
        b.put(key, value);
        b
    }

    /// A database whose manifest refuses every edit while the database is not poisoned yet:
    /// the moment between a flush or compaction failing to log its edit and that job poisoning
    /// the database. Returns its options (to reopen it), its directory and the handle.
    fn open_in_the_moment_after_a_failed_edit() -> (Options, tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::default();
        let mut options = Options::new().background_compaction(false);
        options.fs = Some(Arc::new(fs.clone()));
        let db = options.clone().open(dir.path()).unwrap();
        fs.arm(Trigger::nth(1).only(&[CallKind::Append]));
        assert!(db.inner().versions.lock().log_values(Vec::new()).is_err());
        fs.disarm();
        assert!(!db.inner().is_poisoned());
        (options, dir, db)
    }

    /// A leader in that moment may have logged part of its group when a later batch's value
    /// file needs the manifest. `Poisoned` promises that nothing was written, which no longer
    /// holds: the group gets an I/O error, whose outcome is unknown, and the batch logged
    /// before the failure is there after a reopen.
    #[test]
    fn a_group_cut_short_by_a_concurrent_failure_is_not_reported_as_refused() {
        let (options, dir, db) = open_in_the_moment_after_a_failed_edit();
        // The second value starts the first value file, which the manifest must record.
        let mut group = vec![
            pending(0, batch("logged", b"1")),
            pending(1, batch("refused", &[7u8; 64 << 10])),
        ];
        let r = db.inner().commit_group(&mut group);
        assert!(matches!(r, Err(Error::Io(_))), "{r:?}");
        assert!(db.inner().is_poisoned());
        drop(db);
        let db = options.open(dir.path()).unwrap();
        assert_eq!(db.get("logged").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(db.get("refused").unwrap(), None);
    }

    /// A group refused before any of it was logged is refused for every writer in it, not
    /// only for its leader: the others get `Poisoned` too, and none of it is there after a
    /// reopen.
    #[test]
    fn every_writer_of_a_refused_group_is_told_so() {
        let (options, dir, db) = open_in_the_moment_after_a_failed_edit();
        let inner = db.inner();
        // Another writer's batch, queued first: its value needs the manifest.
        let other = {
            let mut state = inner.commit.state.lock();
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state
                .pending
                .push_back(pending(ticket, batch("queued", &[7u8; 64 << 10])));
            ticket
        };
        let r = inner.write(batch("leader", b"1"), Durability::Buffered);
        assert!(matches!(r, Err(Error::Poisoned)), "{r:?}");
        let theirs = inner.commit.state.lock().done.remove(&other);
        assert!(
            matches!(theirs, Some(Err(GroupError::Refused))),
            "{theirs:?}"
        );
        drop(db);
        let db = options.open(dir.path()).unwrap();
        assert_eq!(db.get("leader").unwrap(), None);
        assert_eq!(db.get("queued").unwrap(), None);
    }
}
