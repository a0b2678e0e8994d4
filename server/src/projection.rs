//! Projection: after changes are committed, a session document is turned into relational rows
//! (`session_items`) that REST reads. Coalesced: a document changed a hundred times in a burst
//! is written once with its latest state. Several workers write different sessions at once
//! (bounded: [`workers_for`]); shutdown leaves what is queued to the next start without
//! losing it (see [`Projector`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};

use firemode_sync_core::{ProjectedItem, Projection};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::domain::assess::{assess, Assessment, ItemFacts, RuleView};
use crate::domain::defects::{self, Action, AssetLabel, Found, Known, Severity};
use crate::domain::readings::RefKind;
use crate::store::defects::{DefectRecord, DefectWrite};
use crate::store::rules::RuleRecord;
use crate::store::sessions::{ItemRow, ItemsWrite, ProjectionWrite, SessionRow};
use crate::store::{Store, StoreError};

struct Job {
    projection: Projection,
    /// The document's catch-up watermark when it was projected.
    watermark: i64,
    heads: String,
    /// Submission number of this session's projection (see `Projector::settled`).
    version: u64,
}

/// What the worker has to do for one session.
#[derive(Default)]
struct Pending {
    job: Option<Job>,
    /// The document was unloaded: forget what was last written once the job (if any) is done.
    release: bool,
}

/// What this node last wrote for a session, so the next write touches only the rows that
/// changed.
struct Written {
    session: SessionRow,
    rows: HashMap<String, ItemRow>,
    /// What each of those rows was derived from (see [`Derived`]).
    derived: HashMap<String, Derived>,
    /// The heads stored with it: if the stored ones differ at the next write, someone else
    /// wrote the session meanwhile and every row is written again.
    heads: String,
}

/// One worker's queue. A session always goes to the same shard (by its id), so two writes of
/// one session never run at once and each worker keeps its own `Written` cache unlocked.
/// Repeated submissions of a session replace the unwritten one (coalescing): a queue holds at
/// most one entry per session, however often it is touched.
#[derive(Default)]
struct Shard {
    pending: DashMap<Uuid, Pending>,
    wake: Notify,
}

/// How many projection workers to run. PostgreSQL takes parallel writers; SQLite has one write
/// connection, but a worker spends most of a session's projection reading (the session, the
/// building, rules, baselines, defects on the reader pool) and assessing, so a second worker
/// overlaps that with the other's write.
pub fn workers_for(url: &crate::config::DatabaseUrl) -> usize {
    match url {
        crate::config::DatabaseUrl::Sqlite(_) => 2,
        crate::config::DatabaseUrl::Postgres(_) => 4,
    }
}

/// Projects sessions in the background: `workers` tasks, each with its own queue.
///
/// **Shutdown and recovery.** The stored projection of a session carries the watermark of
/// the document state it was made from (`session_projection_state.watermark`); a session
/// with a change row at or above it is *stale*, and at every start `Hub::project_backlog`
/// re-projects every stale session (that is also how a crash between a commit and its
/// projection is repaired). So a queued projection is never the only record of the work:
/// the change it projects is already committed. At shutdown ([`Projector::stop`], then
/// [`Projector::finish`]) the workers finish the session each is writing and stop; every
/// session still queued is then marked stale explicitly (watermark −1), which also covers
/// queued work that no new change stands behind (a reassessment after a baseline changed,
/// the first projection after a reload). Shutdown therefore does not wait for the queue, and
/// nothing queued is lost: the next start projects it.
#[derive(Clone)]
pub struct Projector {
    store: Arc<dyn Store>,
    shards: Arc<[Shard]>,
    /// Per session: (last submitted version, last written version).
    versions: Arc<DashMap<Uuid, (u64, u64)>>,
    /// Bumped after every write; tests and REST readers can wait for it.
    written: Arc<tokio::sync::watch::Sender<u64>>,
    /// Item rows written since start (`/metrics`).
    rows: Arc<AtomicU64>,
    /// Failed projection writes since start, and the last one (`/metrics`, `/ready`).
    failures: Arc<AtomicU64>,
    last_failure: Arc<std::sync::Mutex<Option<ProjectionFailure>>>,
    /// Cancelled by [`Projector::stop`]: workers stop after their current session.
    stop: CancellationToken,
    /// The workers, so [`Projector::finish`] can wait for them.
    workers: TaskTracker,
}

/// The last projection write that failed (it is retried by the session's next write).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectionFailure {
    pub session_id: Uuid,
    pub error: String,
    pub at: DateTime<Utc>,
}

impl Projector {
    pub fn spawn(store: Arc<dyn Store>, workers: usize) -> Self {
        let shards: Vec<Shard> = (0..workers.max(1)).map(|_| Shard::default()).collect();
        let p = Self {
            store,
            shards: shards.into(),
            versions: Arc::new(DashMap::new()),
            written: Arc::new(tokio::sync::watch::channel(0).0),
            rows: Arc::new(AtomicU64::new(0)),
            failures: Arc::new(AtomicU64::new(0)),
            last_failure: Arc::new(std::sync::Mutex::new(None)),
            stop: CancellationToken::new(),
            workers: TaskTracker::new(),
        };
        for n in 0..p.shards.len() {
            let worker = p.clone();
            p.workers.spawn(async move { worker.work(n).await });
        }
        p
    }

    /// One worker: write the sessions of shard `n` until stopped.
    async fn work(self, n: usize) {
        let shard = &self.shards[n];
        // Only this task reads or writes it: no lock needed.
        let mut last: HashMap<Uuid, Written> = HashMap::new();
        loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return,
                _ = shard.wake.notified() => {}
            }
            let keys: Vec<Uuid> = shard.pending.iter().map(|e| *e.key()).collect();
            for id in keys {
                // What is left stays queued; `finish` marks it stale for the next start.
                if self.stop.is_cancelled() {
                    return;
                }
                let Some((_, pending)) = shard.pending.remove(&id) else {
                    continue;
                };
                if let Some(job) = pending.job {
                    let version = job.version;
                    let before = last.remove(&id);
                    match write(self.store.as_ref(), id, job, before).await {
                        Ok((written, rows)) => {
                            self.rows.fetch_add(rows, Ordering::Relaxed);
                            if !pending.release {
                                last.insert(id, written);
                            }
                        }
                        // Nothing is remembered: the next write rewrites every row.
                        Err(e) => {
                            tracing::error!(session = %id, error = %e, "projection failed");
                            self.failures.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut last) = self.last_failure.lock() {
                                *last = Some(ProjectionFailure {
                                    session_id: id,
                                    error: format!("{e:#}"),
                                    at: Utc::now(),
                                });
                            }
                        }
                    }
                    if let Some(mut v) = self.versions.get_mut(&id) {
                        v.1 = v.1.max(version);
                    }
                    // Per session, so a reader waiting for one does not wait for the round.
                    self.written.send_modify(|n| *n += 1);
                }
                if pending.release {
                    // `versions` stays: a reader may be waiting for a version number of
                    // this session, and numbers must keep increasing across reloads.
                    last.remove(&id);
                }
            }
        }
    }

    fn shard(&self, session: Uuid) -> &Shard {
        let n = (session.as_u128() % self.shards.len() as u128) as usize;
        &self.shards[n]
    }

    /// Queue the latest projection of a session (replacing an unwritten older one).
    pub fn submit(&self, session: Uuid, projection: Projection, watermark: i64, heads: String) {
        let version = {
            let mut v = self.versions.entry(session).or_insert((0, 0));
            v.0 += 1;
            v.0
        };
        let shard = self.shard(session);
        shard.pending.entry(session).or_default().job = Some(Job {
            projection,
            watermark,
            heads,
            version,
        });
        shard.wake.notify_one();
    }

    /// The session's document was unloaded: after any queued write, drop what the projector
    /// keeps for it (the first projection after a reload rewrites every row).
    pub fn release(&self, session: Uuid) {
        let shard = self.shard(session);
        shard.pending.entry(session).or_default().release = true;
        shard.wake.notify_one();
    }

    /// Sessions with a write or release queued.
    pub fn pending(&self) -> usize {
        self.shards.iter().map(|s| s.pending.len()).sum()
    }

    /// Sessions with a projection queued and not written.
    fn queued(&self) -> Vec<Uuid> {
        self.shards
            .iter()
            .flat_map(|s| {
                s.pending
                    .iter()
                    .filter(|e| e.job.is_some())
                    .map(|e| *e.key())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Shutdown, first step (the last client is gone): each worker finishes the session it
    /// is writing and stops; the queue is left as it is. Whoever waits in
    /// [`Projector::settled`] is released (what they wait for is projected at the next start).
    pub fn stop(&self) {
        self.stop.cancel();
        self.workers.close();
        self.written.send_modify(|n| *n += 1);
    }

    /// Shutdown, last step (after the documents are unloaded, so nothing is submitted any
    /// more): wait for the workers, then mark every session still queued as stale in the store
    /// so that the next start projects it (see the type's documentation). Returns how many
    /// sessions were left to the next start.
    pub async fn finish(&self) -> usize {
        self.stop();
        self.workers.wait().await;
        let queued = self.queued();
        if queued.is_empty() {
            return 0;
        }
        match self.store.mark_projections_stale(&queued).await {
            Ok(()) => tracing::info!(
                sessions = queued.len(),
                "projections left for the next start (marked stale)"
            ),
            // Still not lost for those with a newer change row than their projection (every
            // queued projection but a reassessment): the next start finds them anyway.
            Err(e) => tracing::error!(
                sessions = queued.len(),
                error = %e,
                "could not mark queued projections stale"
            ),
        }
        queued.len()
    }

    /// Item rows written since start.
    pub fn rows_written(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Projection writes that failed since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The last projection write that failed, if any.
    pub fn last_failure(&self) -> Option<ProjectionFailure> {
        self.last_failure.lock().ok().and_then(|l| l.clone())
    }

    /// Wait until every projection submitted for `session` so far is written (or the
    /// projector stopped: shutting down, the rest is for the next start).
    pub async fn settled(&self, session: Uuid) {
        let mut rx = self.written.subscribe();
        let Some(target) = self.versions.get(&session).map(|v| v.0) else {
            return;
        };
        loop {
            rx.mark_unchanged();
            if self.stop.is_cancelled() || self.versions.get(&session).is_none_or(|v| v.1 >= target)
            {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Write a projection. With what this node last wrote for the session (`before`), only the
/// rows that differ are written — a row differs when its item changed or when what it is
/// assessed against (its rule's latest version, the asset's baselines) changed — unless
/// another writer (another node) wrote the session since, which the store detects by the stored
/// heads; without it, every row is replaced. Returns what is now written and how many rows were.
async fn write(
    store: &dyn Store,
    id: Uuid,
    job: Job,
    before: Option<Written>,
) -> anyhow::Result<(Written, u64)> {
    let (session, previous, derived) = match before {
        Some(w) => (w.session, Some((w.rows, w.heads)), w.derived),
        None => (store.find_session(id).await?.row, None, HashMap::new()),
    };
    // The building's pinned editions decide which version of a rule assesses an item.
    let building = store
        .get_building(session.org_id, session.building_id)
        .await?;
    let rules = item_rules(
        store,
        &building,
        job.projection
            .items
            .iter()
            .filter_map(|i| i.rule_code.as_deref()),
    )
    .await?;
    let assets: Vec<Uuid> = job
        .projection
        .items
        .iter()
        .filter_map(|i| i.asset_id.parse().ok())
        .collect();
    let references = reference_values(store, session.org_id, &assets).await?;
    let reference =
        |asset, kind, key: &str| references.get(&(asset, kind, key.to_owned())).copied();
    let Rows {
        all,
        assessments,
        problems,
        derived,
    } = rows_reusing(
        &session,
        &job.projection,
        &rules,
        reference,
        derived,
        previous.as_ref().map(|(rows, _)| rows),
    );
    let (written_rows, outcome) = match &previous {
        Some((rows, heads)) => {
            let changed: Vec<ItemRow> = all
                .iter()
                .filter(|r| rows.get(&r.asset_id) != Some(*r))
                .cloned()
                .collect();
            // What was in the last write and is gone from the document.
            let present: HashSet<&str> = all.iter().map(|r| r.asset_id.as_str()).collect();
            let removed: Vec<String> = rows
                .keys()
                .filter(|k| !present.contains(k.as_str()))
                .cloned()
                .collect();
            let items = ItemsWrite::Changed {
                upsert: &changed,
                removed: &removed,
                all: &all,
                expect_heads: heads,
            };
            let outcome = store
                .write_projection(id, items, job.watermark, &job.heads, &problems)
                .await?;
            (changed, outcome)
        }
        None => {
            let outcome = store
                .write_projection(
                    id,
                    ItemsWrite::All(&all),
                    job.watermark,
                    &job.heads,
                    &problems,
                )
                .await?;
            (Vec::new(), outcome)
        }
    };
    let (synced, count): (&[ItemRow], u64) = match outcome {
        ProjectionWrite::Changed => (&written_rows, written_rows.len() as u64),
        ProjectionWrite::All => (&all, all.len() as u64),
    };
    let had_findings = |asset: &str| {
        previous.as_ref().is_none_or(|(rows, _)| {
            rows.get(asset).is_some_and(|r| {
                r.assessment.0["findings"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty())
            })
        })
    };
    let findings: Vec<(&ItemRow, &Assessment)> = synced
        .iter()
        .filter_map(|r| assessments.get(&r.asset_id).map(|a| (r, a)))
        .filter(|(r, a)| !a.findings.is_empty() || had_findings(&r.asset_id))
        .collect();
    if !findings.is_empty() {
        sync_defects(store, &session, &rules, &findings).await?;
    }
    // A service recorded (or changed) this time may be outside its tolerance window: raise
    // its non-conformance now rather than at sign-off (once per service, `crate::tolerance`).
    // It does not fail the projection: the sign-off checks again. Only when a service is new
    // or its outcome, date or routine changed: other edits (notes, readings) leave the
    // building's schedule alone and cost nothing here.
    let serviced = synced.iter().any(|r| {
        let done = r.rule_code.is_some()
            && r.recorded_at.is_some()
            && matches!(r.outcome.as_deref(), Some("pass" | "fail"));
        let before = previous
            .as_ref()
            .and_then(|(rows, _)| rows.get(&r.asset_id));
        done && before.is_none_or(|p| {
            p.outcome != r.outcome || p.recorded_at != r.recorded_at || p.rule_code != r.rule_code
        })
    });
    if serviced {
        if let Err(e) = crate::tolerance::raise_for_session(store, &building, id, None).await {
            tracing::warn!(session = %id, error = %e, "could not check the session's services against their tolerance windows");
        }
    }
    let written = Written {
        session,
        rows: all.into_iter().map(|r| (r.asset_id.clone(), r)).collect(),
        derived,
        heads: job.heads,
    };
    Ok((written, count))
}

/// The rule each item is assessed with, by code: [`crate::rules::item_rule`] for each code
/// (None when no version is active).
pub(crate) type ItemRules = HashMap<String, Option<(RuleRecord, RuleView)>>;

pub(crate) async fn item_rules<'a>(
    store: &dyn Store,
    building: &crate::store::buildings::BuildingRecord,
    codes: impl Iterator<Item = &'a str>,
) -> anyhow::Result<ItemRules> {
    // One query per code, each reading one row: reading the building's rules instead (some
    // ninety rows, decoded and cloned) cost more CPU per request than the queries it saved.
    item_rules_from(store, building, &[], codes).await
}

/// [`item_rules`] with the building's rules (`crate::rules::building_rules` without a
/// frequency) already read: `building_rule(code)` is the rule of that code among them.
pub(crate) async fn item_rules_from<'a>(
    store: &dyn Store,
    building: &crate::store::buildings::BuildingRecord,
    building_rules: &[RuleRecord],
    codes: impl Iterator<Item = &'a str>,
) -> anyhow::Result<ItemRules> {
    let mut wanted: BTreeSet<&str> = codes.collect();
    let mut rules = ItemRules::new();
    for r in building_rules {
        if wanted.remove(r.code.as_str()) {
            let view = r.view();
            rules.insert(r.code.clone(), Some((r.clone(), view)));
        }
    }
    for code in wanted {
        let rule = match crate::rules::item_rule(store, building, code).await {
            Ok(r) => {
                let view = r.view();
                Some((r, view))
            }
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        rules.insert(code.to_owned(), rule);
    }
    Ok(rules)
}

/// A session's projection as item rows, with each item's assessment and the document's
/// problems as stored.
pub(crate) struct Rows {
    pub all: Vec<ItemRow>,
    pub assessments: HashMap<String, Assessment>,
    pub problems: serde_json::Value,
    /// What each row was derived from, for the next write to reuse.
    derived: HashMap<String, Derived>,
}

/// What one item row was derived from. The assessment is a pure function of the item, its
/// rule and the reference values it looks up, so when the item and its rule are unchanged
/// and every lookup it made answers the same, the row it gave is the row it would give again:
/// the writer reuses it instead of assessing and serialising the item again (a tablet's edit
/// touches one item; a write used to rebuild every row of the session).
#[derive(Clone)]
struct Derived {
    item: ProjectedItem,
    /// The rule version's id: a stored rule version never changes but for being deactivated,
    /// after which `crate::rules::item_rule` picks another version (another id) or none.
    rule: Option<Uuid>,
    /// Every reference value the assessment looked up: (kind, key, what it got).
    lookups: Vec<(RefKind, String, Option<f64>)>,
    assessment: Assessment,
}

/// The item rows of a projection (no I/O): each item assessed against its rule and the
/// asset's reference values (`reference(asset, kind, key)`).
pub(crate) fn rows(
    session: &SessionRow,
    projection: &Projection,
    rules: &ItemRules,
    reference: impl Fn(Uuid, RefKind, &str) -> Option<f64>,
) -> Rows {
    rows_reusing(session, projection, rules, reference, HashMap::new(), None)
}

/// [`rows`], reusing a previous row (`rows`) for every item whose [`Derived`] inputs did not
/// change.
fn rows_reusing(
    session: &SessionRow,
    projection: &Projection,
    rules: &ItemRules,
    reference: impl Fn(Uuid, RefKind, &str) -> Option<f64>,
    mut previous: HashMap<String, Derived>,
    rows: Option<&HashMap<String, ItemRow>>,
) -> Rows {
    let mut assessments: HashMap<String, Assessment> = HashMap::new();
    let mut derived: HashMap<String, Derived> = HashMap::with_capacity(projection.items.len());
    let all: Vec<ItemRow> = projection
        .items
        .iter()
        .map(|i| {
            let rule = i
                .rule_code
                .as_ref()
                .and_then(|c| rules.get(c))
                .and_then(Option::as_ref);
            let asset = i.asset_id.parse::<Uuid>().ok();
            let lookup = |kind, key: &str| asset.and_then(|a| reference(a, kind, key));
            let before = previous
                .remove(&i.asset_id)
                .zip(rows.and_then(|r| r.get(&i.asset_id)));
            if let Some((d, row)) = before {
                let same = d.item == *i
                    && d.rule == rule.map(|(r, _)| r.id)
                    && d.lookups
                        .iter()
                        .all(|(kind, key, got)| lookup(*kind, key) == *got);
                if same {
                    assessments.insert(i.asset_id.clone(), d.assessment.clone());
                    derived.insert(i.asset_id.clone(), d);
                    return row.clone();
                }
            }
            let lookups = std::cell::RefCell::new(Vec::new());
            let assessment = assess(
                rule.map(|(_, v)| v),
                ItemFacts {
                    outcome: i.outcome,
                    conditions: &i.observed_conditions,
                    readings: &i.readings,
                },
                |kind, key| {
                    let got = lookup(kind, key);
                    lookups.borrow_mut().push((kind, key.to_owned(), got));
                    got
                },
            );
            let row = item_row(session, i, rule.map(|(r, _)| r), &assessment);
            derived.insert(
                i.asset_id.clone(),
                Derived {
                    item: i.clone(),
                    rule: rule.map(|(r, _)| r.id),
                    lookups: lookups.into_inner(),
                    assessment: assessment.clone(),
                },
            );
            assessments.insert(i.asset_id.clone(), assessment);
            row
        })
        .collect();
    let mut problems = projection.problems.clone();
    for p in &mut problems {
        if let Some(clean) = storable(&p.message) {
            p.message = clean;
        }
    }
    Rows {
        all,
        assessments,
        problems: json!(problems),
        derived,
    }
}

/// The current baseline and design values of these assets, by (asset, kind, key).
/// One query for the whole session (see `store::baselines`).
async fn reference_values(
    store: &dyn Store,
    org: Uuid,
    assets: &[Uuid],
) -> anyhow::Result<HashMap<(Uuid, RefKind, String), f64>> {
    Ok(store
        .current_reference_values(org, assets)
        .await?
        .into_iter()
        .filter_map(|r| {
            Some((
                (r.asset_id, r.kind.parse::<RefKind>().ok()?, r.key),
                r.value,
            ))
        })
        .collect())
}

/// `text` with every NUL replaced by U+FFFD, when it has one: PostgreSQL text (and JSON) cannot
/// hold NUL, and one bad value must not stop a session from projecting. The value is also
/// reported as a schema problem (see [`item_row`]).
fn storable(text: &str) -> Option<String> {
    text.contains('\0').then(|| text.replace('\0', "\u{FFFD}"))
}

/// [`storable`] over every string (keys included) of a JSON value; true when one changed.
fn storable_json(value: &mut serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => match storable(s) {
            Some(clean) => {
                *s = clean;
                true
            }
            None => false,
        },
        serde_json::Value::Array(items) => items
            .iter_mut()
            .fold(false, |acc, v| storable_json(v) | acc),
        serde_json::Value::Object(map) => {
            let mut changed = false;
            let old = std::mem::take(map);
            for (k, mut v) in old {
                changed |= storable_json(&mut v);
                let k = match storable(&k) {
                    Some(clean) => {
                        changed = true;
                        clean
                    }
                    None => k,
                };
                map.insert(k, v);
            }
            changed
        }
        _ => false,
    }
}

fn item_row(
    session: &SessionRow,
    i: &ProjectedItem,
    rule: Option<&RuleRecord>,
    assessment: &Assessment,
) -> ItemRow {
    let mut problems = json!(i.problems);
    let base = format!(
        "/items/{}",
        i.asset_id.replace('~', "~0").replace('/', "~1")
    );
    if let Some(list) = problems.as_array_mut() {
        for p in &assessment.problems {
            list.push(json!({ "path": format!("{base}/{}", p.field), "message": p.message }));
        }
    }
    let mut row = ItemRow {
        session_id: session.id,
        asset_id: i.asset_id.clone(),
        org_id: session.org_id,
        building_id: session.building_id,
        rule_code: i.rule_code.clone(),
        outcome: i.outcome.map(|o| o.as_str().to_owned()),
        raw_outcome: i.raw_outcome.clone(),
        observed_condition: i.observed_conditions.first().cloned(),
        readings: sqlx::types::Json(json!(i.readings)),
        notes: i.notes.clone(),
        evidence: sqlx::types::Json(json!(i.evidence)),
        recorded_by: i.recorded_by.clone(),
        recorded_at: i.recorded_at.clone(),
        classification: assessment.classification.map(|c| c.as_str().to_owned()),
        rule_version: rule.map(|r| r.version.clone()),
        problems: sqlx::types::Json(problems),
        observed_conditions: sqlx::types::Json(i.observed_conditions.clone()),
        assessment: sqlx::types::Json(json!(assessment)),
    };
    // A NUL anywhere is replaced, and said so, rather than failing the whole write.
    let mut nul = false;
    for field in [&mut row.asset_id, &mut row.notes] {
        if let Some(clean) = storable(field) {
            *field = clean;
            nul = true;
        }
    }
    for field in [
        &mut row.rule_code,
        &mut row.raw_outcome,
        &mut row.observed_condition,
        &mut row.recorded_by,
        &mut row.recorded_at,
    ]
    .into_iter()
    .flatten()
    {
        if let Some(clean) = storable(field) {
            *field = clean;
            nul = true;
        }
    }
    for c in &mut row.observed_conditions.0 {
        if let Some(clean) = storable(c) {
            *c = clean;
            nul = true;
        }
    }
    nul |= storable_json(&mut row.readings.0);
    nul |= storable_json(&mut row.evidence.0);
    nul |= storable_json(&mut row.assessment.0);
    storable_json(&mut row.problems.0);
    if nul {
        if let Some(list) = row.problems.0.as_array_mut() {
            list.push(json!({
                "path": base.replace('\0', "\u{FFFD}"),
                "message": "a value holds a NUL character, which cannot be stored; it is shown as \u{FFFD}",
            }));
        }
    }
    row
}

/// Keep defects in step with the findings of the items written this time (domain rules in
/// `crate::domain::defects`): a new finding opens a defect or reconfirms or reopens the one with
/// the same asset and condition; a finding this session no longer has withdraws its defect (or
/// drops this session's sighting of it).
async fn sync_defects(
    store: &dyn Store,
    session: &SessionRow,
    rules: &HashMap<String, Option<(RuleRecord, RuleView)>>,
    items: &[(&ItemRow, &Assessment)],
) -> anyhow::Result<()> {
    let assets: BTreeSet<Uuid> = items
        .iter()
        .filter_map(|(r, _)| r.asset_id.parse().ok())
        .collect();
    let ids: Vec<Uuid> = assets.iter().copied().collect();
    let stored = store.defects_of_assets(session.org_id, &ids).await?;
    let known: Vec<Known> = stored
        .iter()
        .filter_map(|(d, seen)| {
            Some(Known {
                id: d.id,
                asset_id: d.asset_id?,
                condition: d.observed_condition.clone(),
                status: d.status.clone(),
                severity: Severity::parse(&d.severity)?,
                severity_overridden: d.severity_overridden,
                automatic: d.source == "automatic",
                found_in: d.session_id,
                sighted_in: seen.iter().copied().collect(),
                evidence: d.evidence.0.clone(),
                created_at_order: d.created_at.timestamp_micros(),
            })
        })
        .collect();
    let mut found = Vec::new();
    let mut context: HashMap<Uuid, &ItemRow> = HashMap::new();
    for (row, assessment) in items {
        let Ok(asset) = row.asset_id.parse::<Uuid>() else {
            continue;
        };
        context.insert(asset, row);
        let evidence: Vec<String> = row
            .evidence
            .0
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for f in &assessment.findings {
            if let Some(severity) = Severity::of(f.classification) {
                found.push(Found {
                    asset_id: asset,
                    condition: f.condition.clone(),
                    severity,
                    evidence: evidence.clone(),
                });
            }
        }
    }
    let actions = defects::plan(session.id, &assets, &found, &known);
    if actions.is_empty() {
        return Ok(());
    }
    let labels: HashMap<Uuid, AssetLabel> = store
        .building_assets(session.org_id, session.building_id)
        .await?
        .into_iter()
        .filter(|a| assets.contains(&a.id))
        .map(|a| {
            let kind = crate::rules::library()
                .equipment_kind(&a.asset_type)
                .map_or_else(|| a.asset_type.clone(), |k| k.name.clone());
            (
                a.id,
                AssetLabel {
                    identifier: a.identifier,
                    kind,
                    location: a.location,
                },
            )
        })
        .collect();
    let overridden: HashSet<Uuid> = known
        .iter()
        .filter(|k| k.severity_overridden)
        .map(|k| k.id)
        .collect();
    let severity_for =
        |id: Uuid, f: &Found| (!overridden.contains(&id)).then(|| f.severity.as_str().to_owned());
    // A finding that makes a defect more severe (say, critical under a new rule version)
    // shortens its notification deadline from when it was found; it never lengthens it.
    let sooner_deadline = |id: Uuid, f: &Found, at: DateTime<Utc>| {
        let (d, _) = stored.iter().find(|(d, _)| d.id == id)?;
        let before = Severity::parse(&d.severity)?;
        (!d.severity_overridden && f.severity < before)
            .then(|| defects::deadline_after(before, f.severity, d.notify_by, d.discovered_at, at))
    };
    let now = Utc::now();
    let discovered = |asset: Uuid| {
        context
            .get(&asset)
            .and_then(|r| r.recorded_at.as_deref())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or(now, |t| t.with_timezone(&Utc))
    };
    let writes: Vec<DefectWrite> = actions
        .into_iter()
        .map(|action| match action {
            Action::Open(f) => {
                let row = context.get(&f.asset_id);
                let rule = row
                    .and_then(|r| r.rule_code.as_ref())
                    .and_then(|c| rules.get(c))
                    .and_then(Option::as_ref);
                let label = labels.get(&f.asset_id).cloned().unwrap_or_default();
                let at = discovered(f.asset_id);
                let rule_words = rule.map_or_else(
                    || "an unknown rule".to_owned(),
                    |(r, _)| format!("{} ({})", r.name, r.code),
                );
                DefectWrite::Open(Box::new(DefectRecord {
                    id: Uuid::now_v7(),
                    org_id: session.org_id,
                    building_id: session.building_id,
                    asset_id: Some(f.asset_id),
                    session_id: Some(session.id),
                    rule_code: row.and_then(|r| r.rule_code.clone()),
                    rule_version: rule.map(|(r, _)| r.version.clone()),
                    severity: f.severity.as_str().to_owned(),
                    status: defects::status::OPEN.into(),
                    source: "automatic".into(),
                    title: defects::title(&label, f.condition.as_deref()),
                    description: format!(
                        "{} failed routine service under {rule_words}: {}.",
                        label.describe(),
                        defects::condition_words(f.condition.as_deref())
                    ),
                    observed_condition: f.condition.clone(),
                    evidence: sqlx::types::Json(f.evidence.clone()),
                    discovered_at: at,
                    notify_by: at + f.severity.notification_window(),
                    acknowledged_at: None,
                    created_by: None,
                    created_at: now,
                    updated_at: now,
                    severity_overridden: false,
                    severity_reason: None,
                    duplicate_of: None,
                    notified_at: None,
                    escalated_at: None,
                    asset_identifier: None,
                    asset_type: None,
                    asset_location: None,
                }))
            }
            Action::Reconfirm { id, found } => {
                let at = discovered(found.asset_id);
                DefectWrite::Reconfirm {
                    id,
                    session: session.id,
                    at,
                    notify_by: sooner_deadline(id, &found, at),
                    severity: severity_for(id, &found),
                    evidence: found.evidence,
                }
            }
            Action::Reopen { id, from, found } => {
                let at = discovered(found.asset_id);
                let severity = if overridden.contains(&id) {
                    known
                        .iter()
                        .find(|k| k.id == id)
                        .map_or(found.severity, |k| k.severity)
                } else {
                    found.severity
                };
                DefectWrite::Reopen {
                    id,
                    from,
                    session: session.id,
                    at,
                    severity: severity_for(id, &found),
                    evidence: found.evidence,
                    notify_by: at + severity.notification_window(),
                }
            }
            Action::Refresh { id, found } => DefectWrite::Refresh {
                id,
                at: now,
                notify_by: sooner_deadline(id, &found, discovered(found.asset_id)),
                severity: severity_for(id, &found),
                evidence: found.evidence,
            },
            Action::Withdraw { id } => DefectWrite::Withdraw { id, at: now },
            Action::Unsight { id } => DefectWrite::Unsight {
                id,
                session: session.id,
                at: now,
            },
        })
        .collect();
    store.write_defects(&writes).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use firemode_sync_core::{Outcome, ReadingValue, SchemaProblem};
    use proptest::prelude::*;

    fn session() -> SessionRow {
        let now = Utc::now();
        SessionRow {
            id: Uuid::new_v4(),
            org_id: Uuid::new_v4(),
            building_id: Uuid::new_v4(),
            name: "s".into(),
            frequency: "six_monthly".into(),
            status: "in_progress".into(),
            rule_set_code: "AS1851".into(),
            rule_set_version: "2012.1.0".into(),
            created_by: Uuid::new_v4(),
            created_at: now,
            updated_at: now,
            signed_off_by: None,
            signed_off_licence: None,
            signed_off_at: None,
        }
    }

    /// Text that often holds NUL and other control characters.
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop_oneof![Just('\0'), Just('\u{1}'), any::<char>()], 0..12)
            .prop_map(|c| c.into_iter().collect())
    }

    proptest! {
        /// Whatever a tablet wrote, the row the projection stores holds no NUL (which
        /// PostgreSQL text and JSON cannot hold, and which used to stop a session projecting),
        /// and a replaced value is reported.
        #[test]
        fn rows_never_hold_nul(
            asset in text(), rule in text(), raw in text(), conditions in proptest::collection::vec(text(), 0..3),
            names in proptest::collection::vec(text(), 0..3), value in text(), notes in text(),
            evidence in proptest::collection::vec(text(), 0..2), by in text(), at in text(),
            message in text(),
        ) {
            let item = ProjectedItem {
                asset_id: asset,
                rule_code: Some(rule),
                outcome: Some(Outcome::Fail),
                raw_outcome: Some(raw),
                observed_conditions: conditions,
                readings: names.into_iter().map(|n| (n, ReadingValue::Text(value.clone()))).collect(),
                notes,
                evidence,
                recorded_by: Some(by),
                recorded_at: Some(at),
                problems: vec![SchemaProblem { path: "/x".into(), message }],
            };
            let had_nul = serde_json::to_string(&item).unwrap().contains("\\u0000");
            let assessment = assess(None, ItemFacts {
                outcome: item.outcome,
                conditions: &item.observed_conditions,
                readings: &item.readings,
            }, |_, _| None);
            let row = item_row(&session(), &item, None, &assessment);
            let stored = serde_json::to_string(&row).unwrap();
            prop_assert!(!stored.contains("\\u0000"), "{stored}");
            if had_nul {
                prop_assert!(stored.contains("NUL character"), "{stored}");
            }
        }

        /// A row reused because its item, rule and reference lookups did not change is the
        /// row a fresh derivation gives, whatever changes between writes: items edited, the
        /// rule replaced by a new version, baselines recorded, changed or removed.
        #[test]
        fn reused_rows_equal_fresh_ones(
            rounds in proptest::collection::vec(
                (
                    proptest::collection::vec((0..4usize, 0..3u8, 400.0..600.0f64), 0..4),
                    proptest::collection::vec((0..4usize, proptest::option::of(450.0..550.0f64)), 0..3),
                    any::<bool>(),
                ),
                1..12,
            ),
        ) {
            let session = session();
            let assets: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
            let make_rule = |version: &str, tolerance: f64| {
                let rule = crate::store::rules::RuleRecord {
                    id: Uuid::new_v4(),
                    code: "R".into(),
                    version: version.into(),
                    org_id: None,
                    name: "rule".into(),
                    description: String::new(),
                    standard: "AS 1851-2012".into(),
                    section: "10".into(),
                    clause: String::new(),
                    equipment: "portable_extinguisher".into(),
                    frequency: "six_monthly".into(),
                    readings: sqlx::types::Json(json!([{"name": "p", "kind": "number", "unit": "kPa",
                        "expect": {"type": "baseline", "op": "within", "tolerance": tolerance, "tolerance_unit": "percent"}}])),
                    classification_mappings: sqlx::types::Json(
                        [("corroded".to_string(), "non_critical_defect".to_string())].into_iter().collect()),
                    rationale: sqlx::types::Json(Default::default()),
                    active: true,
                    created_by: None,
                    created_at: Utc::now(),
                    deactivated_at: None,
                    rule_set_code: "AS1851".into(),
                    rule_set_version: "2012.1.0".into(),
                    alternative_to: None,
                };
                let view = rule.view();
                (rule, view)
            };
            let mut rule = make_rule("1.0.0", 10.0);
            let mut items: Vec<ProjectedItem> = assets
                .iter()
                .map(|a| ProjectedItem {
                    asset_id: a.to_string(),
                    rule_code: Some("R".into()),
                    outcome: Some(Outcome::Pass),
                    ..Default::default()
                })
                .collect();
            let mut references: HashMap<(Uuid, RefKind, String), f64> = HashMap::new();
            let mut derived = HashMap::new();
            let mut written: Option<HashMap<String, ItemRow>> = None;
            for (r, (edits, baselines, new_rule)) in rounds.iter().enumerate() {
                for (i, what, value) in edits {
                    let item = &mut items[*i];
                    match what {
                        0 => { item.readings.insert("p".into(), ReadingValue::Number(*value)); }
                        1 => item.observed_conditions = vec!["corroded".into()],
                        _ => item.outcome = Some(if *value > 500.0 { Outcome::Fail } else { Outcome::Pass }),
                    }
                }
                for (i, value) in baselines {
                    let key = (assets[*i], RefKind::Baseline, "p".to_string());
                    match value {
                        Some(v) => { references.insert(key, *v); }
                        None => { references.remove(&key); }
                    }
                }
                if *new_rule {
                    rule = make_rule(&format!("1.{r}.0"), 5.0 + r as f64);
                }
                let rules: ItemRules = [("R".to_string(), Some(rule.clone()))].into_iter().collect();
                let projection = Projection { items: items.clone(), ..Default::default() };
                let reference = |a, k, key: &str| references.get(&(a, k, key.to_owned())).copied();
                let fresh = rows(&session, &projection, &rules, reference);
                let reused = rows_reusing(&session, &projection, &rules, reference, derived, written.as_ref());
                prop_assert_eq!(&reused.all, &fresh.all);
                prop_assert_eq!(&reused.assessments, &fresh.assessments);
                written = Some(reused.all.iter().map(|r| (r.asset_id.clone(), r.clone())).collect());
                derived = reused.derived;
            }
        }
    }
}
