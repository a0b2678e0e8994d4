//! What is due in a period, from a building's compliance report: every scheduled date of every
//! routine of every asset in the period (and the ones overdue now), with shorter routines
//! folded into a longer routine of the same asset due at the same time (`domain::schedule`).
//! Pure, like the report.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{applicable, routine_state, Report, ServiceIndex};
use crate::domain::schedule::{self, AnchorSource, Calendar, Due, Routine};
use crate::store::buildings::{AssetRecord, BuildingRecord};
use crate::store::reports::ServiceRow;
use crate::store::rules::RuleRecord;
use crate::store::schedule::HistoryRecord;

/// One scheduled service of one routine of one asset.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DueItem {
    pub building_id: Uuid,
    pub building_name: String,
    pub asset_id: Uuid,
    pub identifier: Option<String>,
    pub asset_type: String,
    pub location: String,
    pub rule_code: String,
    pub rule_name: String,
    pub frequency: String,
    pub last_service: Option<DateTime<Utc>>,
    /// The scheduled date (none: nothing to count from — no service, anchor or install date
    /// is known, so it is due now).
    pub next_due: Option<NaiveDate>,
    /// The first day of its tolerance window (AS 1851 cl. 1.11).
    pub window_opens: Option<NaiveDate>,
    /// The last day of its tolerance window.
    pub due_by: Option<NaiveDate>,
    /// Its window closed before today without a service.
    pub overdue: bool,
    pub anchor: Option<NaiveDate>,
    pub anchor_source: Option<AnchorSource>,
    /// Shorter routines of the asset due at the same time, done as part of this one.
    pub includes: Vec<String>,
}

/// One scheduled service of one routine of one asset, borrowing what it is about (the
/// schedule of a large organisation has hundreds of thousands of them; only a page is turned
/// into [`DueItem`]s).
#[derive(Debug, Clone)]
pub struct DueLine<'a> {
    pub building: &'a BuildingRecord,
    pub asset: &'a AssetRecord,
    /// The asset's place in [`DueInputs::assets`].
    pub asset_index: usize,
    pub rule: &'a RuleRecord,
    /// The rule's place in [`DueInputs::rules`].
    pub rule_index: usize,
    pub last_service: Option<DateTime<Utc>>,
    /// The scheduled date; None: nothing to count from, due now.
    pub date: Option<NaiveDate>,
    pub window: Option<schedule::Window>,
    pub overdue: bool,
    pub anchor: Option<(NaiveDate, AnchorSource)>,
    /// Shorter routines done as part of this one.
    pub includes: Vec<&'a str>,
}

impl DueLine<'_> {
    /// Overdue first, then by due date, building name, asset identifier and rule code.
    pub fn sort_key(&self) -> (bool, Option<NaiveDate>, &str, Option<&str>, &str) {
        (
            !self.overdue,
            self.date,
            &self.building.name,
            self.asset.identifier.as_deref(),
            &self.rule.code,
        )
    }

    pub fn item(&self) -> DueItem {
        let mut includes: Vec<String> = self.includes.iter().map(|c| (*c).to_owned()).collect();
        includes.sort();
        includes.dedup();
        DueItem {
            building_id: self.building.id,
            building_name: self.building.name.clone(),
            asset_id: self.asset.id,
            identifier: self.asset.identifier.clone(),
            asset_type: self.asset.asset_type.clone(),
            location: self.asset.location.clone(),
            rule_code: self.rule.code.clone(),
            rule_name: self.rule.name.clone(),
            frequency: self.rule.frequency.clone(),
            last_service: self.last_service,
            next_due: self.date,
            window_opens: self.window.map(|w| w.early),
            due_by: self.window.map(|w| w.late),
            overdue: self.overdue,
            anchor: self.anchor.map(|a| a.0),
            anchor_source: self.anchor.map(|a| a.1),
            includes,
        }
    }
}

/// What a building's schedule is computed from.
pub struct DueInputs<'a> {
    pub building: &'a BuildingRecord,
    pub assets: &'a [AssetRecord],
    /// The latest active rules visible to the organisation.
    pub rules: &'a [RuleRecord],
    /// Services per (asset, rule code): the latest ones, or at least the first and last.
    pub services: &'a [ServiceRow],
    pub history: &'a [HistoryRecord],
    pub calendar: &'a Calendar,
    /// Today: what is overdue is judged on it.
    pub as_of: NaiveDate,
}

/// The scheduled services of a building in `from..=to`, plus those overdue on `as_of`, with
/// shorter routines folded into longer ones of the same asset due with them.
pub fn due_lines<'a>(input: &DueInputs<'a>, from: NaiveDate, to: NaiveDate) -> Vec<DueLine<'a>> {
    let index = ServiceIndex::new(input.services, input.history, input.as_of);
    let mut out: Vec<DueLine<'a>> = Vec::new();
    for (asset_index, asset) in input.assets.iter().enumerate() {
        let applicable = applicable(asset, input.rules);
        let mut lines: Vec<(DueLine<'a>, Routine)> = Vec::new();
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
            let st = &state.standing;
            let line = |date: Option<NaiveDate>, overdue: bool| DueLine {
                building: input.building,
                asset,
                asset_index,
                rule: a.rule,
                rule_index: a.index,
                last_service: state.last_service(),
                date,
                window: date.map(|d| schedule::window(d, a.routine.tolerance, input.calendar)),
                overdue,
                anchor: st.anchor,
                includes: Vec::new(),
            };
            let (Some(next), Some((anchor, _))) = (st.next_due, st.anchor) else {
                // Nothing to count from: due now.
                lines.push((line(None, true), a.routine));
                continue;
            };
            if st.overdue {
                lines.push((line(Some(next), true), a.routine));
            }
            for d in schedule::occurrences(a.routine, anchor, next, from, to) {
                if st.overdue && d == next {
                    continue;
                }
                lines.push((line(Some(d), false), a.routine));
            }
        }
        // Undated and overdue lines fold nothing and into nothing: an overdue routine stays
        // listed on its own even when a longer one is due with it.
        let foldable = |l: &DueLine<'_>| l.date.is_some() && !l.overdue;
        let dues: Vec<Due> = lines
            .iter()
            .map(|(l, r)| Due {
                date: if foldable(l) {
                    l.date.unwrap_or(NaiveDate::MIN)
                } else {
                    NaiveDate::MIN
                },
                routine: if foldable(l) {
                    *r
                } else {
                    Routine {
                        months: 0,
                        days: 0,
                        tolerance: schedule::Tolerance::WorkingDays(0),
                    }
                },
            })
            .collect();
        let folded = schedule::fold(&dues, input.calendar);
        let mut includes: Vec<Vec<&'a str>> = vec![Vec::new(); lines.len()];
        for (i, into) in folded.iter().enumerate() {
            if let (Some(j), true) = (into, foldable(&lines[i].0)) {
                includes[*j].push(&lines[i].0.rule.code);
            }
        }
        for (i, ((mut line, _), into)) in lines.into_iter().zip(folded).enumerate() {
            if into.is_some() && foldable(&line) {
                continue;
            }
            line.includes = std::mem::take(&mut includes[i]);
            out.push(line);
        }
    }
    out
}

/// The observed condition of a routine service done outside its tolerance window.
pub const OUTSIDE_TOLERANCE: &str = "service_outside_tolerance";

/// A routine a session serviced outside its tolerance window: a non-conformance to report
/// within a week (AS 1851 cl. 1.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToleranceFinding {
    pub asset_id: Uuid,
    pub rule_code: String,
    pub title: String,
    pub description: String,
}

/// The routines `session` serviced (recorded under that routine) whose service fell outside
/// every tolerance window of their grid, per the report; one per asset (the longest routine).
pub fn outside_tolerance(report: &Report, session: Uuid) -> Vec<ToleranceFinding> {
    let mut out: Vec<ToleranceFinding> = Vec::new();
    for row in &report.items {
        let (Some(code), Some(name)) = (&row.rule_code, &row.rule_name) else {
            continue;
        };
        if row.last_session_id != Some(session)
            || row.serviced_under.as_deref() != Some(code.as_str())
            || !row.outside_tolerance
        {
            continue;
        }
        let label = row.identifier.as_deref().unwrap_or(&row.asset_type);
        let done = row
            .last_service
            .map(|d| d.date_naive().to_string())
            .unwrap_or_default();
        let anchor = row
            .anchor
            .map(|a| format!(" (its schedule is anchored on {a})"))
            .unwrap_or_default();
        let finding = ToleranceFinding {
            asset_id: row.asset_id,
            rule_code: code.clone(),
            title: format!("{label}: {name} done outside its tolerance window"),
            description: format!(
                "The {} routine {code} of {label} at {} was done on {done}, outside the \
                 tolerance window of every scheduled date{anchor}. AS 1851 asks for work done \
                 outside tolerance to be reported; the schedule keeps its dates, next due {}.",
                row.frequency.as_deref().unwrap_or(""),
                row.location,
                row.next_due
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "now".into()),
            ),
        };
        // One per asset: rows come shortest routine first, keep the longest.
        match out.iter_mut().find(|f| f.asset_id == row.asset_id) {
            Some(existing) => *existing = finding,
            None => out.push(finding),
        }
    }
    out
}
