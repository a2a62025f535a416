//! Background threads: one flushes frozen memtables, one compacts.
//!
//! They sleep on the database's job condition variable and are woken by writers (a memtable
//! froze, level 0 grew) and by each other (a flush added a level-0 table). A failure poisons
//! the database (see `DbInner::poison`); the threads then idle until shutdown.
//!
//! [`Workers`] is owned by the `Db` handles: when the last one is dropped, the threads are told
//! to stop and joined, so no background work outlives the handle.

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::db::DbInner;

#[derive(Debug)]
pub(crate) struct Workers {
    db: Arc<DbInner>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Clone, Copy)]
enum Job {
    Flush,
    Compaction,
}

impl Workers {
    pub fn start(db: &Arc<DbInner>) -> Self {
        let mut threads = Vec::new();
        if db.options.background_compaction {
            for (job, name) in [
                (Job::Flush, "extentdb-flush"),
                (Job::Compaction, "extentdb-compact"),
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
        }
        db.request_jobs(true, true);
        Self {
            db: Arc::clone(db),
            threads,
        }
    }
}

fn run(db: &DbInner, job: Job) {
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
                };
                if requested && !db.is_poisoned() {
                    break;
                }
                db.jobs_changed.wait(&mut jobs);
            }
        }
        // Errors poison the database inside the jobs; writers see `Poisoned`.
        match job {
            Job::Flush => {
                let _ = db.flush_frozen();
            }
            Job::Compaction => while let Ok(true) = db.compact_step() {},
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.db.jobs.lock().shutdown = true;
        self.db.jobs_changed.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
