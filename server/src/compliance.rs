//! The compliance report of a building: for each asset and each rule that applies to it, when
//! it was last serviced and with what outcome, when it is next due, whether the last service
//! kept to the interval tolerance of AS 1851 cl. 1.11, and its open defects; plus an overall
//! status. The records of cl. 1.16-1.17 (summary record, yearly condition report) are built
//! from it.
//!
//! Pure: the store's rows and the report date in, the report out. No I/O, no clock. The CSV
//! and PDF renderings are in [`csv`] and [`pdf`].
//!
//! Decisions, in one place:
//! - A *service* is a projected item whose outcome is `pass` or `fail` (a failed check was
//!   still carried out; its defect is tracked on its own). `not_tested` and `not_accessible`
//!   items are not services: AS 1851 reports inaccessible equipment as not serviced.
//! - Routine service schedules are cumulative: a yearly service includes the six-monthly
//!   activities (the shipped rules say "carry out the six-monthly checks, then ..."). So a
//!   service under a longer-interval rule of the asset also counts for its shorter-interval
//!   rules; `serviced_under` names the rule it was recorded under.
//! - Two services on one (UTC) day count as one visit, so a six-monthly and a yearly session on
//!   the same visit do not make a zero-day interval.
//! - Due dates and tolerance are `crate::domain::schedule`'s: each routine has a grid (anchor +
//!   k × interval) anchored on the asset's anchor, else the building's, else the first service
//!   known (from sessions or imported history), else the install date; a service inside the
//!   tolerance window of a scheduled date meets it (no drift), one outside every window is
//!   reported as outside tolerance and the grid stays; windows are the standard's table
//!   (working days — skipping the building's state's public holidays — for monthly and
//!   three-monthly routines, months for longer ones). Nothing to anchor on: due now. Overdue
//!   when the report date is past the next due date's window.
//! - Services recorded outside sessions (a site's imported history) count like session
//!   services; they carry an outcome but no readings or session.
//! - Dates are UTC calendar dates: buildings carry no time zone yet.

pub mod csv;
pub mod due;
pub mod pdf;

use std::collections::HashMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::holidays;
use crate::domain::schedule::{self, Routine};
use crate::store::buildings::{AssetRecord, BuildingRecord};
use crate::store::reports::{DefectCountRow, ServiceRow};
use crate::store::rules::RuleRecord;
use crate::store::schedule::{HistoryRecord, HolidayRow};

/// Services fetched per (asset, rule code): two make an interval, a third stands in when two
/// of them fell on one day.
pub const SERVICES_PER_RULE: i64 = 3;

/// The status of a row and of the building, by precedence (`Ord`: later is worse):
/// `critical_defect` (an open critical defect: a system may be inoperative, cl. 1.5.6) >
/// `overdue` (a routine service is late or was never done) > `defects_open` (open
/// non-critical defects or non-conformances) > `compliant`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Compliant,
    DefectsOpen,
    Overdue,
    CriticalDefect,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compliant => "compliant",
            Self::DefectsOpen => "defects_open",
            Self::Overdue => "overdue",
            Self::CriticalDefect => "critical_defect",
        }
    }
}

/// Open defects by severity (AS 1851 cl. 1.5.6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct DefectCounts {
    pub critical: u32,
    pub non_critical: u32,
    pub non_conformance: u32,
}

impl DefectCounts {
    pub fn total(&self) -> u32 {
        self.critical + self.non_critical + self.non_conformance
    }

    /// Count `n` more defects of `severity`.
    pub(crate) fn add(&mut self, severity: &str, n: u32) {
        match severity {
            "critical" => self.critical += n,
            "non_critical" => self.non_critical += n,
            // The column's CHECK allows nothing else.
            _ => self.non_conformance += n,
        }
    }

    /// What these defects alone make of a status.
    fn status(&self) -> Status {
        if self.critical > 0 {
            Status::CriticalDefect
        } else if self.total() > 0 {
            Status::DefectsOpen
        } else {
            Status::Compliant
        }
    }
}

/// A building's overall status from its active defects and the number of its routines
/// overdue: what [`build`] makes the report's `status`.
pub fn overall_status(defects: &DefectCounts, overdue: u32) -> Status {
    defects.status().max(if overdue > 0 {
        Status::Overdue
    } else {
        Status::Compliant
    })
}

/// One asset under one applicable rule (or, for an asset no active rule applies to, one row
/// with the rule fields empty).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportRow {
    pub asset_id: Uuid,
    pub identifier: Option<String>,
    pub asset_type: String,
    pub location: String,
    pub rule_code: Option<String>,
    pub rule_name: Option<String>,
    pub frequency: Option<String>,
    /// When the last service was recorded.
    pub last_service: Option<DateTime<Utc>>,
    /// The rule the last service was recorded under: this row's, or a longer-interval rule of
    /// the asset whose service includes this one.
    pub serviced_under: Option<String>,
    pub last_session_id: Option<Uuid>,
    /// `pass` or `fail`.
    pub outcome: Option<String>,
    /// The last service's classification from the rule library.
    pub classification: Option<String>,
    /// What the last service's readings suggested (`pass` or `fail`), if anything.
    pub suggested_outcome: Option<String>,
    /// The last service's recorded outcome differs from what its readings suggested.
    pub overrides_suggestion: bool,
    /// The service before the last one (another day).
    pub previous_service: Option<DateTime<Utc>>,
    /// Days between the previous and the last service.
    pub interval_days: Option<i64>,
    /// The scheduled date the last service met (its window held it); none when it was outside
    /// tolerance.
    pub scheduled_for: Option<NaiveDate>,
    /// The last service fell outside the tolerance window (AS 1851 cl. 1.11) of every
    /// scheduled date.
    pub outside_tolerance: bool,
    pub next_due: Option<NaiveDate>,
    /// The last day of the tolerance window after `next_due`.
    pub due_by: Option<NaiveDate>,
    pub overdue: bool,
    /// Date zero of this routine's grid (due dates are anchor + k × interval).
    pub anchor: Option<NaiveDate>,
    /// Where the anchor came from: the asset, the building, the first service known, or the
    /// install date.
    pub anchor_source: Option<schedule::AnchorSource>,
    /// The asset's open defects (all rules).
    pub open_defects: DefectCounts,
    pub status: Status,
}

/// Rows per status.
#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema)]
pub struct StatusCounts {
    pub compliant: u32,
    pub defects_open: u32,
    pub overdue: u32,
    pub critical_defect: u32,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Summary {
    pub assets: u32,
    /// Assets no active rule applies to (an unknown type, or only inactive listed codes).
    pub assets_without_rules: u32,
    /// (asset, rule) pairs.
    pub checks: u32,
    pub serviced: u32,
    pub never_serviced: u32,
    pub overdue: u32,
    pub outside_tolerance: u32,
    /// Checks whose last service failed.
    pub failed: u32,
    /// Every open defect of the building, including those not tied to an asset.
    pub open_defects: DefectCounts,
    pub rows_by_status: StatusCounts,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RuleSetRef {
    pub code: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BuildingRef {
    pub id: Uuid,
    pub name: String,
    pub address: String,
    pub building_type: String,
    pub rule_set: RuleSetRef,
}

impl From<&BuildingRecord> for BuildingRef {
    fn from(b: &BuildingRecord) -> Self {
        Self {
            id: b.id,
            name: b.name.clone(),
            address: b.address.clone(),
            building_type: b.building_type.clone(),
            rule_set: RuleSetRef {
                code: b.rule_set_code.clone(),
                version: b.rule_set_version.clone(),
            },
        }
    }
}

/// The report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Report {
    pub building: BuildingRef,
    /// The day the report is for: services after it are ignored, overdue is judged on it.
    pub as_of: NaiveDate,
    pub generated_at: DateTime<Utc>,
    /// The worst row status, or `critical_defect` for an open critical defect not tied to an
    /// asset (see [`Status`] for the precedence).
    pub status: Status,
    pub summary: Summary,
    /// Ordered by asset identifier, then interval, then rule code.
    pub items: Vec<ReportRow>,
    /// The building's active defects (open to verified), most severe first, with severity
    /// overrides and their reasons.
    pub defects: Vec<ReportDefect>,
}

/// An active defect as the report lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportDefect {
    pub id: Uuid,
    pub title: String,
    pub asset_id: Option<Uuid>,
    pub identifier: Option<String>,
    pub location: Option<String>,
    pub severity: String,
    /// Set by hand, for `severity_reason`, instead of from the rule library.
    pub severity_overridden: bool,
    pub severity_reason: Option<String>,
    pub status: String,
    pub discovered_at: DateTime<Utc>,
    pub notify_by: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// When a notice to the owner was first delivered (meets `notify_by`).
    pub notified_at: Option<DateTime<Utc>>,
}

/// What the report is computed from.
pub struct Inputs<'a> {
    pub building: &'a BuildingRecord,
    pub assets: &'a [AssetRecord],
    /// The latest active rules visible to the organisation.
    pub rules: &'a [RuleRecord],
    /// The latest services per (asset, rule code), see `ReportStore::latest_services`.
    pub services: &'a [ServiceRow],
    /// Services recorded outside sessions (imported history, office entries).
    pub history: &'a [HistoryRecord],
    /// Working days of the building's state.
    pub calendar: &'a schedule::Calendar,
    pub defects: &'a [DefectCountRow],
    /// The building's active defects, listed in the report.
    pub active_defects: Vec<ReportDefect>,
    pub as_of: NaiveDate,
    pub generated_at: DateTime<Utc>,
}

/// The first instant after `as_of`, as the text bound `ReportStore::latest_services` takes.
pub fn services_before(as_of: NaiveDate) -> String {
    as_of
        .checked_add_days(Days::new(1))
        .unwrap_or(NaiveDate::MAX)
        .format("%Y-%m-%d")
        .to_string()
}

/// A service from a session's item, or from the history rows.
struct Service<'a> {
    at: DateTime<Utc>,
    rule_code: &'a str,
    outcome: &'a str,
    /// The session's item (None: a history row).
    row: Option<&'a ServiceRow>,
}

/// The working-day calendar of a building: weekends, the built-in holidays of its state and
/// the ones its organisation added, over the years the schedule looks at.
pub fn calendar(
    building: &BuildingRecord,
    configured: &[HolidayRow],
    years: std::ops::RangeInclusive<i32>,
) -> schedule::Calendar {
    let state = building
        .state
        .as_deref()
        .and_then(|s| s.parse::<holidays::AuState>().ok());
    schedule::Calendar {
        holidays: holidays::holiday_dates(
            state,
            years,
            configured
                .iter()
                .filter(|h| Some(h.state.as_str()) == building.state.as_deref())
                .map(|h| h.day),
        ),
    }
}

/// A rule with its interval and tolerance.
pub(crate) struct Applicable<'a> {
    pub rule: &'a RuleRecord,
    /// Its place in the rules it was picked from.
    pub index: usize,
    /// The interval's length in days (months as 30), to order routines.
    pub months: u32,
    pub routine: Routine,
}

/// Services by (asset, rule code), and the first service known of each.
pub(crate) struct ServiceIndex<'a> {
    services: HashMap<(Uuid, &'a str), Vec<Service<'a>>>,
    /// The first service known per (asset, rule code): a grid's anchor when nothing else is.
    first: HashMap<(Uuid, &'a str), NaiveDate>,
}

impl<'a> ServiceIndex<'a> {
    /// Index session services and history rows up to `as_of`.
    pub(crate) fn new(
        services: &'a [ServiceRow],
        history: &'a [HistoryRecord],
        as_of: NaiveDate,
    ) -> Self {
        let mut index = Self {
            services: HashMap::new(),
            first: HashMap::new(),
        };
        for row in services {
            let (Ok(asset), Ok(at)) = (
                row.asset_id.parse::<Uuid>(),
                DateTime::parse_from_rfc3339(&row.recorded_at),
            ) else {
                continue; // not a service we can place in time (flagged by the projection)
            };
            let at = at.with_timezone(&Utc);
            let key = (asset, row.rule_code.as_str());
            if let Ok(f) = DateTime::parse_from_rfc3339(&row.first_recorded_at) {
                index.first_seen(key, f.with_timezone(&Utc).date_naive());
            }
            if at.date_naive() <= as_of {
                index.services.entry(key).or_default().push(Service {
                    at,
                    rule_code: &row.rule_code,
                    outcome: &row.outcome,
                    row: Some(row),
                });
            }
        }
        for h in history {
            if h.serviced_on > as_of {
                continue;
            }
            let key = (h.asset_id, h.rule_code.as_str());
            index.first_seen(key, h.serviced_on);
            index.services.entry(key).or_default().push(Service {
                at: h.serviced_on.and_time(chrono::NaiveTime::MIN).and_utc(),
                rule_code: &h.rule_code,
                outcome: &h.outcome,
                row: None,
            });
        }
        index
    }

    fn first_seen(&mut self, key: (Uuid, &'a str), day: NaiveDate) {
        self.first
            .entry(key)
            .and_modify(|d| *d = (*d).min(day))
            .or_insert(day);
    }
}

/// The active rules that apply to `asset` with their routines, shortest interval first.
pub(crate) fn applicable<'a>(asset: &AssetRecord, rules: &'a [RuleRecord]) -> Vec<Applicable<'a>> {
    let lib = crate::rules::library();
    let mut applicable: Vec<Applicable<'a>> = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| crate::domain::applicability::applies(&asset.facts(), &r.facts()))
        .filter_map(|(index, rule)| {
            let f = lib.any_frequency(&rule.frequency)?;
            let routine = Routine {
                months: f.months,
                days: f.days.unwrap_or(0),
                tolerance: f.tolerance,
            };
            Some(Applicable {
                rule,
                index,
                months: routine.length_days(),
                routine,
            })
        })
        .collect();
    applicable.sort_by(|a, b| (a.months, &a.rule.code).cmp(&(b.months, &b.rule.code)));
    applicable
}

/// Where one routine (`a`, one of the asset's `applicable`) stands on `as_of`: its services
/// and those of the asset's longer-interval routines (which include it), newest first and one
/// per day, its grid's anchor, and its standing on the grid.
pub(crate) fn routine_state<'a, 'i>(
    index: &'i ServiceIndex<'a>,
    building: &BuildingRecord,
    asset: &AssetRecord,
    applicable: &[Applicable<'a>],
    a: &Applicable<'a>,
    as_of: NaiveDate,
    calendar: &schedule::Calendar,
) -> RoutineState<'a, 'i> {
    let family: Vec<&str> = applicable
        .iter()
        .filter(|other| other.rule.code == a.rule.code || other.months > a.months)
        .map(|other| other.rule.code.as_str())
        .collect();
    let mut history: Vec<&Service<'a>> = family
        .iter()
        .filter_map(|code| index.services.get(&(asset.id, *code)))
        .flatten()
        .collect();
    history.sort_by(|x, y| y.at.cmp(&x.at).then(x.rule_code.cmp(y.rule_code)));
    history.dedup_by_key(|s| s.at.date_naive());
    // Scheduled on the routine's grid (domain::schedule): on-time services do not move the
    // next due date.
    let first_service = family
        .iter()
        .filter_map(|code| index.first.get(&(asset.id, *code)))
        .min()
        .copied();
    let anchor = schedule::anchor(
        asset.schedule_anchor,
        building.schedule_anchor,
        first_service,
        asset.install_date,
    );
    let days: Vec<NaiveDate> = history.iter().map(|s| s.at.date_naive()).collect();
    let standing = schedule::standing(a.routine, anchor, &days, as_of, calendar);
    RoutineState { history, standing }
}

/// See [`routine_state`].
pub(crate) struct RoutineState<'a, 'i> {
    history: Vec<&'i Service<'a>>,
    pub standing: schedule::Standing,
}

impl RoutineState<'_, '_> {
    /// When it was last serviced (under it or a longer routine).
    pub(crate) fn last_service(&self) -> Option<DateTime<Utc>> {
        self.history.first().map(|s| s.at)
    }
}

pub fn build(input: Inputs<'_>) -> Report {
    let index = ServiceIndex::new(input.services, input.history, input.as_of);
    let mut defects: HashMap<Option<Uuid>, DefectCounts> = HashMap::new();
    let mut all_defects = DefectCounts::default();
    for d in input.defects {
        let n = u32::try_from(d.open).unwrap_or(u32::MAX);
        defects.entry(d.asset_id).or_default().add(&d.severity, n);
        all_defects.add(&d.severity, n);
    }
    let mut assets: Vec<&AssetRecord> = input.assets.iter().collect();
    assets.sort_by(|a, b| {
        (a.identifier.is_none(), &a.identifier, a.id).cmp(&(
            b.identifier.is_none(),
            &b.identifier,
            b.id,
        ))
    });
    let mut items = Vec::new();
    let mut summary = Summary {
        assets: assets.len() as u32,
        open_defects: all_defects,
        ..Summary::default()
    };
    for asset in assets {
        let asset_defects = defects.get(&Some(asset.id)).copied().unwrap_or_default();
        let applicable = applicable(asset, input.rules);
        if applicable.is_empty() {
            summary.assets_without_rules += 1;
            items.push(ReportRow {
                open_defects: asset_defects,
                status: asset_defects.status(),
                ..row_for(asset, None)
            });
            continue;
        }
        for a in &applicable {
            let state = routine_state(
                &index,
                input.building,
                asset,
                &applicable,
                a,
                input.as_of,
                input.calendar,
            );
            let last = state.history.first();
            let previous = state.history.get(1);
            let mut row = row_for(asset, Some(a.rule));
            if let Some(last) = last {
                row.last_service = Some(last.at);
                row.serviced_under = Some(last.rule_code.to_owned());
                row.outcome = Some(last.outcome.to_owned());
                if let Some(item) = last.row {
                    row.last_session_id = Some(item.session_id);
                    row.classification = item.classification.clone();
                    let assessment = &item.assessment.0;
                    row.suggested_outcome =
                        assessment["suggested_outcome"].as_str().map(str::to_owned);
                    row.overrides_suggestion = assessment["overrides_suggestion"] == true;
                }
            }
            if let (Some(last), Some(prev)) = (last, previous) {
                row.previous_service = Some(prev.at);
                row.interval_days = Some((last.at.date_naive() - prev.at.date_naive()).num_days());
            }
            let standing = &state.standing;
            row.next_due = standing.next_due;
            row.due_by = standing.due_by;
            row.scheduled_for = standing.last_scheduled;
            row.outside_tolerance = standing.outside_tolerance;
            row.overdue = standing.overdue;
            row.anchor = standing.anchor.map(|a| a.0);
            row.anchor_source = standing.anchor.map(|a| a.1);
            row.open_defects = asset_defects;
            row.status = asset_defects.status().max(if row.overdue {
                Status::Overdue
            } else {
                Status::Compliant
            });

            summary.checks += 1;
            if last.is_some() {
                summary.serviced += 1;
            } else {
                summary.never_serviced += 1;
            }
            summary.overdue += u32::from(row.overdue);
            summary.outside_tolerance += u32::from(row.outside_tolerance);
            summary.failed += u32::from(row.outcome.as_deref() == Some("fail"));
            items.push(row);
        }
    }
    for row in &items {
        let c = &mut summary.rows_by_status;
        match row.status {
            Status::Compliant => c.compliant += 1,
            Status::DefectsOpen => c.defects_open += 1,
            Status::Overdue => c.overdue += 1,
            Status::CriticalDefect => c.critical_defect += 1,
        }
    }
    // Every open defect counts, including building-level ones (no asset) that have no row.
    let status = overall_status(&all_defects, summary.overdue);
    Report {
        building: input.building.into(),
        as_of: input.as_of,
        generated_at: input.generated_at,
        status,
        summary,
        items,
        defects: {
            let mut d = input.active_defects;
            d.sort_by_key(|d| {
                (
                    crate::domain::defects::Severity::parse(&d.severity),
                    d.discovered_at,
                )
            });
            d
        },
    }
}

fn row_for(asset: &AssetRecord, rule: Option<&RuleRecord>) -> ReportRow {
    ReportRow {
        asset_id: asset.id,
        identifier: asset.identifier.clone(),
        asset_type: asset.asset_type.clone(),
        location: asset.location.clone(),
        rule_code: rule.map(|r| r.code.clone()),
        rule_name: rule.map(|r| r.name.clone()),
        frequency: rule.map(|r| r.frequency.clone()),
        last_service: None,
        serviced_under: None,
        last_session_id: None,
        outcome: None,
        classification: None,
        suggested_outcome: None,
        overrides_suggestion: false,
        previous_service: None,
        interval_days: None,
        scheduled_for: None,
        outside_tolerance: false,
        next_due: None,
        due_by: None,
        overdue: false,
        anchor: None,
        anchor_source: None,
        open_defects: DefectCounts::default(),
        status: Status::Compliant,
    }
}

#[cfg(test)]
mod tests;
