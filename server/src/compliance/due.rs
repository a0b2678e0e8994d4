//! What is due in a period, from a building's compliance report: every scheduled date of every
//! routine of every asset in the period (and the ones overdue now), with shorter routines
//! folded into a longer routine of the same asset due at the same time (`domain::schedule`).
//! Pure, like the report.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Report;
use crate::domain::schedule::{self, AnchorSource, Calendar, Due, Routine};

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

/// The due items of `report` in `from..=to`, plus those overdue on the report's date.
pub fn due_items(
    report: &Report,
    from: NaiveDate,
    to: NaiveDate,
    calendar: &Calendar,
) -> Vec<DueItem> {
    let lib = crate::rules::library();
    let mut out: Vec<DueItem> = Vec::new();
    // Rows are grouped by asset in the report; fold within each asset's run.
    let mut start = 0;
    while start < report.items.len() {
        let asset = report.items[start].asset_id;
        let end = report.items[start..]
            .iter()
            .position(|r| r.asset_id != asset)
            .map_or(report.items.len(), |n| start + n);
        let mut items: Vec<(DueItem, Option<Routine>)> = Vec::new();
        for row in &report.items[start..end] {
            let (Some(code), Some(name), Some(freq)) =
                (&row.rule_code, &row.rule_name, &row.frequency)
            else {
                continue;
            };
            let routine = lib.frequency(freq).map(|f| Routine {
                months: f.months,
                tolerance: f.tolerance,
            });
            let item = |date: Option<NaiveDate>, overdue: bool| DueItem {
                building_id: report.building.id,
                building_name: report.building.name.clone(),
                asset_id: row.asset_id,
                identifier: row.identifier.clone(),
                asset_type: row.asset_type.clone(),
                location: row.location.clone(),
                rule_code: code.clone(),
                rule_name: name.clone(),
                frequency: freq.clone(),
                last_service: row.last_service,
                next_due: date,
                window_opens: date
                    .zip(routine)
                    .map(|(d, r)| schedule::window(d, r.tolerance, calendar).early),
                due_by: date
                    .zip(routine)
                    .map(|(d, r)| schedule::window(d, r.tolerance, calendar).late),
                overdue,
                anchor: row.anchor,
                anchor_source: row.anchor_source,
                includes: Vec::new(),
            };
            let (Some(next), Some(anchor), Some(r)) = (row.next_due, row.anchor, routine) else {
                // Nothing to count from: due now.
                items.push((item(None, true), routine));
                continue;
            };
            if row.overdue {
                items.push((item(Some(next), true), routine));
            }
            for d in schedule::occurrences(r, anchor, next, from, to) {
                if row.overdue && d == next {
                    continue;
                }
                items.push((item(Some(d), false), routine));
            }
        }
        let dues: Vec<Due> = items
            .iter()
            .map(|(i, r)| Due {
                // Undated items fold nothing and into nothing: a date no window reaches.
                date: i.next_due.unwrap_or(NaiveDate::MIN),
                routine: r.unwrap_or(Routine {
                    months: 0,
                    tolerance: schedule::Tolerance::WorkingDays(0),
                }),
            })
            .collect();
        let folded = schedule::fold(&dues, calendar);
        let items_dated: Vec<bool> = items.iter().map(|(i, _)| i.next_due.is_some()).collect();
        let mut includes: Vec<Vec<String>> = vec![Vec::new(); items.len()];
        for (i, into) in folded.iter().enumerate() {
            if let Some(j) = into {
                // An overdue routine stays listed on its own, even when a longer one is due
                // with it.
                if !items[i].0.overdue
                    && items[i].0.next_due.is_some()
                    && items[*j].0.next_due.is_some()
                {
                    includes[*j].push(items[i].0.rule_code.clone());
                }
            }
        }
        for (i, ((mut item, _), into)) in items.into_iter().zip(folded).enumerate() {
            let folded_away = into.is_some_and(|j| items_dated[j]) && item.next_due.is_some();
            if folded_away && !item.overdue {
                continue;
            }
            item.includes = std::mem::take(&mut includes[i]);
            item.includes.sort();
            item.includes.dedup();
            out.push(item);
        }
        start = end;
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
