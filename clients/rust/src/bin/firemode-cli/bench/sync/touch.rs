//! `bench sync-touch`: touch each of many documents once — a client connects, fetches the
//! document (FireMode: `request`; reference server: pushes it, since that server only has what
//! clients send), optionally makes one edit and waits until the server has it, then leaves —
//! and watch the server's memory: the peak, right after the last touch, and after idle
//! documents had time to unload.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use firemode_sync_core::automerge::sync;
use firemode_sync_core::automerge::transaction::{CommitOptions, Transactable};
use firemode_sync_core::automerge::{
    ActorId, Automerge, AutomergeError, ObjType, ReadDoc, Value, ROOT,
};
use serde::Serialize;
use tokio::time::Instant;

use super::peer::{self, Endpoint, Peer};
use super::procmon::Monitor;
use super::target::{DocSpec, Target};
use super::{ServerKind, TouchArgs};
use crate::bench::stats::LatencySummary;

#[derive(Debug, Serialize)]
pub struct Report {
    pub server: ServerKind,
    pub url: String,
    pub documents: usize,
    pub concurrency: usize,
    pub documents_per_connection: usize,
    pub edit: bool,
    pub hold: bool,
    pub touch_secs: f64,
    pub touches_per_sec: f64,
    /// One touch: connect (when the connection is new) + fetch/push + edit acknowledged.
    pub touch_latency: Option<LatencySummary>,
    pub errors: usize,
    pub first_error: Option<String>,
    pub server_usage: Option<Usage>,
}

#[derive(Debug, Serialize)]
pub struct Usage {
    pub pid: u32,
    pub baseline_rss_mib: f64,
    pub baseline_loaded_documents: Option<u64>,
    pub after_touch_rss_mib: f64,
    pub after_touch_loaded_documents: Option<u64>,
    /// (after touch - baseline) / documents: the cost of a loaded document when every touched
    /// document is still loaded (`--hold`, or an idle-unload time longer than the run).
    pub per_touched_document_kib: f64,
    /// Highest RSS sampled (every 50 ms) from the baseline on.
    pub peak_rss_mib: f64,
    pub vm_hwm_mib: f64,
    /// After waiting `--idle-wait` seconds (FireMode: or until nothing is loaded).
    pub after_idle_rss_mib: f64,
    pub after_idle_loaded_documents: Option<u64>,
    pub idle_wait_secs: f64,
    /// CPU seconds the server spent touching.
    pub touch_cpu_secs: f64,
}

struct Worker {
    endpoint: Endpoint,
    peer_prefix: String,
    docs: Arc<Vec<DocSpec>>,
    next: Arc<AtomicUsize>,
    per_conn: usize,
    edit: bool,
    hold: bool,
}

struct WorkerOut {
    latencies_ns: Vec<u64>,
    errors: usize,
    first_error: Option<String>,
    held: Vec<Peer>,
}

async fn touch_one(peer: &mut Peer, spec: &DocSpec, edit: bool) -> Result<()> {
    let actor = ActorId::random();
    let (mut doc, request) = match spec.build_seed(actor.clone())? {
        Some(seed) => (seed, false),
        None => (Automerge::new().with_actor(actor), true),
    };
    let mut state = sync::State::new();
    let wait = Duration::from_secs(60);
    peer::sync_until_equal(peer, &spec.id, &mut doc, &mut state, request, wait).await?;
    if edit {
        let Some((Value::Object(ObjType::Map), items)) = doc.get(ROOT, "items")? else {
            bail!("no items in {}", spec.id);
        };
        let key = doc.keys(&items).next().context("no item to edit")?;
        let Some((Value::Object(ObjType::Map), item)) = doc.get(&items, key.as_str())? else {
            bail!("item {key} is not a map");
        };
        doc.transact_with(
            |_| CommitOptions::default().with_message("sync-touch"),
            |tx| {
                tx.put(&item, "observedCondition", "touched by the sync benchmark")?;
                Ok::<(), AutomergeError>(())
            },
        )
        .map_err(|f| f.error)?;
        peer::sync_until_equal(peer, &spec.id, &mut doc, &mut state, false, wait).await?;
    }
    Ok(())
}

async fn worker(w: Arc<Worker>, index: usize) -> WorkerOut {
    let mut out = WorkerOut {
        latencies_ns: Vec::new(),
        errors: 0,
        first_error: None,
        held: Vec::new(),
    };
    let mut conn_no = 0;
    'outer: loop {
        if w.next.load(Ordering::Relaxed) >= w.docs.len() {
            break;
        }
        let t0 = Instant::now();
        let peer_id = format!("{}-{index}-{conn_no}", w.peer_prefix);
        conn_no += 1;
        let mut peer = match Peer::connect(&w.endpoint, peer_id, Duration::from_secs(30)).await {
            Ok(p) => p,
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(format!("{e:#}"));
                if out.errors > 100 {
                    break;
                }
                continue;
            }
        };
        let mut first = Some(t0);
        for _ in 0..w.per_conn {
            let i = w.next.fetch_add(1, Ordering::Relaxed);
            let Some(spec) = w.docs.get(i) else {
                break;
            };
            let t = first.take().unwrap_or_else(Instant::now);
            match touch_one(&mut peer, spec, w.edit).await {
                Ok(()) => out
                    .latencies_ns
                    .push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)),
                Err(e) => {
                    out.errors += 1;
                    out.first_error
                        .get_or_insert(format!("document {}: {e:#}", spec.id));
                    continue 'outer; // the connection may be broken: open a new one
                }
            }
        }
        if w.hold {
            out.held.push(peer);
        } else {
            peer.close().await;
        }
    }
    out
}

pub async fn run(args: &TouchArgs, json: bool) -> Result<Report> {
    if args.documents == 0 {
        bail!("--documents must be at least 1");
    }
    let target = Target::connect(&args.target).await?;
    target.check_token_lasts(Duration::from_secs(600))?;
    // One document more than touched: fetched once before the baseline, so that what a server
    // does only for its first document (the JS references load their WebAssembly then) is not
    // counted as the cost of the documents touched.
    let mut docs = target.documents(&args.target, args.documents + 1).await?;
    if args.create_only {
        // The reference's documents are pushed into its storage by a seeding client.
        target
            .seed(&docs, 8, args.target.sessions_file.as_deref())
            .await?;
        return Ok(Report {
            server: target.kind,
            url: target.base.clone(),
            documents: docs.len(),
            concurrency: 0,
            documents_per_connection: 0,
            edit: false,
            hold: false,
            touch_secs: 0.0,
            touches_per_sec: 0.0,
            touch_latency: None,
            errors: 0,
            first_error: None,
            server_usage: None,
        });
    }
    let warm = docs.pop().context("no warm-up document")?;
    let docs = Arc::new(docs);
    let mut peer = Peer::connect(
        &target.endpoint,
        target.peer_id("warm-up"),
        Duration::from_secs(10),
    )
    .await?;
    touch_one(&mut peer, &warm, false)
        .await
        .context("fetching the warm-up document")?;
    peer.close().await;
    let monitor = match args.target.server_pid {
        Some(pid) => Some((pid, Monitor::start(pid, Duration::from_millis(50))?)),
        None => None,
    };
    let baseline_loaded = match target.kind {
        ServerKind::Firemode => {
            target
                .wait_unloaded(Duration::from_secs_f64(args.settle))
                .await
        }
        ServerKind::Reference => None,
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = match monitor.as_ref() {
        Some((_, m)) => m.baseline().await,
        None => None,
    };
    if !json {
        eprintln!(
            "touching {} documents ({} connections at a time, {} per connection{}) ...",
            docs.len(),
            args.concurrency,
            args.per_connection,
            if args.no_edit { "" } else { ", one edit each" }
        );
    }

    let run_tag = uuid::Uuid::new_v4().simple().to_string();
    let w = Arc::new(Worker {
        endpoint: target.endpoint.clone(),
        peer_prefix: target.peer_id(&format!("touch-{}", &run_tag[..8])),
        docs: docs.clone(),
        next: Arc::new(AtomicUsize::new(0)),
        per_conn: args.per_connection.max(1),
        edit: !args.no_edit,
        hold: args.hold,
    });
    let t0 = Instant::now();
    let handles: Vec<_> = (0..args.concurrency.max(1))
        .map(|i| tokio::spawn(worker(w.clone(), i)))
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    let mut held = Vec::new();
    for h in handles {
        let o = h.await.context("a touch worker panicked")?;
        latencies.extend(o.latencies_ns);
        errors += o.errors;
        if first_error.is_none() {
            first_error = o.first_error;
        }
        held.extend(o.held);
    }
    let touch_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_touch = monitor.as_ref().and_then(|(_, m)| m.now());
    let after_touch_loaded = target.loaded_documents().await;
    if !json {
        eprintln!(
            "touched in {touch_secs:.1} s; waiting up to {:.0} s for idle documents to unload ...",
            args.idle_wait
        );
    }
    for p in held {
        p.close().await;
    }

    let t_idle = Instant::now();
    let idle_deadline = t_idle + Duration::from_secs_f64(args.idle_wait);
    let mut after_idle_loaded = target.loaded_documents().await;
    while Instant::now() < idle_deadline {
        if target.kind == ServerKind::Firemode && after_idle_loaded == Some(0) {
            // Give the allocator a moment after the last unload before reading RSS.
            tokio::time::sleep(Duration::from_secs(1)).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        after_idle_loaded = target.loaded_documents().await;
    }
    let idle_wait_secs = t_idle.elapsed().as_secs_f64();
    let after_idle = monitor.as_ref().and_then(|(_, m)| m.now());

    let n = latencies.len();
    let mut r = Report {
        server: target.kind,
        url: target.base.clone(),
        documents: docs.len(),
        concurrency: args.concurrency.max(1),
        documents_per_connection: args.per_connection.max(1),
        edit: !args.no_edit,
        hold: args.hold,
        touch_secs,
        touches_per_sec: n as f64 / touch_secs,
        touch_latency: LatencySummary::from_samples(latencies),
        errors,
        first_error,
        server_usage: None,
    };
    if let (Some((pid, m)), Some(b), Some(t), Some(i)) =
        (monitor.as_ref(), baseline, after_touch, after_idle)
    {
        r.server_usage = Some(Usage {
            pid: *pid,
            baseline_rss_mib: b.rss_mib,
            baseline_loaded_documents: baseline_loaded,
            after_touch_rss_mib: t.rss_mib,
            after_touch_loaded_documents: after_touch_loaded,
            per_touched_document_kib: (t.rss_mib - b.rss_mib) * 1024.0 / docs.len() as f64,
            peak_rss_mib: m.peak_mib(),
            vm_hwm_mib: i.hwm_mib,
            after_idle_rss_mib: i.rss_mib,
            after_idle_loaded_documents: after_idle_loaded,
            idle_wait_secs,
            touch_cpu_secs: t.cpu_secs - b.cpu_secs,
        });
    }
    Ok(r)
}

impl Report {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "sync touch against {} ({:?}): {} documents, {} connections at a time, {} per connection, edit {}, hold {}\n",
            self.url, self.server, self.documents, self.concurrency, self.documents_per_connection, self.edit, self.hold
        );
        s += &format!(
            "touched            in {:.1} s ({:.0}/s)\n",
            self.touch_secs, self.touches_per_sec
        );
        if let Some(l) = &self.touch_latency {
            s += &format!(
                "touch latency      p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n",
                l.p50_ms, l.p99_ms, l.max_ms
            );
        }
        if let Some(u) = &self.server_usage {
            let docs = |d: Option<u64>| d.map(|d| format!(" ({d} loaded)")).unwrap_or_default();
            s += &format!(
                "server memory      baseline {:.1} MiB{}, after touch {:.1} MiB{} = {:.1} KiB per touched document\n",
                u.baseline_rss_mib,
                docs(u.baseline_loaded_documents),
                u.after_touch_rss_mib,
                docs(u.after_touch_loaded_documents),
                u.per_touched_document_kib
            );
            s += &format!(
                "                   peak {:.1} MiB (VmHWM {:.1} MiB), after {:.0} s idle {:.1} MiB{}\n",
                u.peak_rss_mib,
                u.vm_hwm_mib,
                u.idle_wait_secs,
                u.after_idle_rss_mib,
                docs(u.after_idle_loaded_documents)
            );
            s += &format!(
                "server cpu         {:.1} s while touching\n",
                u.touch_cpu_secs
            );
        }
        if self.errors > 0 {
            s += &format!(
                "errors             {} (first: {})\n",
                self.errors,
                self.first_error.as_deref().unwrap_or("")
            );
        }
        s
    }
}
