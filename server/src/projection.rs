//! Projection: after changes are committed, a session document is turned into relational rows
//! (`session_items`) that REST reads. Coalesced: a document changed a hundred times in a burst
//! is written once with its latest state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use firemode_sync_core::{Outcome, ProjectedItem, Projection};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::rules::Classification;
use crate::store::defects::{DefectFilter, DefectRecord};
use crate::store::rules::RuleRecord;
use crate::store::sessions::{ItemRow, ItemsWrite, ProjectionWrite, SessionRow};
use crate::store::{Page, Store, StoreError};

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
    /// The heads stored with it: if the stored ones differ at the next write, someone else
    /// wrote the session meanwhile and every row is written again.
    heads: String,
}

#[derive(Clone)]
pub struct Projector {
    pending: Arc<DashMap<Uuid, Pending>>,
    /// Per session: (last submitted version, last written version).
    versions: Arc<DashMap<Uuid, (u64, u64)>>,
    wake: Arc<Notify>,
    /// Bumped after every write; tests and REST readers can wait for it.
    written: Arc<tokio::sync::watch::Sender<u64>>,
    /// Item rows written since start (`/metrics`).
    rows: Arc<AtomicU64>,
}

impl Projector {
    pub fn spawn(store: Arc<dyn Store>, tasks: &TaskTracker, shutdown: CancellationToken) -> Self {
        let p = Self {
            pending: Arc::new(DashMap::new()),
            versions: Arc::new(DashMap::new()),
            wake: Arc::new(Notify::new()),
            written: Arc::new(tokio::sync::watch::channel(0).0),
            rows: Arc::new(AtomicU64::new(0)),
        };
        let worker = p.clone();
        tasks.spawn(async move {
            // Only this task reads or writes it: no lock needed.
            let mut last: HashMap<Uuid, Written> = HashMap::new();
            loop {
                let stopping = tokio::select! {
                    _ = worker.wake.notified() => false,
                    _ = shutdown.cancelled() => true,
                };
                let keys: Vec<Uuid> = worker.pending.iter().map(|e| *e.key()).collect();
                for id in keys {
                    let Some((_, pending)) = worker.pending.remove(&id) else {
                        continue;
                    };
                    if let Some(job) = pending.job {
                        let version = job.version;
                        let before = last.remove(&id);
                        match write(store.as_ref(), id, job, before).await {
                            Ok((written, rows)) => {
                                worker.rows.fetch_add(rows, Ordering::Relaxed);
                                if !pending.release {
                                    last.insert(id, written);
                                }
                            }
                            // Nothing is remembered: the next write rewrites every row.
                            Err(e) => {
                                tracing::error!(session = %id, error = %e, "projection failed")
                            }
                        }
                        if let Some(mut v) = worker.versions.get_mut(&id) {
                            v.1 = v.1.max(version);
                        }
                    }
                    if pending.release {
                        // `versions` stays: a reader may be waiting for a version number of
                        // this session, and numbers must keep increasing across reloads.
                        last.remove(&id);
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
    pub fn submit(&self, session: Uuid, projection: Projection, watermark: i64, heads: String) {
        let version = {
            let mut v = self.versions.entry(session).or_insert((0, 0));
            v.0 += 1;
            v.0
        };
        self.pending.entry(session).or_default().job = Some(Job {
            projection,
            watermark,
            heads,
            version,
        });
        self.wake.notify_one();
    }

    /// The session's document was unloaded: after any queued write, drop what the projector
    /// keeps for it (the first projection after a reload rewrites every row).
    pub fn release(&self, session: Uuid) {
        self.pending.entry(session).or_default().release = true;
        self.wake.notify_one();
    }

    /// Sessions with a write or release queued.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Item rows written since start.
    pub fn rows_written(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Wait until every projection submitted for `session` so far is written.
    pub async fn settled(&self, session: Uuid) {
        let mut rx = self.written.subscribe();
        let Some(target) = self.versions.get(&session).map(|v| v.0) else {
            return;
        };
        loop {
            rx.mark_unchanged();
            if self.versions.get(&session).is_none_or(|v| v.1 >= target) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Classify one item against its rule: the observed condition decides; a pass without one is
/// compliant; anything else stays unclassified.
fn classify(
    rule: Option<&RuleRecord>,
    outcome: Option<Outcome>,
    condition: Option<&str>,
) -> Option<Classification> {
    let rule = rule?;
    match (condition, outcome) {
        (Some(c), _) => crate::rules::classify(rule, c),
        (None, Some(Outcome::Pass)) => Some(Classification::Compliant),
        _ => None,
    }
}

/// Write a projection. With what this node last wrote for the session (`before`), only the
/// rows that differ are written — a row differs when its item changed or when the rule it is
/// classified by has a new version — unless another writer (another node) wrote the session
/// since, which the store detects by the stored heads; without it, every row is replaced.
/// Returns what is now written and how many rows were.
async fn write(
    store: &dyn Store,
    id: Uuid,
    job: Job,
    before: Option<Written>,
) -> anyhow::Result<(Written, u64)> {
    let (session, previous) = match before {
        Some(w) => (w.session, Some((w.rows, w.heads))),
        None => (store.find_session(id).await?.row, None),
    };
    let mut rules: HashMap<String, Option<RuleRecord>> = HashMap::new();
    for code in job
        .projection
        .items
        .iter()
        .filter_map(|i| i.rule_code.as_ref())
    {
        if !rules.contains_key(code) {
            let rule = match store.latest_rule(session.org_id, code).await {
                Ok(r) => Some(r),
                Err(StoreError::NotFound) => None,
                Err(e) => return Err(e.into()),
            };
            rules.insert(code.clone(), rule);
        }
    }
    let all: Vec<ItemRow> = job
        .projection
        .items
        .iter()
        .map(|i| {
            let rule = i
                .rule_code
                .as_ref()
                .and_then(|c| rules.get(c))
                .and_then(Option::as_ref);
            item_row(&session, i, rule)
        })
        .collect();
    let problems = json!(job.projection.problems);
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
    sync_defects(store, &session, synced).await?;
    let written = Written {
        session,
        rows: all.into_iter().map(|r| (r.asset_id.clone(), r)).collect(),
        heads: job.heads,
    };
    Ok((written, count))
}

fn item_row(session: &SessionRow, i: &ProjectedItem, rule: Option<&RuleRecord>) -> ItemRow {
    ItemRow {
        session_id: session.id,
        asset_id: i.asset_id.clone(),
        org_id: session.org_id,
        building_id: session.building_id,
        rule_code: i.rule_code.clone(),
        outcome: i.outcome.map(|o| o.as_str().to_owned()),
        raw_outcome: i.raw_outcome.clone(),
        observed_condition: i.observed_condition.clone(),
        readings: sqlx::types::Json(json!(i.readings)),
        notes: i.notes.clone(),
        evidence: sqlx::types::Json(json!(i.evidence)),
        recorded_by: i.recorded_by.clone(),
        recorded_at: i.recorded_at.clone(),
        classification: classify(rule, i.outcome, i.observed_condition.as_deref())
            .map(|c| c.as_str().to_owned()),
        rule_version: rule.map(|r| r.version.clone()),
        problems: sqlx::types::Json(json!(i.problems)),
    }
}

/// Keep automatic defects in step with the items (those that changed since the last write): a
/// failed item opens (or refreshes) one, a later pass withdraws it while it is still open.
async fn sync_defects(
    store: &dyn Store,
    session: &SessionRow,
    items: &[ItemRow],
) -> anyhow::Result<()> {
    if !items
        .iter()
        .any(|i| matches!(i.outcome.as_deref(), Some("fail" | "pass")))
    {
        return Ok(());
    }
    let page = Page {
        after: None,
        limit: 100_000,
    };
    let filter = DefectFilter {
        session_id: Some(session.id),
        ..Default::default()
    };
    let existing: HashMap<Uuid, DefectRecord> = store
        .list_defects(session.org_id, &filter, page)
        .await?
        .into_iter()
        .filter(|d| d.source == "automatic")
        .filter_map(|d| d.asset_id.map(|a| (a, d)))
        .collect();
    let now = Utc::now();
    for item in items {
        let Ok(asset) = item.asset_id.parse::<Uuid>() else {
            continue;
        };
        match item.outcome.as_deref() {
            Some("fail") => {
                let severity = severity_of(item.classification.as_deref());
                let evidence: Vec<String> = item
                    .evidence
                    .0
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(d) = existing.get(&asset) {
                    if d.status != "withdrawn"
                        && d.severity == severity
                        && d.observed_condition == item.observed_condition
                        && d.evidence.0 == evidence
                    {
                        continue;
                    }
                }
                let discovered = item
                    .recorded_at
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map_or(now, |t| t.with_timezone(&Utc));
                let rule = item
                    .rule_code
                    .clone()
                    .unwrap_or_else(|| "unknown rule".into());
                let record = DefectRecord {
                    id: Uuid::now_v7(),
                    org_id: session.org_id,
                    building_id: session.building_id,
                    asset_id: Some(asset),
                    session_id: Some(session.id),
                    rule_code: item.rule_code.clone(),
                    rule_version: item.rule_version.clone(),
                    severity: severity.to_owned(),
                    status: "open".into(),
                    source: "automatic".into(),
                    title: format!("Failed {rule}"),
                    description: match &item.observed_condition {
                        Some(c) => format!(
                            "Asset failed routine service ({rule}): {}",
                            c.replace('_', " ")
                        ),
                        None => format!("Asset failed routine service ({rule})"),
                    },
                    observed_condition: item.observed_condition.clone(),
                    evidence: sqlx::types::Json(evidence),
                    discovered_at: discovered,
                    notify_by: discovered + notification_window(severity),
                    acknowledged_at: None,
                    created_by: None,
                    created_at: now,
                    updated_at: now,
                };
                store.upsert_automatic_defect(&record).await?;
            }
            Some("pass") if existing.get(&asset).is_some_and(|d| d.status == "open") => {
                store
                    .withdraw_automatic_defect(session.id, asset, now)
                    .await?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Defect severity from a rule classification. A failure the rule does not classify (no
/// condition given, or one mapped to compliant) is treated as a non-critical defect: an
/// impairment someone must look at, not silently nothing.
pub fn severity_of(classification: Option<&str>) -> &'static str {
    match classification {
        Some("critical_defect") => "critical",
        Some("non_conformance") => "non_conformance",
        _ => "non_critical",
    }
}

/// AS 1851 cl. 1.5.6: critical defects are reported within 24 hours, others within a week.
pub fn notification_window(severity: &str) -> chrono::Duration {
    if severity == "critical" {
        chrono::Duration::hours(24)
    } else {
        chrono::Duration::days(7)
    }
}
