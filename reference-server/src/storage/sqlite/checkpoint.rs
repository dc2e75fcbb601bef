//! Checkpoints of the write-ahead log beside the commits, not inside them.
//!
//! In WAL mode each commit appends the pages it changed to the `-wal` file; a checkpoint copies
//! them back into the database file and fsyncs it. SQLite's automatic checkpoint runs inside the
//! COMMIT that takes the log past 1,000 pages, so every few pushes one of them paid for copying
//! everybody's pages before its answer could go out (measured with `perf record` on `serve`
//! under 100 pushes of 100 Mutations: 12% of the server's CPU, all of it on an answer's path).
//!
//! Here the writer connection's WAL hook only notes the log's size after each commit; once the
//! log has grown by [`CHECKPOINT_FRAMES`] since the last wake-up, the writer wakes a thread of
//! this module, which runs a PASSIVE checkpoint on its own connection (it takes no lock that
//! the writer or the readers wait for) while the next commits go on.
//!
//! A PASSIVE checkpoint copies the log up to where it ended when the checkpoint began, and SQLite
//! starts the log over from its beginning only at a write that finds all of it copied; a writer
//! that never pauses could keep the log growing. So past [`BACKSTOP_FRAMES`] the writer
//! checkpoints in its own hook, as SQLite's automatic checkpoint would, while no other write can
//! start (the storage's writer mutex is still held): the log stays bounded.
//!
//! Durability does not depend on any of this: a commit is durable once its frames are fsynced in
//! the log (`synchronous=FULL`), and a checkpoint interrupted by a crash is redone from the log
//! at the next open.

use std::cell::Cell;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use rusqlite::hooks::Wal;
use rusqlite::Connection;

/// Log growth, in pages, after which the writer wakes the checkpoint thread: SQLite's default
/// automatic checkpoint size (about 4 MiB of 4 KiB pages).
pub const CHECKPOINT_FRAMES: i32 = 1000;

/// Log size, in pages, past which the writer checkpoints itself after its commit (about 40 MiB).
pub const BACKSTOP_FRAMES: i32 = 10_000;

thread_local! {
    /// Pages in the log after the last commit on this thread, set by [`note_frames`] from
    /// inside the COMMIT and read by [`take_frames`] on the same thread right after it.
    static FRAMES: Cell<Option<i32>> = const { Cell::new(None) };
}

/// Registers the WAL hook on the writer connection. It replaces SQLite's automatic checkpoint
/// (which is itself a WAL hook), so none runs inside a COMMIT below [`BACKSTOP_FRAMES`].
pub fn install(writer: &Connection) {
    writer.wal_hook(Some(note_frames));
}

/// The WAL hook: runs inside each COMMIT of the writer, after the commit is durable. It never
/// reports an error: SQLite would make the COMMIT fail although its write was made.
fn note_frames(wal: &Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    FRAMES.with(|f| f.set(Some(pages)));
    if pages >= BACKSTOP_FRAMES {
        // BUSY when the checkpoint thread is at it: then that one copies the log.
        let _ = wal.checkpoint();
    }
    Ok(())
}

/// The log size noted by the last commit on this thread, if one happened since the last call.
pub fn take_frames() -> Option<i32> {
    FRAMES.with(|f| f.take())
}

#[derive(Default)]
struct State {
    wanted: bool,
    stop: bool,
    /// Checkpoints run so far (counted also when one found nothing to copy).
    done: u64,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writer's side: decides from the log sizes its commits note when to wake the thread.
pub struct Waker {
    shared: Arc<Shared>,
    /// The log size at the last wake-up; a smaller size means the log started over.
    woke_at: i32,
}

impl Waker {
    /// Called after each COMMIT of the writer with the log size that commit noted.
    pub fn committed(&mut self, frames: i32) {
        if frames < self.woke_at {
            self.woke_at = 0;
        }
        if frames - self.woke_at >= CHECKPOINT_FRAMES {
            self.woke_at = frames;
            self.shared.lock().wanted = true;
            self.shared.changed.notify_all();
        }
    }
}

/// The checkpoint thread and its connection; dropping it stops and joins the thread.
pub struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a connection to the database at `path` (already in WAL mode) and starts the thread;
    /// returns it with the [`Waker`] for the writer.
    ///
    /// Errors: the connection cannot be opened or the thread cannot be started.
    pub fn start(path: &Path) -> Result<(Self, Waker), String> {
        let conn = Connection::open(path).map_err(|e| format!("checkpoint connection: {e}"))?;
        conn.execute_batch(super::PRAGMAS)
            .map_err(|e| format!("checkpoint connection: {e}"))?;
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&conn, &theirs))
            .map_err(|e| format!("checkpoint thread: {e}"))?;
        let waker = Waker {
            shared: shared.clone(),
            woke_at: 0,
        };
        Ok((
            Self {
                shared,
                thread: Some(thread),
            },
            waker,
        ))
    }

    /// Checkpoints the thread has run since the start.
    pub fn done(&self) -> u64 {
        self.shared.lock().done
    }

    /// Waits until the thread has run at least `count` checkpoints or `timeout` has passed;
    /// returns whether it had.
    pub fn wait_done(&self, count: u64, timeout: std::time::Duration) -> bool {
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .changed
            .wait_timeout_while(state, timeout, |s| s.done < count)
            .unwrap_or_else(|p| p.into_inner());
        state.done >= count
    }
}

fn run(conn: &Connection, shared: &Shared) {
    loop {
        {
            let mut state = shared.lock();
            while !state.wanted && !state.stop {
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
            if state.stop {
                return;
            }
            state.wanted = false;
        }
        // PASSIVE: copies what it can without waiting for the writer or any reader; what it
        // could not copy is copied by a later one. A failure here loses nothing (the log still
        // holds every page), so it is logged and the next wake-up tries again.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!("background WAL checkpoint failed: {e}");
        }
        shared.lock().done += 1;
        shared.changed.notify_all();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
