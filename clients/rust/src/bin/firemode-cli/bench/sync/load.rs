//! `bench sync`: N clients over M documents (client i works on document i mod M), each joins,
//! requests its document and then edits it, either at a fixed rate or closed-loop (at most
//! `window` edits not yet acknowledged by the server). Every edit is one automerge change whose
//! message carries its send time; a client that sees another client's edit applied in its own
//! copy records the edit-to-peer latency. After the edit phase every document must converge
//! (all its clients hold the same heads, and the server has acknowledged every edit).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use firemode_sync_core::automerge::sync;
use firemode_sync_core::automerge::transaction::{CommitOptions, Transactable};
use firemode_sync_core::automerge::{
    ActorId, Automerge, AutomergeError, ChangeHash, ObjId, ObjType, ReadDoc, Value, ROOT,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::time::Instant;

use super::peer::{self, Endpoint, Incoming, Peer};
use super::procmon::{self, Monitor};
use super::target::{DocSpec, Target};
use super::{ServerKind, SyncArgs};
use crate::bench::stats::LatencySummary;

/// Prefix of the change message of every benchmark edit: `fmb <send time, ns since start>`.
const EDIT_TAG: &str = "fmb ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connect,
    Edit,
    Drain,
    Done,
}

/// What a client tells the convergence check while draining.
#[derive(Default)]
struct Slot {
    heads: Vec<ChangeHash>,
    pending: usize,
    gone: bool,
    /// The server's last announced heads and our oldest unacknowledged edit (diagnostics).
    note: String,
}

struct Shared {
    epoch: Instant,
    /// The measured window, ns since `epoch`: edits sent inside it are counted.
    from_ns: AtomicU64,
    to_ns: AtomicU64,
    slots: Vec<Mutex<Slot>>,
    changed: Notify,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
    fn in_window(&self, ts: u64) -> bool {
        ts >= self.from_ns.load(Ordering::Relaxed) && ts < self.to_ns.load(Ordering::Relaxed)
    }
    fn publish(&self, i: usize, slot: Slot) {
        *self.slots[i].lock().unwrap_or_else(|e| e.into_inner()) = slot;
        self.changed.notify_one();
    }
}

#[derive(Clone, Copy)]
struct Plan {
    rate: f64,
    window: usize,
}

#[derive(Default)]
struct ClientResult {
    peer_ns: Vec<u64>,
    ack_ns: Vec<u64>,
    made: u64,
    acked: u64,
    deliveries: u64,
    frames_in: u64,
    frames_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    error: Option<String>,
}

/// One benchmark client on one document.
struct Client {
    index: usize,
    doc_id: String,
    doc: Automerge,
    state: sync::State,
    actor: ActorId,
    /// (item map, its readings map) of every item of the session.
    items: Vec<(ObjId, ObjId)>,
    seq: u64,
    /// Edits the server has not acknowledged yet: (automerge seq, send time, hash).
    pending: VecDeque<(u64, u64, ChangeHash)>,
    rng: StdRng,
    shared: Arc<Shared>,
    result: ClientResult,
}

fn item_objects(doc: &Automerge) -> Result<Vec<(ObjId, ObjId)>> {
    let Some((Value::Object(ObjType::Map), items)) = doc.get(ROOT, "items")? else {
        bail!("the document has no items map");
    };
    let mut out = Vec::new();
    for key in doc.keys(&items) {
        if let Some((Value::Object(ObjType::Map), item)) = doc.get(&items, key.as_str())? {
            if let Some((Value::Object(ObjType::Map), readings)) = doc.get(&item, "readings")? {
                out.push((item, readings));
            }
        }
    }
    if out.is_empty() {
        bail!("the document has no items to edit");
    }
    Ok(out)
}

impl Client {
    /// Make one edit: a new observed condition and pressure reading on a random item.
    fn edit(&mut self) -> Result<()> {
        let ts = self.shared.now_ns();
        let (item, readings) = &self.items[self.rng.gen_range(0..self.items.len())];
        let seq = self.seq + 1;
        // Unique across runs on the same documents: writing an equal value makes no change.
        let condition = format!("bench c{} e{seq} t{ts}", self.index);
        let pressure = 900.0 + (seq % 300) as f64;
        let wall_ms = chrono::Utc::now().timestamp_millis();
        let done = self
            .doc
            .transact_with(
                |_| {
                    CommitOptions::default()
                        .with_message(format!("{EDIT_TAG}{ts}"))
                        .with_time(wall_ms)
                },
                |tx| {
                    tx.put(item, "observedCondition", condition)?;
                    tx.put(readings, "pressureKpa", pressure)?;
                    Ok::<(), AutomergeError>(())
                },
            )
            .map_err(|f| f.error)?;
        let hash = done.hash.context("an edit made no change")?;
        self.seq = seq;
        self.pending.push_back((seq, ts, hash));
        if self.shared.in_window(ts) {
            self.result.made += 1;
        }
        Ok(())
    }

    /// After a server message: record other clients' edits that just arrived, and
    /// acknowledgements of ours.
    fn account(&mut self, before: &[ChangeHash]) {
        let now = self.shared.now_ns();
        for meta in self.doc.get_changes_meta(before) {
            if *meta.actor == self.actor {
                continue;
            }
            let Some(ts) = meta
                .message
                .as_deref()
                .and_then(|m| m.strip_prefix(EDIT_TAG))
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            if self.shared.in_window(ts) {
                self.result.deliveries += 1;
                self.result.peer_ns.push(now.saturating_sub(ts));
            }
        }
        self.check_acks(now);
    }

    /// An edit is acknowledged once the heads the server announced cover it.
    fn check_acks(&mut self, now: u64) {
        if self.pending.is_empty() {
            return;
        }
        let Some(heads) = self.state.their_heads.as_ref() else {
            return;
        };
        // Usually the server names our newest edit as a head: that covers all earlier ones.
        let mut upto = self
            .pending
            .iter()
            .rev()
            .find(|(_, _, h)| heads.contains(h))
            .map(|(s, _, _)| *s);
        if upto.is_none()
            && !heads.is_empty()
            && heads
                .iter()
                .all(|h| self.doc.get_change_meta_by_hash(h).is_some())
        {
            // Otherwise: our changes not covered by the server's heads.
            let uncovered = self
                .doc
                .get_changes_meta(heads)
                .iter()
                .filter(|m| *m.actor == self.actor)
                .map(|m| m.seq)
                .min();
            upto = Some(uncovered.map_or(self.seq, |s| s - 1));
        }
        let Some(upto) = upto else { return };
        while let Some(&(seq, ts, _)) = self.pending.front() {
            if seq > upto {
                break;
            }
            self.pending.pop_front();
            if self.shared.in_window(ts) {
                self.result.acked += 1;
                self.result.ack_ns.push(now.saturating_sub(ts));
            }
        }
    }

    fn publish(&self) {
        let short = |h: &ChangeHash| h.to_string()[..8].to_owned();
        let note = match self.pending.front() {
            None => String::new(),
            Some((seq, _, hash)) => format!(
                " (server heads [{}], oldest unacknowledged edit #{seq} {})",
                self.state
                    .their_heads
                    .iter()
                    .flatten()
                    .map(short)
                    .collect::<Vec<_>>()
                    .join(" "),
                short(hash)
            ),
        };
        self.shared.publish(
            self.index,
            Slot {
                heads: self.doc.get_heads(),
                pending: self.pending.len(),
                gone: false,
                note,
            },
        );
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_client(
    index: usize,
    spec: DocSpec,
    endpoint: Endpoint,
    peer_id: String,
    plan: Plan,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
    connect_permits: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<(), String>>,
) -> ClientResult {
    let mut peer_slot: Option<Peer> = None;
    let out = client_loop(
        index,
        spec,
        &endpoint,
        peer_id,
        plan,
        shared.clone(),
        &mut phase,
        connect_permits,
        &ready,
        &mut peer_slot,
    )
    .await;
    let mut result = match out {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(format!("{e:#}")));
            ClientResult {
                error: Some(format!("client {index}: {e:#}")),
                ..Default::default()
            }
        }
    };
    if let Some(p) = peer_slot {
        result.frames_in = p.frames_in;
        result.frames_out = p.frames_out;
        result.bytes_in = p.bytes_in;
        result.bytes_out = p.bytes_out;
        p.close().await;
    }
    shared.publish(
        index,
        Slot {
            gone: true,
            ..Default::default()
        },
    );
    result
}

#[allow(clippy::too_many_arguments)]
async fn client_loop(
    index: usize,
    spec: DocSpec,
    endpoint: &Endpoint,
    peer_id: String,
    plan: Plan,
    shared: Arc<Shared>,
    phase: &mut watch::Receiver<Phase>,
    connect_permits: Arc<Semaphore>,
    ready: &mpsc::UnboundedSender<Result<(), String>>,
    peer_slot: &mut Option<Peer>,
) -> Result<ClientResult> {
    let actor = ActorId::random();
    let mut doc = Automerge::new().with_actor(actor.clone());
    let mut state = sync::State::new();
    {
        let _permit = connect_permits.acquire().await?;
        let mut p = Peer::connect(endpoint, peer_id, Duration::from_secs(30)).await?;
        peer::sync_until_equal(
            &mut p,
            &spec.id,
            &mut doc,
            &mut state,
            true,
            Duration::from_secs(60),
        )
        .await?;
        *peer_slot = Some(p);
    }
    let peer = peer_slot.as_mut().context("no connection")?;
    let items = item_objects(&doc)?;
    let mut c = Client {
        index,
        doc_id: spec.id,
        doc,
        state,
        actor,
        items,
        seq: 0,
        pending: VecDeque::new(),
        rng: StdRng::from_entropy(),
        shared,
        result: ClientResult::default(),
    };
    let _ = ready.send(Ok(()));

    let mut editing = false;
    let mut draining = false;
    let mut ticker: Option<tokio::time::Interval> = None;
    loop {
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = *phase.borrow_and_update();
                match now {
                    Phase::Connect => {}
                    Phase::Edit => {
                        editing = true;
                        if plan.rate > 0.0 {
                            let period = Duration::from_secs_f64(1.0 / plan.rate);
                            let offset = period.mul_f64(c.rng.gen::<f64>());
                            let mut t = tokio::time::interval_at(Instant::now() + offset, period);
                            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                            ticker = Some(t);
                        } else {
                            while c.pending.len() < plan.window {
                                c.edit()?;
                            }
                            peer.flush(&c.doc_id, &c.doc, &mut c.state, false).await?;
                        }
                    }
                    Phase::Drain => {
                        editing = false;
                        draining = true;
                        ticker = None;
                        c.publish();
                    }
                    Phase::Done => break,
                }
            }
            inc = peer.recv() => match inc {
                Incoming::Sync { document_id, data } if document_id == c.doc_id => {
                    let before = c.doc.get_heads();
                    peer::receive(&mut c.doc, &mut c.state, &data)?;
                    c.account(&before);
                    if editing && plan.rate <= 0.0 {
                        while c.pending.len() < plan.window {
                            c.edit()?;
                        }
                    }
                    peer.flush(&c.doc_id, &c.doc, &mut c.state, false).await?;
                    if draining {
                        c.publish();
                    }
                }
                Incoming::Unavailable { document_id } => bail!("doc-unavailable for {document_id}"),
                Incoming::Closed(why) => bail!("{why}"),
                _ => {}
            },
            _ = async { ticker.as_mut().expect("guarded").tick().await }, if ticker.is_some() => {
                if editing {
                    c.edit()?;
                    peer.flush(&c.doc_id, &c.doc, &mut c.state, false).await?;
                }
            }
        }
    }
    Ok(c.result)
}

/// The report of one `bench sync` run.
#[derive(Debug, Serialize)]
pub struct Report {
    pub server: ServerKind,
    pub url: String,
    pub clients: usize,
    pub documents: usize,
    pub assets_per_document: usize,
    /// `rate R/s per client` or `closed loop, window W`.
    pub mode: String,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    /// From the first connect until every client held its document.
    pub initial_sync_secs: f64,
    /// Edits sent in the measured window, and those of them the server acknowledged.
    pub edits_made: u64,
    pub edits_acked: u64,
    /// Acknowledged edits (sent in the window) per second of the window.
    pub edits_per_sec: f64,
    /// Edits seen by another client (each edit counts once per other client of its document).
    pub deliveries: u64,
    pub deliveries_per_sec: f64,
    /// Send of an edit to another client of the document having it applied.
    pub edit_to_peer: Option<LatencySummary>,
    /// Send of an edit to the server's acknowledgement (its heads cover the edit).
    pub edit_to_ack: Option<LatencySummary>,
    /// From the end of the edit phase until every document converged; None if it did not
    /// within the timeout.
    pub converge_secs: Option<f64>,
    pub unconverged_documents: usize,
    /// For the first few unconverged documents: each client's heads and unacknowledged edits.
    pub unconverged_detail: Vec<String>,
    pub client_errors: usize,
    pub first_error: Option<String>,
    pub frames_to_server: u64,
    pub frames_from_server: u64,
    pub bytes_to_server: u64,
    pub bytes_from_server: u64,
    /// Server process memory and CPU (with `--server-pid`).
    pub server_usage: Option<ServerUsage>,
    /// CPU cores this generator used during the measured window (it shares the machine).
    pub generator_cpu_cores: Option<f64>,
    /// CPU cores the whole machine used during the measured window: what the server and the
    /// generator did not use went to other processes.
    pub machine_cpu_cores: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct ServerUsage {
    pub pid: u32,
    /// RSS before any client connected.
    pub baseline_rss_mib: f64,
    /// Documents the server reported loaded at the baseline (FireMode `/metrics`).
    pub baseline_loaded_documents: Option<u64>,
    /// RSS once every client held its document.
    pub loaded_rss_mib: f64,
    pub loaded_documents: Option<u64>,
    /// (loaded - baseline) / documents: one loaded document with its clients' sync state.
    pub per_loaded_document_kib: f64,
    /// Highest RSS sampled (every 50 ms) from the baseline to the end.
    pub peak_rss_mib: f64,
    /// The kernel's peak RSS of the process since it started (VmHWM).
    pub vm_hwm_mib: f64,
    pub end_rss_mib: f64,
    /// CPU cores the server used during the measured window.
    pub cpu_cores: f64,
    /// The kernel's part of `cpu_cores` (system time: sockets, wake-ups, files).
    pub sys_cores: f64,
}

/// `--create-only`: create (FireMode) or seed (reference) the documents into
/// `--sessions-file`, nothing else.
pub async fn prepare(args: &SyncArgs) -> Result<()> {
    let target = Target::connect(&args.target).await?;
    let docs = target.documents(&args.target, args.docs + 1).await?;
    target
        .seed(&docs, 8, args.target.sessions_file.as_deref())
        .await?;
    eprintln!("{} documents ready (one to warm the server up)", docs.len());
    Ok(())
}

pub async fn run(args: &SyncArgs, json: bool) -> Result<Report> {
    if args.clients == 0 || args.docs == 0 || args.docs > args.clients {
        bail!("need 1 <= --docs <= --clients");
    }
    let target = Target::connect(&args.target).await?;
    let total = Duration::from_secs_f64(args.warmup + args.duration + args.converge_timeout);
    target.check_token_lasts(total + Duration::from_secs(60))?;
    // One document more than the clients use: fetched once before the baseline, so that what
    // a server does only for its first document (the JS references load their WebAssembly
    // then) is not counted as the cost of a loaded document.
    let mut docs = target.documents(&args.target, args.docs + 1).await?;
    target
        .seed(&docs, 8, args.target.sessions_file.as_deref())
        .await?;
    let warm = docs.pop().context("no warm-up document")?;
    let mut peer = Peer::connect(
        &target.endpoint,
        target.peer_id("warm-up"),
        Duration::from_secs(10),
    )
    .await?;
    let mut doc = Automerge::new();
    let mut state = sync::State::new();
    peer::sync_until_equal(
        &mut peer,
        &warm.id,
        &mut doc,
        &mut state,
        true,
        Duration::from_secs(30),
    )
    .await
    .context("fetching the warm-up document")?;
    peer.close().await;

    let monitor = match args.target.server_pid {
        Some(pid) => Some((pid, Monitor::start(pid, Duration::from_millis(50))?)),
        None => None,
    };
    let baseline_loaded = if target.kind == ServerKind::Firemode {
        // Sessions just created through REST are loaded; measure from an idle server.
        let n = target
            .wait_unloaded(Duration::from_secs_f64(args.settle))
            .await;
        if n.is_some_and(|n| n > 0) && !json {
            eprintln!("note: {n:?} documents still loaded at the baseline (raise --settle or lower FIREMODE_SYNC_IDLE_UNLOAD_SECS)");
        }
        n
    } else {
        tokio::time::sleep(Duration::from_secs(1)).await;
        None
    };
    let baseline = match monitor.as_ref() {
        Some((_, m)) => m.baseline().await,
        None => None,
    };

    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        from_ns: AtomicU64::new(u64::MAX),
        to_ns: AtomicU64::new(u64::MAX),
        slots: (0..args.clients).map(|_| Mutex::default()).collect(),
        changed: Notify::new(),
    });
    let plan = Plan {
        rate: args.rate,
        window: args.window.max(1),
    };
    let (phase_tx, phase_rx) = watch::channel(Phase::Connect);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let run_tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    if !json {
        eprintln!(
            "connecting {} clients to {} documents on {} ...",
            args.clients, args.docs, target.endpoint.ws_url
        );
    }
    let t_connect = Instant::now();
    let peer_endpoint = match &args.peer_url {
        Some(url) => Some(target.endpoint_at(url)?),
        None => None,
    };
    let tasks: Vec<_> = (0..args.clients)
        .map(|i| {
            let endpoint = match &peer_endpoint {
                Some(other) if (i / docs.len()) % 2 == 1 => other.clone(),
                _ => target.endpoint.clone(),
            };
            tokio::spawn(run_client(
                i,
                docs[i % docs.len()].clone(),
                endpoint,
                target.peer_id(&format!("bench-{run_tag}-{i}")),
                plan,
                shared.clone(),
                phase_rx.clone(),
                permits.clone(),
                ready_tx.clone(),
            ))
        })
        .collect();
    drop(ready_tx);
    let mut connected = 0;
    let mut failed = 0;
    while connected + failed < args.clients {
        match ready_rx.recv().await {
            Some(Ok(())) => connected += 1,
            Some(Err(e)) => {
                failed += 1;
                if !json && failed <= 3 {
                    eprintln!("client failed during setup: {e}");
                }
            }
            None => break,
        }
    }
    let initial_sync_secs = t_connect.elapsed().as_secs_f64();
    if connected == 0 {
        let _ = phase_tx.send(Phase::Done);
        bail!("no client could join and fetch its document");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = monitor.as_ref().and_then(|(_, m)| m.now());
    let loaded_docs = target.loaded_documents().await;
    if !json {
        eprintln!(
            "{connected} clients hold their documents after {initial_sync_secs:.2} s; editing ({}) for {:.0} s + {:.0} s measured",
            mode_text(args),
            args.warmup,
            args.duration
        );
    }

    // Edit phase: the window starts after the warm-up.
    let edit_start = shared.now_ns();
    let from = edit_start + (args.warmup * 1e9) as u64;
    let to = from + (args.duration * 1e9) as u64;
    shared.from_ns.store(from, Ordering::Relaxed);
    shared.to_ns.store(to, Ordering::Relaxed);
    let _ = phase_tx.send(Phase::Edit);
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let cpu_from = monitor.as_ref().and_then(|(_, m)| m.now());
    let self_from = procmon::sample("self").ok();
    let machine_from = procmon::machine_busy_secs().ok();
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let cpu_to = monitor.as_ref().and_then(|(_, m)| m.now());
    let self_to = procmon::sample("self").ok();
    let machine_to = procmon::machine_busy_secs().ok();

    // Drain: no more edits; wait for every document to converge.
    let _ = phase_tx.send(Phase::Drain);
    let t_stop = Instant::now();
    let deadline = t_stop + Duration::from_secs_f64(args.converge_timeout);
    let mut unconverged;
    loop {
        unconverged = count_unconverged(&shared, args.docs);
        if unconverged == 0 || Instant::now() >= deadline {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(5), shared.changed.notified()).await;
    }
    let converge_secs = (unconverged == 0).then(|| t_stop.elapsed().as_secs_f64());
    let unconverged_detail = describe_unconverged(&shared, args.docs, 3);
    let _ = phase_tx.send(Phase::Done);

    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap_or_else(|e| ClientResult {
            error: Some(format!("client task panicked: {e}")),
            ..Default::default()
        }));
    }
    let end = monitor.as_ref().and_then(|(_, m)| m.now());

    let mut peer_ns = Vec::new();
    let mut ack_ns = Vec::new();
    let mut r = Report {
        server: target.kind,
        url: target.base.clone(),
        clients: args.clients,
        documents: args.docs,
        assets_per_document: args.target.assets,
        mode: mode_text(args),
        warmup_secs: args.warmup,
        duration_secs: args.duration,
        initial_sync_secs,
        edits_made: 0,
        edits_acked: 0,
        edits_per_sec: 0.0,
        deliveries: 0,
        deliveries_per_sec: 0.0,
        edit_to_peer: None,
        edit_to_ack: None,
        converge_secs,
        unconverged_documents: unconverged,
        unconverged_detail,
        client_errors: 0,
        first_error: None,
        frames_to_server: 0,
        frames_from_server: 0,
        bytes_to_server: 0,
        bytes_from_server: 0,
        server_usage: None,
        generator_cpu_cores: None,
        machine_cpu_cores: None,
    };
    for c in results {
        r.edits_made += c.made;
        r.edits_acked += c.acked;
        r.deliveries += c.deliveries;
        r.frames_to_server += c.frames_out;
        r.frames_from_server += c.frames_in;
        r.bytes_to_server += c.bytes_out;
        r.bytes_from_server += c.bytes_in;
        peer_ns.extend(c.peer_ns);
        ack_ns.extend(c.ack_ns);
        if let Some(e) = c.error {
            r.client_errors += 1;
            r.first_error.get_or_insert(e);
        }
    }
    r.edits_per_sec = r.edits_acked as f64 / args.duration;
    r.deliveries_per_sec = r.deliveries as f64 / args.duration;
    r.edit_to_peer = LatencySummary::from_samples(peer_ns);
    r.edit_to_ack = LatencySummary::from_samples(ack_ns);
    if let (Some(a), Some(b)) = (self_from, self_to) {
        r.generator_cpu_cores = Some((b.cpu_secs - a.cpu_secs) / args.duration);
    }
    if let (Some(a), Some(b)) = (machine_from, machine_to) {
        r.machine_cpu_cores = Some((b - a) / args.duration);
    }
    if let (Some((pid, m)), Some(base), Some(loaded), Some(end)) =
        (monitor.as_ref(), baseline, loaded, end)
    {
        let (cpu_cores, sys_cores) = match (cpu_from, cpu_to) {
            (Some(a), Some(b)) => (
                (b.cpu_secs - a.cpu_secs) / args.duration,
                (b.sys_secs - a.sys_secs) / args.duration,
            ),
            _ => (0.0, 0.0),
        };
        r.server_usage = Some(ServerUsage {
            pid: *pid,
            baseline_rss_mib: base.rss_mib,
            baseline_loaded_documents: baseline_loaded,
            loaded_rss_mib: loaded.rss_mib,
            loaded_documents: loaded_docs,
            per_loaded_document_kib: (loaded.rss_mib - base.rss_mib) * 1024.0 / args.docs as f64,
            peak_rss_mib: m.peak_mib(),
            vm_hwm_mib: end.hwm_mib,
            end_rss_mib: end.rss_mib,
            cpu_cores,
            sys_cores,
        });
    }
    Ok(r)
}

fn mode_text(args: &SyncArgs) -> String {
    if args.rate > 0.0 {
        format!("rate {}/s per client", args.rate)
    } else {
        format!("closed loop, window {}", args.window.max(1))
    }
}

/// Documents whose live clients do not all hold the same heads with nothing unacknowledged.
fn count_unconverged(shared: &Shared, docs: usize) -> usize {
    let mut first: Vec<Option<Vec<ChangeHash>>> = vec![None; docs];
    let mut bad = vec![false; docs];
    for (i, slot) in shared.slots.iter().enumerate() {
        let s = slot.lock().unwrap_or_else(|e| e.into_inner());
        if s.gone {
            continue;
        }
        let d = i % docs;
        if s.pending > 0 || s.heads.is_empty() {
            bad[d] = true;
            continue;
        }
        let mut h = s.heads.clone();
        h.sort_unstable();
        match &first[d] {
            None => first[d] = Some(h),
            Some(f) if *f != h => bad[d] = true,
            Some(_) => {}
        }
    }
    bad.iter().filter(|b| **b).count()
}

/// Each live client's heads (short) and unacknowledged edits, for up to `max` documents that
/// did not converge.
fn describe_unconverged(shared: &Shared, docs: usize, max: usize) -> Vec<String> {
    let mut by_doc: Vec<Vec<String>> = vec![Vec::new(); docs];
    let mut bad = vec![false; docs];
    let mut first: Vec<Option<Vec<ChangeHash>>> = vec![None; docs];
    for (i, slot) in shared.slots.iter().enumerate() {
        let s = slot.lock().unwrap_or_else(|e| e.into_inner());
        if s.gone {
            continue;
        }
        let d = i % docs;
        let mut h = s.heads.clone();
        h.sort_unstable();
        let short: Vec<String> = h.iter().map(|h| h.to_string()[..8].to_owned()).collect();
        by_doc[d].push(format!(
            "client {i}: heads [{}] pending {}{}",
            short.join(" "),
            s.pending,
            s.note
        ));
        if s.pending > 0 || h.is_empty() || first[d].as_ref().is_some_and(|f| *f != h) {
            bad[d] = true;
        }
        first[d].get_or_insert(h);
    }
    by_doc
        .into_iter()
        .enumerate()
        .filter(|(d, _)| bad[*d])
        .take(max)
        .map(|(d, lines)| format!("document {d}: {}", lines.join("; ")))
        .collect()
}

impl Report {
    pub fn to_text(&self) -> String {
        let lat = |l: &Option<LatencySummary>| match l {
            Some(l) => format!(
                "p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (n={})",
                l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, l.count
            ),
            None => "no samples".into(),
        };
        let mut s = format!(
            "sync bench against {} ({:?}): {} clients over {} documents ({} items each), {}\n",
            self.url,
            self.server,
            self.clients,
            self.documents,
            self.assets_per_document,
            self.mode
        );
        s += &format!(
            "initial sync       {:.2} s (every client holds its document)\n",
            self.initial_sync_secs
        );
        s += &format!(
            "edits              {} sent, {} acknowledged in {:.1} s: {:.1} edits/s\n",
            self.edits_made, self.edits_acked, self.duration_secs, self.edits_per_sec
        );
        s += &format!(
            "deliveries         {} ({:.1}/s)\n",
            self.deliveries, self.deliveries_per_sec
        );
        s += &format!("edit-to-peer       {}\n", lat(&self.edit_to_peer));
        s += &format!("edit-to-ack        {}\n", lat(&self.edit_to_ack));
        s += &match self.converge_secs {
            Some(c) => format!("converged          {c:.3} s after the last edit\n"),
            None => format!(
                "NOT converged      {} documents differ at the timeout\n{}",
                self.unconverged_documents,
                self.unconverged_detail
                    .iter()
                    .map(|d| format!("                   {d}\n"))
                    .collect::<String>()
            ),
        };
        s += &format!(
            "frames             {} to the server, {} from it ({:.1} MB / {:.1} MB)\n",
            self.frames_to_server,
            self.frames_from_server,
            self.bytes_to_server as f64 / 1e6,
            self.bytes_from_server as f64 / 1e6
        );
        if let Some(m) = &self.server_usage {
            s += &format!(
                "server memory      baseline {:.1} MiB, loaded {:.1} MiB ({:.1} KiB per document incl. its clients), peak {:.1} MiB, VmHWM {:.1} MiB, end {:.1} MiB\n",
                m.baseline_rss_mib, m.loaded_rss_mib, m.per_loaded_document_kib, m.peak_rss_mib, m.vm_hwm_mib, m.end_rss_mib
            );
            s += &format!(
                "server cpu         {:.2} cores ({:.2} in the kernel)\n",
                m.cpu_cores, m.sys_cores
            );
        }
        if let Some(g) = self.generator_cpu_cores {
            s += &format!("generator cpu      {g:.2} cores\n");
        }
        if let Some(m) = self.machine_cpu_cores {
            s += &format!("machine cpu        {m:.2} cores busy in all (others included)\n");
        }
        if self.client_errors > 0 {
            s += &format!(
                "client errors      {} (first: {})\n",
                self.client_errors,
                self.first_error.as_deref().unwrap_or("")
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(n: usize) -> Shared {
        Shared {
            epoch: Instant::now(),
            from_ns: AtomicU64::new(0),
            to_ns: AtomicU64::new(u64::MAX),
            slots: (0..n).map(|_| Mutex::default()).collect(),
            changed: Notify::new(),
        }
    }

    fn session_doc() -> Automerge {
        let init = firemode_sync_core::SessionInit {
            session_id: uuid::Uuid::new_v4(),
            building_id: uuid::Uuid::new_v4(),
            org_id: uuid::Uuid::new_v4(),
            rule_set_code: "AS1851".into(),
            rule_set_version: "2012.1.0".into(),
            frequency: "six_monthly".into(),
            name: "n".into(),
            items: (0..3)
                .map(|_| firemode_sync_core::ItemInit {
                    asset_id: uuid::Uuid::new_v4(),
                    rule_code: "AS1851-10-6M-EXT".into(),
                })
                .collect(),
        };
        firemode_sync_core::create_session_document(&init, ActorId::random(), 0).unwrap()
    }

    fn client(index: usize, doc: Automerge, shared: Arc<Shared>) -> Client {
        let actor = ActorId::random();
        let mut doc = doc;
        doc.set_actor(actor.clone());
        Client {
            index,
            doc_id: "d".into(),
            items: item_objects(&doc).unwrap(),
            doc,
            state: sync::State::new(),
            actor,
            seq: 0,
            pending: VecDeque::new(),
            rng: StdRng::seed_from_u64(index as u64),
            shared,
            result: ClientResult::default(),
        }
    }

    /// Run the automerge sync protocol between two documents until quiet.
    fn sync_pair(a: &mut Automerge, sa: &mut sync::State, b: &mut Automerge, sb: &mut sync::State) {
        use firemode_sync_core::automerge::sync::SyncDoc;
        for _ in 0..20 {
            let m1 = a.generate_sync_message(sa);
            if let Some(m) = &m1 {
                b.receive_sync_message(sb, m.clone()).unwrap();
            }
            let m2 = b.generate_sync_message(sb);
            if let Some(m) = &m2 {
                a.receive_sync_message(sa, m.clone()).unwrap();
            }
            if m1.is_none() && m2.is_none() {
                return;
            }
        }
        panic!("no quiescence");
    }

    #[test]
    fn edits_are_seen_by_peers_and_acknowledged_by_the_server() {
        let sh = Arc::new(shared(2));
        let base = session_doc();
        let mut server = base.clone();
        let mut a = client(0, base.clone(), sh.clone());
        let mut b = client(1, base, sh.clone());
        let (mut s_a, mut s_b) = (sync::State::new(), sync::State::new());
        a.edit().unwrap();
        a.edit().unwrap();
        assert_eq!(a.pending.len(), 2);
        assert_eq!(a.result.made, 2);

        // a -> server: the server's heads now name a's newest edit.
        sync_pair(&mut a.doc, &mut a.state, &mut server, &mut s_a);
        a.check_acks(sh.now_ns());
        assert!(a.pending.is_empty());
        assert_eq!(a.result.acked, 2);

        // server -> b: b records two deliveries.
        let before = b.doc.get_heads();
        sync_pair(&mut b.doc, &mut b.state, &mut server, &mut s_b);
        b.account(&before);
        assert_eq!(b.result.deliveries, 2);
        assert_eq!(b.result.peer_ns.len(), 2);

        // b edits on top of a's edits; a edits again; the server's heads name only b's
        // change, which covers a's edit once a has synced it: the slow path acknowledges.
        a.edit().unwrap();
        sync_pair(&mut a.doc, &mut a.state, &mut server, &mut s_a);
        let before = b.doc.get_heads();
        sync_pair(&mut b.doc, &mut b.state, &mut server, &mut s_b);
        b.account(&before);
        b.edit().unwrap();
        sync_pair(&mut b.doc, &mut b.state, &mut server, &mut s_b);
        let before = a.doc.get_heads();
        sync_pair(&mut a.doc, &mut a.state, &mut server, &mut s_a);
        a.account(&before);
        assert!(a.pending.is_empty());
        assert_eq!(a.result.acked, 3);
        assert_eq!(a.result.deliveries, 1);
    }

    #[test]
    fn convergence_needs_equal_heads_and_nothing_pending() {
        let sh = shared(4);
        let h1 = vec![ChangeHash([1; 32])];
        let h2 = vec![ChangeHash([2; 32])];
        let put = |i: usize, heads: &Vec<ChangeHash>, pending| {
            sh.publish(
                i,
                Slot {
                    heads: heads.clone(),
                    pending,
                    gone: false,
                    note: String::new(),
                },
            )
        };
        // Clients 0 and 2 share document 0; 1 and 3 document 1.
        put(0, &h1, 0);
        put(2, &h1, 0);
        put(1, &h1, 0);
        put(3, &h2, 0);
        assert_eq!(count_unconverged(&sh, 2), 1);
        put(3, &h1, 1);
        assert_eq!(count_unconverged(&sh, 2), 1);
        put(3, &h1, 0);
        assert_eq!(count_unconverged(&sh, 2), 0);
        sh.publish(
            1,
            Slot {
                gone: true,
                ..Default::default()
            },
        );
        assert_eq!(count_unconverged(&sh, 2), 0);
    }
}
