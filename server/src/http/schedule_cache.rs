//! Schedules computed once and served until their inputs change, building by building.
//!
//! What a schedule is computed from is versioned in the database, in the same transaction as
//! every change: per (organisation, building) for a building's own inputs — its row and
//! archive, its assets, their imported and office history, the services recorded in its
//! sessions (migration 0021) — and per organisation for what every building shares — holidays,
//! the organisation's rules and the shipped ones (migration 0020). A request first reads the
//! versions it needs in one statement (for the organisation's schedule: every building's and
//! the organisation's), then looks for what was loaded and computed under them today; only
//! what is missing is loaded. Loading after reading the versions means a cached entry is never
//! older than its versions say, so a change any node commits later raises a version past it.
//!
//! Per building, two levels are kept: its loaded inputs (`Part`, shared by every date range),
//! and its sorted due lines for a range. The organisation's schedule for a range is the k-way
//! merge of its buildings' lines, kept under the whole set of versions: after a change in one
//! building only that building is loaded and computed again and the lines merged anew. A
//! building added, archived or deleted changes the set of versions, and so the merge.
//!
//! Concurrent requests that need the same thing at the same versions wait for one load or
//! computation instead of each doing it (single flight); `firemode_schedule_loads_total`
//! counts what was actually loaded and computed.
//!
//! Memory is bounded by least-recently-used lists weighed in rows: loaded inputs up to
//! [`PART_ROWS`] rows (assets, services, history) for organisation schedules and
//! [`REPORT_ROWS`] for single-building reports, due lines up to [`LINES`] lines, merged
//! organisation schedules up to [`MERGED`] index entries (8 bytes each).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use prometheus::{IntCounterVec, Opts};
use uuid::Uuid;

use super::compliance::{calendar_years, ScheduleInputs};
use super::error::{ApiError, ApiResult};
use crate::compliance::due::{due_lines, DueInputs, DueItem};
use crate::domain::schedule::{AnchorSource, Window};
use crate::state::AppState;
use crate::store::buildings::BuildingRecord;
use crate::store::reports::ServiceRow;
use crate::store::rules::RuleRecord;
use crate::store::schedule::{BuildingSpan, HolidayRow, ScheduleVersions};
use crate::store::Page;

/// Rows (assets, services, history; one per building at least) of the buildings' inputs kept
/// for organisation schedules: a 50,000-asset organisation takes about 165,000.
pub const PART_ROWS: usize = 400_000;
/// Rows of the buildings' inputs kept for single-building reports (their latest services).
pub const REPORT_ROWS: usize = 200_000;
/// Due lines kept, all buildings and ranges together (a year of a 50,000-asset organisation
/// is about 125,000).
pub const LINES: usize = 600_000;
/// Entries of merged organisation schedules kept (one per due line, 8 bytes each).
pub const MERGED: usize = 2_000_000;
/// Organisation-wide inputs (rules, holidays) kept, one per organisation.
const ORG_ENTRIES: usize = 64;
/// More buildings to load than this: one organisation-wide load (four queries) instead of
/// four queries per building.
const PER_BUILDING_LOADS: usize = 16;

/// The versions a building's inputs were loaded under: organisation's, building's, and the
/// day (what is overdue depends on it). Versions only rise, so of two the later read is
/// greater or equal in every part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PartVersion {
    organisation: i64,
    building: i64,
    today: NaiveDate,
}

impl PartVersion {
    fn at_least(&self, other: &Self) -> bool {
        self.organisation >= other.organisation
            && self.building >= other.building
            && self.today >= other.today
    }
}

/// Every version an organisation's schedule depends on, as read by one request.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Snapshot {
    org_id: Uuid,
    today: NaiveDate,
    versions: ScheduleVersions,
}

impl Snapshot {
    fn part_version(&self, building: i64) -> PartVersion {
        PartVersion {
            organisation: self.versions.organisation,
            building,
            today: self.today,
        }
    }
}

/// The loaded inputs of one building's schedule.
pub(crate) struct Part {
    building: BuildingRecord,
    rules: Vec<RuleRecord>,
    inputs: ScheduleInputs,
    today: NaiveDate,
    /// Routines overdue today (computed on first use).
    overdue: OnceLock<u32>,
}

impl Part {
    fn weight(&self) -> usize {
        1 + self.inputs.assets.len() + self.inputs.services.len() + self.inputs.history.len()
    }

    fn due_inputs(&self) -> DueInputs<'_> {
        DueInputs {
            building: &self.building,
            assets: &self.inputs.assets,
            rules: &self.rules,
            services: &self.inputs.services,
            history: &self.inputs.history,
            calendar: &self.inputs.calendar,
            as_of: self.today,
        }
    }

    /// Routines overdue today (the compliance report's `summary.overdue`): CPU work the first
    /// time.
    fn overdue(&self) -> u32 {
        *self.overdue.get_or_init(|| {
            let n = due_lines(&self.due_inputs(), self.today, self.today)
                .iter()
                .filter(|l| l.overdue)
                .count();
            u32::try_from(n).unwrap_or(u32::MAX)
        })
    }
}

/// The inputs of a scope's schedule (the organisation's buildings, or one building).
pub(crate) struct Loaded {
    today: NaiveDate,
    parts: Vec<Arc<Part>>,
}

impl Loaded {
    /// The day it was loaded for.
    pub fn today(&self) -> NaiveDate {
        self.today
    }

    /// Building `b`'s record, rules and inputs (a building scope has one, at 0).
    pub fn building(&self, b: usize) -> Option<(&BuildingRecord, &[RuleRecord], &ScheduleInputs)> {
        let p = self.parts.get(b)?;
        Some((&p.building, &p.rules, &p.inputs))
    }
}

/// One due line by index into its building's [`Part`].
struct Line {
    asset: u32,
    rule: u32,
    last_service: Option<DateTime<Utc>>,
    date: Option<NaiveDate>,
    window: Option<Window>,
    overdue: bool,
    anchor: Option<(NaiveDate, AnchorSource)>,
    /// Rule indexes of the shorter routines folded into this one.
    includes: Vec<u32>,
}

impl Line {
    /// Overdue first, then by due date (undated first): the leading part of the order, as
    /// one number.
    fn lead(&self) -> u64 {
        let date = self
            .date
            .map_or(0, |d| u64::try_from(d.num_days_from_ce()).unwrap_or(0) + 1);
        (u64::from(!self.overdue) << 62) | (date.min((1 << 36) - 1) << 24)
    }
}

/// One building's schedule over a range, sorted.
struct BuildingLines {
    part: Arc<Part>,
    lines: Vec<Line>,
    overdue: usize,
    months: BTreeMap<(i32, u32), u32>,
}

impl BuildingLines {
    fn identifier(&self, l: &Line) -> Option<&str> {
        self.part.inputs.assets[l.asset as usize]
            .identifier
            .as_deref()
    }

    fn rule_code(&self, l: &Line) -> &str {
        &self.part.rules[l.rule as usize].code
    }

    fn asset_id(&self, l: &Line) -> Uuid {
        self.part.inputs.assets[l.asset as usize].id
    }
}

/// `part`'s schedule over `from..=to` plus what is overdue today, in schedule order: overdue
/// first, then by due date, asset identifier, rule code and asset id.
fn building_lines(part: Arc<Part>, from: NaiveDate, to: NaiveDate) -> BuildingLines {
    let (lines, overdue, months) = {
        let mut all = due_lines(&part.due_inputs(), from, to);
        all.sort_unstable_by(|a, b| {
            a.sort_key()
                .cmp(&b.sort_key())
                .then_with(|| a.asset.id.cmp(&b.asset.id))
        });
        let mut months: BTreeMap<(i32, u32), u32> = BTreeMap::new();
        for d in all.iter().filter_map(|l| l.date) {
            if from <= d && d <= to {
                *months.entry((d.year(), d.month())).or_default() += 1;
            }
        }
        let overdue = all.iter().filter(|l| l.overdue).count();
        let index = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
        let lines: Vec<Line> = all
            .iter()
            .map(|l| Line {
                asset: index(l.asset_index),
                rule: index(l.rule_index),
                last_service: l.last_service,
                date: l.date,
                window: l.window,
                overdue: l.overdue,
                anchor: l.anchor,
                includes: l
                    .includes
                    .iter()
                    .filter_map(|code| part.rules.iter().position(|r| r.code == *code))
                    .map(index)
                    .collect(),
            })
            .collect();
        (lines, overdue, months)
    };
    BuildingLines {
        part,
        lines,
        overdue,
        months,
    }
}

/// A scope's schedule over a range, sorted, ready to be cut into pages.
pub(crate) struct Computed {
    parts: Vec<Arc<BuildingLines>>,
    /// (building, line) in schedule order.
    order: Vec<(u32, u32)>,
    pub overdue: usize,
    /// Dated lines of the range per month (`YYYY-MM`).
    pub by_month: Vec<(String, u32)>,
}

/// The head of one building's remaining lines in the merge; ordered as the schedule is.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Head<'a> {
    lead: u64,
    identifier: Option<&'a str>,
    rule: &'a str,
    building: Uuid,
    asset: Uuid,
    part: u32,
    line: u32,
}

impl Computed {
    /// The buildings' schedules merged: overdue first, then by due date, building name,
    /// asset identifier and rule code (then building and asset id, so that the order is the
    /// same whichever way it was computed).
    fn merge(parts: Vec<Arc<BuildingLines>>) -> Self {
        // Buildings ranked by name (equal names, equal rank): the third part of the order,
        // folded into the number that leads it.
        let mut names: Vec<&str> = parts
            .iter()
            .map(|p| p.part.building.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        let rank: Vec<u64> = parts
            .iter()
            .map(|p| {
                let r = names
                    .binary_search(&p.part.building.name.as_str())
                    .unwrap_or(0);
                u64::try_from(r).unwrap_or(u64::MAX).min((1 << 24) - 1)
            })
            .collect();
        let head = |p: usize, i: usize| -> Option<Head<'_>> {
            let bl = &parts[p];
            let l = bl.lines.get(i)?;
            Some(Head {
                lead: l.lead() | rank[p],
                identifier: bl.identifier(l),
                rule: bl.rule_code(l),
                building: bl.part.building.id,
                asset: bl.asset_id(l),
                part: u32::try_from(p).unwrap_or(u32::MAX),
                line: u32::try_from(i).unwrap_or(u32::MAX),
            })
        };
        let total: usize = parts.iter().map(|p| p.lines.len()).sum();
        let mut order = Vec::with_capacity(total);
        let mut heap: BinaryHeap<Reverse<Head<'_>>> = (0..parts.len())
            .filter_map(|p| head(p, 0))
            .map(Reverse)
            .collect();
        while let Some(Reverse(h)) = heap.pop() {
            order.push((h.part, h.line));
            if let Some(next) = head(h.part as usize, h.line as usize + 1) {
                heap.push(Reverse(next));
            }
        }
        drop(heap);
        let mut months: BTreeMap<(i32, u32), u32> = BTreeMap::new();
        for p in &parts {
            for (m, n) in &p.months {
                *months.entry(*m).or_default() += n;
            }
        }
        Self {
            overdue: parts.iter().map(|p| p.overdue).sum(),
            by_month: months
                .into_iter()
                .map(|((y, m), n)| (format!("{y:04}-{m:02}"), n))
                .collect(),
            order,
            parts,
        }
    }

    pub fn total(&self) -> usize {
        self.order.len()
    }

    /// Items `offset..offset + limit`.
    pub fn items(&self, offset: usize, limit: usize) -> Vec<DueItem> {
        self.order
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(p, l)| {
                let bl = &self.parts[*p as usize];
                item(&bl.part, &bl.lines[*l as usize])
            })
            .collect()
    }
}

fn item(part: &Part, l: &Line) -> DueItem {
    let building = &part.building;
    let asset = &part.inputs.assets[l.asset as usize];
    let rules = &part.rules;
    let rule = &rules[l.rule as usize];
    let mut includes: Vec<String> = l
        .includes
        .iter()
        .map(|r| rules[*r as usize].code.clone())
        .collect();
    includes.sort();
    includes.dedup();
    DueItem {
        building_id: building.id,
        building_name: building.name.clone(),
        asset_id: asset.id,
        identifier: asset.identifier.clone(),
        asset_type: asset.asset_type.clone(),
        location: asset.location.clone(),
        rule_code: rule.code.clone(),
        rule_name: rule.name.clone(),
        frequency: rule.frequency.clone(),
        last_service: l.last_service,
        next_due: l.date,
        window_opens: l.window.map(|w| w.early),
        due_by: l.window.map(|w| w.late),
        overdue: l.overdue,
        anchor: l.anchor.map(|a| a.0),
        anchor_source: l.anchor.map(|a| a.1),
        includes,
    }
}

/// A least-recently-used map bounded by the total weight of its values.
struct Lru<K, V> {
    map: HashMap<K, (V, usize, u64)>,
    order: BTreeMap<u64, K>,
    tick: u64,
    weight: usize,
    budget: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    fn new(budget: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            weight: 0,
            budget,
        }
    }

    fn get(&mut self, k: &K) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        let (v, _, t) = self.map.get_mut(k)?;
        self.order.remove(t);
        *t = tick;
        self.order.insert(tick, k.clone());
        Some(v.clone())
    }

    fn put(&mut self, k: K, v: V, weight: usize) {
        self.tick += 1;
        if let Some((_, w, t)) = self.map.remove(&k) {
            self.order.remove(&t);
            self.weight -= w;
        }
        self.order.insert(self.tick, k.clone());
        self.map.insert(k, (v, weight, self.tick));
        self.weight += weight;
        // The oldest go first; the entry just stored stays even when it alone is too heavy.
        while self.weight > self.budget && self.map.len() > 1 {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, w, _)) = self.map.remove(&old) {
                self.weight -= w;
            }
        }
    }
}

/// Single flight: callers with the same key while one of them loads wait for its result.
struct Flights<K, V> {
    running: Mutex<HashMap<K, Arc<tokio::sync::OnceCell<V>>>>,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Self {
            running: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Flights<K, V> {
    async fn run<F, Fut>(&self, key: K, load: F) -> ApiResult<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ApiResult<V>>,
    {
        let cell = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        // One caller runs `load`; the others wait for it (and one of them runs its own if it
        // fails or is cancelled).
        let out = cell.get_or_try_init(load).await.cloned();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            running.remove(&key);
        }
        out
    }
}

/// What every building of an organisation shares: its rules (of every edition) and holidays.
struct OrgInputs {
    candidates: Vec<RuleRecord>,
    holidays: Vec<HolidayRow>,
}

type PartKey = (Uuid, Uuid);
type LinesKey = (Uuid, Uuid, NaiveDate, NaiveDate, Source);
type Parts = Arc<Vec<Arc<Part>>>;
/// An organisation's schedule over a range.
type RangeKey = (Uuid, NaiveDate, NaiveDate);

/// Which inputs a building's lines were computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    /// Each routine's first and last service (the organisation's schedule).
    Spans,
    /// The latest services (the building's report, status and schedule).
    Latest,
}

/// The cached schedules of this node.
pub struct ScheduleCache {
    inner: Mutex<Inner>,
    org_flights: Flights<(Uuid, i64), Arc<OrgInputs>>,
    part_flights: Flights<(PartKey, PartVersion), Option<Arc<Part>>>,
    report_flights: Flights<(PartKey, PartVersion), Arc<Part>>,
    parts_flights: Flights<Arc<Snapshot>, Parts>,
    lines_flights: Flights<(LinesKey, PartVersion), Arc<BuildingLines>>,
    merged_flights: Flights<(Arc<Snapshot>, NaiveDate, NaiveDate), Arc<Computed>>,
    loads: OnceLock<IntCounterVec>,
}

struct Inner {
    org: Lru<Uuid, (i64, Arc<OrgInputs>)>,
    /// A building's inputs for organisation schedules; None: archived or deleted.
    parts: Lru<PartKey, (PartVersion, Option<Arc<Part>>)>,
    reports: Lru<PartKey, (PartVersion, Arc<Part>)>,
    lines: Lru<LinesKey, (PartVersion, Arc<BuildingLines>)>,
    merged: Lru<RangeKey, (Arc<Snapshot>, Arc<Computed>)>,
}

impl Default for ScheduleCache {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                org: Lru::new(ORG_ENTRIES),
                parts: Lru::new(PART_ROWS),
                reports: Lru::new(REPORT_ROWS),
                lines: Lru::new(LINES),
                merged: Lru::new(MERGED),
            }),
            org_flights: Flights::default(),
            part_flights: Flights::default(),
            report_flights: Flights::default(),
            parts_flights: Flights::default(),
            lines_flights: Flights::default(),
            merged_flights: Flights::default(),
            loads: OnceLock::new(),
        }
    }
}

/// Store `v` under `k` unless what is there was read later.
fn put_newer<K: Hash + Eq + Clone, V: Clone>(
    lru: &mut Lru<K, (PartVersion, V)>,
    k: K,
    version: PartVersion,
    v: V,
    weight: usize,
) {
    if let Some((there, _)) = lru.get(&k) {
        if there != version && there.at_least(&version) {
            return;
        }
    }
    lru.put(k, (version, v), weight);
}

impl ScheduleCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves only cached values: keep using them.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count one load or computation (`firemode_schedule_loads_total{what}`).
    fn count(&self, state: &AppState, what: &str, n: u64) {
        let c = self.loads.get_or_init(|| {
            let c = IntCounterVec::new(
                Opts::new(
                    "schedule_loads_total",
                    "Schedule inputs loaded from the database and schedules computed, by what: \
                     organisation (every building at once), building (one building for the \
                     organisation's schedule), report (one building for its report, status \
                     and schedule), lines (one building's due lines for a range), merge (an \
                     organisation's schedule for a range from its buildings' lines)",
                ),
                &["what"],
            )
            .expect("static metric definition");
            let _ = state.metrics.registry().register(Box::new(c.clone()));
            c
        });
        c.with_label_values(&[what]).inc_by(n);
    }
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// The organisation-wide inputs of `org_id` at its version `version`.
async fn org_inputs(state: &AppState, org_id: Uuid, version: i64) -> ApiResult<Arc<OrgInputs>> {
    let cache = &state.schedules;
    if let Some((v, hit)) = cache.lock().org.get(&org_id) {
        if v == version {
            return Ok(hit);
        }
    }
    cache
        .org_flights
        .run((org_id, version), || async {
            let store = &state.store;
            let (candidates, holidays) = tokio::try_join!(
                store.edition_rules(org_id, None, None),
                store.org_holidays(org_id),
            )?;
            let v = Arc::new(OrgInputs {
                candidates,
                holidays,
            });
            let mut inner = cache.lock();
            if inner
                .org
                .get(&org_id)
                .is_none_or(|(there, _)| there <= version)
            {
                inner.org.put(org_id, (version, v.clone()), 1);
            }
            Ok(v)
        })
        .await
}

/// A building's part from its loaded rows.
fn part(
    building: BuildingRecord,
    org: &OrgInputs,
    assets: Vec<crate::store::buildings::AssetRecord>,
    spans: Vec<BuildingSpan>,
    history: Vec<crate::store::schedule::HistoryRecord>,
    today: NaiveDate,
) -> Part {
    // A schedule needs only each routine's first service (a grid's anchor) and last one
    // (where it stands): the span stands in for the services in between. It carries no
    // outcome or session, which a schedule does not show.
    let services: Vec<ServiceRow> = spans
        .into_iter()
        .map(|s| ServiceRow {
            asset_id: s.asset_id,
            rule_code: s.rule_code,
            outcome: String::new(),
            classification: None,
            recorded_at: s.last_recorded_at,
            session_id: Uuid::nil(),
            assessment: sqlx::types::Json(serde_json::Value::Null),
            first_recorded_at: s.first_recorded_at,
        })
        .collect();
    let years = calendar_years(&services, &history, today);
    let calendar = crate::compliance::calendar(&building, &org.holidays, years);
    Part {
        rules: crate::rules::for_building(&building, &org.candidates),
        building,
        inputs: ScheduleInputs {
            assets,
            services,
            history,
            calendar,
        },
        today,
        overdue: OnceLock::new(),
    }
}

/// One building's inputs for organisation schedules; None when it is archived or gone.
async fn load_part(
    state: &AppState,
    org_id: Uuid,
    id: Uuid,
    org: &OrgInputs,
    today: NaiveDate,
) -> ApiResult<Option<Arc<Part>>> {
    let store = &state.store;
    let before = crate::compliance::services_before(today);
    let next_day = today.checked_add_days(Days::new(1)).unwrap_or(today);
    let (building, assets, spans, history) = tokio::try_join!(
        store.schedule_building(org_id, id),
        store.building_assets(org_id, id),
        store.service_spans(org_id, Some(id), &before),
        store.service_history(org_id, id, next_day),
    )?;
    state.schedules.count(state, "building", 1);
    Ok(building.map(|b| Arc::new(part(b, org, assets, spans, history, today))))
}

/// Every (unarchived) building's inputs for organisation schedules in four queries, by id.
async fn load_org_parts(
    state: &AppState,
    org_id: Uuid,
    org: &OrgInputs,
    today: NaiveDate,
) -> ApiResult<HashMap<Uuid, Arc<Part>>> {
    let store = &state.store;
    let mut buildings = Vec::new();
    let mut after = None;
    loop {
        let page = Page { after, limit: 500 };
        let rows = store
            .list_buildings(org_id, &Default::default(), page)
            .await?;
        let done = rows.len() < 500;
        after = rows.last().map(|b| b.id);
        buildings.extend(rows);
        if done {
            break;
        }
    }
    let before = crate::compliance::services_before(today);
    let next_day = today.checked_add_days(Days::new(1)).unwrap_or(today);
    let (assets, spans, history) = tokio::try_join!(
        store.org_assets(org_id),
        store.service_spans(org_id, None, &before),
        store.org_service_history(org_id, next_day),
    )?;
    state.schedules.count(state, "organisation", 1);
    type Rows = (
        Vec<crate::store::buildings::AssetRecord>,
        Vec<BuildingSpan>,
        Vec<crate::store::schedule::HistoryRecord>,
    );
    let mut by: HashMap<Uuid, Rows> = buildings
        .iter()
        .map(|b| (b.id, Default::default()))
        .collect();
    for a in assets {
        if let Some(r) = by.get_mut(&a.building_id) {
            r.0.push(a);
        }
    }
    for s in spans {
        if let Some(r) = by.get_mut(&s.building_id) {
            r.1.push(s);
        }
    }
    for h in history {
        if let Some(r) = by.get_mut(&h.building_id) {
            r.2.push(h);
        }
    }
    Ok(buildings
        .into_iter()
        .map(|b| {
            let (assets, spans, history) = by.remove(&b.id).unwrap_or_default();
            (b.id, Arc::new(part(b, org, assets, spans, history, today)))
        })
        .collect())
}

/// The inputs of every building in `snap` (the unarchived ones, by id): from the cache
/// where a building's versions are unchanged, loaded otherwise.
async fn org_parts(state: &AppState, snap: Arc<Snapshot>) -> ApiResult<Parts> {
    let cache = &state.schedules;
    let org_id = snap.org_id;
    let today = snap.today;
    let look = |inner: &mut Inner| -> Vec<Option<Option<Arc<Part>>>> {
        snap.versions
            .buildings
            .iter()
            .map(|(b, v)| match inner.parts.get(&(org_id, *b)) {
                Some((there, p)) if there == snap.part_version(*v) => Some(p),
                _ => None,
            })
            .collect()
    };
    let assemble = |found: Vec<Option<Option<Arc<Part>>>>| -> Parts {
        Arc::new(found.into_iter().flatten().flatten().collect())
    };
    let found = look(&mut cache.lock());
    if found.iter().all(Option::is_some) {
        return Ok(assemble(found));
    }
    cache
        .parts_flights
        .run(snap.clone(), || async {
            let mut found = look(&mut cache.lock());
            let missing: Vec<(usize, Uuid, i64)> = snap
                .versions
                .buildings
                .iter()
                .enumerate()
                .filter(|(i, _)| found[*i].is_none())
                .map(|(i, (b, v))| (i, *b, *v))
                .collect();
            if missing.is_empty() {
                return Ok(assemble(found));
            }
            let org = org_inputs(state, org_id, snap.versions.organisation).await?;
            if missing.len() > PER_BUILDING_LOADS {
                let mut all = load_org_parts(state, org_id, &org, snap.today).await?;
                let mut inner = cache.lock();
                for (i, (b, v)) in snap.versions.buildings.iter().enumerate() {
                    // Archived and deleted buildings are in the set with no part.
                    let p = all.remove(b);
                    let weight = p.as_ref().map_or(1, |p| p.weight());
                    put_newer(
                        &mut inner.parts,
                        (org_id, *b),
                        snap.part_version(*v),
                        p.clone(),
                        weight,
                    );
                    found[i] = Some(p);
                }
            } else {
                let loads = missing.iter().map(|(_, b, v)| {
                    let version = snap.part_version(*v);
                    let org = &org;
                    async move {
                        let p = cache
                            .part_flights
                            .run(((org_id, *b), version), || async {
                                // Stored by a flight that ended since this one was looked up.
                                if let Some((there, hit)) = cache.lock().parts.get(&(org_id, *b)) {
                                    if there == version {
                                        return Ok(hit);
                                    }
                                }
                                let p = load_part(state, org_id, *b, org, today).await?;
                                let weight = p.as_ref().map_or(1, |p| p.weight());
                                put_newer(
                                    &mut cache.lock().parts,
                                    (org_id, *b),
                                    version,
                                    p.clone(),
                                    weight,
                                );
                                Ok(p)
                            })
                            .await?;
                        ApiResult::Ok(p)
                    }
                });
                let loaded = futures_util::future::try_join_all(loads).await?;
                for ((i, _, _), p) in missing.iter().zip(loaded) {
                    found[*i] = Some(p);
                }
            }
            Ok(assemble(found))
        })
        .await
}

/// The inputs of `building` (None: every building) of `org_id`, as of today, from the cache
/// when nothing they are computed from changed since they were loaded. A building's are its
/// full inputs (latest services with outcomes, for its report); NotFound for a building of
/// another organisation.
pub(crate) async fn loaded(
    state: &AppState,
    org_id: Uuid,
    building: Option<Uuid>,
) -> ApiResult<Arc<Loaded>> {
    let today = today();
    let parts = match building {
        Some(b) => vec![report_part(state, org_id, b, today).await?],
        None => {
            // Read before loading: see the module's documentation.
            let versions = state.store.schedule_versions(org_id).await?;
            let snap = Arc::new(Snapshot {
                org_id,
                today,
                versions,
            });
            org_parts(state, snap).await?.as_ref().clone()
        }
    };
    Ok(Arc::new(Loaded { today, parts }))
}

/// Building `id`'s full inputs (latest services with outcomes): what its report, status and
/// schedule share.
async fn report_part(
    state: &AppState,
    org_id: Uuid,
    id: Uuid,
    today: NaiveDate,
) -> ApiResult<Arc<Part>> {
    let (organisation, building) = state.store.building_schedule_versions(org_id, id).await?;
    let version = PartVersion {
        organisation,
        building,
        today,
    };
    report_part_at(state, org_id, id, version).await
}

async fn report_part_at(
    state: &AppState,
    org_id: Uuid,
    id: Uuid,
    version: PartVersion,
) -> ApiResult<Arc<Part>> {
    let cache = &state.schedules;
    if let Some((there, hit)) = cache.lock().reports.get(&(org_id, id)) {
        if there == version {
            return Ok(hit);
        }
    }
    cache
        .report_flights
        .run(((org_id, id), version), || async {
            // Stored by a flight that ended since this one was looked up.
            if let Some((there, hit)) = cache.lock().reports.get(&(org_id, id)) {
                if there == version {
                    return Ok(hit);
                }
            }
            let store = &state.store;
            let (building, org) = tokio::try_join!(
                async { ApiResult::Ok(store.get_building(org_id, id).await?) },
                org_inputs(state, org_id, version.organisation),
            )?;
            let inputs = ScheduleInputs::load(state, org_id, &building, version.today).await?;
            cache.count(state, "report", 1);
            let p = Arc::new(Part {
                rules: crate::rules::for_building(&building, &org.candidates),
                building,
                inputs,
                today: version.today,
                overdue: OnceLock::new(),
            });
            put_newer(
                &mut cache.lock().reports,
                (org_id, id),
                version,
                p.clone(),
                p.weight(),
            );
            Ok(p)
        })
        .await
}

/// The schedule of `building` (None: every building) of `org_id` over `from..=to`, from the
/// cache when nothing changed since it was computed.
pub(crate) async fn computed(
    state: &AppState,
    org_id: Uuid,
    building: Option<Uuid>,
    from: NaiveDate,
    to: NaiveDate,
) -> ApiResult<Arc<Computed>> {
    match building {
        Some(b) => building_computed(state, org_id, b, from, to).await,
        None => org_computed(state, org_id, from, to).await,
    }
}

async fn building_computed(
    state: &AppState,
    org_id: Uuid,
    id: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> ApiResult<Arc<Computed>> {
    let (organisation, building) = state.store.building_schedule_versions(org_id, id).await?;
    let version = PartVersion {
        organisation,
        building,
        today: today(),
    };
    let cache = &state.schedules;
    let key: LinesKey = (org_id, id, from, to, Source::Latest);
    let hit = match cache.lock().lines.get(&key) {
        Some((there, hit)) if there == version => Some(hit),
        _ => None,
    };
    let lines = match hit {
        Some(hit) => hit,
        None => {
            cache
                .lines_flights
                .run((key, version), || async {
                    if let Some((there, hit)) = cache.lock().lines.get(&key) {
                        if there == version {
                            return Ok(hit);
                        }
                    }
                    let part = report_part_at(state, org_id, id, version).await?;
                    let lines = tokio::task::spawn_blocking(move || building_lines(part, from, to))
                        .await
                        .map_err(|e| ApiError::Internal(e.into()))?;
                    cache.count(state, "lines", 1);
                    let lines = Arc::new(lines);
                    let weight = lines.lines.len() + 1;
                    put_newer(&mut cache.lock().lines, key, version, lines.clone(), weight);
                    Ok(lines)
                })
                .await?
        }
    };
    Ok(Arc::new(Computed::merge(vec![lines])))
}

async fn org_computed(
    state: &AppState,
    org_id: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> ApiResult<Arc<Computed>> {
    // Read before loading: see the module's documentation.
    let versions = state.store.schedule_versions(org_id).await?;
    let snap = Arc::new(Snapshot {
        org_id,
        today: today(),
        versions,
    });
    let cache = &state.schedules;
    if let Some((there, hit)) = cache.lock().merged.get(&(org_id, from, to)) {
        if there == snap {
            return Ok(hit);
        }
    }
    cache
        .merged_flights
        .run((snap.clone(), from, to), || async {
            if let Some((there, hit)) = cache.lock().merged.get(&(org_id, from, to)) {
                if there == snap {
                    return Ok(hit);
                }
            }
            let parts = org_parts(state, snap.clone()).await?;
            // Each building's lines: cached under its versions, or computed.
            let mut have: Vec<Option<Arc<BuildingLines>>> = Vec::with_capacity(parts.len());
            {
                let mut inner = cache.lock();
                for p in parts.iter() {
                    let b = p.building.id;
                    let version = snap.versions.buildings.binary_search_by_key(&b, |x| x.0);
                    let version = version.map(|i| snap.part_version(snap.versions.buildings[i].1));
                    have.push(
                        match inner.lines.get(&(org_id, b, from, to, Source::Spans)) {
                            Some((there, hit)) if Ok(there) == version => Some(hit),
                            _ => None,
                        },
                    );
                }
            }
            let work = parts.clone();
            let snap2 = snap.clone();
            // Pure computation: off the async workers.
            let (computed, fresh) = tokio::task::spawn_blocking(move || {
                let mut fresh = Vec::new();
                let all: Vec<Arc<BuildingLines>> = have
                    .into_iter()
                    .zip(work.iter())
                    .map(|(hit, p)| {
                        hit.unwrap_or_else(|| {
                            let l = Arc::new(building_lines(p.clone(), from, to));
                            fresh.push(l.clone());
                            l
                        })
                    })
                    .collect();
                (Computed::merge(all), fresh)
            })
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
            cache.count(
                state,
                "lines",
                u64::try_from(fresh.len()).unwrap_or(u64::MAX),
            );
            cache.count(state, "merge", 1);
            let computed = Arc::new(computed);
            let mut inner = cache.lock();
            for l in fresh {
                let b = l.part.building.id;
                if let Ok(i) = snap2.versions.buildings.binary_search_by_key(&b, |x| x.0) {
                    let weight = l.lines.len() + 1;
                    put_newer(
                        &mut inner.lines,
                        (org_id, b, from, to, Source::Spans),
                        snap2.part_version(snap2.versions.buildings[i].1),
                        l,
                        weight,
                    );
                }
            }
            inner.merged.put(
                (org_id, from, to),
                (snap2, computed.clone()),
                computed.order.len() + 1,
            );
            Ok(computed)
        })
        .await
}

/// Routines overdue today per building of `loaded`, computed off the async workers the first
/// time.
pub(crate) async fn overdue_by_building(loaded: Arc<Loaded>) -> ApiResult<HashMap<Uuid, u32>> {
    tokio::task::spawn_blocking(move || {
        loaded
            .parts
            .iter()
            .map(|p| (p.building.id, p.overdue()))
            .collect()
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))
}
