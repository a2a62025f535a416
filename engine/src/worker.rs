//! Background threads: one flushes frozen memtables, one compacts the index, one compacts
//! value files (reclaims dead blocks, deletes dead files, relocates fragmented ones), and one
//! closes and deletes the files of tables no version holds any more, so that a reader dropping
//! the last reference to an old version never does that I/O itself (`index/obsolete.rs`).
//!
//! They sleep on the database's job condition variable and are woken by writers (a memtable
//! froze, level 0 grew) and by each other (a flush added a level-0 table; a compaction made
//! values dead). The value thread also wakes on a timer while it owes work: a reclamation
//! that had to wait for readers of an older version, or relocations paced by
//! `Options::value_gc_bytes_per_sec`. A failure poisons
//! the database (see `DbInner::poison`); the threads then idle until shutdown.
//!
//! [`Workers`] is owned by the `Db` handles: when the last one is dropped, the threads are told
//! to stop and joined, so no background work outlives the handle; then the table files still
//! waiting to be deleted are deleted, and any that a surviving iterator or snapshot releases
//! later is deleted where it is released.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::db::DbInner;
use crate::index::obsolete::ObsoleteFiles;

#[derive(Debug)]
pub(crate) struct Workers {
    db: Arc<DbInner>,
    obsolete: Arc<ObsoleteFiles>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Clone, Copy)]
enum Job {
    Flush,
    Compaction,
    Values,
}

/// How long the value thread waits before retrying work it owes.
const VALUES_RETRY: Duration = Duration::from_millis(500);

impl Workers {
    pub fn start(db: &Arc<DbInner>) -> Self {
        let mut threads = Vec::new();
        let obsolete = Arc::clone(db.versions.lock().obsolete());
        // A read-only database has nothing to flush or compact, and must not try.
        if db.options.background_compaction && !db.options.read_only {
            for (job, name) in [
                (Job::Flush, "extentdb-flush"),
                (Job::Compaction, "extentdb-compact"),
                (Job::Values, "extentdb-values"),
            ] {
                let db = Arc::clone(db);
                let spawned = std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || run(&db, job));
                // Without the thread, writers still make progress: they flush and compact
                // themselves when they must make room.
                if let Ok(handle) = spawned {
                    threads.push(handle);
                }
            }
            let files = Arc::clone(&obsolete);
            let spawned = std::thread::Builder::new()
                .name("extentdb-obsolete".into())
                .spawn(move || files.run());
            // Without it, flushes, compactions and the close still delete obsolete tables.
            if let Ok(handle) = spawned {
                threads.push(handle);
            }
        }
        db.request_jobs(true, true);
        Self {
            db: Arc::clone(db),
            obsolete,
            threads,
        }
    }
}

fn run(db: &DbInner, job: Job) {
    // Value work left over from the last pass, and how long to rest before the next one.
    let mut owed: Option<Duration> = None;
    loop {
        {
            let mut jobs = db.jobs.lock();
            loop {
                if jobs.shutdown {
                    return;
                }
                let requested = match job {
                    Job::Flush => std::mem::take(&mut jobs.flush_requested),
                    Job::Compaction => std::mem::take(&mut jobs.compaction_requested),
                    Job::Values => std::mem::take(&mut jobs.values_requested),
                };
                if requested && !db.is_poisoned() {
                    break;
                }
                match owed {
                    Some(rest) => {
                        if db.jobs_changed.wait_for(&mut jobs, rest) {
                            break;
                        }
                    }
                    None => db.jobs_changed.wait(&mut jobs),
                }
            }
        }
        // Errors poison the database inside the jobs; writers see `Poisoned`.
        match job {
            Job::Flush => {
                let _ = db.flush_frozen();
            }
            Job::Compaction => while let Ok(true) = db.compact_step() {},
            Job::Values => {
                owed = match db.collect_values(false) {
                    Ok(pass) if pass.owed => Some(pace(pass.copied_bytes, db)),
                    Ok(_) | Err(_) => None,
                };
            }
        }
    }
}

/// The rest after a value pass that copied `copied_bytes`, so relocation stays under
/// `Options::value_gc_bytes_per_sec`.
fn pace(copied_bytes: u64, db: &DbInner) -> Duration {
    let rate = db.options.value_gc_bytes_per_sec.max(1);
    VALUES_RETRY.max(Duration::from_secs_f64(copied_bytes as f64 / rate as f64))
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.db.jobs.lock().shutdown = true;
        self.db.jobs_changed.notify_all();
        // Also stops the deleting thread and deletes what it left; the others, while they
        // stop, delete in place.
        self.obsolete.close();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
