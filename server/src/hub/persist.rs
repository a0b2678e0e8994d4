//! Group commit: document actors hand their new changes here and wait; one task writes
//! whatever has queued up in a single transaction, so many concurrent edits cost one commit.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::sessions::NewChange;
use crate::store::Store;

/// How many queued batches one transaction takes at most.
const MAX_BATCHES_PER_COMMIT: usize = 256;

struct Job {
    changes: Vec<NewChange>,
    done: oneshot::Sender<Result<Vec<i64>, String>>,
}

#[derive(Clone)]
pub struct GroupCommitter {
    tx: mpsc::Sender<Job>,
}

impl GroupCommitter {
    pub fn spawn(store: Arc<dyn Store>, tasks: &TaskTracker, shutdown: CancellationToken) -> Self {
        let (tx, mut rx) = mpsc::channel::<Job>(4096);
        tasks.spawn(async move {
            // `stop` is cancelled only after every document actor has flushed (see
            // `Hub::drain`); queued jobs are still written before the task ends.
            loop {
                let first = tokio::select! {
                    j = rx.recv() => match j { Some(j) => j, None => break },
                    _ = shutdown.cancelled() => match rx.try_recv() { Ok(j) => j, Err(_) => break },
                };
                let mut jobs = vec![first];
                while jobs.len() < MAX_BATCHES_PER_COMMIT {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                let all: Vec<NewChange> = jobs
                    .iter()
                    .flat_map(|j| j.changes.iter().cloned())
                    .collect();
                match store.append_changes(&all).await {
                    Ok(seqs) => {
                        let mut at = 0;
                        for j in jobs {
                            let n = j.changes.len();
                            let _ = j.done.send(Ok(seqs[at..at + n].to_vec()));
                            at += n;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, changes = all.len(), "group commit failed");
                        for j in jobs {
                            let _ = j.done.send(Err(e.to_string()));
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    /// Persist `changes`; returns their sequence numbers once committed.
    pub async fn commit(&self, changes: Vec<NewChange>) -> Result<Vec<i64>, String> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Job { changes, done })
            .await
            .map_err(|_| "the commit queue is closed".to_string())?;
        rx.await
            .map_err(|_| "the commit task stopped".to_string())?
    }
}
