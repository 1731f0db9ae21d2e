//! The thread that owns the SQLite connection, and the checkpointer thread
//! (see the [`super::sqlite`] module docs for why).

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// A unit of work for the SQLite thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Calls that may wait for the SQLite thread before senders are made to wait.
const QUEUE: usize = 1024;

/// A handle on the SQLite thread; clones share it. The thread ends when the
/// last clone is dropped.
#[derive(Clone)]
pub(super) struct Worker {
    jobs: mpsc::Sender<Job>,
    /// Alive while any clone is; the checkpointer watches it.
    _alive: Arc<()>,
}

impl Worker {
    /// Hands `conn` to a new thread and starts the checkpointer on `path`.
    pub(super) fn start(conn: Connection, path: &Path) -> Result<Worker, StoreError> {
        let (jobs, rx) = mpsc::channel(QUEUE);
        spawn_worker(conn, rx)?;
        let alive = Arc::new(());
        spawn_checkpointer(path, Arc::downgrade(&alive))?;
        Ok(Worker {
            jobs,
            _alive: alive,
        })
    }

    /// Runs `f` on the SQLite thread and returns its result.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |c| {
            // The caller may have gone (request cancelled): nothing to tell.
            let _ = tx.send(f(c));
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Join("the sqlite thread has stopped".into()))?;
        rx.await.map_err(|_| {
            StoreError::Join("the sqlite thread dropped a call (it panicked)".into())
        })?
    }
}

/// Starts the thread that owns the connection. It ends when every clone of
/// the store is dropped (the channel closes).
fn spawn_worker(mut conn: Connection, mut rx: mpsc::Receiver<Job>) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("sqlite".into())
        .spawn(move || {
            while let Some(job) = rx.blocking_recv() {
                // A panicking call drops its answer channel (its caller gets
                // an error) and rolls back its open transaction; the thread
                // goes on serving the others.
                let run = std::panic::AssertUnwindSafe(|| job(&mut conn));
                if std::panic::catch_unwind(run).is_err() {
                    tracing::error!("a sqlite call panicked");
                }
            }
        })
        .map_err(|e| StoreError::Join(format!("starting the sqlite thread: {e}")))?;
    Ok(())
}

/// Checkpoints the WAL every second from a thread of its own, until the store
/// is dropped (then a last, truncating checkpoint).
fn spawn_checkpointer(path: &Path, store: Weak<()>) -> Result<(), StoreError> {
    let conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA busy_timeout=5000;")?;
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let last = store.strong_count() == 0;
            let mode = if last { "TRUNCATE" } else { "PASSIVE" };
            if let Err(e) =
                conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
            {
                tracing::warn!("sqlite checkpoint: {e}");
            }
            if last {
                return;
            }
        })
        .map_err(|e| StoreError::Join(format!("starting the checkpoint thread: {e}")))?;
    Ok(())
}
