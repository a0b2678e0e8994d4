//! Live events for screens that should follow the field without a reload (the console):
//! a session's projection or status changed, a defect changed.
//!
//! One watcher per organisation with open streams, on each node, asks the database every
//! [`POLL`] what changed since its last look (`store::live`) and broadcasts it to that
//! organisation's streams on this node. Reading the tables every node writes — rather than
//! hooking the projection writer — makes the events complete on several nodes without a
//! channel between them, at the cost of one pair of indexed queries (migration 0019) per poll per
//! organisation being watched (shared by all its streams), and up to [`POLL`] of delay.
//! A watcher stops when its organisation's last stream goes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::store::Store;

/// How often an organisation's watcher looks.
pub const POLL: Duration = Duration::from_millis(750);
/// Rows written up to this long before a look may commit after it (a slow transaction, or a
/// node whose clock is behind): each look reaches back this far, and what was already sent is
/// remembered for as long.
const OVERLAP: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
/// Events kept for a slow stream; beyond that it gets `lagged` and should reload.
const BUFFER: usize = 256;
/// At most this many rows of each kind per look (a burst is spread over a few looks).
const BATCH: i64 = 500;

/// A session whose projection (results, defects) or status changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionEvent {
    pub session_id: Uuid,
    pub building_id: Uuid,
    /// `in_progress` or `completed`.
    pub status: String,
    /// The heads of its stored projection (bs58check).
    pub heads: Vec<String>,
    #[serde(skip)]
    pub assigned_to: Vec<Uuid>,
}

/// A defect that was created or changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DefectEvent {
    pub defect_id: Uuid,
    pub session_id: Option<Uuid>,
    pub building_id: Uuid,
    pub status: String,
}

#[derive(Debug, Clone)]
pub enum LiveEvent {
    Session(SessionEvent),
    Defect(DefectEvent),
}

/// The organisations' watchers of this node, and the streams open per user.
#[derive(Default)]
pub struct LiveEvents {
    orgs: DashMap<Uuid, broadcast::Sender<LiveEvent>>,
    streams: Arc<DashMap<Uuid, usize>>,
}

/// One open stream of a user; dropping it closes the count.
pub struct StreamGuard {
    streams: Arc<DashMap<Uuid, usize>>,
    user: Uuid,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.streams.remove_if_mut(&self.user, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

impl LiveEvents {
    /// Count a new stream of `user`, unless `max` are open already.
    pub fn open_stream(&self, user: Uuid, max: usize) -> Option<StreamGuard> {
        let mut n = self.streams.entry(user).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(StreamGuard {
            streams: self.streams.clone(),
            user,
        })
    }

    /// The events of `org`, starting a watcher when none runs.
    pub fn subscribe(
        self: &Arc<Self>,
        org: Uuid,
        store: &Arc<dyn Store>,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> broadcast::Receiver<LiveEvent> {
        let mut start = false;
        let rx = {
            let tx = self.orgs.entry(org).or_insert_with(|| {
                start = true;
                broadcast::channel(BUFFER).0
            });
            tx.subscribe()
        };
        if start {
            let this = self.clone();
            let store = store.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { this.watch(org, store, shutdown).await });
        }
        rx
    }

    async fn watch(self: Arc<Self>, org: Uuid, store: Arc<dyn Store>, shutdown: CancellationToken) {
        let mut since = Utc::now() - OVERLAP;
        let mut sent: HashMap<(Uuid, DateTime<Utc>), DateTime<Utc>> = HashMap::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(POLL) => {}
            }
            let Some(tx) = self.orgs.get(&org).map(|t| t.clone()) else {
                break;
            };
            if tx.receiver_count() == 0 {
                // The last stream went: stop, unless one subscribed in the meantime.
                if self
                    .orgs
                    .remove_if(&org, |_, t| t.receiver_count() == 0)
                    .is_some()
                {
                    break;
                }
                continue;
            }
            let look = Utc::now();
            let from = since - OVERLAP;
            let sessions = store.changed_sessions(org, from, BATCH).await;
            let defects = store.changed_defects(org, from, BATCH).await;
            let (sessions, defects) = match (sessions, defects) {
                (Ok(s), Ok(d)) => (s, d),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(%org, error = %e, "live events: cannot read changes");
                    continue;
                }
            };
            let mut by_session: Vec<SessionEvent> = Vec::new();
            let mut newest = since;
            for row in sessions {
                newest = newest.max(row.changed_at);
                // One row per assignee, adjacent: the first makes the event, the others add.
                if let Some(e) = by_session.last_mut().filter(|e| e.session_id == row.id) {
                    e.assigned_to.extend(row.assignee);
                    continue;
                }
                if sent.contains_key(&(row.id, row.changed_at)) {
                    continue;
                }
                sent.insert((row.id, row.changed_at), look);
                by_session.push(SessionEvent {
                    session_id: row.id,
                    building_id: row.building_id,
                    status: row.status,
                    heads: row
                        .heads
                        .map(|h| h.split(',').map(str::to_owned).collect())
                        .unwrap_or_default(),
                    assigned_to: row.assignee.into_iter().collect(),
                });
            }
            for e in by_session {
                let _ = tx.send(LiveEvent::Session(e));
            }
            for row in defects {
                newest = newest.max(row.changed_at);
                if sent.insert((row.id, row.changed_at), look).is_some() {
                    continue;
                }
                let _ = tx.send(LiveEvent::Defect(DefectEvent {
                    defect_id: row.id,
                    session_id: row.session_id,
                    building_id: row.building_id,
                    status: row.status,
                }));
            }
            // Never ahead of this look (a row stamped by a clock ahead of ours is still in
            // the overlap next time).
            since = newest.min(look);
            sent.retain(|_, at| look - *at < OVERLAP * 2);
        }
    }
}
