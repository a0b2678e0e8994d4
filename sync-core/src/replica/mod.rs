//! One node's replica of a session document, as a sans-IO state machine.
//!
//! The sync hub runs one [`Replica`] per loaded document. It feeds the replica what happens —
//! sync messages from connections, server-side writes, results of the storage operations the
//! replica asked for, "another node committed something" hints, the passing of time — and
//! carries out the [`Effect`]s the replica returns: frames to send, connections to close,
//! changes to persist, store reads, snapshots to write, projections to submit. Everything that
//! decides *whether* something may be sent, acknowledged, dropped or compacted lives here, so
//! it is tested without sockets, a runtime or a database (`tests/replica_model.rs` runs several
//! simulated nodes over one simulated store).
//!
//! The rules this module keeps:
//! - **Durability.** A change is persisted before any peer hears of it: while changes are
//!   staged or being persisted, no sync message is generated for anyone, and new inbound
//!   messages wait in a backlog. A failed persist discards the replica (every peer is closed
//!   and resends on reconnect); nothing it held is acknowledged.
//! - **Compaction by hash.** A snapshot only replaces the stored bytes of changes whose hashes
//!   it contains ([`Effect::Compact::covered`]), and it is written only over the snapshot this
//!   replica has merged (`expected_generation`): a snapshot written meanwhile by another node
//!   is merged first, so a snapshot never loses what an older one held.
//! - **Catching up.** Other nodes' changes are read from the store after a [`Watermark`] that
//!   only moves to a point the store guarantees everything before is visible. Rows already in
//!   the document are skipped by hash; a row whose bytes a snapshot replaced and that this
//!   replica lacks makes it merge the latest snapshot. A hint can be lost, repeated or late
//!   without leaving a gap: the next catch-up reads everything after the watermark.
//! - **Projection** is of committed state only, and a replica whose stored projection does not
//!   match its document re-projects as soon as it loads.

use std::collections::{HashMap, HashSet, VecDeque};

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash, LoadOptions, OnPartialLoad};
use uuid::Uuid;

use crate::session::{Projection, ProjectionCache};
use crate::wire::{self, Message};

#[cfg(test)]
mod tests;

/// A connection, as the hub numbers them.
pub type PeerKey = u64;

/// What a connection may do with the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Its changes are applied and stored.
    ReadWrite,
    /// Its changes are ignored (automerge's read-only sync state): auditors, completed sessions.
    ReadOnly,
}

/// Who sent a change; stored beside it as the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    /// The authenticated user.
    pub user_id: Option<Uuid>,
    /// The device part of the peer id, or `server` for REST writes.
    pub device_id: Option<String>,
    /// The connection (or the REST request id).
    pub connection_id: Option<String>,
}

/// A connection attached to the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The hub's number for the connection.
    pub key: PeerKey,
    /// The client's peer id (`<user id>:<device id>`), the target of frames sent to it.
    pub peer_id: String,
    /// What it may do.
    pub access: Access,
    /// Stored with every change it sends.
    pub attribution: Attribution,
}

/// A change to append to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChange {
    /// The change hash.
    pub hash: ChangeHash,
    /// The encoded change.
    pub bytes: Vec<u8>,
    /// The change's actor, hex.
    pub actor_id: String,
    /// Who sent it.
    pub attribution: Attribution,
}

/// A position in the store's log of changes, chosen by the store: every change stored with a
/// position below the watermark is known to have been read (and applied). On a single-writer
/// store it can be a sequence number; with several writers it must be a point below which no
/// transaction is still in flight (a sequence number is not: values are taken before commit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Watermark(pub i64);

/// A stored change as the store returns it when catching up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChange {
    /// The change hash.
    pub hash: ChangeHash,
    /// The encoded change; `None` once a snapshot covers it.
    pub bytes: Option<Vec<u8>>,
}

/// The stored snapshot of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `Automerge::save()` output.
    pub bytes: Vec<u8>,
    /// Bumped by every snapshot write; compaction compares it (compare-and-swap).
    pub generation: i64,
}

/// What the store holds for a document, read consistently (one database snapshot).
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The latest snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// Every stored change that still carries bytes (those a snapshot does not cover, and
    /// maybe some it does), in any order.
    pub changes: Vec<(ChangeHash, Vec<u8>)>,
    /// Everything stored below it is in `snapshot` or `changes`.
    pub watermark: Watermark,
    /// The heads of the stored projection, if one was written.
    pub projected_heads: Option<Vec<ChangeHash>>,
}

/// The outcome of a compaction the store attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compaction {
    /// Written; the stored snapshot now has this generation.
    Written(i64),
    /// Another snapshot was written since this replica merged one: nothing was changed.
    Conflict,
}

/// Why the replica closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The connection sent something the document cannot take.
    Protocol(String),
    /// Its outbound queue is full (the hub reports this through [`Replica::detach`]).
    Slow,
    /// Changes could not be stored; the client should reconnect and send them again.
    StorageFailed,
    /// The document is being unloaded (shutdown).
    Unloaded,
    /// Its access to the document changed.
    AccessChanged,
    /// A newer connection of the same peer replaced it.
    Replaced,
}

/// Why a server-side write failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The change could not be stored.
    #[error("the change could not be stored: {0}")]
    Persist(String),
    /// The replica is unloading or was discarded.
    #[error("the document is unavailable")]
    Unavailable,
}

/// A server-side change (a REST write), run by the replica against its document.
pub trait WriteJob<C>: Send {
    /// Make the change (as the server's actor) and return the completion token that
    /// [`Effect::Done`] hands back with the outcome.
    fn apply(self: Box<Self>, doc: &mut Automerge) -> C;
    /// The replica cannot take writes (unloading, discarded): the completion, unapplied.
    fn cancel(self: Box<Self>) -> C;
}

/// A server-side change and who made it.
pub struct Write<C> {
    /// The change.
    pub job: Box<dyn WriteJob<C>>,
    /// Stored with the change.
    pub attribution: Attribution,
}

impl<C> std::fmt::Debug for Write<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Write")
            .field("attribution", &self.attribution)
            .finish_non_exhaustive()
    }
}

/// What the hub must do.
#[derive(Debug)]
pub enum Effect<C> {
    /// Send an encoded frame to a connection. If its queue is full, call [`Replica::detach`]
    /// and close it.
    Send {
        /// The connection.
        peer: PeerKey,
        /// The encoded wire message.
        frame: Vec<u8>,
    },
    /// Close a connection (after the frames queued for it before).
    Close {
        /// The connection.
        peer: PeerKey,
        /// Why.
        reason: CloseReason,
    },
    /// Append these changes in one transaction; answer with [`Replica::persisted`].
    Persist(Vec<NewChange>),
    /// Read the stored changes after this watermark; answer with [`Replica::caught_up`].
    CatchUp(Watermark),
    /// Read the stored snapshot; answer with [`Replica::snapshot_loaded`].
    LoadSnapshot,
    /// Write `snapshot` if the stored one still has `expected_generation` (None: there is
    /// none) and drop the stored bytes of the `covered` changes, in one transaction; answer
    /// with [`Replica::compacted`].
    Compact {
        /// `Automerge::save()` of the committed document.
        snapshot: Vec<u8>,
        /// The generation this replica merged.
        expected_generation: Option<i64>,
        /// Hashes of changes the snapshot contains whose stored bytes may go.
        covered: Vec<ChangeHash>,
    },
    /// Write this projection of the committed document.
    Project {
        /// The projection (boxed: it is by far the largest effect).
        projection: Box<Projection>,
        /// The document heads it reflects.
        heads: Vec<ChangeHash>,
        /// The replica's watermark when it was taken.
        watermark: Watermark,
    },
    /// A server-side write finished: hand the completion its outcome (the heads after it).
    Done(C, Result<Vec<ChangeHash>, WriteError>),
    /// Something worth a log line (a change that does not load, say).
    Warn(String),
    /// The replica is finished (unloaded, or discarded after a storage failure): drop it.
    Stop,
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct Config {
    /// The document id (base58check), as frames carry it.
    pub document_id: String,
    /// The server's peer id, the sender of its frames.
    pub server_peer_id: String,
    /// Compact once this many stored changes are not covered by a snapshot.
    pub compact_after: usize,
    /// Changes within this many milliseconds are projected together.
    pub projection_debounce_ms: u64,
    /// Unload after this many milliseconds without a peer or a command.
    pub idle_unload_ms: u64,
    /// How many times a compaction at unload is retried after a conflict.
    pub max_compaction_conflicts: u32,
}

impl Config {
    /// Defaults for a document id and server peer id.
    pub fn new(document_id: impl Into<String>, server_peer_id: impl Into<String>) -> Self {
        Self {
            document_id: document_id.into(),
            server_peer_id: server_peer_id.into(),
            compact_after: 500,
            projection_debounce_ms: 100,
            idle_unload_ms: 2_000,
            max_compaction_conflicts: 3,
        }
    }
}

struct Peer {
    info: PeerInfo,
    state: sync::State,
    /// Its sync state or the committed document changed since automerge last had nothing to
    /// send it. A clean peer is skipped by [`Replica::broadcast`]: `generate_sync_message`
    /// depends only on the document and the peer's state, and with neither changed it would
    /// build the same bloom filter again only to return nothing.
    dirty: bool,
}

/// Inbound work that must wait while changes are being persisted.
enum Queued<C> {
    Sync(PeerInfo, Vec<u8>),
    Write(Write<C>),
}

/// Changes handed to the store and not yet confirmed.
struct InFlight<C> {
    hashes: Vec<ChangeHash>,
    done: Vec<C>,
    senders: Vec<PeerKey>,
}

/// Changes applied to the document and not yet handed to the store.
struct Staged<C> {
    changes: Vec<NewChange>,
    done: Vec<C>,
    senders: Vec<PeerKey>,
}

impl<C> Default for Staged<C> {
    fn default() -> Self {
        Self {
            changes: Vec::new(),
            done: Vec::new(),
            senders: Vec::new(),
        }
    }
}

/// One node's replica of a document. See the module documentation.
pub struct Replica<C> {
    cfg: Config,
    doc: Automerge,
    peers: HashMap<PeerKey, Peer>,
    staged: Staged<C>,
    persisting: Option<InFlight<C>>,
    backlog: VecDeque<Queued<C>>,
    watermark: Watermark,
    catching_up: bool,
    catch_up_again: bool,
    loading_snapshot: bool,
    snapshot_generation: Option<i64>,
    /// Stored changes (by hash) whose bytes no snapshot this replica wrote covers yet.
    uncompacted: HashSet<ChangeHash>,
    compacting: bool,
    compaction_conflicts: u32,
    /// After a failed compaction, none is tried again before this time.
    compact_not_before: u64,
    projection: Option<ProjectionCache>,
    /// Heads and watermark of the last projection emitted (or found stored at load).
    projected: Option<(Vec<ChangeHash>, Watermark)>,
    project_due: Option<u64>,
    broadcast_pending: bool,
    unloading: bool,
    stopped: bool,
    idle_since: u64,
    ephemeral_seen: HashSet<(String, u64)>,
    out: Vec<Effect<C>>,
}

impl<C> Replica<C> {
    /// Build the replica from what the store holds. `actor` is the server's actor for
    /// server-side writes. The returned effects include a projection when the stored one does
    /// not match the document (a crash between a commit and its projection).
    pub fn load(
        cfg: Config,
        loaded: Loaded,
        actor: automerge::ActorId,
        now: u64,
    ) -> (Self, Vec<Effect<C>>) {
        let mut out = Vec::new();
        let mut doc = match &loaded.snapshot {
            Some(s) => match Automerge::load(&s.bytes) {
                Ok(d) => d,
                Err(e) => {
                    out.push(Effect::Warn(format!(
                        "snapshot fails strict load ({e}); loading what is readable"
                    )));
                    Automerge::load_with_options(
                        &s.bytes,
                        LoadOptions::new().on_partial_load(OnPartialLoad::Ignore),
                    )
                    .unwrap_or_else(|_| Automerge::new())
                }
            },
            None => Automerge::new(),
        };
        let mut uncompacted = HashSet::new();
        for (hash, bytes) in &loaded.changes {
            if let Err(e) = doc.load_incremental(bytes) {
                out.push(Effect::Warn(format!(
                    "stored change {hash} does not load: {e}"
                )));
            }
            uncompacted.insert(*hash);
        }
        // `Automerge::load` leaves its buffers with room to spare: a loaded 20-item session
        // held ~53 KiB, its clone ~12 KiB (automerge 0.12). The clone is what stays loaded.
        let mut doc = doc.clone();
        doc.set_actor(actor);
        let mut replica = Self {
            cfg,
            doc,
            peers: HashMap::new(),
            staged: Staged::default(),
            persisting: None,
            backlog: VecDeque::new(),
            watermark: loaded.watermark,
            catching_up: false,
            catch_up_again: false,
            loading_snapshot: false,
            snapshot_generation: loaded.snapshot.as_ref().map(|s| s.generation),
            uncompacted,
            compacting: false,
            compaction_conflicts: 0,
            compact_not_before: 0,
            projection: None,
            projected: None,
            project_due: None,
            broadcast_pending: false,
            unloading: false,
            stopped: false,
            idle_since: now,
            ephemeral_seen: HashSet::new(),
            out,
        };
        let heads = replica.doc.get_heads();
        let stale = match &loaded.projected_heads {
            Some(p) => !same_set(p, &heads),
            None => true,
        };
        if stale {
            replica.project();
        } else {
            replica.projected = Some((heads, Watermark(i64::MIN)));
        }
        let effects = std::mem::take(&mut replica.out);
        (replica, effects)
    }

    /// The document (committed state, unless changes are staged or being persisted).
    pub fn doc(&self) -> &Automerge {
        &self.doc
    }

    /// The document's heads.
    pub fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// The catch-up watermark.
    pub fn watermark(&self) -> Watermark {
        self.watermark
    }

    /// Connections attached to the document.
    pub fn peers(&self) -> impl Iterator<Item = &PeerInfo> {
        self.peers.values().map(|p| &p.info)
    }

    /// True once the replica has asked to be dropped.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// True once an unload has begun: new inbound work should go to a fresh replica.
    pub fn is_unloading(&self) -> bool {
        self.unloading
    }

    /// Activity that does not change the document (a read) postpones the idle unload.
    pub fn touch(&mut self, now: u64) {
        self.idle_since = now;
    }

    /// True while changes are staged or being persisted (no frame may carry them yet).
    pub fn has_uncommitted(&self) -> bool {
        !self.staged.changes.is_empty() || self.persisting.is_some()
    }

    /// When [`Replica::tick`] next has something to do (a debounced projection, an idle
    /// unload), in the caller's milliseconds.
    pub fn next_deadline(&self) -> Option<u64> {
        let idle = (self.peers.is_empty() && !self.unloading)
            .then(|| self.idle_since + self.cfg.idle_unload_ms);
        match (self.project_due, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A `request` or `sync` message from a connection (attached on first contact).
    pub fn receive(&mut self, peer: PeerInfo, data: Vec<u8>, now: u64) -> Vec<Effect<C>> {
        self.idle_since = now;
        if self.stopped || self.unloading {
            self.out.push(Effect::Close {
                peer: peer.key,
                reason: CloseReason::Unloaded,
            });
        } else if self.persisting.is_some() {
            self.backlog.push_back(Queued::Sync(peer, data));
        } else {
            self.apply_sync(peer, &data);
        }
        self.take()
    }

    /// A server-side write. Its completion comes back in [`Effect::Done`] once the change is
    /// stored and sent to the connected peers.
    pub fn write(&mut self, write: Write<C>, now: u64) -> Vec<Effect<C>> {
        self.idle_since = now;
        if self.stopped || self.unloading {
            let done = write.job.cancel();
            self.out
                .push(Effect::Done(done, Err(WriteError::Unavailable)));
        } else if self.persisting.is_some() {
            self.backlog.push_back(Queued::Write(write));
        } else {
            self.apply_write(write);
        }
        self.take()
    }

    /// Hand staged changes to the store (one [`Effect::Persist`]) or, with nothing staged and
    /// nothing in flight, send peers what they are missing. Call after each batch of inputs.
    pub fn flush(&mut self, now: u64) -> Vec<Effect<C>> {
        self.advance(now);
        self.take()
    }

    /// The store's answer to [`Effect::Persist`]. `watermark`: on a single-writer store, the
    /// point below which every stored change is now in this document (None otherwise).
    pub fn persisted(
        &mut self,
        result: Result<Option<Watermark>, String>,
        now: u64,
    ) -> Vec<Effect<C>> {
        let Some(flight) = self.persisting.take() else {
            return self.take();
        };
        match result {
            Ok(watermark) => {
                if let Some(w) = watermark {
                    self.watermark = self.watermark.max(w);
                }
                self.uncompacted.extend(flight.hashes);
                // automerge-repo clients take the heads we announce as "stored on the
                // server". A later message of a sender in the same batch may have made
                // automerge record our heads as announced already; forget that, so every
                // sender hears heads that cover what it sent.
                for key in &flight.senders {
                    if let Some(p) = self.peers.get_mut(key) {
                        p.state.last_sent_heads.clear();
                    }
                }
                self.mark_all_dirty();
                self.broadcast_pending = true;
                self.schedule_projection(now);
                let heads = self.doc.get_heads();
                // Peers first, then completions: a REST write returns once connected tablets
                // have been sent the change.
                self.broadcast();
                for c in flight.done {
                    self.out.push(Effect::Done(c, Ok(heads.clone())));
                }
                // What waited for this commit is applied now and persisted together.
                while let Some(q) = self.backlog.pop_front() {
                    match q {
                        Queued::Sync(peer, data) => self.apply_sync(peer, &data),
                        Queued::Write(w) => self.apply_write(w),
                    }
                }
                self.advance(now);
            }
            Err(e) => self.discard(flight, &e),
        }
        self.take()
    }

    /// Another node stored changes to this document (a hint: it may be late, repeated or
    /// lost; the next catch-up reads everything after the watermark anyway).
    pub fn remote_hint(&mut self, now: u64) -> Vec<Effect<C>> {
        if self.stopped {
            return self.take();
        }
        if self.catching_up {
            self.catch_up_again = true;
        } else {
            self.catching_up = true;
            self.out.push(Effect::CatchUp(self.watermark));
        }
        self.advance(now);
        self.take()
    }

    /// The store's answer to [`Effect::CatchUp`]: the changes stored at or after the watermark
    /// asked for, and the new watermark (everything below it is in `rows` or was before).
    pub fn caught_up(
        &mut self,
        result: Result<(Vec<StoredChange>, Watermark), String>,
        now: u64,
    ) -> Vec<Effect<C>> {
        self.catching_up = false;
        if self.stopped {
            return self.take();
        }
        match result {
            Ok((rows, watermark)) => {
                let before = self.doc.get_heads();
                let mut need_snapshot = false;
                for row in rows {
                    if self.doc.get_change_meta_by_hash(&row.hash).is_some() {
                        continue;
                    }
                    match row.bytes {
                        Some(bytes) => {
                            if let Err(e) = self.doc.load_incremental(&bytes) {
                                self.out.push(Effect::Warn(format!(
                                    "stored change {} does not load: {e}",
                                    row.hash
                                )));
                            }
                            self.uncompacted.insert(row.hash);
                        }
                        // Compacted by another node before this one read it: the latest
                        // snapshot holds it.
                        None => need_snapshot = true,
                    }
                }
                self.watermark = self.watermark.max(watermark);
                if need_snapshot {
                    self.request_snapshot();
                }
                if self.doc.get_heads() != before {
                    self.changed(now);
                }
            }
            Err(e) => {
                self.out
                    .push(Effect::Warn(format!("catching up failed: {e}")));
            }
        }
        if std::mem::take(&mut self.catch_up_again) {
            self.catching_up = true;
            self.out.push(Effect::CatchUp(self.watermark));
        }
        self.advance(now);
        self.take()
    }

    /// The store's answer to [`Effect::LoadSnapshot`].
    pub fn snapshot_loaded(
        &mut self,
        result: Result<Option<Snapshot>, String>,
        now: u64,
    ) -> Vec<Effect<C>> {
        self.loading_snapshot = false;
        if self.stopped {
            return self.take();
        }
        match result {
            Ok(Some(s)) => {
                let before = self.doc.get_heads();
                match self.doc.load_incremental(&s.bytes) {
                    Ok(_) => {
                        self.snapshot_generation = Some(s.generation);
                        if self.doc.get_heads() != before {
                            self.changed(now);
                        }
                    }
                    Err(e) => self.out.push(Effect::Warn(format!(
                        "the stored snapshot does not load: {e}"
                    ))),
                }
            }
            Ok(None) => {}
            Err(e) => self
                .out
                .push(Effect::Warn(format!("reading the snapshot failed: {e}"))),
        }
        self.advance(now);
        self.take()
    }

    /// The store's answer to [`Effect::Compact`]. `covered` are the hashes the request
    /// listed.
    pub fn compacted(
        &mut self,
        covered: &[ChangeHash],
        result: Result<Compaction, String>,
        now: u64,
    ) -> Vec<Effect<C>> {
        self.compacting = false;
        match result {
            Ok(Compaction::Written(generation)) => {
                self.snapshot_generation = Some(generation);
                for h in covered {
                    self.uncompacted.remove(h);
                }
                self.compaction_conflicts = 0;
            }
            Ok(Compaction::Conflict) => {
                // Another node wrote a snapshot: merge it, then try again.
                self.compaction_conflicts += 1;
                self.request_snapshot();
            }
            Err(e) => {
                self.out
                    .push(Effect::Warn(format!("compaction failed: {e}")));
                self.compact_not_before = now + 5_000;
                if self.unloading {
                    // Nothing was dropped; the stored changes stay as they are.
                    self.uncompacted.clear();
                }
            }
        }
        self.advance(now);
        self.take()
    }

    /// An `ephemeral` message: relayed once to the document's other connections.
    pub fn ephemeral(
        &mut self,
        from: &PeerInfo,
        session_id: String,
        count: u64,
        data: Vec<u8>,
    ) -> Vec<Effect<C>> {
        if self.ephemeral_seen.len() > 10_000 {
            self.ephemeral_seen.clear();
        }
        if self.ephemeral_seen.insert((session_id.clone(), count)) {
            for peer in self.peers.values() {
                if peer.info.key == from.key {
                    continue;
                }
                let frame = wire::encode(&Message::Ephemeral {
                    document_id: self.cfg.document_id.clone(),
                    sender_id: from.peer_id.clone(),
                    target_id: peer.info.peer_id.clone(),
                    count,
                    session_id: session_id.clone(),
                    data: data.clone(),
                });
                self.out.push(Effect::Send {
                    peer: peer.info.key,
                    frame,
                });
            }
        }
        self.take()
    }

    /// A connection left (or was cut for being slow): forget its sync state.
    pub fn detach(&mut self, peer: PeerKey, now: u64) -> Vec<Effect<C>> {
        if self.peers.remove(&peer).is_some() && self.peers.is_empty() {
            self.idle_since = now;
        }
        self.backlog
            .retain(|q| !matches!(q, Queued::Sync(p, _) if p.key == peer));
        self.take()
    }

    /// Close a connection whose access changed.
    pub fn revoke(&mut self, peer: PeerKey, now: u64) -> Vec<Effect<C>> {
        let mut effects = self.detach(peer, now);
        effects.push(Effect::Close {
            peer,
            reason: CloseReason::AccessChanged,
        });
        effects
    }

    /// Time passed: a debounced projection, an idle unload.
    pub fn tick(&mut self, now: u64) -> Vec<Effect<C>> {
        if !self.stopped
            && !self.unloading
            && self.peers.is_empty()
            && now >= self.idle_since + self.cfg.idle_unload_ms
        {
            self.unloading = true;
        }
        self.advance(now);
        self.take()
    }

    /// Project now if a projection is waiting for its debounce (a REST read wants what was
    /// acknowledged).
    pub fn flush_projection(&mut self, now: u64) -> Vec<Effect<C>> {
        if self.project_due.is_some() {
            self.project_due = Some(now);
        }
        self.advance(now);
        self.take()
    }

    /// Project now, unless the last projection was of these heads at this watermark.
    pub fn project_now(&mut self, now: u64) -> Vec<Effect<C>> {
        let current = (self.doc.get_heads(), self.watermark);
        if self.project_due.is_some() || self.projected.as_ref() != Some(&current) {
            self.project_due = Some(now);
        }
        self.advance(now);
        self.take()
    }

    /// Project now even when the document has not changed since the last projection: what it
    /// is assessed against outside the document changed (a baseline, a rule).
    pub fn reproject(&mut self, now: u64) -> Vec<Effect<C>> {
        self.project_due = Some(now);
        self.advance(now);
        self.take()
    }

    /// Finish: persist what is staged, project, compact, close the peers, then [`Effect::Stop`].
    pub fn unload(&mut self, now: u64) -> Vec<Effect<C>> {
        self.unloading = true;
        self.advance(now);
        self.take()
    }

    fn take(&mut self) -> Vec<Effect<C>> {
        std::mem::take(&mut self.out)
    }

    fn apply_sync(&mut self, info: PeerInfo, data: &[u8]) {
        let key = info.key;
        let peer = self.peers.entry(key).or_insert_with(|| Peer {
            state: match info.access {
                Access::ReadWrite => sync::State::new(),
                Access::ReadOnly => sync::State::new_read_only(),
            },
            info: info.clone(),
            dirty: true,
        });
        peer.dirty = true;
        let before = self.doc.get_heads();
        let result = sync::Message::decode(data)
            .map_err(|e| format!("corrupt sync message: {e}"))
            .and_then(|msg| {
                self.doc
                    .receive_sync_message(&mut peer.state, msg)
                    .map_err(|e| format!("sync message rejected: {e}"))
            });
        // Whatever automerge accepted is kept and stored, even if a later part failed.
        // Most messages carry no change (acknowledgements, heads): skip looking for any.
        let new = if self.doc.get_heads() == before {
            Vec::new()
        } else {
            self.doc.get_changes(&before)
        };
        let attribution = peer.info.attribution.clone();
        if !new.is_empty() && !self.staged.senders.contains(&key) {
            self.staged.senders.push(key);
        }
        for c in new {
            self.staged.changes.push(NewChange {
                hash: c.hash(),
                bytes: c.raw_bytes().to_vec(),
                actor_id: c.actor_id().to_hex_string(),
                attribution: attribution.clone(),
            });
        }
        // A peer we have not answered yet gets an answer at the next broadcast.
        self.broadcast_pending = true;
        if let Err(why) = result {
            if let Some(p) = self.peers.remove(&key) {
                self.out.push(Effect::Send {
                    peer: key,
                    frame: wire::encode(&Message::Error {
                        sender_id: self.cfg.server_peer_id.clone(),
                        message: why.clone(),
                        target_id: Some(p.info.peer_id.clone()),
                    }),
                });
                self.out.push(Effect::Close {
                    peer: key,
                    reason: CloseReason::Protocol(why),
                });
            }
        }
    }

    fn apply_write(&mut self, write: Write<C>) {
        let before = self.doc.get_heads();
        let done = write.job.apply(&mut self.doc);
        for c in self.doc.get_changes(&before) {
            self.staged.changes.push(NewChange {
                hash: c.hash(),
                bytes: c.raw_bytes().to_vec(),
                actor_id: c.actor_id().to_hex_string(),
                attribution: write.attribution.clone(),
            });
        }
        self.staged.done.push(done);
        self.broadcast_pending = true;
    }

    /// Do whatever the current state allows: persist staged changes, broadcast, project,
    /// compact, finish an unload.
    fn advance(&mut self, now: u64) {
        if self.stopped {
            return;
        }
        if self.persisting.is_none()
            && !self.staged.done.is_empty()
            && self.staged.changes.is_empty()
        {
            // Writes that changed nothing complete at once.
            let heads = self.doc.get_heads();
            for c in std::mem::take(&mut self.staged.done) {
                self.out.push(Effect::Done(c, Ok(heads.clone())));
            }
        }
        if self.persisting.is_none() && !self.staged.changes.is_empty() {
            let staged = std::mem::take(&mut self.staged);
            self.persisting = Some(InFlight {
                hashes: staged.changes.iter().map(|c| c.hash).collect(),
                done: staged.done,
                senders: staged.senders,
            });
            self.out.push(Effect::Persist(staged.changes));
            return;
        }
        if self.has_uncommitted() {
            return;
        }
        if self.broadcast_pending {
            self.broadcast();
        }
        if self.project_due.is_some_and(|due| due <= now)
            || (self.unloading && self.project_due.is_some())
        {
            self.project();
        }
        if !self.compacting && !self.loading_snapshot && now >= self.compact_not_before {
            let due = self.uncompacted.len() >= self.cfg.compact_after.max(1)
                || (self.unloading && !self.uncompacted.is_empty());
            let may =
                !self.unloading || self.compaction_conflicts <= self.cfg.max_compaction_conflicts;
            if due && may {
                self.compacting = true;
                self.out.push(Effect::Compact {
                    snapshot: self.doc.save(),
                    expected_generation: self.snapshot_generation,
                    covered: self.uncompacted.iter().copied().collect(),
                });
            }
        }
        if self.unloading && !self.compacting && !self.loading_snapshot && !self.catching_up {
            let compaction_settled = self.uncompacted.is_empty()
                || self.compaction_conflicts > self.cfg.max_compaction_conflicts
                || now < self.compact_not_before;
            if compaction_settled {
                for (key, _) in self.peers.drain() {
                    self.out.push(Effect::Close {
                        peer: key,
                        reason: CloseReason::Unloaded,
                    });
                }
                self.stopped = true;
                self.out.push(Effect::Stop);
            }
        }
    }

    /// Persisting failed: nothing held here may be acknowledged or sent. Every peer is closed
    /// (it resends on reconnect) and the replica stops without compacting.
    fn discard(&mut self, flight: InFlight<C>, why: &str) {
        for c in flight.done {
            self.out
                .push(Effect::Done(c, Err(WriteError::Persist(why.to_owned()))));
        }
        for c in std::mem::take(&mut self.staged.done) {
            self.out
                .push(Effect::Done(c, Err(WriteError::Persist(why.to_owned()))));
        }
        for q in std::mem::take(&mut self.backlog) {
            if let Queued::Write(w) = q {
                let done = w.job.cancel();
                self.out
                    .push(Effect::Done(done, Err(WriteError::Unavailable)));
            }
        }
        for (key, _) in self.peers.drain() {
            self.out.push(Effect::Close {
                peer: key,
                reason: CloseReason::StorageFailed,
            });
        }
        self.stopped = true;
        self.out.push(Effect::Stop);
    }

    fn request_snapshot(&mut self) {
        if !self.loading_snapshot {
            self.loading_snapshot = true;
            self.out.push(Effect::LoadSnapshot);
        }
    }

    /// The document gained committed changes from the store.
    fn changed(&mut self, now: u64) {
        self.mark_all_dirty();
        self.broadcast_pending = true;
        self.schedule_projection(now);
    }

    fn schedule_projection(&mut self, now: u64) {
        if self.project_due.is_none() {
            self.project_due = Some(now + self.cfg.projection_debounce_ms);
        }
    }

    fn project(&mut self) {
        self.project_due = None;
        let projection = self
            .projection
            .get_or_insert_with(|| ProjectionCache::new(&self.doc))
            .update(&self.doc)
            .clone();
        let heads = self.doc.get_heads();
        self.projected = Some((heads.clone(), self.watermark));
        self.out.push(Effect::Project {
            projection: Box::new(projection),
            heads,
            watermark: self.watermark,
        });
    }

    /// The committed document changed: every peer may be missing something.
    fn mark_all_dirty(&mut self) {
        for p in self.peers.values_mut() {
            p.dirty = true;
        }
    }

    /// Send every peer what it is missing. Only called with nothing uncommitted.
    fn broadcast(&mut self) {
        debug_assert!(!self.has_uncommitted());
        self.broadcast_pending = false;
        for peer in self.peers.values_mut().filter(|p| p.dirty) {
            peer.dirty = false;
            while let Some(msg) = self.doc.generate_sync_message(&mut peer.state) {
                self.out.push(Effect::Send {
                    peer: peer.info.key,
                    frame: wire::encode(&Message::Sync {
                        document_id: self.cfg.document_id.clone(),
                        sender_id: self.cfg.server_peer_id.clone(),
                        target_id: peer.info.peer_id.clone(),
                        data: msg.encode(),
                    }),
                });
            }
        }
    }
}

fn same_set(a: &[ChangeHash], b: &[ChangeHash]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}
