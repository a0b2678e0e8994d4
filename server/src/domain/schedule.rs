//! When a routine service is due, and whether a service kept to its interval (AS 1851-2012
//! cl. 1.11 and its table of tolerances).
//!
//! - **Tolerance** is given per frequency, in working days or in months as the standard's table
//!   does: ±5 working days (monthly), ±10 working days (three-monthly), ±1 month (six-monthly),
//!   ±2 months (yearly), ±3 months (five-yearly), ±6 months (ten-yearly and longer). Working
//!   days skip Saturdays, Sundays and the calendar's public holidays.
//! - **Anchored, not drifting**: services are scheduled on a grid — anchor + k × interval
//!   (calendar months from the anchor, so the 31st stays the month's last day) — and a service
//!   inside the tolerance window of its scheduled date keeps the grid: a service done a few days
//!   early or late does not move the next due date. A service outside every window is reported
//!   as outside tolerance and the grid restarts from it (the standard asks for such work to be
//!   reported; the next services are counted from when it was actually done).
//! - The anchor is the first service known; an asset never serviced is due one interval after
//!   its install date (or now, without one).

use std::collections::BTreeSet;

use chrono::{Datelike, Months, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A frequency's tolerance either side of the scheduled date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tolerance {
    /// Working days (Monday to Friday, not public holidays).
    WorkingDays(u32),
    /// Calendar months.
    Months(u32),
}

impl Tolerance {
    /// `±5 working days`, `±1 month`.
    pub fn describe(self) -> String {
        match self {
            Self::WorkingDays(1) => "±1 working day".into(),
            Self::WorkingDays(n) => format!("±{n} working days"),
            Self::Months(1) => "±1 month".into(),
            Self::Months(n) => format!("±{n} months"),
        }
    }
}

/// Which days are working days: Monday to Friday except `holidays`.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    pub holidays: BTreeSet<NaiveDate>,
}

impl Calendar {
    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && !self.holidays.contains(&d)
    }

    /// The date `n` working days after (`n > 0`) or before (`n < 0`) `from`.
    pub fn add_working_days(&self, from: NaiveDate, n: i64) -> NaiveDate {
        let mut d = from;
        let mut left = n.unsigned_abs();
        while left > 0 {
            let next = if n > 0 { d.succ_opt() } else { d.pred_opt() };
            let Some(next) = next else {
                return d;
            };
            d = next;
            if self.is_working_day(d) {
                left -= 1;
            }
        }
        d
    }
}

/// The days a service counts as on time for a scheduled date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub early: NaiveDate,
    pub due: NaiveDate,
    pub late: NaiveDate,
}

impl Window {
    pub fn contains(&self, d: NaiveDate) -> bool {
        self.early <= d && d <= self.late
    }
}

/// The window around `due`.
pub fn window(due: NaiveDate, tolerance: Tolerance, cal: &Calendar) -> Window {
    let (early, late) = match tolerance {
        Tolerance::WorkingDays(n) => (
            cal.add_working_days(due, -i64::from(n)),
            cal.add_working_days(due, i64::from(n)),
        ),
        Tolerance::Months(n) => (
            due.checked_sub_months(Months::new(n))
                .unwrap_or(NaiveDate::MIN),
            due.checked_add_months(Months::new(n))
                .unwrap_or(NaiveDate::MAX),
        ),
    };
    Window { early, due, late }
}

/// The k-th scheduled date of a grid.
fn nth(anchor: NaiveDate, months: u32, k: u32) -> Option<NaiveDate> {
    anchor.checked_add_months(Months::new(months.checked_mul(k)?))
}

/// A routine's interval and tolerance.
#[derive(Debug, Clone, Copy)]
pub struct Routine {
    pub months: u32,
    pub tolerance: Tolerance,
}

/// Where a routine stands on a day.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Standing {
    /// The next scheduled date (None: nothing to count from).
    pub next_due: Option<NaiveDate>,
    /// The last day of `next_due`'s window.
    pub due_by: Option<NaiveDate>,
    /// The scheduled date the last service met, if it met one.
    pub last_scheduled: Option<NaiveDate>,
    /// The last service fell outside the window of every scheduled date.
    pub outside_tolerance: bool,
    /// `as_of` is past `due_by` (or there is nothing to count from).
    pub overdue: bool,
}

/// Where a routine stands on `as_of`, given the days it was serviced (any order; repeated days
/// count once) and the asset's install date.
pub fn standing(
    routine: Routine,
    services: &[NaiveDate],
    installed: Option<NaiveDate>,
    as_of: NaiveDate,
    cal: &Calendar,
) -> Standing {
    let mut days: Vec<NaiveDate> = services.iter().copied().filter(|d| *d <= as_of).collect();
    days.sort();
    days.dedup();
    let Some((&first, rest)) = days.split_first() else {
        // Never serviced: due one interval after installation.
        let next_due = installed.and_then(|d| nth(d, routine.months, 1));
        let due_by = next_due.map(|d| window(d, routine.tolerance, cal).late);
        return Standing {
            next_due,
            due_by,
            overdue: due_by.is_none_or(|d| as_of > d),
            ..Standing::default()
        };
    };
    // Walk the services along the grid: each one meets the first scheduled date whose window
    // has not closed before it; one that misses every window restarts the grid.
    let mut anchor = first;
    let mut k: u32 = 0;
    let mut last_scheduled = Some(first);
    let mut outside = false;
    for &s in rest {
        match meet(anchor, k, routine, s, cal) {
            Some((j, due)) => {
                k = j;
                last_scheduled = Some(due);
                outside = false;
            }
            None => {
                anchor = s;
                k = 0;
                last_scheduled = None;
                outside = true;
            }
        }
    }
    let next_due = nth(anchor, routine.months, k + 1);
    let due_by = next_due.map(|d| window(d, routine.tolerance, cal).late);
    Standing {
        next_due,
        due_by,
        last_scheduled,
        outside_tolerance: outside,
        overdue: due_by.is_none_or(|d| as_of > d),
    }
}

/// The scheduled date a service on `s` meets, after the `k`-th of the grid from `anchor` was
/// met: the next one when `s` is in its window, the `k`-th again for a second visit in its
/// window; None when `s` is outside both (too early, or a service was missed).
fn meet(
    anchor: NaiveDate,
    k: u32,
    routine: Routine,
    s: NaiveDate,
    cal: &Calendar,
) -> Option<(u32, NaiveDate)> {
    let next = nth(anchor, routine.months, k + 1)?;
    let w = window(next, routine.tolerance, cal);
    if w.contains(s) {
        return Some((k + 1, next));
    }
    if s < w.early {
        // Before the next window opened: a second visit inside the current period meets the
        // date already met; earlier than that window and outside the current one is too early.
        let current = nth(anchor, routine.months, k)?;
        return window(current, routine.tolerance, cal)
            .contains(s)
            .then_some((k, current));
    }
    // After the next window closed: a service was missed.
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    const SIX_MONTHLY: Routine = Routine {
        months: 6,
        tolerance: Tolerance::Months(1),
    };
    const MONTHLY: Routine = Routine {
        months: 1,
        tolerance: Tolerance::WorkingDays(5),
    };

    #[test]
    fn working_day_windows_skip_weekends_and_holidays() {
        let cal = Calendar::default();
        // Friday 2026-12-04 + 5 working days = Friday 2026-12-11.
        let w = window(day("2026-12-04"), Tolerance::WorkingDays(5), &cal);
        assert_eq!((w.early, w.late), (day("2026-11-27"), day("2026-12-11")));
        let cal = Calendar {
            holidays: [day("2026-12-25"), day("2026-12-28")].into(),
        };
        let w = window(day("2026-12-23"), Tolerance::WorkingDays(3), &cal);
        assert_eq!(
            w.late,
            day("2026-12-30"),
            "Christmas and the Boxing Day holiday skipped"
        );
        let w = window(day("2026-08-31"), Tolerance::Months(1), &cal);
        assert_eq!((w.early, w.late), (day("2026-07-31"), day("2026-09-30")));
    }

    #[test]
    fn on_time_services_keep_the_grid_and_a_missed_one_restarts_it() {
        let cal = Calendar::default();
        let s = standing(
            SIX_MONTHLY,
            &[day("2024-01-15"), day("2024-07-01"), day("2025-02-10")],
            None,
            day("2025-03-01"),
            &cal,
        );
        // 2024-07-01 is 14 days early for 2024-07-15, 2025-02-10 26 days late for 2025-01-15:
        // both inside ±1 month, so the grid stays on the 15th.
        assert_eq!(s.next_due, Some(day("2025-07-15")));
        assert_eq!(s.due_by, Some(day("2025-08-15")));
        assert_eq!(s.last_scheduled, Some(day("2025-01-15")));
        assert!(!s.outside_tolerance && !s.overdue);
        // Missed entirely: reported, and counted again from when it was done.
        let s = standing(
            SIX_MONTHLY,
            &[day("2024-01-15"), day("2024-10-01")],
            None,
            day("2024-10-02"),
            &cal,
        );
        assert!(s.outside_tolerance);
        assert_eq!(s.next_due, Some(day("2025-04-01")));
        // Never serviced: one interval after installation; overdue once its window closed.
        let s = standing(
            SIX_MONTHLY,
            &[],
            Some(day("2024-01-10")),
            day("2024-08-11"),
            &cal,
        );
        assert_eq!(s.next_due, Some(day("2024-07-10")));
        assert!(s.overdue);
        let s = standing(SIX_MONTHLY, &[], None, day("2024-08-11"), &cal);
        assert!(s.next_due.is_none() && s.overdue);
    }

    proptest! {
        /// Thirty years of services each somewhere inside its window: the schedule never moves
        /// off the anchor's grid and no service counts as late.
        #[test]
        fn no_drift_over_thirty_years(
            anchor in (0i64..3650).prop_map(|n| day("2000-01-01") + chrono::Duration::days(n)),
            monthly in any::<bool>(),
            offsets in proptest::collection::vec(-1.0f64..=1.0, 360),
        ) {
            let cal = Calendar::default();
            let routine = if monthly { MONTHLY } else { SIX_MONTHLY };
            let periods = (360 / routine.months) as usize;
            let mut services = vec![anchor];
            for (k, f) in offsets.iter().take(periods).enumerate() {
                let due = nth(anchor, routine.months, k as u32 + 1).unwrap();
                let w = window(due, routine.tolerance, &cal);
                let span = (w.late - w.early).num_days() as f64;
                let pick = w.early + chrono::Duration::days(((f + 1.0) / 2.0 * span).round() as i64);
                prop_assert!(w.contains(pick));
                services.push(pick);
                let s = standing(routine, &services, None, pick, &cal);
                prop_assert!(!s.outside_tolerance, "{pick} for {due}");
                prop_assert_eq!(s.last_scheduled, Some(due));
                prop_assert_eq!(s.next_due, nth(anchor, routine.months, k as u32 + 2));
                prop_assert!(!s.overdue);
            }
        }
    }
}
