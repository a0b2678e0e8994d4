//! The document actor: owns one automerge document and the sync state of every connection
//! that asked for it. Changes are committed before anyone hears of them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash, LoadOptions, OnPartialLoad};
use firemode_sync_core::wire::{self, Message};
use firemode_sync_core::DocumentId;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use super::{Access, ConnId, ConnInfo, Hub, HubError, Origin};
use crate::store::sessions::NewChange;

pub(crate) type ReadJob = Box<dyn FnOnce(Result<&Automerge, HubError>) + Send>;
pub(crate) type Completion = Box<dyn FnOnce(Result<Vec<ChangeHash>, HubError>) + Send>;
pub(crate) type WriteJob = Box<dyn FnOnce(&mut Automerge) -> Completion + Send>;

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
        job: WriteJob,
        origin: Origin,
    },
    Reauthorize,
    Remote,
    ProjectNow(oneshot::Sender<()>),
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
/// together, so a busy document is re-projected at most ten times a second.
const PROJECTION_DEBOUNCE: Duration = Duration::from_millis(100);
/// How many sync messages one round applies before committing and replying.
const MAX_BATCH: usize = 64;

pub(crate) fn spawn(hub: Hub, id: Uuid, gen: u64) -> DocHandle {
    let (tx, rx) = mpsc::channel(1024);
    let tasks = hub.inner.tasks.clone();
    tasks.spawn(async move {
        let actor = match Actor::load(hub.clone(), id, gen).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(doc = %id, error = %e, "cannot load document");
                fail_all(rx, &e.to_string()).await;
                hub.forget(id, gen);
                return;
            }
        };
        actor.run(rx).await;
    });
    DocHandle { tx, gen }
}

/// Answer every queued command with an error (the document could not be loaded).
async fn fail_all(mut rx: mpsc::Receiver<DocCmd>, why: &str) {
    rx.close();
    while let Some(cmd) = rx.recv().await {
        match cmd {
            DocCmd::Read(job) => job(Err(HubError::Load(why.into()))),
            DocCmd::Write { job, .. } => {
                // The job has not run; it is dropped, which the caller sees as unavailable.
                drop(job);
            }
            DocCmd::Sync { conn, .. } => conn.kill.cancel(),
            DocCmd::Unload(done) | DocCmd::ProjectNow(done) | DocCmd::FlushProjection(done) => {
                let _ = done.send(());
            }
            _ => {}
        }
    }
}

struct Peer {
    info: Arc<ConnInfo>,
    state: sync::State,
}

struct Actor {
    hub: Hub,
    id: Uuid,
    doc_id: String,
    gen: u64,
    doc: Automerge,
    peers: HashMap<ConnId, Peer>,
    /// Highest change sequence number seen in the database.
    last_seq: i64,
    /// Hashes of stored changes whose bytes a snapshot does not cover yet.
    uncompacted: Vec<ChangeHash>,
    ephemeral_seen: HashSet<(String, u64)>,
    project_at: Option<Instant>,
    /// The last projection, kept so the next one re-reads only the items changes touched.
    projection: Option<firemode_sync_core::ProjectionCache>,
}

impl Actor {
    async fn load(hub: Hub, id: Uuid, gen: u64) -> Result<Self, HubError> {
        let stored = hub
            .inner
            .store
            .load_document(id)
            .await
            .map_err(|e| HubError::Load(e.to_string()))?;
        let mut doc = match &stored.snapshot {
            Some(bytes) => Automerge::load(bytes).or_else(|e| {
                tracing::error!(doc = %id, error = %e, "snapshot fails strict load; loading what is readable");
                Automerge::load_with_options(bytes, LoadOptions::new().on_partial_load(OnPartialLoad::Ignore))
            }),
            None => Ok(Automerge::new()),
        }
        .map_err(|e| HubError::Load(e.to_string()))?;
        let mut uncompacted = Vec::new();
        for (_, bytes) in &stored.changes {
            if let Err(e) = doc.load_incremental(bytes) {
                tracing::error!(doc = %id, error = %e, "a stored change does not load");
            }
            if let Ok(c) = automerge::Change::try_from(bytes.as_slice()) {
                uncompacted.push(c.hash());
            }
        }
        doc.set_actor(hub.inner.actor.clone());
        Ok(Self {
            doc_id: DocumentId::from_uuid(id).to_string(),
            hub,
            id,
            gen,
            doc,
            peers: HashMap::new(),
            last_seq: stored.last_seq(),
            uncompacted,
            ephemeral_seen: HashSet::new(),
            project_at: None,
            projection: None,
        })
    }

    async fn run(mut self, mut rx: mpsc::Receiver<DocCmd>) {
        let idle = self.hub.inner.config.idle_unload;
        let mut idle_at = Instant::now() + idle;
        loop {
            let project_at = self.project_at;
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    idle_at = Instant::now() + idle;
                    let mut batch = vec![cmd];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(c) => batch.push(c),
                            Err(_) => break,
                        }
                    }
                    if let Some(done) = self.handle(batch).await {
                        self.unload(rx, Some(done)).await;
                        return;
                    }
                }
                _ = async { tokio::time::sleep_until(project_at.unwrap_or_else(Instant::now)).await }, if project_at.is_some() => {
                    self.project();
                }
                _ = tokio::time::sleep_until(idle_at), if self.peers.is_empty() => {
                    self.unload(rx, None).await;
                    return;
                }
            }
        }
        self.unload(rx, None).await;
    }

    /// Handle a batch of commands; returns Some when asked to unload.
    async fn handle(&mut self, batch: Vec<DocCmd>) -> Option<oneshot::Sender<()>> {
        let mut pending: Vec<NewChange> = Vec::new();
        let mut completions: Vec<Completion> = Vec::new();
        let mut failed: Vec<(ConnId, String)> = Vec::new();
        let mut touched_peers = false;
        let mut unload = None;
        let mut project_now: Vec<oneshot::Sender<()>> = Vec::new();
        let mut flush: Vec<oneshot::Sender<()>> = Vec::new();
        // Connections whose changes this batch stores: they must hear heads covering them.
        let mut senders: Vec<ConnId> = Vec::new();
        for cmd in batch {
            match cmd {
                DocCmd::Sync { conn, access, data } => {
                    touched_peers = true;
                    let before = self.doc.get_heads();
                    let peer = self.peers.entry(conn.id).or_insert_with(|| Peer {
                        state: match access {
                            Access::ReadWrite => sync::State::new(),
                            Access::ReadOnly => sync::State::new_read_only(),
                        },
                        info: conn.clone(),
                    });
                    let result = sync::Message::decode(&data)
                        .map_err(|e| format!("corrupt sync message: {e}"))
                        .and_then(|msg| {
                            self.doc
                                .receive_sync_message(&mut peer.state, msg)
                                .map_err(|e| format!("sync message rejected: {e}"))
                        });
                    // Whatever automerge accepted is kept and stored, even if a later part of
                    // the message failed.
                    let new_changes = self.doc.get_changes(&before);
                    if !new_changes.is_empty() && !senders.contains(&conn.id) {
                        senders.push(conn.id);
                    }
                    for mut c in new_changes {
                        pending.push(NewChange {
                            session_id: self.id,
                            hash: c.hash().0.to_vec(),
                            bytes: c.bytes().into_owned(),
                            actor_id: c.actor_id().to_hex_string(),
                            user_id: Some(conn.user_id),
                            device_id: Some(conn.device_id.clone()),
                            connection_id: Some(conn.id.to_string()),
                        });
                    }
                    if let Err(e) = result {
                        failed.push((conn.id, e));
                    }
                }
                DocCmd::Ephemeral {
                    conn,
                    session_id,
                    count,
                    data,
                } => {
                    self.relay_ephemeral(&conn, session_id, count, data);
                }
                DocCmd::Detach(id) => {
                    self.peers.remove(&id);
                }
                DocCmd::Read(job) => job(Ok(&self.doc)),
                DocCmd::Write { job, origin } => {
                    let before = self.doc.get_heads();
                    completions.push(job(&mut self.doc));
                    for mut c in self.doc.get_changes(&before) {
                        pending.push(NewChange {
                            session_id: self.id,
                            hash: c.hash().0.to_vec(),
                            bytes: c.bytes().into_owned(),
                            actor_id: c.actor_id().to_hex_string(),
                            user_id: Some(origin.user_id),
                            device_id: Some("server".into()),
                            connection_id: origin.request_id.clone(),
                        });
                    }
                    touched_peers = true;
                }
                DocCmd::Reauthorize => self.reauthorize().await,
                DocCmd::Remote => {
                    if self.load_remote().await {
                        touched_peers = true;
                    }
                }
                DocCmd::Unload(done) => unload = Some(done),
                DocCmd::ProjectNow(done) => project_now.push(done),
                DocCmd::FlushProjection(done) => flush.push(done),
            }
        }

        if !pending.is_empty() {
            let hashes: Vec<ChangeHash> = pending
                .iter()
                .filter_map(|c| <[u8; 32]>::try_from(c.hash.as_slice()).ok().map(ChangeHash))
                .collect();
            match self.hub.inner.committer.commit(pending).await {
                Ok(seqs) => {
                    self.hub
                        .inner
                        .changes_stored
                        .fetch_add(seqs.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    if let Some(max) = seqs.iter().max() {
                        self.last_seq = self.last_seq.max(*max);
                    }
                    self.uncompacted.extend(hashes);
                    self.schedule_projection();
                }
                Err(e) => {
                    // Nothing here may be acknowledged. Drop this in-memory copy entirely: every
                    // peer is disconnected and resends on reconnect.
                    tracing::error!(doc = %self.id, error = %e, "persisting changes failed; unloading");
                    for c in completions {
                        c(Err(HubError::Persist(e.clone())));
                    }
                    for p in self.peers.values() {
                        p.info.kill.cancel();
                    }
                    self.peers.clear();
                    self.uncompacted.clear();
                    return Some(unload.unwrap_or_else(|| oneshot::channel().0));
                }
            }
        }
        let heads = self.doc.get_heads();
        for c in completions {
            c(Ok(heads.clone()));
        }
        for (id, why) in failed {
            if let Some(p) = self.peers.remove(&id) {
                let frame = wire::encode(&Message::Error {
                    sender_id: self.hub.inner.peer_id.clone(),
                    message: why,
                    target_id: Some(p.info.peer_id.clone()),
                });
                let _ = p.info.out.try_send(frame);
                p.info.kill.cancel();
            }
        }
        // A later message of the same connection in this batch ("I have these heads", sent
        // before it heard from us) makes automerge record our heads as already announced, and
        // it would then send nothing. automerge-repo clients take the heads we announce as
        // "saved on the server" (remote heads): without an announcement the last change would
        // look unsaved until the next one. Forget what was announced, so that one is sent.
        for id in &senders {
            if let Some(p) = self.peers.get_mut(id) {
                p.state.last_sent_heads.clear();
            }
        }
        if touched_peers {
            self.broadcast();
        }
        if self.uncompacted.len() >= self.hub.inner.config.compact_after {
            self.compact().await;
        }
        if !project_now.is_empty() || (!flush.is_empty() && self.project_at.is_some()) {
            self.project();
        }
        for d in project_now.into_iter().chain(flush) {
            let _ = d.send(());
        }
        unload
    }

    /// Send every peer whatever it is missing.
    fn broadcast(&mut self) {
        let mut gone = Vec::new();
        for (id, peer) in self.peers.iter_mut() {
            while let Some(msg) = self.doc.generate_sync_message(&mut peer.state) {
                let frame = wire::encode(&Message::Sync {
                    document_id: self.doc_id.clone(),
                    sender_id: self.hub.inner.peer_id.clone(),
                    target_id: peer.info.peer_id.clone(),
                    data: msg.encode(),
                });
                if peer.info.out.try_send(frame).is_err() {
                    // A full queue is a client that does not read: cut it off rather than let
                    // it hold the document up (it resyncs when it reconnects).
                    tracing::warn!(doc = %self.id, conn = id, "slow or closed connection dropped");
                    peer.info.kill.cancel();
                    gone.push(*id);
                    break;
                }
            }
        }
        for id in gone {
            self.peers.remove(&id);
        }
    }

    fn relay_ephemeral(&mut self, from: &ConnInfo, session_id: String, count: u64, data: Vec<u8>) {
        if self.ephemeral_seen.len() > 10_000 {
            self.ephemeral_seen.clear();
        }
        if !self.ephemeral_seen.insert((session_id.clone(), count)) {
            return;
        }
        for peer in self.peers.values() {
            if peer.info.id == from.id {
                continue;
            }
            let frame = wire::encode(&Message::Ephemeral {
                document_id: self.doc_id.clone(),
                sender_id: from.peer_id.clone(),
                target_id: peer.info.peer_id.clone(),
                count,
                session_id: session_id.clone(),
                data: data.clone(),
            });
            // Presence is best effort: a full queue just drops it.
            let _ = peer.info.out.try_send(frame);
        }
    }

    async fn reauthorize(&mut self) {
        let mut gone = Vec::new();
        for (id, peer) in &self.peers {
            let allowed = super::conn::access_for(
                &self.hub,
                peer.info.user_id,
                peer.info.org_id,
                peer.info.role,
                self.id,
            )
            .await;
            let current = if peer.state.read_only {
                Access::ReadOnly
            } else {
                Access::ReadWrite
            };
            if allowed != Some(current) {
                peer.info.kill.cancel();
                gone.push(*id);
            }
        }
        for id in gone {
            self.peers.remove(&id);
        }
    }

    /// Load changes other nodes committed. True when the document changed.
    async fn load_remote(&mut self) -> bool {
        let rows = match self
            .hub
            .inner
            .store
            .changes_since(self.id, self.last_seq)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(doc = %self.id, error = %e, "cannot load remote changes");
                return false;
            }
        };
        let before = self.doc.get_heads();
        for (seq, bytes) in rows {
            self.last_seq = self.last_seq.max(seq);
            if self.doc.load_incremental(&bytes).is_ok() {
                if let Ok(c) = automerge::Change::try_from(bytes.as_slice()) {
                    self.uncompacted.push(c.hash());
                }
            }
        }
        let changed = self.doc.get_heads() != before;
        if changed {
            self.schedule_projection();
        }
        changed
    }

    fn schedule_projection(&mut self) {
        if self.project_at.is_none() {
            self.project_at = Some(Instant::now() + PROJECTION_DEBOUNCE);
        }
    }

    fn project(&mut self) {
        self.project_at = None;
        let projection = self
            .projection
            .get_or_insert_with(|| firemode_sync_core::ProjectionCache::new(&self.doc))
            .update(&self.doc)
            .clone();
        let heads = firemode_sync_core::encode_heads(&self.doc.get_heads());
        self.hub
            .inner
            .projector
            .submit(self.id, projection, self.last_seq, heads);
    }

    /// Snapshot the document and drop the stored bytes it covers (one transaction).
    async fn compact(&mut self) {
        if self.uncompacted.is_empty() {
            return;
        }
        let snapshot = self.doc.save();
        let covered: Vec<Vec<u8>> = self.uncompacted.iter().map(|h| h.0.to_vec()).collect();
        match self
            .hub
            .inner
            .store
            .compact(self.id, &snapshot, self.last_seq, &covered)
            .await
        {
            Ok(()) => self.uncompacted.clear(),
            Err(e) => tracing::warn!(doc = %self.id, error = %e, "compaction failed; will retry"),
        }
    }

    async fn unload(mut self, mut rx: mpsc::Receiver<DocCmd>, done: Option<oneshot::Sender<()>>) {
        if self.project_at.is_some() {
            self.project();
        }
        self.hub.inner.projector.release(self.id);
        self.compact().await;
        self.hub.forget(self.id, self.gen);
        for p in self.peers.values() {
            p.info.kill.cancel();
        }
        rx.close();
        // Commands that raced with the unload go to a fresh actor.
        while let Some(cmd) = rx.recv().await {
            match cmd {
                DocCmd::Unload(d) => {
                    let _ = d.send(());
                }
                DocCmd::ProjectNow(d) | DocCmd::FlushProjection(d) => {
                    let _ = d.send(());
                }
                // Nothing to detach from once unloaded: no need to load it again for that.
                DocCmd::Detach(_) => {}
                other => self.hub.send(self.id, other).await,
            }
        }
        if let Some(d) = done {
            let _ = d.send(());
        }
        tracing::debug!(doc = %self.id, "document unloaded");
    }
}
