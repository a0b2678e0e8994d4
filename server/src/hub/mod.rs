//! The sync hub: automerge-repo protocol (v1) over WebSockets.
//!
//! One actor task per open document owns the automerge document and one sync state per
//! connection that asked for it (`doc.rs`). Connections (`conn.rs`) authenticate at the upgrade,
//! check every document id against the session registry, and attach only to the documents they
//! ask for. The rules of a document (durability, catching up with other nodes, compaction) are
//! in the sans-IO [`firemode_sync_core::replica`]; the actor carries out its effects. New
//! changes are committed through the group committer (`persist.rs`) before anyone hears of
//! them; then the session is re-projected in the background (`crate::projection`). Idle
//! documents are unloaded.
//!
//! Several nodes (PostgreSQL): after each group commit a node rings a doorbell (NOTIFY with the
//! document ids); nodes holding one of those documents catch up from the database. A sweep
//! every `sync_sweep` catches up documents whose doorbell was lost, and a listener that
//! reconnects catches up every loaded document.

pub mod conn;
mod doc;
mod persist;
pub mod verify;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use automerge::{ActorId, Automerge, ChangeHash};
use dashmap::DashMap;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::projection::Projector;
use crate::store::Store;
use doc::{DocCmd, DocHandle};
pub use firemode_sync_core::replica::CloseReason;
pub use persist::GroupCommitter;

/// Tunables of the hub (from `Config`).
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub ping_interval: Duration,
    pub idle_unload: Duration,
    pub max_frame: usize,
    pub outbound_queue: usize,
    pub compact_after: usize,
    /// How often a node looks for documents other nodes changed whose doorbell it missed.
    pub sweep_interval: Duration,
}

pub type ConnId = u64;

/// Sessions the start-up backlog catches up at once.
const BACKLOG_CONCURRENCY: usize = 8;
/// Documents unloaded at once when the server stops.
const UNLOAD_CONCURRENCY: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
}

/// What a document actor knows of a connection.
pub struct ConnInfo {
    pub id: ConnId,
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub role: crate::store::Role,
    /// The client's peer id (`<user id>:<device id>`).
    pub peer_id: String,
    pub device_id: String,
    /// Encoded frames to send. Bounded: a full queue means a slow client, which is cut off.
    pub out: mpsc::Sender<Vec<u8>>,
    /// Cancelled to close the socket (slow client, revocation, unassignment).
    pub kill: CancellationToken,
    /// Why the hub closed it (the socket's close frame says so).
    pub close_reason: std::sync::Mutex<Option<CloseReason>>,
}

impl ConnInfo {
    /// Close the socket, recording the first reason given.
    pub fn close(&self, reason: CloseReason) {
        if let Ok(mut r) = self.close_reason.lock() {
            r.get_or_insert(reason);
        }
        self.kill.cancel();
    }

    /// The reason recorded by [`ConnInfo::close`], if the hub closed it.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason.lock().ok().and_then(|r| r.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("the document could not be loaded: {0}")]
    Load(String),
    #[error("the change could not be stored: {0}")]
    Persist(String),
    #[error("the document is unavailable")]
    Unavailable,
    #[error("{0}")]
    Rejected(String),
    #[error("the session is completed (signed off) and read-only")]
    Completed,
}

/// Who made a server-side change (REST writes).
#[derive(Debug, Clone)]
pub struct Origin {
    pub user_id: Uuid,
    pub request_id: Option<String>,
    /// The write signs the session off or reopens it: allowed on a completed session (every
    /// other write to one is refused with [`HubError::Completed`]).
    pub on_completed: bool,
}

pub(crate) struct HubInner {
    pub store: Arc<dyn Store>,
    pub committer: GroupCommitter,
    pub projector: Projector,
    pub config: HubConfig,
    docs: DashMap<Uuid, DocHandle>,
    pub conns: DashMap<ConnId, Arc<ConnInfo>>,
    next_conn: AtomicU64,
    next_gen: AtomicU64,
    /// Changes committed by this process (exported as a metric).
    pub(crate) changes_stored: AtomicU64,
    /// Catch-ups started by a doorbell or the sweep (exported as a metric).
    pub(crate) remote_hints: AtomicU64,
    /// The server's peer id in the protocol, and the storage id it advertises.
    pub peer_id: String,
    pub storage_id: String,
    /// The actor id of changes this process makes (REST writes); unique per process.
    pub actor: ActorId,
    /// This process's number in `doc_changes.node` (random per start): the sweep skips its own.
    pub node_id: i64,
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
    committer_stop: CancellationToken,
}

#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

impl Hub {
    pub fn new(
        store: Arc<dyn Store>,
        projector: Projector,
        config: HubConfig,
        storage_id: String,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let committer_stop = CancellationToken::new();
        // Positive, so 0 stays "made outside the hub".
        let node_id =
            i64::from_le_bytes(Uuid::new_v4().as_bytes()[..8].try_into().unwrap_or([1; 8]))
                .abs()
                .max(1);
        let committer = GroupCommitter::spawn(
            store.clone(),
            format!("firemode-server-{storage_id}-{}", Uuid::new_v4().simple()),
            &tasks,
            committer_stop.clone(),
        );
        let actor = ActorId::from(Uuid::new_v4().as_bytes().as_slice());
        Self {
            inner: Arc::new(HubInner {
                store,
                committer,
                projector,
                config,
                docs: DashMap::new(),
                conns: DashMap::new(),
                next_conn: AtomicU64::new(1),
                next_gen: AtomicU64::new(1),
                changes_stored: AtomicU64::new(0),
                remote_hints: AtomicU64::new(0),
                peer_id: format!("firemode-server-{storage_id}"),
                storage_id,
                actor,
                node_id,
                tasks,
                shutdown,
                committer_stop,
            }),
        }
    }

    pub fn peer_id(&self) -> &str {
        &self.inner.peer_id
    }

    /// The largest WebSocket message a connection may send.
    pub fn max_frame(&self) -> usize {
        self.inner.config.max_frame
    }

    /// The actor id of this process's own changes.
    pub fn actor(&self) -> ActorId {
        self.inner.actor.clone()
    }

    /// Project the document now (not after the debounce) and wait until the rows are written.
    pub async fn project_now(&self, doc: Uuid) {
        let (tx, rx) = oneshot::channel();
        self.send(doc, DocCmd::ProjectNow(tx)).await;
        let _ = rx.await;
        self.inner.projector.settled(doc).await;
    }

    /// Mark the session signed off (or reopened) in its document actor, which from then on
    /// serves every peer read-only and refuses other server writes; waits until applied.
    pub async fn set_completed(&self, doc: Uuid, completed: bool) {
        let (tx, rx) = oneshot::channel();
        self.send(doc, DocCmd::SetCompleted(completed, tx)).await;
        let _ = rx.await;
    }

    /// Project the document again (loading it if needed) although it did not change — what its
    /// items are assessed against did (baselines, design values) — and wait for the rows.
    pub async fn reassess(&self, doc: Uuid) {
        let (tx, rx) = oneshot::channel();
        self.send(doc, DocCmd::Reassess(tx)).await;
        let _ = rx.await;
        self.inner.projector.settled(doc).await;
    }

    /// Catch the document up with the store (loading it if needed), project it and wait until
    /// the rows are written.
    pub async fn refresh(&self, doc: Uuid) {
        let (tx, rx) = oneshot::channel();
        self.send(doc, DocCmd::Refresh(tx)).await;
        let _ = rx.await;
        self.inner.projector.settled(doc).await;
    }

    /// Wait until the stored projection holds every stored change (read-your-writes for REST,
    /// through any node): a projection waiting for its debounce here is submitted now; if the
    /// store still has a change the projection may lack (written through another node, or
    /// committed just before a crash), the document is caught up and projected.
    pub async fn settled(&self, doc: Uuid) {
        let (tx, rx) = oneshot::channel();
        self.send_if_loaded(doc, DocCmd::FlushProjection(tx)).await;
        let _ = rx.await;
        self.inner.projector.settled(doc).await;
        match self.inner.store.projection_is_current(doc).await {
            Ok(true) => {}
            Ok(false) => self.refresh(doc).await,
            Err(e) => {
                tracing::warn!(%doc, error = %e, "cannot tell whether the projection is current")
            }
        }
    }

    /// Projections that may lack a stored change (a crash between a commit and its
    /// projection, a node that stopped, projections queued at the last shutdown and marked
    /// stale then): caught up and projected, a few at a time. Run once at start-up, in the
    /// background.
    pub async fn project_backlog(&self) -> usize {
        let mut after = None;
        let mut done = 0;
        loop {
            if self.inner.shutdown.is_cancelled() {
                break;
            }
            let ids = match self.inner.store.stale_projections(after, 200).await {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!(error = %e, "projection backlog scan failed");
                    break;
                }
            };
            let Some(last) = ids.last().copied() else {
                break;
            };
            // Several at a time, so that every projection worker has work.
            let shutdown = &self.inner.shutdown;
            done += futures_util::stream::iter(ids)
                .map(|id| async move {
                    if shutdown.is_cancelled() {
                        return 0;
                    }
                    self.refresh(id).await;
                    1
                })
                .buffer_unordered(BACKLOG_CONCURRENCY)
                .fold(0, |n, one| async move { n + one })
                .await;
            after = Some(last);
        }
        if done > 0 {
            tracing::info!(sessions = done, "projection backlog re-checked");
        }
        done
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.inner.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Number of documents loaded in memory.
    pub fn loaded_documents(&self) -> usize {
        self.inner.docs.len()
    }

    /// Shutdown: the projection workers stop after their current session (see
    /// [`Projector::stop`]).
    pub fn stop_projections(&self) {
        self.inner.projector.stop();
    }

    /// Shutdown, after [`Hub::drain`]: what is still queued for projection is marked stale
    /// for the next start. Returns how many sessions that was.
    pub async fn finish_projections(&self) -> usize {
        self.inner.projector.finish().await
    }

    /// Sessions with a projection write (or release) still queued.
    pub fn projections_pending(&self) -> usize {
        self.inner.projector.pending()
    }

    /// Session item rows the projection has written since start.
    pub fn projection_rows_written(&self) -> u64 {
        self.inner.projector.rows_written()
    }

    /// Projection writes that failed since start.
    pub fn projection_failures(&self) -> u64 {
        self.inner.projector.failures()
    }

    /// The last projection write that failed.
    pub fn last_projection_failure(&self) -> Option<crate::projection::ProjectionFailure> {
        self.inner.projector.last_failure()
    }

    pub fn changes_stored(&self) -> u64 {
        self.inner.changes_stored.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> usize {
        self.inner.conns.len()
    }

    /// Deliver a command to the document's actor, starting it if needed. While the server
    /// shuts down no document is loaded again and a command for an unloaded one is dropped
    /// (a read or write then answers "unavailable").
    pub(crate) async fn send(&self, doc: Uuid, mut cmd: DocCmd) {
        for _ in 0..3 {
            let Some(tx) = self.handle(doc) else {
                tracing::debug!(%doc, "shutting down: command for an unloaded document dropped");
                return;
            };
            match tx.send(cmd).await {
                Ok(()) => return,
                // The actor stopped between lookup and send: it is gone from the map, retry.
                Err(mpsc::error::SendError(c)) => {
                    self.inner.docs.remove_if(&doc, |_, h| h.tx.is_closed());
                    cmd = c;
                }
            }
        }
        tracing::error!(%doc, "could not reach a document actor");
    }

    /// Deliver a command only if the document is loaded (e.g. detaching from it).
    pub(crate) async fn send_if_loaded(&self, doc: Uuid, cmd: DocCmd) {
        let tx = self.inner.docs.get(&doc).map(|h| h.tx.clone());
        if let Some(tx) = tx {
            let _ = tx.send(cmd).await;
        }
    }

    fn handle(&self, doc: Uuid) -> Option<mpsc::Sender<DocCmd>> {
        if let Some(h) = self.inner.docs.get(&doc) {
            if !h.tx.is_closed() {
                return Some(h.tx.clone());
            }
        }
        // `drain` unloads the documents loaded when it starts; one loaded after that (by a
        // request still in flight, or a command that raced with an unload) would live until
        // its idle timeout and hold the shutdown up.
        if self.inner.shutdown.is_cancelled() {
            return None;
        }
        let entry = self.inner.docs.entry(doc).or_insert_with(|| {
            let gen = self.inner.next_gen.fetch_add(1, Ordering::Relaxed);
            doc::spawn(self.clone(), doc, gen)
        });
        if entry.tx.is_closed() {
            let gen = self.inner.next_gen.fetch_add(1, Ordering::Relaxed);
            let fresh = doc::spawn(self.clone(), doc, gen);
            let tx = fresh.tx.clone();
            drop(entry);
            self.inner.docs.insert(doc, fresh);
            return Some(tx);
        }
        Some(entry.tx.clone())
    }

    /// Called by an actor that is about to stop: forget it if it is still the registered one.
    pub(crate) fn forget(&self, doc: Uuid, gen: u64) {
        self.inner.docs.remove_if(&doc, |_, h| h.gen == gen);
    }

    /// Read the document (loading it if needed).
    pub async fn read<R: Send + 'static>(
        &self,
        doc: Uuid,
        f: impl FnOnce(&Automerge) -> R + Send + 'static,
    ) -> Result<R, HubError> {
        let (tx, rx) = oneshot::channel();
        let job: doc::ReadJob = Box::new(move |d: Result<&Automerge, HubError>| {
            let _ = tx.send(d.map(f));
        });
        self.send(doc, DocCmd::Read(job)).await;
        rx.await.map_err(|_| HubError::Unavailable)?
    }

    /// Change the document as the server's own actor. `f` returns the value to hand back;
    /// the change is committed to the database, then sent to every connected peer, and only
    /// then does this return (with the new heads).
    pub async fn write<R: Send + 'static>(
        &self,
        doc: Uuid,
        origin: Origin,
        f: impl FnOnce(&mut Automerge, ActorId) -> Result<R, HubError> + Send + 'static,
    ) -> Result<(R, Vec<ChangeHash>), HubError> {
        type Reply<R> = oneshot::Sender<Result<(R, Vec<ChangeHash>), HubError>>;
        let (tx, rx) = oneshot::channel();
        // Whichever of `apply` and `cancel` runs answers.
        let reply: Arc<std::sync::Mutex<Option<Reply<R>>>> =
            Arc::new(std::sync::Mutex::new(Some(tx)));
        let take =
            |r: &Arc<std::sync::Mutex<Option<Reply<R>>>>| r.lock().ok().and_then(|mut t| t.take());
        let actor = self.inner.actor.clone();
        let for_apply = reply.clone();
        let job = doc::ServerWrite {
            apply: Box::new(move |d: &mut Automerge| match f(d, actor) {
                Ok(value) => Box::new(move |res: Result<Vec<ChangeHash>, HubError>| {
                    if let Some(tx) = take(&for_apply) {
                        let _ = tx.send(res.map(|heads| (value, heads)));
                    }
                }) as doc::Completion,
                Err(e) => Box::new(move |_res| {
                    if let Some(tx) = take(&for_apply) {
                        let _ = tx.send(Err(e));
                    }
                }),
            }),
            cancel: Box::new(move |res| {
                if let Some(tx) = take(&reply) {
                    let _ = tx.send(Err(res.err().unwrap_or(HubError::Unavailable)));
                }
            }),
        };
        self.send(doc, DocCmd::Write { job, origin }).await;
        rx.await.map_err(|_| HubError::Unavailable)?
    }

    /// Session assignment changed: every connection attached to the document, on every node,
    /// is re-checked; those no longer allowed are closed.
    pub async fn reauthorize(&self, doc: Uuid) {
        self.reauthorize_local(doc).await;
        self.announce_event(&format!("reauthorize {doc}")).await;
    }

    async fn reauthorize_local(&self, doc: Uuid) {
        if self.inner.docs.contains_key(&doc) {
            self.send(doc, DocCmd::Reauthorize).await;
        }
    }

    /// Another node committed changes to this document: catch up if it is loaded here.
    pub async fn remote_changes(&self, doc: Uuid) {
        if self.inner.docs.contains_key(&doc) {
            self.inner.remote_hints.fetch_add(1, Ordering::Relaxed);
            self.send_if_loaded(doc, DocCmd::Remote).await;
        }
    }

    /// Catch-ups started by doorbells and sweeps since start.
    pub fn remote_hints(&self) -> u64 {
        self.inner.remote_hints.load(Ordering::Relaxed)
    }

    async fn announce_event(&self, event: &str) {
        if let Err(e) = self.inner.store.announce_event(event).await {
            tracing::warn!(error = %e, event, "could not tell other nodes");
        }
    }

    /// An event announced by another node.
    async fn on_event(&self, payload: &str) {
        match payload.split_once(' ') {
            Some(("reauthorize", id)) => {
                if let Ok(doc) = id.parse() {
                    self.reauthorize_local(doc).await;
                }
            }
            _ => tracing::debug!(payload, "unknown hub event"),
        }
    }

    fn loaded(&self) -> Vec<Uuid> {
        self.inner.docs.iter().map(|e| *e.key()).collect()
    }

    /// Graceful shutdown: flush and unload every document, then stop the committer.
    pub async fn drain(&self) {
        self.unload_all().await;
        self.inner.committer_stop.cancel();
    }

    /// Flush: ask every loaded document to compact and stop (several at a time: each waits
    /// for its own snapshot write, and one after another they held a shutdown up for seconds).
    pub async fn unload_all(&self) {
        let docs: Vec<Uuid> = self.inner.docs.iter().map(|e| *e.key()).collect();
        futures_util::stream::iter(docs)
            .for_each_concurrent(UNLOAD_CONCURRENCY, |d| async move {
                let (tx, rx) = oneshot::channel();
                self.send(d, DocCmd::Unload(tx)).await;
                let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
            })
            .await;
    }
}

/// Multi-node (PostgreSQL): other nodes ring the doorbell (NOTIFY) after committing changes;
/// documents loaded here catch up. After (re)connecting, the listener catches up every loaded
/// document, since doorbells rung while it was away are lost.
pub fn spawn_listener(
    hub: Hub,
    pool: sqlx::PgPool,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    tasks.spawn(async move {
        let own = hub.inner.committer.node().to_owned();
        loop {
            let listen = async {
                let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
                l.listen_all([
                    crate::store::DOCUMENT_CHANNEL,
                    crate::store::HUB_EVENT_CHANNEL,
                ])
                .await?;
                for doc in hub.loaded() {
                    hub.remote_changes(doc).await;
                }
                loop {
                    let n = l.recv().await?;
                    if n.channel() == crate::store::HUB_EVENT_CHANNEL {
                        hub.on_event(n.payload()).await;
                        continue;
                    }
                    let mut parts = n.payload().split(' ');
                    if parts.next() == Some(own.as_str()) {
                        continue;
                    }
                    for id in parts {
                        if let Ok(doc) = id.parse::<Uuid>() {
                            hub.remote_changes(doc).await;
                        }
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listen => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "document listener failed; retrying");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

/// Multi-node: every `sweep_interval`, documents loaded here that have change rows newer than
/// the last sweep catch up — the safety net for a doorbell that was never rung (a node killed
/// between its commit and its NOTIFY) or lost.
pub fn spawn_sweeper(hub: Hub, tasks: &TaskTracker, shutdown: CancellationToken) {
    tasks.spawn(async move {
        let interval = hub.inner.config.sweep_interval;
        let mut watermark = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(interval) => {}
            }
            let result = match watermark {
                None => hub
                    .inner
                    .store
                    .current_watermark()
                    .await
                    .map(|w| (Vec::new(), w)),
                Some(w) => {
                    hub.inner
                        .store
                        .sessions_changed_since(w, hub.inner.node_id)
                        .await
                }
            };
            match result {
                Ok((docs, next)) => {
                    watermark = Some(next);
                    for doc in docs {
                        hub.remote_changes(doc).await;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "sweep failed; retrying"),
            }
        }
    });
}
