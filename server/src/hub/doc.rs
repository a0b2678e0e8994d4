//! The document actor: a tokio task that owns one document's [`Replica`] (the sans-IO state
//! machine in `firemode_sync_core::replica`, where the durability, catch-up and compaction
//! rules live) and carries out the effects it returns: frames to connections, commits through
//! the group committer, store reads and snapshot writes, projections.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use automerge::{Automerge, ChangeHash};
use firemode_sync_core::replica::{
    self, Attribution, CloseReason, Compaction, Effect, Loaded, PeerInfo, Replica, Snapshot,
    StoredChange, Watermark, Write, WriteJob,
};
use firemode_sync_core::DocumentId;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use super::{Access, ConnId, ConnInfo, Hub, HubError, Origin};
use crate::store::sessions::NewChange;

pub(crate) type ReadJob = Box<dyn FnOnce(Result<&Automerge, HubError>) + Send>;
pub(crate) type Completion = Box<dyn FnOnce(Result<Vec<ChangeHash>, HubError>) + Send>;

/// A REST write: runs against the document and returns what to do with the outcome.
pub(crate) struct ServerWrite {
    pub apply: Box<dyn FnOnce(&mut Automerge) -> Completion + Send>,
    pub cancel: Completion,
}

impl WriteJob<Completion> for ServerWrite {
    fn apply(self: Box<Self>, doc: &mut Automerge) -> Completion {
        (self.apply)(doc)
    }
    fn cancel(self: Box<Self>) -> Completion {
        self.cancel
    }
}

pub(crate) enum DocCmd {
    /// A `request` or `sync` message from a connection (attaching it if new).
    Sync {
        conn: Arc<ConnInfo>,
        access: Access,
        data: Vec<u8>,
    },
    /// An `ephemeral` message to relay to the document's other connections.
    Ephemeral {
        conn: Arc<ConnInfo>,
        session_id: String,
        count: u64,
        data: Vec<u8>,
    },
    Detach(ConnId),
    Read(ReadJob),
    Write {
        job: ServerWrite,
        origin: Origin,
    },
    Reauthorize,
    /// The session was signed off (true) or reopened (false): while completed, every peer is
    /// read-only and server writes are refused unless their origin allows a completed session.
    SetCompleted(bool, oneshot::Sender<()>),
    /// Another node stored changes to this document (a hint).
    Remote,
    /// Catch up with the store, project, and answer once the projection is submitted.
    Refresh(oneshot::Sender<()>),
    ProjectNow(oneshot::Sender<()>),
    /// Project even without a change to the document (its baselines or rules changed).
    Reassess(oneshot::Sender<()>),
    /// Submit a projection that is waiting for its debounce, if there is one (a REST read
    /// wants what was acknowledged).
    FlushProjection(oneshot::Sender<()>),
    Unload(oneshot::Sender<()>),
}

pub(crate) struct DocHandle {
    pub tx: mpsc::Sender<DocCmd>,
    pub gen: u64,
}

/// How long after a change the projection is refreshed; changes in that window are projected
/// together, so a busy document is re-projected at most twice a second. Each projection is a
/// write transaction and several reads: at 100 ms, two tablets editing a session once a second
/// each cost one projection per edit. REST reads do not wait for it (they flush it: see
/// `Hub::settled`), and the console's live events poll every 750 ms.
const PROJECTION_DEBOUNCE: Duration = Duration::from_millis(500);
/// How many commands one round handles before committing and replying.
const MAX_BATCH: usize = 64;

pub(crate) fn spawn(hub: Hub, id: Uuid, gen: u64) -> DocHandle {
    let (tx, rx) = mpsc::channel(1024);
    let tasks = hub.inner.tasks.clone();
    tasks.spawn(async move {
        match Actor::load(hub.clone(), id, gen).await {
            Ok(actor) => actor.run(rx).await,
            Err(e) => {
                tracing::error!(doc = %id, error = %e, "cannot load document");
                fail_all(rx, &e.to_string()).await;
                hub.forget(id, gen);
            }
        }
    });
    DocHandle { tx, gen }
}

/// Answer every queued command with an error (the document could not be loaded).
async fn fail_all(mut rx: mpsc::Receiver<DocCmd>, why: &str) {
    rx.close();
    while let Some(cmd) = rx.recv().await {
        match cmd {
            DocCmd::Read(job) => job(Err(HubError::Load(why.into()))),
            DocCmd::Write { job, .. } => (job.cancel)(Err(HubError::Load(why.into()))),
            DocCmd::Sync { conn, .. } => conn.close(CloseReason::StorageFailed),
            DocCmd::Unload(done)
            | DocCmd::ProjectNow(done)
            | DocCmd::SetCompleted(_, done)
            | DocCmd::Reassess(done)
            | DocCmd::FlushProjection(done)
            | DocCmd::Refresh(done) => {
                let _ = done.send(());
            }
            _ => {}
        }
    }
}

struct Actor {
    hub: Hub,
    id: Uuid,
    gen: u64,
    replica: Replica<Completion>,
    /// Connections attached, by key (the replica knows them by key only).
    conns: std::collections::HashMap<ConnId, Arc<ConnInfo>>,
    epoch: Instant,
    /// Commands that arrived while the replica was unloading: a fresh actor takes them.
    deferred: Vec<DocCmd>,
    /// The session is signed off: read-only for every peer, and for server writes that do not
    /// sign off or reopen it.
    completed: bool,
}

impl Actor {
    async fn load(hub: Hub, id: Uuid, gen: u64) -> Result<Self, HubError> {
        let completed = session_completed(&hub, id).await?;
        let stored = hub
            .inner
            .store
            .load_document(id)
            .await
            .map_err(|e| HubError::Load(e.to_string()))?;
        let loaded = Loaded {
            snapshot: stored
                .snapshot
                .map(|(bytes, generation)| Snapshot { bytes, generation }),
            changes: stored
                .changes
                .into_iter()
                .filter_map(|(h, b)| hash(&h).map(|h| (h, b)))
                .collect(),
            watermark: Watermark(stored.watermark),
            projected_heads: stored
                .projected_heads
                .and_then(|h| firemode_sync_core::decode_heads(&h).ok()),
        };
        let cfg = &hub.inner.config;
        let mut rc = replica::Config::new(
            DocumentId::from_uuid(id).to_string(),
            hub.inner.peer_id.clone(),
        );
        rc.compact_after = cfg.compact_after;
        rc.projection_debounce_ms = PROJECTION_DEBOUNCE.as_millis() as u64;
        rc.idle_unload_ms = cfg.idle_unload.as_millis() as u64;
        let (replica, effects) = Replica::load(rc, loaded, hub.inner.actor.clone(), 0);
        let mut actor = Self {
            hub,
            id,
            gen,
            replica,
            conns: Default::default(),
            epoch: Instant::now(),
            deferred: Vec::new(),
            completed,
        };
        actor.execute(effects).await;
        Ok(actor)
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    async fn run(mut self, mut rx: mpsc::Receiver<DocCmd>) {
        loop {
            if self.replica.is_stopped() {
                break;
            }
            let deadline = self
                .replica
                .next_deadline()
                .map(|ms| self.epoch + Duration::from_millis(ms));
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    let mut batch = vec![cmd];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(c) => batch.push(c),
                            Err(_) => break,
                        }
                    }
                    self.handle(batch).await;
                }
                _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if deadline.is_some() => {
                    let now = self.now();
                    let effects = self.replica.tick(now);
                    self.execute(effects).await;
                }
            }
        }
        if !self.replica.is_stopped() {
            // The channel closed (the hub is gone): finish anyway.
            let now = self.now();
            let effects = self.replica.unload(now);
            self.execute(effects).await;
        }
        self.finish(rx).await;
    }

    async fn handle(&mut self, batch: Vec<DocCmd>) {
        let mut waiting: Vec<(oneshot::Sender<()>, bool)> = Vec::new();
        let mut reassess = false;
        let mut unload: Vec<oneshot::Sender<()>> = Vec::new();
        for cmd in batch {
            if self.replica.is_unloading() || self.replica.is_stopped() {
                match cmd {
                    DocCmd::Unload(done) => unload.push(done),
                    DocCmd::Detach(_) => {}
                    other => self.deferred.push(other),
                }
                continue;
            }
            let now = self.now();
            let effects = match cmd {
                DocCmd::Sync { conn, access, data } => {
                    // Signed off: read-only whatever the socket was allowed when it asked.
                    let access = if self.completed {
                        Access::ReadOnly
                    } else {
                        access
                    };
                    let info = PeerInfo {
                        key: conn.id,
                        peer_id: conn.peer_id.clone(),
                        access: match access {
                            Access::ReadWrite => replica::Access::ReadWrite,
                            Access::ReadOnly => replica::Access::ReadOnly,
                        },
                        attribution: Attribution {
                            user_id: Some(conn.user_id),
                            device_id: Some(conn.device_id.clone()),
                            connection_id: Some(conn.id.to_string()),
                        },
                    };
                    self.conns.insert(conn.id, conn);
                    self.replica.receive(info, data, now)
                }
                DocCmd::Ephemeral {
                    conn,
                    session_id,
                    count,
                    data,
                } => {
                    let from = PeerInfo {
                        key: conn.id,
                        peer_id: conn.peer_id.clone(),
                        access: replica::Access::ReadOnly,
                        attribution: Attribution::default(),
                    };
                    self.replica.ephemeral(&from, session_id, count, data)
                }
                DocCmd::Detach(id) => {
                    self.conns.remove(&id);
                    self.replica.detach(id, now)
                }
                DocCmd::Read(job) => {
                    self.replica.touch(now);
                    job(Ok(self.replica.doc()));
                    Vec::new()
                }
                DocCmd::Write { job, origin } if self.completed && !origin.on_completed => {
                    (job.cancel)(Err(HubError::Completed));
                    Vec::new()
                }
                DocCmd::SetCompleted(completed, done) => {
                    self.completed = completed;
                    let mut effects = Vec::new();
                    if completed {
                        // Sockets that could write reconnect read-only.
                        let writers: Vec<ConnId> = self
                            .replica
                            .peers()
                            .filter(|p| p.access == replica::Access::ReadWrite)
                            .map(|p| p.key)
                            .collect();
                        for key in writers {
                            effects.extend(self.replica.revoke(key, now));
                        }
                    }
                    let _ = done.send(());
                    effects
                }
                DocCmd::Write { job, origin } => self.replica.write(
                    Write {
                        job: Box::new(job),
                        attribution: Attribution {
                            user_id: Some(origin.user_id),
                            device_id: Some("server".into()),
                            connection_id: origin.request_id,
                        },
                    },
                    now,
                ),
                DocCmd::Reauthorize => self.reauthorize().await,
                DocCmd::Remote => self.replica.remote_hint(now),
                DocCmd::Refresh(done) => {
                    // The catch-up it asks for is carried out (awaited) by `execute` before
                    // the projection below is taken.
                    let effects = self.replica.remote_hint(now);
                    self.execute(effects).await;
                    waiting.push((done, true));
                    Vec::new()
                }
                DocCmd::ProjectNow(done) => {
                    waiting.push((done, true));
                    Vec::new()
                }
                DocCmd::Reassess(done) => {
                    reassess = true;
                    waiting.push((done, true));
                    Vec::new()
                }
                DocCmd::FlushProjection(done) => {
                    waiting.push((done, false));
                    Vec::new()
                }
                DocCmd::Unload(done) => {
                    unload.push(done);
                    Vec::new()
                }
            };
            self.execute(effects).await;
        }
        let now = self.now();
        let effects = self.replica.flush(now);
        self.execute(effects).await;
        if !waiting.is_empty() {
            let now = self.now();
            let effects = if reassess {
                self.replica.reproject(now)
            } else if waiting.iter().any(|(_, force)| *force) {
                self.replica.project_now(now)
            } else {
                self.replica.flush_projection(now)
            };
            self.execute(effects).await;
            for (done, _) in waiting {
                let _ = done.send(());
            }
        }
        if !unload.is_empty() {
            let now = self.now();
            let effects = self.replica.unload(now);
            self.execute(effects).await;
            // Unloading waits for nothing else: `execute` carried out every store operation.
            self.deferred.extend(unload.into_iter().map(DocCmd::Unload));
        }
    }

    /// Carry out effects; the answers of store operations are fed back to the replica and
    /// their effects carried out in turn.
    async fn execute(&mut self, effects: Vec<Effect<Completion>>) {
        let mut queue: VecDeque<Effect<Completion>> = effects.into();
        while let Some(effect) = queue.pop_front() {
            let more = match effect {
                Effect::Send { peer, frame } => {
                    if let Some(conn) = self.conns.get(&peer) {
                        if conn.out.try_send(frame).is_err() {
                            // A full queue is a client that does not read: cut it off rather
                            // than let it hold the document up (it resyncs on reconnect).
                            tracing::warn!(doc = %self.id, conn = peer, "slow or closed connection dropped");
                            conn.close(CloseReason::Slow);
                            self.conns.remove(&peer);
                            let now = self.now();
                            self.replica.detach(peer, now)
                        } else {
                            Vec::new()
                        }
                    } else {
                        Vec::new()
                    }
                }
                Effect::Close { peer, reason } => {
                    if let Some(conn) = self.conns.remove(&peer) {
                        conn.close(reason);
                    }
                    Vec::new()
                }
                Effect::Persist(changes) => self.persist(changes).await,
                Effect::CatchUp(w) => {
                    let result = self
                        .hub
                        .inner
                        .store
                        .changes_after(self.id, w.0)
                        .await
                        .map(|c| {
                            let rows = c
                                .rows
                                .into_iter()
                                .filter_map(|(h, bytes)| {
                                    hash(&h).map(|hash| StoredChange { hash, bytes })
                                })
                                .collect();
                            (rows, Watermark(c.watermark))
                        })
                        .map_err(|e| e.to_string());
                    let now = self.now();
                    self.replica.caught_up(result, now)
                }
                Effect::LoadSnapshot => {
                    let result = self
                        .hub
                        .inner
                        .store
                        .load_snapshot(self.id)
                        .await
                        .map(|s| s.map(|(bytes, generation)| Snapshot { bytes, generation }))
                        .map_err(|e| e.to_string());
                    let now = self.now();
                    self.replica.snapshot_loaded(result, now)
                }
                Effect::Compact {
                    snapshot,
                    expected_generation,
                    covered,
                } => {
                    let hashes: Vec<Vec<u8>> = covered.iter().map(|h| h.0.to_vec()).collect();
                    let result = self
                        .hub
                        .inner
                        .store
                        .compact(self.id, &snapshot, expected_generation, &hashes)
                        .await
                        .map(|g| match g {
                            Some(g) => Compaction::Written(g),
                            None => Compaction::Conflict,
                        })
                        .map_err(|e| e.to_string());
                    if matches!(result, Ok(Compaction::Conflict)) {
                        tracing::debug!(doc = %self.id, "another node compacted first; merging its snapshot");
                    }
                    let now = self.now();
                    self.replica.compacted(&covered, result, now)
                }
                Effect::Project {
                    projection,
                    heads,
                    watermark,
                } => {
                    let heads = firemode_sync_core::encode_heads(&heads);
                    self.hub
                        .inner
                        .projector
                        .submit(self.id, *projection, watermark.0, heads);
                    Vec::new()
                }
                Effect::Done(completion, result) => {
                    completion(result.map_err(|e| match e {
                        replica::WriteError::Persist(why) => HubError::Persist(why),
                        replica::WriteError::Unavailable => HubError::Unavailable,
                    }));
                    Vec::new()
                }
                Effect::Warn(why) => {
                    tracing::warn!(doc = %self.id, "{why}");
                    Vec::new()
                }
                Effect::Stop => Vec::new(),
            };
            queue.extend(more);
        }
    }

    async fn persist(&mut self, changes: Vec<replica::NewChange>) -> Vec<Effect<Completion>> {
        let rows: Vec<NewChange> = changes
            .into_iter()
            .map(|c| NewChange {
                session_id: self.id,
                hash: c.hash.0.to_vec(),
                bytes: c.bytes,
                actor_id: c.actor_id,
                user_id: c.attribution.user_id,
                device_id: c.attribution.device_id,
                connection_id: c.attribution.connection_id,
                node: self.hub.inner.node_id,
            })
            .collect();
        let result = match self.hub.inner.committer.commit(rows).await {
            Ok(seqs) => {
                self.hub
                    .inner
                    .changes_stored
                    .fetch_add(seqs.len() as u64, std::sync::atomic::Ordering::Relaxed);
                Ok(seqs
                    .iter()
                    .max()
                    .and_then(|m| self.hub.inner.store.watermark_after_commit(*m))
                    .map(Watermark))
            }
            Err(e) => {
                // Nothing here may be acknowledged: the replica closes every peer (they
                // resend on reconnect) and stops.
                tracing::error!(doc = %self.id, error = %e, "persisting changes failed; unloading");
                Err(e)
            }
        };
        let now = self.now();
        self.replica.persisted(result, now)
    }

    async fn reauthorize(&mut self) -> Vec<Effect<Completion>> {
        let mut effects = Vec::new();
        // Signed off or reopened through another node.
        if let Ok(completed) = session_completed(&self.hub, self.id).await {
            self.completed = completed;
        }
        let peers: Vec<(ConnId, bool)> = self
            .replica
            .peers()
            .map(|p| (p.key, p.access == replica::Access::ReadOnly))
            .collect();
        for (key, read_only) in peers {
            let Some(conn) = self.conns.get(&key).cloned() else {
                continue;
            };
            let allowed =
                super::conn::access_for(&self.hub, conn.user_id, conn.org_id, conn.role, self.id)
                    .await;
            let current = if read_only {
                Access::ReadOnly
            } else {
                Access::ReadWrite
            };
            if allowed != Some(current) {
                let now = self.now();
                effects.extend(self.replica.revoke(key, now));
            }
        }
        effects
    }

    /// The replica stopped: forget this actor, release the projection cache and hand any
    /// command that raced with the unload to a fresh actor.
    async fn finish(self, mut rx: mpsc::Receiver<DocCmd>) {
        self.hub.inner.projector.release(self.id);
        self.hub.forget(self.id, self.gen);
        for conn in self.conns.values() {
            conn.close(CloseReason::Unloaded);
        }
        rx.close();
        let mut rest: Vec<DocCmd> = self.deferred;
        while let Some(cmd) = rx.recv().await {
            rest.push(cmd);
        }
        let mut done = Vec::new();
        for cmd in rest {
            match cmd {
                DocCmd::Unload(d) => done.push(d),
                // Nothing to detach from once unloaded: no need to load it again for that.
                DocCmd::Detach(_) => {}
                DocCmd::ProjectNow(d) | DocCmd::Reassess(d) | DocCmd::FlushProjection(d) => {
                    let _ = d.send(());
                }
                other => self.hub.send(self.id, other).await,
            }
        }
        for d in done {
            let _ = d.send(());
        }
        tracing::debug!(doc = %self.id, "document unloaded");
    }
}

/// Whether the session is signed off, as the registry says.
async fn session_completed(hub: &Hub, id: Uuid) -> Result<bool, HubError> {
    match hub.inner.store.find_session(id).await {
        Ok(s) => Ok(s.row.completed()),
        Err(crate::store::StoreError::NotFound) => Ok(false),
        Err(e) => Err(HubError::Load(e.to_string())),
    }
}

fn hash(bytes: &[u8]) -> Option<ChangeHash> {
    <[u8; 32]>::try_from(bytes).ok().map(ChangeHash)
}
