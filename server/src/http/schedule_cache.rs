//! Schedules computed once and served until their inputs change.
//!
//! What a schedule is computed from (assets, buildings, services, imported and office history,
//! holidays, rules) is versioned per organisation in the database: migration 0020's triggers
//! raise `schedule_versions` in the same transaction as every change to those tables, on
//! every node. A request reads the version first (one indexed read), then looks for what was
//! loaded and computed under that version and today's date; anything else is loaded, computed
//! and kept. Loading after reading the version means a cached entry is never older than its
//! version says, so a change another node commits later always raises the version past it.
//!
//! Two levels: the loaded inputs of a scope (the organisation, or one building), shared by
//! every date range; and the sorted due lines of a scope and range, from which each page is
//! cut. Both are small LRU lists; entries of an older version or day are dropped when a newer
//! one is stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use uuid::Uuid;

use super::compliance::ScheduleInputs;
use super::error::{ApiError, ApiResult};
use crate::compliance::due::{due_lines, DueInputs, DueItem, DueLine};
use crate::domain::schedule::{AnchorSource, Window};
use crate::state::AppState;
use crate::store::buildings::BuildingRecord;
use crate::store::rules::RuleRecord;
use crate::store::Page;

/// Loaded scopes kept (an organisation's is the large one).
const LOADED_ENTRIES: usize = 16;
/// Computed (scope, range) schedules kept.
const COMPUTED_ENTRIES: usize = 32;

/// Which buildings a schedule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct LoadKey {
    org_id: Uuid,
    /// None: every building of the organisation.
    building: Option<Uuid>,
    version: i64,
    today: NaiveDate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ComputeKey {
    load: LoadKey,
    from: NaiveDate,
    to: NaiveDate,
}

/// The inputs of a scope's schedule, by building.
pub(crate) struct Loaded {
    pub buildings: Vec<BuildingRecord>,
    rules: Vec<Vec<RuleRecord>>,
    inputs: Vec<ScheduleInputs>,
    today: NaiveDate,
    /// Routines overdue today, per building (computed on first use).
    overdue: OnceLock<HashMap<Uuid, u32>>,
}

impl Loaded {
    /// The day it was loaded for.
    pub fn today(&self) -> NaiveDate {
        self.today
    }

    /// Building `b`'s record, rules and inputs (a building scope has one, at 0).
    pub fn building(&self, b: usize) -> Option<(&BuildingRecord, &[RuleRecord], &ScheduleInputs)> {
        Some((
            self.buildings.get(b)?,
            self.rules.get(b)?,
            self.inputs.get(b)?,
        ))
    }

    fn due_inputs(&self, b: usize) -> DueInputs<'_> {
        let inputs = &self.inputs[b];
        DueInputs {
            building: &self.buildings[b],
            assets: &inputs.assets,
            rules: &self.rules[b],
            services: &inputs.services,
            history: &inputs.history,
            calendar: &inputs.calendar,
            as_of: self.today,
        }
    }

    /// Routines overdue today per building (what the compliance report counts as
    /// `summary.overdue`): CPU work on first use, run it off the async workers.
    pub fn overdue_by_building(&self) -> &HashMap<Uuid, u32> {
        self.overdue.get_or_init(|| {
            (0..self.buildings.len())
                .map(|b| {
                    let n = due_lines(&self.due_inputs(b), self.today, self.today)
                        .iter()
                        .filter(|l| l.overdue)
                        .count();
                    (self.buildings[b].id, u32::try_from(n).unwrap_or(u32::MAX))
                })
                .collect()
        })
    }
}

/// One due line by index into its [`Loaded`].
struct Line {
    building: u32,
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

/// A scope's schedule over a range, sorted, ready to be cut into pages.
pub(crate) struct Computed {
    loaded: Arc<Loaded>,
    lines: Vec<Line>,
    pub overdue: usize,
    /// Dated lines of the range per month (`YYYY-MM`).
    pub by_month: Vec<(String, u32)>,
}

impl Computed {
    pub fn total(&self) -> usize {
        self.lines.len()
    }

    /// Items `offset..offset + limit`.
    pub fn items(&self, offset: usize, limit: usize) -> Vec<DueItem> {
        self.lines
            .iter()
            .skip(offset)
            .take(limit)
            .map(|l| self.item(l))
            .collect()
    }

    fn item(&self, l: &Line) -> DueItem {
        let b = l.building as usize;
        let building = &self.loaded.buildings[b];
        let asset = &self.loaded.inputs[b].assets[l.asset as usize];
        let rules = &self.loaded.rules[b];
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
}

/// The schedule of every building in `loaded` over `from..=to`, plus what is overdue today:
/// overdue first, then by due date, building name, asset identifier and rule code.
fn compute(loaded: Arc<Loaded>, from: NaiveDate, to: NaiveDate) -> Computed {
    let mut all: Vec<(u32, DueLine<'_>)> = Vec::new();
    for b in 0..loaded.buildings.len() {
        let bi = u32::try_from(b).unwrap_or(u32::MAX);
        all.extend(
            due_lines(&loaded.due_inputs(b), from, to)
                .into_iter()
                .map(|l| (bi, l)),
        );
    }
    all.sort_unstable_by(|(_, a), (_, b)| a.sort_key().cmp(&b.sort_key()));
    let mut months: BTreeMap<(i32, u32), u32> = BTreeMap::new();
    for d in all.iter().filter_map(|(_, l)| l.date) {
        if from <= d && d <= to {
            *months.entry((d.year(), d.month())).or_default() += 1;
        }
    }
    let overdue = all.iter().filter(|(_, l)| l.overdue).count();
    let lines = all
        .iter()
        .map(|(b, l)| {
            let rules = &loaded.rules[*b as usize];
            Line {
                building: *b,
                asset: u32::try_from(l.asset_index).unwrap_or(u32::MAX),
                rule: u32::try_from(l.rule_index).unwrap_or(u32::MAX),
                last_service: l.last_service,
                date: l.date,
                window: l.window,
                overdue: l.overdue,
                anchor: l.anchor,
                includes: l
                    .includes
                    .iter()
                    .filter_map(|code| rules.iter().position(|r| r.code == *code))
                    .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
                    .collect(),
            }
        })
        .collect();
    drop(all);
    Computed {
        loaded,
        lines,
        overdue,
        by_month: months
            .into_iter()
            .map(|((y, m), n)| (format!("{y:04}-{m:02}"), n))
            .collect(),
    }
}

/// The cached schedules of this node.
#[derive(Default)]
pub struct ScheduleCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    loaded: Vec<(LoadKey, Arc<Loaded>)>,
    computed: Vec<(ComputeKey, Arc<Computed>)>,
}

/// Most recently used first; a hit moves to the front.
fn lookup<K: PartialEq + Copy, V>(list: &mut Vec<(K, Arc<V>)>, key: &K) -> Option<Arc<V>> {
    let i = list.iter().position(|(k, _)| k == key)?;
    let entry = list.remove(i);
    let v = entry.1.clone();
    list.insert(0, entry);
    Some(v)
}

impl ScheduleCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves only cached values: keep using them.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store_loaded(&self, key: LoadKey, v: Arc<Loaded>) {
        let mut inner = self.lock();
        let stale = |k: &LoadKey| {
            k.org_id == key.org_id
                && k.building == key.building
                && (k.version, k.today) != (key.version, key.today)
        };
        inner.loaded.retain(|(k, _)| !stale(k));
        inner.computed.retain(|(k, _)| !stale(&k.load));
        inner.loaded.retain(|(k, _)| *k != key);
        inner.loaded.insert(0, (key, v));
        inner.loaded.truncate(LOADED_ENTRIES);
    }

    fn store_computed(&self, key: ComputeKey, v: Arc<Computed>) {
        let mut inner = self.lock();
        inner.computed.retain(|(k, _)| *k != key);
        inner.computed.insert(0, (key, v));
        inner.computed.truncate(COMPUTED_ENTRIES);
    }
}

/// The inputs of the schedule of `building` (None: every building) of `org_id`, as of today,
/// from the cache when nothing changed since they were loaded. NotFound for a building of
/// another organisation.
pub(crate) async fn loaded(
    state: &AppState,
    org_id: Uuid,
    building: Option<Uuid>,
) -> ApiResult<Arc<Loaded>> {
    let key = LoadKey {
        org_id,
        building,
        // Read before loading: see the module's documentation.
        version: state.store.schedule_version(org_id).await?,
        today: Utc::now().date_naive(),
    };
    loaded_at(state, key).await
}

async fn loaded_at(state: &AppState, key: LoadKey) -> ApiResult<Arc<Loaded>> {
    if let Some(hit) = lookup(&mut state.schedules.lock().loaded, &key) {
        return Ok(hit);
    }
    let store = &state.store;
    let org_id = key.org_id;
    let buildings = match key.building {
        Some(id) => vec![store.get_building(org_id, id).await?],
        None => {
            let mut all = Vec::new();
            let mut after = None;
            loop {
                let page = Page { after, limit: 500 };
                let rows = store
                    .list_buildings(org_id, &Default::default(), page)
                    .await?;
                let done = rows.len() < 500;
                after = rows.last().map(|b| b.id);
                all.extend(rows);
                if done {
                    break;
                }
            }
            all
        }
    };
    // Each building's rules come from its pinned editions.
    let candidates = store.edition_rules(org_id, None, None).await?;
    let rules: Vec<Vec<RuleRecord>> = buildings
        .iter()
        .map(|b| crate::rules::for_building(b, &candidates))
        .collect();
    let mut by_building: HashMap<Uuid, ScheduleInputs> = match key.building {
        Some(_) => {
            let mut one = HashMap::new();
            for b in &buildings {
                one.insert(
                    b.id,
                    ScheduleInputs::load(state, org_id, b, key.today).await?,
                );
            }
            one
        }
        None => ScheduleInputs::load_org(state, org_id, &buildings, key.today).await?,
    };
    let inputs = buildings
        .iter()
        .map(|b| {
            by_building.remove(&b.id).unwrap_or_else(|| ScheduleInputs {
                assets: Vec::new(),
                services: Vec::new(),
                history: Vec::new(),
                calendar: Default::default(),
            })
        })
        .collect();
    let loaded = Arc::new(Loaded {
        buildings,
        rules,
        inputs,
        today: key.today,
        overdue: OnceLock::new(),
    });
    state.schedules.store_loaded(key, loaded.clone());
    Ok(loaded)
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
    let load = LoadKey {
        org_id,
        building,
        version: state.store.schedule_version(org_id).await?,
        today: Utc::now().date_naive(),
    };
    let key = ComputeKey { load, from, to };
    if let Some(hit) = lookup(&mut state.schedules.lock().computed, &key) {
        return Ok(hit);
    }
    let loaded = loaded_at(state, load).await?;
    // Pure computation over every building: off the async workers.
    let computed = tokio::task::spawn_blocking(move || Arc::new(compute(loaded, from, to)))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    state.schedules.store_computed(key, computed.clone());
    Ok(computed)
}

/// Routines overdue today per building of `loaded`, computed off the async workers the first
/// time.
pub(crate) async fn overdue_by_building(loaded: Arc<Loaded>) -> ApiResult<HashMap<Uuid, u32>> {
    tokio::task::spawn_blocking(move || loaded.overdue_by_building().clone())
        .await
        .map_err(|e| ApiError::Internal(e.into()))
}
