//! When a routine service is due, and whether a service kept to its interval (AS 1851-2012
//! cl. 1.11 and its table of tolerances).
//!
//! - **Tolerance** is given per frequency, in working days or in months as the standard's table
//!   does: ±5 working days (monthly), ±10 working days (three-monthly), ±1 month (six-monthly),
//!   ±2 months (yearly), ±3 months (five-yearly), ±6 months (ten-yearly and longer). Working
//!   days skip Saturdays, Sundays and the public holidays of the building's state
//!   ([`super::holidays`]).
//! - **Anchored, not drifting**: each routine has a grid — anchor + k × interval (calendar
//!   months, so the 31st stays the month's last day) — and services are judged against it. A
//!   service inside the tolerance window of a scheduled date meets that date; the next one is
//!   the date after it, wherever in the window the service fell. The grid never moves: a
//!   service outside every window is reported as outside tolerance (the standard asks for such
//!   work to be reported within a week) and the next due date is the grid's next date after it.
//! - **The anchor** ([`anchor`]) is, in order: the asset's own anchor, the building's
//!   (commissioning or the start of a service contract), the first service known, the install
//!   date. An anchor is date zero of the grid: the first service is due one interval after it.
//! - **Folding** ([`fold`]): when a shorter routine falls due within its tolerance of a longer
//!   routine of the same asset, it is done as part of the longer one (the longer routines of
//!   the library include the shorter ones' checks) and is listed under it.

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

/// A routine's interval and tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routine {
    /// The interval in calendar months; 0 for one shorter than a month (then `days`).
    pub months: u32,
    /// The interval in days when `months` is 0 (weekly: 7).
    pub days: u32,
    pub tolerance: Tolerance,
}

impl Routine {
    /// The interval in days, roughly (months as 30 days): to compare routines' lengths.
    pub fn length_days(&self) -> u32 {
        if self.months > 0 {
            self.months.saturating_mul(30)
        } else {
            self.days
        }
    }
}

/// Where an anchor came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnchorSource {
    /// Set on the asset.
    Asset,
    /// Set on the building (commissioning or a service contract's start).
    Building,
    /// The first service recorded or imported.
    FirstService,
    /// The asset's install date.
    Installed,
}

/// The anchor of a routine's grid: the asset's, the building's, the first service known, the
/// install date — the first of these that is known.
pub fn anchor(
    asset: Option<NaiveDate>,
    building: Option<NaiveDate>,
    first_service: Option<NaiveDate>,
    installed: Option<NaiveDate>,
) -> Option<(NaiveDate, AnchorSource)> {
    asset
        .map(|d| (d, AnchorSource::Asset))
        .or(building.map(|d| (d, AnchorSource::Building)))
        .or(first_service.map(|d| (d, AnchorSource::FirstService)))
        .or(installed.map(|d| (d, AnchorSource::Installed)))
}

/// A routine's grid: `anchor + k × months` for any integer k (dates before the anchor too, so
/// imported services older than a contract's anchor can be placed).
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    pub anchor: NaiveDate,
    pub routine: Routine,
}

impl Grid {
    /// The k-th scheduled date.
    pub fn date(&self, k: i64) -> Option<NaiveDate> {
        if self.routine.months == 0 {
            // A routine of days (weekly); one with no interval at all has only its anchor.
            if self.routine.days == 0 {
                return (k == 0).then_some(self.anchor);
            }
            let days = k.checked_mul(i64::from(self.routine.days))?;
            return self
                .anchor
                .checked_add_signed(chrono::TimeDelta::try_days(days)?);
        }
        let months = u32::try_from(
            k.unsigned_abs()
                .checked_mul(u64::from(self.routine.months))?,
        )
        .ok()?;
        if k >= 0 {
            self.anchor.checked_add_months(Months::new(months))
        } else {
            self.anchor.checked_sub_months(Months::new(months))
        }
    }

    /// The index of the last scheduled date on or before `d` (an estimate refined by a step
    /// either way, as month lengths vary).
    fn floor(&self, d: NaiveDate) -> i64 {
        let mut k = if self.routine.months == 0 {
            (d - self.anchor)
                .num_days()
                .div_euclid(i64::from(self.routine.days.max(1)))
        } else {
            let months = i64::from(self.routine.months);
            let elapsed = i64::from(d.year() - self.anchor.year()) * 12 + i64::from(d.month())
                - i64::from(self.anchor.month());
            elapsed.div_euclid(months)
        };
        while self.date(k).is_some_and(|g| g > d) {
            k -= 1;
        }
        while self.date(k + 1).is_some_and(|g| g <= d) {
            k += 1;
        }
        k
    }

    /// The scheduled date whose tolerance window holds `s` (the nearest, should two), as
    /// (k, date); None when `s` is outside every window.
    pub fn meets(&self, s: NaiveDate, cal: &Calendar) -> Option<(i64, NaiveDate)> {
        let k = self.floor(s);
        (k - 1..=k + 2)
            .filter_map(|j| Some((j, self.date(j)?)))
            .filter(|(_, g)| window(*g, self.routine.tolerance, cal).contains(s))
            .min_by_key(|(_, g)| (*g - s).num_days().abs())
    }

    /// The first scheduled date after `d`.
    pub fn after(&self, d: NaiveDate) -> Option<(i64, NaiveDate)> {
        let k = self.floor(d) + 1;
        Some((k, self.date(k)?))
    }
}

/// Where a routine stands on a day.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Standing {
    /// The grid's anchor and where it came from (None: nothing to count from).
    pub anchor: Option<(NaiveDate, AnchorSource)>,
    /// The next scheduled date (None: nothing to count from — due now).
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

/// Where a routine stands on `as_of`, given its grid's anchor and the days it was serviced
/// (any order; only the latest on or before `as_of` decides).
pub fn standing(
    routine: Routine,
    anchor: Option<(NaiveDate, AnchorSource)>,
    services: &[NaiveDate],
    as_of: NaiveDate,
    cal: &Calendar,
) -> Standing {
    let Some((anchor_date, _)) = anchor else {
        return Standing {
            overdue: true,
            ..Standing::default()
        };
    };
    let grid = Grid {
        anchor: anchor_date,
        routine,
    };
    let latest = services.iter().copied().filter(|d| *d <= as_of).max();
    let (next, last_scheduled, outside) = match latest {
        // Nothing done yet: the anchor is date zero, the first service is due after it.
        None => (grid.after(anchor_date).map(|(_, d)| d), None, false),
        Some(s) => match grid.meets(s, cal) {
            Some((k, met)) => (grid.date(k + 1), Some(met), false),
            None => (grid.after(s).map(|(_, d)| d), None, true),
        },
    };
    let due_by = next.map(|d| window(d, routine.tolerance, cal).late);
    Standing {
        anchor,
        next_due: next,
        due_by,
        last_scheduled,
        outside_tolerance: outside,
        overdue: due_by.is_none_or(|d| as_of > d),
    }
}

/// The scheduled dates of a routine from `next_due` on that fall in `from..=to` (what is due in
/// a period if every service is done on time).
pub fn occurrences(
    routine: Routine,
    anchor: NaiveDate,
    next_due: NaiveDate,
    from: NaiveDate,
    to: NaiveDate,
) -> Vec<NaiveDate> {
    let grid = Grid { anchor, routine };
    let mut k = grid.floor(next_due);
    let mut out = Vec::new();
    while let Some(d) = grid.date(k) {
        if d > to || out.len() > 400 {
            break;
        }
        if d >= from && d >= next_due {
            out.push(d);
        }
        k += 1;
    }
    out
}

/// One scheduled date of one routine of an asset, for folding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub date: NaiveDate,
    pub routine: Routine,
}

/// Which due dates fold into which: `result[i] = Some(j)` when `dues[i]` is done as part of
/// `dues[j]`, a longer routine of the same asset due within `dues[i]`'s tolerance window (the
/// longest such, then the nearest). Dues of equal interval never fold.
pub fn fold(dues: &[Due], cal: &Calendar) -> Vec<Option<usize>> {
    dues.iter()
        .map(|short| {
            let w = window(short.date, short.routine.tolerance, cal);
            dues.iter()
                .enumerate()
                .filter(|(_, long)| {
                    long.routine.months > short.routine.months && w.contains(long.date)
                })
                .max_by_key(|(_, long)| {
                    (
                        long.routine.months,
                        std::cmp::Reverse((long.date - short.date).num_days().abs()),
                    )
                })
                .map(|(j, _)| j)
        })
        .collect()
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
        days: 0,
        tolerance: Tolerance::Months(1),
    };
    const MONTHLY: Routine = Routine {
        months: 1,
        days: 0,
        tolerance: Tolerance::WorkingDays(5),
    };
    const THREE_MONTHLY: Routine = Routine {
        months: 3,
        days: 0,
        tolerance: Tolerance::WorkingDays(10),
    };
    const YEARLY: Routine = Routine {
        months: 12,
        days: 0,
        tolerance: Tolerance::Months(2),
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

    fn first(d: &str) -> Option<(NaiveDate, AnchorSource)> {
        Some((day(d), AnchorSource::FirstService))
    }

    #[test]
    fn on_time_services_keep_the_grid_and_a_late_one_is_reported_without_moving_it() {
        let cal = Calendar::default();
        let s = standing(
            SIX_MONTHLY,
            first("2024-01-15"),
            &[day("2024-01-15"), day("2024-07-01"), day("2025-02-10")],
            day("2025-03-01"),
            &cal,
        );
        // 2024-07-01 is 14 days early for 2024-07-15, 2025-02-10 26 days late for 2025-01-15:
        // both inside ±1 month, so the grid stays on the 15th.
        assert_eq!(s.next_due, Some(day("2025-07-15")));
        assert_eq!(s.due_by, Some(day("2025-08-15")));
        assert_eq!(s.last_scheduled, Some(day("2025-01-15")));
        assert!(!s.outside_tolerance && !s.overdue);
        // Done 2.5 months late: reported; the grid stays, next is the grid's next date.
        let s = standing(
            SIX_MONTHLY,
            first("2024-01-15"),
            &[day("2024-01-15"), day("2024-10-01")],
            day("2024-10-02"),
            &cal,
        );
        assert!(s.outside_tolerance);
        assert_eq!(s.next_due, Some(day("2025-01-15")));
        // Never serviced: one interval after installation; overdue once its window closed.
        let installed = anchor(None, None, None, Some(day("2024-01-10")));
        assert_eq!(
            installed,
            Some((day("2024-01-10"), AnchorSource::Installed))
        );
        let s = standing(SIX_MONTHLY, installed, &[], day("2024-08-11"), &cal);
        assert_eq!(s.next_due, Some(day("2024-07-10")));
        assert!(s.overdue);
        let s = standing(SIX_MONTHLY, None, &[], day("2024-08-11"), &cal);
        assert!(s.next_due.is_none() && s.overdue);
    }

    #[test]
    fn an_explicit_anchor_wins_and_places_older_services() {
        // The asset's anchor beats the building's, which beats the first service.
        assert_eq!(
            anchor(
                Some(day("2020-03-01")),
                Some(day("2021-01-01")),
                Some(day("2019-05-05")),
                None
            ),
            Some((day("2020-03-01"), AnchorSource::Asset))
        );
        assert_eq!(
            anchor(None, Some(day("2021-01-01")), Some(day("2019-05-05")), None).map(|a| a.1),
            Some(AnchorSource::Building)
        );
        // A contract anchored on 2026-03-01 with a service imported from before it: the
        // service sits on the grid extended backwards (2025-09-01 ± 1 month).
        let a = Some((day("2026-03-01"), AnchorSource::Building));
        let s = standing(
            SIX_MONTHLY,
            a,
            &[day("2025-08-20")],
            day("2026-01-10"),
            &cal(),
        );
        assert_eq!(s.last_scheduled, Some(day("2025-09-01")));
        assert_eq!(s.next_due, Some(day("2026-03-01")));
        assert!(!s.overdue && !s.outside_tolerance);
    }

    fn cal() -> Calendar {
        Calendar::default()
    }

    #[test]
    fn occurrences_list_every_date_in_the_period() {
        let d = occurrences(
            MONTHLY,
            day("2026-01-31"),
            day("2026-02-28"),
            day("2026-01-01"),
            day("2026-06-30"),
        );
        assert_eq!(
            d,
            [
                "2026-02-28",
                "2026-03-31",
                "2026-04-30",
                "2026-05-31",
                "2026-06-30"
            ]
            .map(day)
            .to_vec(),
            "month ends stay month ends"
        );
    }

    #[test]
    fn weekly_routines_count_in_days() {
        let weekly = Routine {
            months: 0,
            days: 7,
            tolerance: Tolerance::WorkingDays(2),
        };
        let a = Some((day("2026-11-30"), AnchorSource::Building));
        // Serviced Wednesday 2026-12-09 for Monday 2026-12-07 (+2 working days): on time.
        let s = standing(weekly, a, &[day("2026-12-09")], day("2026-12-10"), &cal());
        assert_eq!(s.last_scheduled, Some(day("2026-12-07")));
        assert_eq!(s.next_due, Some(day("2026-12-14")));
        assert!(!s.outside_tolerance);
        // Thursday is two working days early for Monday 2026-12-14: it meets that date.
        let s = standing(weekly, a, &[day("2026-12-10")], day("2026-12-10"), &cal());
        assert!(!s.outside_tolerance);
        assert_eq!(s.last_scheduled, Some(day("2026-12-14")));
        assert_eq!(s.next_due, Some(day("2026-12-21")));
        let d = occurrences(
            weekly,
            day("2026-11-30"),
            day("2026-12-14"),
            day("2026-12-01"),
            day("2026-12-31"),
        );
        assert_eq!(
            d,
            ["2026-12-14", "2026-12-21", "2026-12-28"].map(day).to_vec()
        );
        // A weekly check due with a monthly one is part of it.
        let dues = [
            Due {
                date: day("2026-12-28"),
                routine: weekly,
            },
            Due {
                date: day("2026-12-28"),
                routine: MONTHLY,
            },
        ];
        assert_eq!(fold(&dues, &cal()), vec![Some(1), None]);
    }

    #[test]
    fn shorter_routines_fold_into_longer_ones_due_together() {
        let yearly = Routine {
            months: 12,
            days: 0,
            tolerance: Tolerance::Months(2),
        };
        let dues = [
            Due {
                date: day("2026-07-15"),
                routine: SIX_MONTHLY,
            },
            Due {
                date: day("2027-01-15"),
                routine: SIX_MONTHLY,
            },
            Due {
                date: day("2027-01-20"),
                routine: yearly,
            },
            Due {
                date: day("2026-12-15"),
                routine: MONTHLY,
            },
        ];
        let f = fold(&dues, &cal());
        assert_eq!(f, vec![None, Some(2), None, None]);
    }

    proptest! {
        /// Thirty years of services each somewhere inside its window: the schedule never moves
        /// off the anchor's grid and no service counts as late.
        #[test]
        fn no_drift_over_thirty_years(
            start in (0i64..3650).prop_map(|n| day("2000-01-01") + chrono::Duration::days(n)),
            pick_routine in 0usize..4,
            offsets in proptest::collection::vec(-1.0f64..=1.0, 360),
        ) {
            let cal = Calendar {
                holidays: super::super::holidays::holiday_dates(
                    Some(super::super::holidays::AuState::Nsw), 1999..=2045, []),
            };
            let routine = [MONTHLY, THREE_MONTHLY, SIX_MONTHLY, YEARLY][pick_routine];
            let grid = Grid { anchor: start, routine };
            let periods = (360 / routine.months) as usize;
            let mut services = vec![start];
            for (k, f) in offsets.iter().take(periods).enumerate() {
                let due = grid.date(k as i64 + 1).unwrap();
                let w = window(due, routine.tolerance, &cal);
                let span = (w.late - w.early).num_days() as f64;
                let pick = w.early + chrono::Duration::days(((f + 1.0) / 2.0 * span).round() as i64);
                prop_assert!(w.contains(pick));
                services.push(pick);
                let s = standing(routine, Some((start, AnchorSource::FirstService)), &services, pick, &cal);
                prop_assert!(!s.outside_tolerance, "{pick} for {due}");
                prop_assert_eq!(s.last_scheduled, Some(due));
                prop_assert_eq!(s.next_due, grid.date(k as i64 + 2));
                prop_assert!(!s.overdue);
            }
        }

        /// A service is outside tolerance exactly when no scheduled date's window holds it, and
        /// the next due date is always a grid date after the service.
        #[test]
        fn a_service_is_late_only_outside_every_window(
            start in (0i64..3650).prop_map(|n| day("2000-01-01") + chrono::Duration::days(n)),
            pick_routine in 0usize..4,
            offset in 0i64..4000,
        ) {
            let routine = [MONTHLY, THREE_MONTHLY, SIX_MONTHLY, YEARLY][pick_routine];
            let grid = Grid { anchor: start, routine };
            let s_day = start + chrono::Duration::days(offset);
            let st = standing(routine, Some((start, AnchorSource::Building)), &[s_day], s_day, &cal());
            let in_some_window = (-1..=400).filter_map(|k| grid.date(k))
                .any(|g| window(g, routine.tolerance, &cal()).contains(s_day));
            prop_assert_eq!(st.outside_tolerance, !in_some_window);
            let next = st.next_due.unwrap();
            prop_assert!(next > s_day, "next {next} after the service {s_day}");
            prop_assert!((-1..=400).filter_map(|k| grid.date(k)).any(|g| g == next));
        }
    }
}
