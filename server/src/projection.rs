//! Projection: after changes are committed, a session document is turned into relational rows
//! (`session_items`) that REST reads. Coalesced: a document changed a hundred times in a burst
//! is written once with its latest state.

use std::sync::Arc;

use dashmap::DashMap;
use firemode_sync_core::Projection;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::store::sessions::ItemRow;
use crate::store::Store;

struct Pending {
    projection: Projection,
    seq: i64,
    heads: String,
}

#[derive(Clone)]
pub struct Projector {
    pending: Arc<DashMap<Uuid, Pending>>,
    wake: Arc<Notify>,
    /// Bumped after every write; tests and REST readers can wait for it.
    written: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Projector {
    pub fn spawn(store: Arc<dyn Store>, tasks: &TaskTracker, shutdown: CancellationToken) -> Self {
        let p = Self {
            pending: Arc::new(DashMap::new()),
            wake: Arc::new(Notify::new()),
            written: Arc::new(tokio::sync::watch::channel(0).0),
        };
        let worker = p.clone();
        tasks.spawn(async move {
            loop {
                let stopping = tokio::select! {
                    _ = worker.wake.notified() => false,
                    _ = shutdown.cancelled() => true,
                };
                let keys: Vec<Uuid> = worker.pending.iter().map(|e| *e.key()).collect();
                for id in keys {
                    if let Some((_, job)) = worker.pending.remove(&id) {
                        if let Err(e) = write(store.as_ref(), id, job).await {
                            tracing::error!(session = %id, error = %e, "projection failed");
                        }
                    }
                }
                worker.written.send_modify(|n| *n += 1);
                if stopping && worker.pending.is_empty() {
                    break;
                }
            }
        });
        p
    }

    /// Queue the latest projection of a session (replacing an unwritten older one).
    pub fn submit(&self, session: Uuid, projection: Projection, seq: i64, heads: String) {
        self.pending.insert(session, Pending { projection, seq, heads });
        self.wake.notify_one();
    }

    /// Wait until nothing is queued for `session` and a write round has finished.
    pub async fn settled(&self, session: Uuid) {
        let mut rx = self.written.subscribe();
        while self.pending.contains_key(&session) {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

async fn write(store: &dyn Store, id: Uuid, job: Pending) -> anyhow::Result<()> {
    let session = store.find_session(id).await?;
    let items: Vec<ItemRow> = job
        .projection
        .items
        .iter()
        .map(|i| ItemRow {
            session_id: id,
            asset_id: i.asset_id.clone(),
            org_id: session.row.org_id,
            building_id: session.row.building_id,
            rule_code: i.rule_code.clone(),
            outcome: i.outcome.map(|o| o.as_str().to_owned()),
            raw_outcome: i.raw_outcome.clone(),
            observed_condition: i.observed_condition.clone(),
            readings: sqlx::types::Json(json!(i.readings)),
            notes: i.notes.clone(),
            evidence: sqlx::types::Json(json!(i.evidence)),
            recorded_by: i.recorded_by.clone(),
            recorded_at: i.recorded_at.clone(),
            classification: None,
            rule_version: None,
            problems: sqlx::types::Json(json!(i.problems)),
        })
        .collect();
    let problems = json!(job.projection.problems);
    store.replace_projection(id, &items, job.seq, &job.heads, &problems).await?;
    Ok(())
}
