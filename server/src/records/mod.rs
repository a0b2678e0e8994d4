//! Records owners must keep (AS 1851-2012 Section 1's records, and what the state annual
//! statements ask for), built from the store's rows. Pure: rows and dates in, records out; no
//! I/O, no clock. Renderings are in [`csv`] and [`pdf`].
//!
//! - [`logbook`]: every routine service recorded in a date range (date, routine, asset, who did
//!   it and their licence, who signed the session off, outcome, readings with verdicts,
//!   observed conditions, notes) and the defects found or rectified in it, with their dates.
//! - [`condition_report`]: per system (equipment kind) over a period, usually twelve months:
//!   routines due and how each was kept (on time, late, missed, still pending), outstanding
//!   defects at the period's end, and an overall condition. Signed by a competent person
//!   (stored elsewhere: `store::records`).
//! - [`esm_statement`]: the condition report regrouped by essential safety measure, with each
//!   measure's standard of performance, whether it was serviced per schedule, and its assessor,
//!   for the NSW annual fire safety statement and the Victorian annual essential safety
//!   measures report.
//!
//! Decisions:
//! - A *service* is an item passed or failed (as in `crate::compliance`); `not_accessible`
//!   items are listed in the logbook but are not services.
//! - A service under a longer-interval routine of an asset also counts for its shorter ones (a
//!   yearly service includes the six-monthly checks), as in the compliance report.
//! - A defect is *rectified* when it first reached `repaired` (or `verified` without a recorded
//!   repair); *outstanding* at an instant when its status then was `open`, `acknowledged` or
//!   `repair_scheduled`. Withdrawn, cancelled and duplicate defects are not records of a defect.
//! - Dates are UTC calendar dates, as in the compliance report.

pub mod csv;
pub mod pdf;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::period::{self, Kept};
use crate::domain::schedule::{self, Calendar, Routine};
use crate::store::buildings::{AssetRecord, BuildingRecord};
use crate::store::defects::{DefectEvent, DefectRecord};
use crate::store::records::RecordItemRow;
use crate::store::rules::RuleRecord;
use crate::store::schedule::HistoryRecord;

/// Records are kept this long; nothing that holds them can be deleted sooner.
pub const RETENTION_YEARS: u32 = 7;

/// The building a record is of.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BuildingInfo {
    pub id: Uuid,
    pub name: String,
    pub address: String,
    pub building_type: String,
    /// The rule set it is serviced under, e.g. `AS1851 2012.1.0`.
    pub rule_set: String,
}

impl From<&BuildingRecord> for BuildingInfo {
    fn from(b: &BuildingRecord) -> Self {
        Self {
            id: b.id,
            name: b.name.clone(),
            address: b.address.clone(),
            building_type: b.building_type.clone(),
            rule_set: format!("{} {}", b.rule_set_code, b.rule_set_version),
        }
    }
}

/// A person of the organisation as records name them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub struct PersonRef {
    pub user_id: Uuid,
    /// Full name, or the e-mail address when none is recorded.
    pub name: String,
    /// Licence or accreditation number.
    pub licence: Option<String>,
}

/// What the records are built from.
pub struct Inputs<'a> {
    pub building: &'a BuildingRecord,
    pub assets: &'a [AssetRecord],
    /// The latest rules visible to the organisation.
    pub rules: &'a [RuleRecord],
    /// The organisation's users (names decrypted), to name who did what.
    pub people: &'a [PersonRef],
    /// Recorded items (see `RecordStore::record_items`): for the logbook those of its range;
    /// for the condition report everything up to the period's end (earlier services anchor
    /// the schedule).
    pub items: &'a [RecordItemRow],
    /// Every defect of the building.
    pub defects: &'a [DefectRecord],
    pub events: &'a [DefectEvent],
    /// Services recorded outside sessions (a site's imported history, office entries) up to
    /// the period's end: they count as services in the condition report.
    pub history: &'a [HistoryRecord],
    /// Working days of the building's state.
    pub calendar: &'a Calendar,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The day the period is judged on (`to`, or today when the period is not over).
    pub as_of: NaiveDate,
    pub generated_at: DateTime<Utc>,
}

impl Inputs<'_> {
    fn person(&self, id: Option<Uuid>) -> Option<PersonRef> {
        let id = id?;
        Some(
            self.people
                .iter()
                .find(|p| p.user_id == id)
                .cloned()
                .unwrap_or(PersonRef {
                    user_id: id,
                    name: format!("user {id}"),
                    licence: None,
                }),
        )
    }

    fn rule(&self, code: &str) -> Option<&RuleRecord> {
        self.rules.iter().find(|r| r.code == code)
    }
}

fn recorded(item: &RecordItemRow) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&item.recorded_at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn in_range(t: DateTime<Utc>, from: NaiveDate, to: NaiveDate) -> bool {
    let d = t.date_naive();
    from <= d && d <= to
}

/// The equipment kind's name in the rule library, or the kind itself.
fn kind_name(kind: &str) -> String {
    crate::rules::library()
        .equipment_kind(kind)
        .map(|k| k.name.clone())
        .unwrap_or_else(|| kind.replace('_', " "))
}

// ---------------------------------------------------------------------------------------------
// Logbook

/// A reading as recorded, with its verdict.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoggedReading {
    pub name: String,
    #[schema(value_type = Object)]
    pub value: Value,
    pub unit: Option<String>,
    /// `within`, `outside`, `no_baseline`, `no_design_value` or `not_evaluated`.
    pub verdict: String,
    /// The expectation in words.
    pub expected: Option<String>,
}

/// A session's sign-off.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignOff {
    pub by: PersonRef,
    /// The licence recorded at sign-off.
    pub licence: String,
    pub at: DateTime<Utc>,
}

/// One routine service (or a visit that found the asset not accessible).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogbookEntry {
    pub date: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    /// `session` (a result of a test session), `import` (a site's history brought by the CSV
    /// import) or `office` (a service entered by the office for an asset).
    pub source: String,
    /// The session, for `session` entries.
    pub session_id: Option<Uuid>,
    /// The session's name; empty for services recorded outside a session.
    pub session_name: String,
    pub asset_id: String,
    pub identifier: Option<String>,
    pub asset_type: String,
    pub equipment: String,
    pub location: String,
    pub rule_code: Option<String>,
    pub rule_name: Option<String>,
    pub rule_version: Option<String>,
    pub frequency: Option<String>,
    /// `pass`, `fail` or `not_accessible`.
    pub outcome: String,
    pub classification: Option<String>,
    pub observed_conditions: Vec<String>,
    pub readings: Vec<LoggedReading>,
    pub notes: String,
    /// Who recorded the result, with the licence number on their user.
    pub performed_by: Option<PersonRef>,
    /// Who signed the session off (none while it is in progress).
    pub signed_off: Option<SignOff>,
}

/// A defect found or rectified in the range (or outstanding through it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogbookDefect {
    pub id: Uuid,
    pub title: String,
    pub severity: String,
    pub status: String,
    pub asset_id: Option<Uuid>,
    pub identifier: Option<String>,
    pub asset_type: Option<String>,
    pub location: Option<String>,
    pub rule_code: Option<String>,
    pub observed_condition: Option<String>,
    pub found_at: DateTime<Utc>,
    pub notify_by: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// When it was first repaired (or verified without a recorded repair).
    pub rectified_at: Option<DateTime<Utc>>,
    pub verified_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct LogbookSummary {
    pub sessions: u32,
    pub services: u32,
    pub passed: u32,
    pub failed: u32,
    pub not_accessible: u32,
    pub defects_found: u32,
    pub defects_rectified: u32,
}

/// The building logbook for a date range.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Logbook {
    pub building: BuildingInfo,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub generated_at: DateTime<Utc>,
    pub summary: LogbookSummary,
    /// Oldest first.
    pub entries: Vec<LogbookEntry>,
    /// By the date found.
    pub defects: Vec<LogbookDefect>,
}

fn reading_list(item: &RecordItemRow) -> Vec<LoggedReading> {
    let assessed = item.assessment.0.get("readings").and_then(Value::as_object);
    let raw = item.readings.0.as_object();
    let mut names: BTreeSet<&String> = BTreeSet::new();
    names.extend(assessed.into_iter().flat_map(|m| m.keys()));
    names.extend(raw.into_iter().flat_map(|m| m.keys()));
    names
        .into_iter()
        .map(|name| {
            let a = assessed.and_then(|m| m.get(name));
            let text = |v: Option<&Value>, k: &str| {
                v.and_then(|v| v.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            LoggedReading {
                name: name.clone(),
                value: a
                    .and_then(|a| a.get("value"))
                    .or_else(|| raw.and_then(|m| m.get(name)))
                    .cloned()
                    .unwrap_or(Value::Null),
                unit: text(a, "unit").filter(|u| !u.is_empty()),
                verdict: text(a, "verdict").unwrap_or_else(|| "not_evaluated".into()),
                expected: text(a, "expected").filter(|e| !e.is_empty()),
            }
        })
        .collect()
}

/// A reading in words: `water_supply_pressure 480 kPa (within: >= 90% of baseline 500)`.
pub fn reading_text(r: &LoggedReading) -> String {
    let value = match &r.value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let unit = r
        .unit
        .as_deref()
        .map(|u| format!(" {u}"))
        .unwrap_or_default();
    format!("{} {value}{unit} ({})", r.name, r.verdict.replace('_', " "))
}

/// When (if) something happened.
type When = Option<DateTime<Utc>>;

/// When a defect was first repaired (or verified without a repair), verified and closed.
fn defect_dates(id: Uuid, events: &[&DefectEvent]) -> (When, When, When) {
    let first = |to: &str| {
        events
            .iter()
            .filter(|e| e.defect_id == id && e.to_status == to)
            .map(|e| e.at)
            .min()
    };
    let verified = first("verified");
    (first("repaired").or(verified), verified, first("closed"))
}

/// A defect's status at `t` from its events (before its first event: open).
fn status_at(d: &DefectRecord, events: &[&DefectEvent], t: DateTime<Utc>) -> Option<String> {
    if d.discovered_at > t {
        return None;
    }
    Some(
        events
            .iter()
            .filter(|e| e.defect_id == d.id && e.at <= t)
            .max_by_key(|e| (e.at, e.id))
            .map_or_else(|| "open".to_owned(), |e| e.to_status.clone()),
    )
}

fn outstanding(status: &str) -> bool {
    matches!(status, "open" | "acknowledged" | "repair_scheduled")
}

fn not_a_defect(status: &str) -> bool {
    matches!(status, "withdrawn" | "cancelled" | "duplicate")
}

/// The last instant of a day.
fn end_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_milli_opt(23, 59, 59, 999)
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

pub fn logbook(input: &Inputs<'_>) -> Logbook {
    let assets: HashMap<String, &AssetRecord> =
        input.assets.iter().map(|a| (a.id.to_string(), a)).collect();
    let mut entries = Vec::new();
    let mut summary = LogbookSummary::default();
    let mut sessions = BTreeSet::new();
    for item in input.items {
        let Some(at) = recorded(item) else { continue };
        if !in_range(at, input.from, input.to) {
            continue;
        }
        let asset = assets.get(&item.asset_id);
        let rule = item.rule_code.as_deref().and_then(|c| input.rule(c));
        sessions.insert(item.session_id);
        match item.outcome.as_str() {
            "pass" => summary.passed += 1,
            "fail" => summary.failed += 1,
            _ => summary.not_accessible += 1,
        }
        let asset_type = asset.map_or_else(|| "unknown".to_owned(), |a| a.asset_type.clone());
        entries.push(LogbookEntry {
            date: at.date_naive(),
            recorded_at: at,
            source: "session".into(),
            session_id: Some(item.session_id),
            session_name: item.session_name.clone(),
            asset_id: item.asset_id.clone(),
            identifier: asset.and_then(|a| a.identifier.clone()),
            equipment: kind_name(&asset_type),
            asset_type,
            location: asset.map(|a| a.location.clone()).unwrap_or_default(),
            rule_code: item.rule_code.clone(),
            rule_name: rule.map(|r| r.name.clone()),
            rule_version: item.rule_version.clone(),
            frequency: rule
                .map(|r| r.frequency.clone())
                .or_else(|| Some(item.session_frequency.clone())),
            outcome: item.outcome.clone(),
            classification: item.classification.clone(),
            observed_conditions: item.observed_conditions.0.clone(),
            readings: reading_list(item),
            notes: item.notes.clone(),
            performed_by: input.person(item.recorded_by.as_deref().and_then(|s| s.parse().ok())),
            signed_off: match (
                item.signed_off_by,
                &item.signed_off_licence,
                item.signed_off_at,
            ) {
                (Some(by), Some(licence), Some(at)) => input.person(Some(by)).map(|by| SignOff {
                    by,
                    licence: licence.clone(),
                    at,
                }),
                _ => None,
            },
        });
    }
    // Services recorded outside sessions (a site's imported history, office entries): dated
    // by the day of the service; who performed them is not known to the server.
    for h in input.history {
        if !(input.from <= h.serviced_on && h.serviced_on <= input.to) {
            continue;
        }
        let asset_id = h.asset_id.to_string();
        let asset = assets.get(&asset_id);
        let rule = input.rule(&h.rule_code);
        match h.outcome.as_str() {
            "fail" => summary.failed += 1,
            _ => summary.passed += 1,
        }
        let asset_type = asset.map_or_else(|| "unknown".to_owned(), |a| a.asset_type.clone());
        entries.push(LogbookEntry {
            date: h.serviced_on,
            recorded_at: h.created_at,
            source: h.source.clone(),
            session_id: None,
            session_name: String::new(),
            asset_id,
            identifier: asset.and_then(|a| a.identifier.clone()),
            equipment: kind_name(&asset_type),
            asset_type,
            location: asset.map(|a| a.location.clone()).unwrap_or_default(),
            rule_code: Some(h.rule_code.clone()),
            rule_name: rule.map(|r| r.name.clone()),
            rule_version: None,
            frequency: rule.map(|r| r.frequency.clone()),
            outcome: h.outcome.clone(),
            classification: None,
            observed_conditions: Vec::new(),
            readings: Vec::new(),
            notes: h.note.clone().unwrap_or_default(),
            performed_by: None,
            signed_off: None,
        });
    }
    entries.sort_by(|a, b| {
        (a.date, a.recorded_at, &a.identifier, &a.asset_id).cmp(&(
            b.date,
            b.recorded_at,
            &b.identifier,
            &b.asset_id,
        ))
    });
    summary.sessions = sessions.len() as u32;
    summary.services = summary.passed + summary.failed;

    let events: Vec<&DefectEvent> = input.events.iter().collect();
    let mut defects = Vec::new();
    for d in input.defects {
        if not_a_defect(&d.status) {
            continue;
        }
        let (rectified_at, verified_at, closed_at) = defect_dates(d.id, &events);
        let found_in = in_range(d.discovered_at, input.from, input.to);
        let rectified_in = rectified_at.is_some_and(|t| in_range(t, input.from, input.to));
        let open_through = d.discovered_at.date_naive() <= input.to
            && rectified_at.is_none_or(|t| t.date_naive() >= input.from);
        if !(found_in || rectified_in || open_through) {
            continue;
        }
        summary.defects_found += u32::from(found_in);
        summary.defects_rectified += u32::from(rectified_in);
        defects.push(LogbookDefect {
            id: d.id,
            title: d.title.clone(),
            severity: d.severity.clone(),
            status: d.status.clone(),
            asset_id: d.asset_id,
            identifier: d.asset_identifier.clone(),
            asset_type: d.asset_type.clone(),
            location: d.asset_location.clone(),
            rule_code: d.rule_code.clone(),
            observed_condition: d.observed_condition.clone(),
            found_at: d.discovered_at,
            notify_by: d.notify_by,
            acknowledged_at: d.acknowledged_at,
            rectified_at,
            verified_at,
            closed_at,
        });
    }
    defects.sort_by_key(|d| (d.found_at, d.id));
    Logbook {
        building: input.building.into(),
        from: input.from,
        to: input.to,
        generated_at: input.generated_at,
        summary,
        entries,
        defects,
    }
}

// ---------------------------------------------------------------------------------------------
// Yearly condition report

/// A system's condition over the period, by precedence (`Ord`: later is worse).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Every routine due was done on time and no defect is outstanding.
    Satisfactory,
    /// Non-critical defects or non-conformances outstanding, or routines done late.
    AttentionRequired,
    /// A routine due in the period was not done.
    ServicesMissed,
    /// A critical defect is outstanding: the system may not perform (cl. 1.5.6).
    CriticalDefect,
}

impl Condition {
    pub fn label(self) -> &'static str {
        match self {
            Self::Satisfactory => "Satisfactory",
            Self::AttentionRequired => "Attention required",
            Self::ServicesMissed => "Services missed",
            Self::CriticalDefect => "Critical defect outstanding",
        }
    }
}

/// Routines due in the period, by how they were kept.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct DueCounts {
    pub due: u32,
    pub on_time: u32,
    pub late: u32,
    pub missed: u32,
    pub pending: u32,
}

impl DueCounts {
    fn add(&mut self, k: Kept) {
        self.due += 1;
        match k {
            Kept::OnTime => self.on_time += 1,
            Kept::Late => self.late += 1,
            Kept::Missed => self.missed += 1,
            Kept::Pending => self.pending += 1,
        }
    }

    fn merge(&mut self, o: &DueCounts) {
        self.due += o.due;
        self.on_time += o.on_time;
        self.late += o.late;
        self.missed += o.missed;
        self.pending += o.pending;
    }
}

/// A scheduled date not kept on time (late, missed, or still pending).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DueException {
    pub asset_id: Uuid,
    pub identifier: Option<String>,
    pub location: String,
    pub rule_code: String,
    pub rule_name: String,
    pub frequency: String,
    pub due: NaiveDate,
    /// The last day of its tolerance window.
    pub due_by: NaiveDate,
    pub done: Option<NaiveDate>,
    pub kept: Kept,
}

/// A defect outstanding at the period's end.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutstandingDefect {
    pub id: Uuid,
    pub title: String,
    pub severity: String,
    /// Its status at the period's end.
    pub status: String,
    pub identifier: Option<String>,
    pub location: Option<String>,
    pub found_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct SeverityCounts {
    pub critical: u32,
    pub non_critical: u32,
    pub non_conformance: u32,
}

impl SeverityCounts {
    fn add(&mut self, severity: &str) {
        match severity {
            "critical" => self.critical += 1,
            "non_critical" => self.non_critical += 1,
            _ => self.non_conformance += 1,
        }
    }

    pub fn total(&self) -> u32 {
        self.critical + self.non_critical + self.non_conformance
    }
}

/// One system (equipment kind) of the building over the period.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SystemReport {
    /// The equipment kind, e.g. `sprinkler_system`.
    pub kind: String,
    pub name: String,
    /// The standards its routines are from (the rules' `standard`).
    pub standards: Vec<String>,
    pub assets: u32,
    pub routines: DueCounts,
    /// Visits that found an asset not accessible.
    pub not_accessible: u32,
    pub last_serviced: Option<NaiveDate>,
    pub outstanding: SeverityCounts,
    pub condition: Condition,
    /// Late, missed and pending dates, by due date.
    pub exceptions: Vec<DueException>,
    pub defects: Vec<OutstandingDefect>,
}

/// The yearly condition report (AS 1851-2012 cl. 1.17 style) of a building.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConditionReport {
    pub building: BuildingInfo,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    /// The day it was judged on (the period's end, or the day it was made if earlier).
    pub as_of: NaiveDate,
    pub generated_at: DateTime<Utc>,
    /// The worst system condition (or critical for a building-level critical defect).
    pub condition: Condition,
    pub routines: DueCounts,
    pub outstanding: SeverityCounts,
    /// In the library's order of equipment kinds (unknown kinds last).
    pub systems: Vec<SystemReport>,
    /// Outstanding defects not tied to an asset.
    pub building_defects: Vec<OutstandingDefect>,
}

fn outstanding_defects(input: &Inputs<'_>) -> Vec<(Option<Uuid>, OutstandingDefect)> {
    let end = end_of(input.to);
    let events: Vec<&DefectEvent> = input.events.iter().collect();
    let mut out: Vec<(Option<Uuid>, OutstandingDefect)> = input
        .defects
        .iter()
        .filter_map(|d| {
            let status = status_at(d, &events, end)?;
            outstanding(&status).then(|| {
                (
                    d.asset_id,
                    OutstandingDefect {
                        id: d.id,
                        title: d.title.clone(),
                        severity: d.severity.clone(),
                        status,
                        identifier: d.asset_identifier.clone(),
                        location: d.asset_location.clone(),
                        found_at: d.discovered_at,
                    },
                )
            })
        })
        .collect();
    out.sort_by_key(|(_, d)| {
        (
            crate::domain::defects::Severity::parse(&d.severity),
            d.found_at,
        )
    });
    out
}

pub fn condition_report(input: &Inputs<'_>) -> ConditionReport {
    let lib = crate::rules::library();
    let cal = input.calendar;
    // Services (pass/fail) per (asset, rule code), and not-accessible visits per asset, up to
    // the judging day.
    let mut services: HashMap<(String, &str), Vec<NaiveDate>> = HashMap::new();
    for h in input.history {
        if h.serviced_on <= input.as_of {
            services
                .entry((h.asset_id.to_string(), h.rule_code.as_str()))
                .or_default()
                .push(h.serviced_on);
        }
    }
    let mut inaccessible: HashMap<&str, u32> = HashMap::new();
    for item in input.items {
        let Some(at) = recorded(item) else { continue };
        let day = at.date_naive();
        if day > input.as_of {
            continue;
        }
        match (item.outcome.as_str(), item.rule_code.as_deref()) {
            ("pass" | "fail", Some(code)) => services
                .entry((item.asset_id.clone(), code))
                .or_default()
                .push(day),
            ("not_accessible", _) if day >= input.from => {
                *inaccessible.entry(item.asset_id.as_str()).or_default() += 1;
            }
            _ => {}
        }
    }
    let defects = outstanding_defects(input);
    let kind_of: HashMap<Uuid, &str> = input
        .assets
        .iter()
        .map(|a| (a.id, a.asset_type.as_str()))
        .collect();

    let mut systems: BTreeMap<(usize, String), SystemReport> = BTreeMap::new();
    let order = |kind: &str| {
        lib.equipment
            .iter()
            .position(|k| k.kind == kind)
            .unwrap_or(usize::MAX)
    };
    for asset in input.assets {
        let kind = asset.asset_type.clone();
        let sys = systems
            .entry((order(&kind), kind.clone()))
            .or_insert_with(|| SystemReport {
                name: kind_name(&kind),
                kind,
                standards: Vec::new(),
                assets: 0,
                routines: DueCounts::default(),
                not_accessible: 0,
                last_serviced: None,
                outstanding: SeverityCounts::default(),
                condition: Condition::Satisfactory,
                exceptions: Vec::new(),
                defects: Vec::new(),
            });
        sys.assets += 1;
        let id = asset.id.to_string();
        sys.not_accessible += inaccessible.get(id.as_str()).copied().unwrap_or(0);
        let mut applicable: Vec<(&RuleRecord, Routine)> = input
            .rules
            .iter()
            .filter(|r| crate::domain::applicability::applies(&asset.facts(), &r.facts()))
            .filter_map(|r| {
                let f = lib.any_frequency(&r.frequency)?;
                Some((
                    r,
                    Routine {
                        months: f.months,
                        days: f.days.unwrap_or(0),
                        tolerance: f.tolerance,
                    },
                ))
            })
            .collect();
        applicable
            .sort_by(|a, b| (a.1.length_days(), &a.0.code).cmp(&(b.1.length_days(), &b.0.code)));
        for (rule, routine) in &applicable {
            if !sys.standards.contains(&rule.standard) {
                sys.standards.push(rule.standard.clone());
            }
            let days: Vec<NaiveDate> = applicable
                .iter()
                .filter(|(other, r)| other.code == rule.code || r.months > routine.months)
                .filter_map(|(other, _)| services.get(&(id.clone(), other.code.as_str())))
                .flatten()
                .copied()
                .collect();
            if let Some(last) = days.iter().filter(|d| **d >= input.from).max() {
                sys.last_serviced = sys.last_serviced.max(Some(*last));
            }
            let anchor = schedule::anchor(
                asset.schedule_anchor,
                input.building.schedule_anchor,
                days.iter().min().copied(),
                asset.install_date,
            );
            for o in period::occurrences(
                *routine,
                anchor,
                &days,
                input.from,
                input.to,
                input.as_of,
                cal,
            ) {
                sys.routines.add(o.kept);
                if o.kept != Kept::OnTime {
                    sys.exceptions.push(DueException {
                        asset_id: asset.id,
                        identifier: asset.identifier.clone(),
                        location: asset.location.clone(),
                        rule_code: rule.code.clone(),
                        rule_name: rule.name.clone(),
                        frequency: rule.frequency.clone(),
                        due: o.due,
                        due_by: o.due_by,
                        done: o.done,
                        kept: o.kept,
                    });
                }
            }
        }
    }
    let mut building_defects = Vec::new();
    let mut outstanding_all = SeverityCounts::default();
    for (asset, d) in defects {
        outstanding_all.add(&d.severity);
        let sys = asset
            .and_then(|a| kind_of.get(&a))
            .and_then(|kind| systems.get_mut(&(order(kind), (*kind).to_owned())));
        match sys {
            Some(sys) => {
                sys.outstanding.add(&d.severity);
                sys.defects.push(d);
            }
            None => building_defects.push(d),
        }
    }
    let mut routines = DueCounts::default();
    let mut worst = if building_defects.iter().any(|d| d.severity == "critical") {
        Condition::CriticalDefect
    } else if building_defects.is_empty() {
        Condition::Satisfactory
    } else {
        Condition::AttentionRequired
    };
    let systems: Vec<SystemReport> = systems
        .into_values()
        .map(|mut s| {
            s.exceptions
                .sort_by(|a, b| (a.due, &a.identifier).cmp(&(b.due, &b.identifier)));
            s.condition = if s.outstanding.critical > 0 {
                Condition::CriticalDefect
            } else if s.routines.missed > 0 {
                Condition::ServicesMissed
            } else if s.routines.late > 0 || s.outstanding.total() > 0 {
                Condition::AttentionRequired
            } else {
                Condition::Satisfactory
            };
            routines.merge(&s.routines);
            worst = worst.max(s.condition);
            s
        })
        .collect();
    ConditionReport {
        building: input.building.into(),
        period_start: input.from,
        period_end: input.to,
        as_of: input.as_of,
        generated_at: input.generated_at,
        condition: worst,
        routines,
        outstanding: outstanding_all,
        systems,
        building_defects,
    }
}

/// The statement a competent person signs when none is given.
pub const DEFAULT_STATEMENT: &str = "I have reviewed the routine service records of the fire \
     protection systems and equipment of this building for the period shown. To the best of my \
     knowledge the systems were serviced as recorded in this report, their condition is as \
     stated, and the defects listed were outstanding at the end of the period.";

/// A signed condition report: the report as it was when signed, and the signature.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignedConditionReport {
    pub id: Uuid,
    pub version: i32,
    /// The earlier version this one replaces.
    pub supersedes: Option<Uuid>,
    /// A later version that replaces this one.
    pub superseded_by: Option<Uuid>,
    pub statement: String,
    /// The competent person: name and licence as they were when signing.
    pub signed_by: PersonRef,
    pub signed_at: DateTime<Utc>,
    pub report: ConditionReport,
}

// ---------------------------------------------------------------------------------------------
// Essential safety measures

/// The measure an equipment kind belongs to in the state schedules of essential safety
/// measures (names as the NSW and Victorian forms list them, in our words).
pub fn measure_of(kind: &str) -> String {
    match kind {
        "sprinkler_system" => "Automatic fire suppression systems (sprinklers)",
        "fire_pumpset" => "Fire pumps (sprinkler and hydrant pumpsets)",
        "fire_hydrant_system" => "Fire hydrant systems",
        "water_storage_tank" => "Fire water storage tanks",
        "fire_detection_alarm" => "Automatic fire detection and alarm systems",
        "special_hazard_system" => "Special hazard suppression systems",
        "lay_flat_hose" => "Fire hydrant lay-flat hoses",
        "fire_hose_reel" => "Fire hose reels",
        "portable_extinguisher" | "wheeled_extinguisher" => {
            "Portable and wheeled fire extinguishers"
        }
        "fire_blanket" => "Fire blankets",
        "fire_door" | "sliding_fire_door" => "Fire doors",
        "smoke_door" => "Smoke doors",
        "smoke_control_mechanical" => "Mechanical air handling and smoke control systems",
        "emergency_lighting" => "Emergency lighting",
        "exit_sign" => "Exit signs",
        other => return kind_name(other),
    }
    .to_owned()
}

/// One essential safety measure over the period.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EsmMeasure {
    pub measure: String,
    /// The equipment kinds it covers (library names).
    pub equipment: Vec<String>,
    /// The standard of performance its routine service is measured against.
    pub standard_of_performance: String,
    pub assets: u32,
    pub routines: DueCounts,
    /// Every routine due in the period was done within its tolerance.
    pub serviced_per_schedule: bool,
    pub last_serviced: Option<NaiveDate>,
    pub outstanding: SeverityCounts,
    pub condition: Condition,
    /// Who signed off (or, unsigned, recorded) its latest service in the period.
    pub assessor: Option<PersonRef>,
    /// Everyone who serviced it in the period.
    pub assessors: Vec<PersonRef>,
}

/// What the annual statements (NSW annual fire safety statement, Victorian annual essential
/// safety measures report) need about each measure.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EsmStatement {
    pub building: BuildingInfo,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub generated_at: DateTime<Utc>,
    /// The statements this export supports.
    pub statements: Vec<String>,
    pub measures: Vec<EsmMeasure>,
    /// The competent person who signed the building's condition report for a period ending in
    /// this one (the latest version), if any.
    pub assessor: Option<PersonRef>,
    pub condition_report_id: Option<Uuid>,
}

pub fn esm_statement(
    report: &ConditionReport,
    logbook: &Logbook,
    signed: Option<(&PersonRef, Uuid)>,
) -> EsmStatement {
    let mut measures: Vec<EsmMeasure> = Vec::new();
    for sys in &report.systems {
        let name = measure_of(&sys.kind);
        let entries: Vec<&LogbookEntry> = logbook
            .entries
            .iter()
            .filter(|e| e.asset_type == sys.kind && e.outcome != "not_accessible")
            .collect();
        let idx = match measures.iter().position(|m| m.measure == name) {
            Some(i) => i,
            None => {
                measures.push(EsmMeasure {
                    measure: name,
                    equipment: Vec::new(),
                    standard_of_performance: String::new(),
                    assets: 0,
                    routines: DueCounts::default(),
                    serviced_per_schedule: true,
                    last_serviced: None,
                    outstanding: SeverityCounts::default(),
                    condition: Condition::Satisfactory,
                    assessor: None,
                    assessors: Vec::new(),
                });
                measures.len() - 1
            }
        };
        let m = &mut measures[idx];
        m.equipment.push(sys.name.clone());
        for s in &sys.standards {
            if !m.standard_of_performance.contains(s.as_str()) {
                if !m.standard_of_performance.is_empty() {
                    m.standard_of_performance.push_str("; ");
                }
                m.standard_of_performance.push_str(s);
            }
        }
        m.assets += sys.assets;
        m.routines.merge(&sys.routines);
        m.serviced_per_schedule = m.routines.missed == 0 && m.routines.late == 0;
        m.last_serviced = m.last_serviced.max(sys.last_serviced);
        m.outstanding.critical += sys.outstanding.critical;
        m.outstanding.non_critical += sys.outstanding.non_critical;
        m.outstanding.non_conformance += sys.outstanding.non_conformance;
        m.condition = m.condition.max(sys.condition);
        for e in &entries {
            for p in [
                e.performed_by.as_ref(),
                e.signed_off.as_ref().map(|s| &s.by),
            ]
            .into_iter()
            .flatten()
            {
                if !m.assessors.contains(p) {
                    m.assessors.push(p.clone());
                }
            }
        }
        m.assessors.sort();
    }
    for m in &mut measures {
        let latest = logbook
            .entries
            .iter()
            .filter(|e| e.outcome != "not_accessible" && measure_of(&e.asset_type) == m.measure)
            .max_by_key(|e| e.recorded_at);
        m.assessor = latest.and_then(|e| {
            e.signed_off
                .as_ref()
                .map(|s| PersonRef {
                    licence: Some(s.licence.clone()),
                    ..s.by.clone()
                })
                .or_else(|| e.performed_by.clone())
        });
    }
    EsmStatement {
        building: report.building.clone(),
        period_start: report.period_start,
        period_end: report.period_end,
        generated_at: report.generated_at,
        statements: vec![
            "NSW annual fire safety statement (each essential fire safety measure, its standard \
             of performance, assessed by a competent fire safety practitioner)"
                .into(),
            "Victorian annual essential safety measures report (each essential safety measure \
             maintained to its required level of performance over the year)"
                .into(),
        ],
        measures,
        assessor: signed.map(|(p, _)| p.clone()),
        condition_report_id: signed.map(|(_, id)| id),
    }
}

#[cfg(test)]
mod tests;
