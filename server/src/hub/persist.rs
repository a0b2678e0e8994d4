//! Group commit: document actors hand their new changes here and wait; one task writes
//! whatever has queued up in a single transaction, so many concurrent edits cost one commit.
//! After each commit the doorbell task tells other nodes which documents changed (off the
//! commit path: the next group commit does not wait for it).

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
    node: Arc<str>,
}

impl GroupCommitter {
    /// `node` names this process in doorbells, so it can ignore its own.
    pub fn spawn(
        store: Arc<dyn Store>,
        node: String,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Job>(4096);
        let node: Arc<str> = node.into();
        let doorbell = spawn_doorbell(store.clone(), node.clone(), tasks);
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
                        let mut docs: Vec<uuid::Uuid> = all.iter().map(|c| c.session_id).collect();
                        docs.sort();
                        docs.dedup();
                        // Never blocks: a full doorbell queue only means other nodes will hear
                        // from the sweep instead.
                        let _ = doorbell.try_send(docs);
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
        Self { tx, node }
    }

    /// This process's name in doorbells.
    pub fn node(&self) -> &str {
        &self.node
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

/// Rings the doorbell for committed documents, coalescing whatever queued up meanwhile into one
/// announcement.
fn spawn_doorbell(
    store: Arc<dyn Store>,
    node: Arc<str>,
    tasks: &TaskTracker,
) -> mpsc::Sender<Vec<uuid::Uuid>> {
    let (tx, mut rx) = mpsc::channel::<Vec<uuid::Uuid>>(1024);
    tasks.spawn(async move {
        while let Some(mut docs) = rx.recv().await {
            while let Ok(more) = rx.try_recv() {
                docs.extend(more);
            }
            docs.sort();
            docs.dedup();
            if let Err(e) = store.announce_documents(&node, &docs).await {
                tracing::debug!(error = %e, "doorbell failed; other nodes will sweep");
            }
        }
    });
    tx
}
