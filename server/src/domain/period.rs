//! What was due in a period and what was done about it: each scheduled date of a routine that
//! falls in the period, with the service that met it (on time, late) or none (missed, or still
//! pending while its tolerance window is open). The yearly condition report and the essential
//! safety measures export count these.
//!
//! The grid is `crate::domain::schedule`'s and never moves: anchored as [`schedule::anchor`]
//! says (the asset's, the building's, the first service known, the install date); date zero is
//! the anchor, so the first service is due one interval after it — except when the anchor is
//! the first service itself, which then meets date zero. A service inside a date's tolerance
//! window meets that date (on time). A date whose window closed without one was missed, unless
//! a service outside every window fell after its window closed and before the next date's
//! window opened: that date was done late. Nothing to anchor on at all: the routine is due on
//! the period's first day and every interval after it.
//!
//! [`schedule::anchor`]: super::schedule::anchor

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::schedule::{window, AnchorSource, Calendar, Grid, Routine};

/// How a scheduled date was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kept {
    /// Serviced inside its tolerance window.
    OnTime,
    /// Serviced after its window closed (before the next one opened).
    Late,
    /// Not serviced, and its window closed.
    Missed,
    /// Not serviced yet; its window is still open on the report date.
    Pending,
}

/// A scheduled date in the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    pub due: NaiveDate,
    /// The last day of its tolerance window.
    pub due_by: NaiveDate,
    /// The service that met it (on time or late).
    pub done: Option<NaiveDate>,
    pub kept: Kept,
}

/// Most dates one routine can have in a period (a monthly routine over ten years is 120).
const MAX_DATES: usize = 1000;

/// The scheduled dates of `routine` in `from..=to` with how each was kept, given the grid's
/// anchor, the days it was serviced (any order, repeats count once; days after `as_of` are
/// ignored) and the day the period is judged on (`as_of`: a date whose window is still open
/// on it is pending).
pub fn occurrences(
    routine: Routine,
    anchor: Option<(NaiveDate, AnchorSource)>,
    services: &[NaiveDate],
    from: NaiveDate,
    to: NaiveDate,
    as_of: NaiveDate,
    cal: &Calendar,
) -> Vec<Occurrence> {
    let (anchor, first_k) = match anchor {
        Some((d, AnchorSource::FirstService)) => (d, 0),
        Some((d, _)) => (d, 1),
        None => (from, 0),
    };
    let grid = Grid { anchor, routine };
    let mut met: BTreeMap<i64, NaiveDate> = BTreeMap::new();
    let mut outside: Vec<NaiveDate> = Vec::new();
    let mut days: Vec<NaiveDate> = services.iter().copied().filter(|d| *d <= as_of).collect();
    days.sort();
    days.dedup();
    for s in days {
        match grid.meets(s, cal) {
            Some((k, _)) => {
                met.entry(k).or_insert(s);
            }
            None => outside.push(s),
        }
    }
    let Some((start, _)) = grid.after(from.pred_opt().unwrap_or(from)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut k = start.max(first_k);
    while let Some(due) = grid.date(k) {
        if due > to || out.len() >= MAX_DATES {
            break;
        }
        let w = window(due, routine.tolerance, cal);
        let (done, kept) = if let Some(s) = met.get(&k) {
            (Some(*s), Kept::OnTime)
        } else if w.late >= as_of {
            (None, Kept::Pending)
        } else {
            let next_opens = grid
                .date(k + 1)
                .map(|n| window(n, routine.tolerance, cal).early);
            match outside
                .iter()
                .find(|s| **s > w.late && next_opens.is_none_or(|e| **s < e))
            {
                Some(s) => (Some(*s), Kept::Late),
                None => (None, Kept::Missed),
            }
        };
        out.push(Occurrence {
            due,
            due_by: w.late,
            done,
            kept,
        });
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::schedule::Tolerance;
    use proptest::prelude::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    const SIX_MONTHLY: Routine = Routine {
        months: 6,
        days: 0,
        tolerance: Tolerance::Months(1),
    };
    const MONTHLY: Routine = Routine {
        months: 1,
        days: 0,
        tolerance: Tolerance::WorkingDays(5),
    };

    fn kept(o: &[Occurrence]) -> Vec<(String, Kept)> {
        o.iter().map(|o| (o.due.to_string(), o.kept)).collect()
    }

    #[test]
    fn on_time_late_missed_and_pending() {
        let cal = Calendar::default();
        // Serviced 2024-01-10 and 2024-07-15 (on time), then not again.
        let o = occurrences(
            SIX_MONTHLY,
            Some((day("2024-01-10"), AnchorSource::FirstService)),
            &[day("2024-01-10"), day("2024-07-15")],
            day("2024-01-01"),
            day("2025-12-31"),
            day("2025-08-01"),
            &cal,
        );
        assert_eq!(
            kept(&o),
            vec![
                ("2024-01-10".into(), Kept::OnTime),
                ("2024-07-10".into(), Kept::OnTime),
                ("2025-01-10".into(), Kept::Missed),
                ("2025-07-10".into(), Kept::Pending),
            ]
        );
        assert_eq!(o[1].done, Some(day("2024-07-15")));
        // A service long after, between two windows: the date before it was done late, the
        // earlier one missed; the grid stays.
        let o = occurrences(
            SIX_MONTHLY,
            Some((day("2023-01-10"), AnchorSource::FirstService)),
            &[day("2023-01-10"), day("2024-03-01")],
            day("2023-06-01"),
            day("2024-12-31"),
            day("2024-12-31"),
            &cal,
        );
        assert_eq!(
            kept(&o),
            vec![
                ("2023-07-10".into(), Kept::Missed),
                ("2024-01-10".into(), Kept::Late),
                ("2024-07-10".into(), Kept::Missed),
            ]
        );
        assert_eq!(o[1].done, Some(day("2024-03-01")));
        // A skipped month is one missed date: the next month's visit is on time.
        let o = occurrences(
            MONTHLY,
            Some((day("2024-03-15"), AnchorSource::FirstService)),
            &[day("2024-03-15"), day("2024-04-15"), day("2024-06-14")],
            day("2024-04-01"),
            day("2024-06-30"),
            day("2024-06-30"),
            &cal,
        );
        assert_eq!(
            kept(&o),
            vec![
                ("2024-04-15".into(), Kept::OnTime),
                ("2024-05-15".into(), Kept::Missed),
                ("2024-06-15".into(), Kept::OnTime),
            ]
        );
    }

    #[test]
    fn never_serviced_counts_from_installation_or_the_period() {
        let cal = Calendar::default();
        let o = occurrences(
            SIX_MONTHLY,
            Some((day("2024-02-01"), AnchorSource::Installed)),
            &[],
            day("2024-01-01"),
            day("2024-12-31"),
            day("2024-12-31"),
            &cal,
        );
        assert_eq!(kept(&o), vec![("2024-08-01".into(), Kept::Missed)]);
        let o = occurrences(
            SIX_MONTHLY,
            None,
            &[],
            day("2024-01-01"),
            day("2024-12-31"),
            day("2024-12-31"),
            &cal,
        );
        assert_eq!(
            kept(&o),
            vec![
                ("2024-01-01".into(), Kept::Missed),
                ("2024-07-01".into(), Kept::Missed)
            ]
        );
    }

    proptest! {
        /// Thirty years of monthly service, each visit anywhere inside its window: every
        /// scheduled date is kept on time and none is missed or late.
        #[test]
        fn on_time_service_is_never_missed(offsets in prop::collection::vec(-3i64..=3, 360)) {
            let cal = Calendar::default();
            let anchor = day("2000-01-03");
            let mut days = vec![anchor];
            for (k, off) in offsets.iter().enumerate() {
                let due = Grid { anchor, routine: MONTHLY }.date(k as i64 + 1).unwrap();
                let s = cal.add_working_days(due, *off);
                days.push(s);
            }
            let to = Grid { anchor, routine: MONTHLY }.date(360).unwrap();
            let as_of = cal.add_working_days(to, 10);
            let o = occurrences(
                MONTHLY,
                Some((anchor, AnchorSource::FirstService)),
                &days,
                anchor,
                to,
                as_of,
                &cal,
            );
            prop_assert_eq!(o.len(), 361);
            prop_assert!(o.iter().all(|o| o.kept == Kept::OnTime), "{:?}", o.iter().find(|o| o.kept != Kept::OnTime));
        }
    }
}
