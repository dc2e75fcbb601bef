//! The sync engine as a background tokio task: it opens the Client on a blocking thread (SQLite
//! and the HTTP client are blocking), then syncs and long-polls until stopped. The application
//! keeps writing through its own [`crate::Client`] on the same store; SQLite serialises the two.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::{Client, ClientError, Config, Event, SyncReport};

/// A running background sync.
pub struct Background {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<SyncReport, ClientError>>,
}

/// Starts live sync of the store in `dir` as a tokio task. `wait_ms` bounds each long-poll (and
/// so how long [`Background::stop`] may take). `events` receives progress.
pub fn spawn(
    dir: PathBuf,
    cfg: Config,
    wait_ms: u64,
    events: Option<std::sync::mpsc::Sender<Event>>,
) -> Background {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut client = Client::open(&dir, cfg)?;
        if let Some(tx) = events {
            client.on_event(move |e| {
                let _ = tx.send(e.clone());
            });
        }
        client.watch(&flag, wait_ms)
    });
    Background { stop, task }
}

impl Background {
    /// Stops after the current turn and returns what the task did.
    pub async fn stop(self) -> Result<SyncReport, ClientError> {
        self.stop.store(true, Ordering::Relaxed);
        self.task
            .await
            .unwrap_or_else(|e| Err(ClientError::Store(format!("the sync task failed: {e}"))))
    }
}
