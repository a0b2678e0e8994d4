//! What was due in a period and what was done about it: each scheduled date of a routine that
//! falls in the period, with the service that met it (on time, late) or none (missed, or still
//! pending while its tolerance window is open). The yearly condition report and the essential
//! safety measures export count these.
//!
//! The grid is `crate::domain::schedule`'s: anchored at the first service known (or, never
//! serviced, one interval after installation, else the period's first day), a service inside a
//! scheduled date's tolerance window meets it and keeps the grid, and a second visit before the
//! next window opens meets nothing new. A date whose window closed without a service was
//! missed; a later service inside a later date's window meets that date (the grid stays: a
//! skipped month is one missed month), and one that falls between two windows is the last
//! missed date done late, and restarts the grid from it (where the compliance report restarts
//! the grid at any service outside the next window).

use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::schedule::{window, Calendar, Routine};

/// How a scheduled date was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kept {
    /// Serviced inside its tolerance window.
    OnTime,
    /// Serviced after its window closed.
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

fn nth(anchor: NaiveDate, months: u32, k: u32) -> Option<NaiveDate> {
    anchor.checked_add_months(Months::new(months.checked_mul(k)?))
}

/// The scheduled dates of `routine` in `from..=to` with how each was kept, given the days it was
/// serviced (any order, repeats count once; days after `as_of` are ignored), the install date,
/// and the day the period is judged on (`as_of`, at most `to`: a date whose window is still
/// open on it is pending).
pub fn occurrences(
    routine: Routine,
    services: &[NaiveDate],
    installed: Option<NaiveDate>,
    from: NaiveDate,
    to: NaiveDate,
    as_of: NaiveDate,
    cal: &Calendar,
) -> Vec<Occurrence> {
    let mut days: Vec<NaiveDate> = services.iter().copied().filter(|d| *d <= as_of).collect();
    days.sort();
    days.dedup();
    let mut out = Vec::new();
    let mut push = |o: Occurrence| {
        if from <= o.due && o.due <= to {
            out.push(o);
        }
    };
    let unmet = |due: NaiveDate| {
        let due_by = window(due, routine.tolerance, cal).late;
        Occurrence {
            due,
            due_by,
            done: None,
            kept: if due_by >= as_of {
                Kept::Pending
            } else {
                Kept::Missed
            },
        }
    };
    // Where the grid starts, and whether its start is itself a service.
    let (mut anchor, mut next_k, mut idx) = match days.first() {
        Some(&first) => {
            push(Occurrence {
                due: first,
                due_by: first,
                done: Some(first),
                kept: Kept::OnTime,
            });
            (first, 1, 1)
        }
        None => (
            installed
                .and_then(|d| nth(d, routine.months, 1))
                .unwrap_or(from),
            0,
            0,
        ),
    };
    // Bounded: each turn either consumes a service or moves the grid one interval on.
    while let Some(due) = nth(anchor, routine.months, next_k) {
        if due > to {
            break;
        }
        let w = window(due, routine.tolerance, cal);
        // Visits before this window opened met an earlier date already.
        while idx < days.len() && days[idx] < w.early {
            idx += 1;
        }
        match days.get(idx) {
            Some(&s) if w.contains(s) => {
                push(Occurrence {
                    due,
                    due_by: w.late,
                    done: Some(s),
                    kept: Kept::OnTime,
                });
                idx += 1;
                next_k += 1;
            }
            Some(&s) => {
                // After this window closed. The dates whose windows closed before `s` were
                // missed; if `s` is inside a later date's window it meets that one on time and
                // the grid stays; if it falls between windows it is the last missed date's
                // service, done late, and the grid restarts from it.
                let mut k = next_k;
                let mut pending_miss: Option<Occurrence> = None;
                while let Some(d) = nth(anchor, routine.months, k) {
                    let wk = window(d, routine.tolerance, cal);
                    if wk.contains(s) {
                        if let Some(m) = pending_miss.take() {
                            push(m);
                        }
                        push(Occurrence {
                            due: d,
                            due_by: wk.late,
                            done: Some(s),
                            kept: Kept::OnTime,
                        });
                        next_k = k + 1;
                        break;
                    }
                    if s < wk.early {
                        // Between windows: the last missed date was done late.
                        if let Some(mut m) = pending_miss.take() {
                            m.done = Some(s);
                            m.kept = Kept::Late;
                            push(m);
                        }
                        anchor = s;
                        next_k = 1;
                        break;
                    }
                    if let Some(m) = pending_miss.replace(Occurrence {
                        due: d,
                        due_by: wk.late,
                        done: None,
                        kept: Kept::Missed,
                    }) {
                        push(m);
                    }
                    k += 1;
                }
                idx += 1;
            }
            None => {
                push(unmet(due));
                next_k += 1;
            }
        }
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
        tolerance: Tolerance::Months(1),
    };
    const MONTHLY: Routine = Routine {
        months: 1,
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
            &[day("2024-01-10"), day("2024-07-15")],
            None,
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
        // earlier one missed, and the grid restarts from the service.
        let o = occurrences(
            SIX_MONTHLY,
            &[day("2023-01-10"), day("2024-03-01")],
            None,
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
                ("2024-09-01".into(), Kept::Missed),
            ]
        );
        assert_eq!(o[1].done, Some(day("2024-03-01")));
        // A skipped month is one missed date: the next month's visit is on time.
        let o = occurrences(
            MONTHLY,
            &[day("2024-03-15"), day("2024-04-15"), day("2024-06-14")],
            None,
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
            &[],
            Some(day("2024-02-01")),
            day("2024-01-01"),
            day("2024-12-31"),
            day("2024-12-31"),
            &cal,
        );
        assert_eq!(kept(&o), vec![("2024-08-01".into(), Kept::Missed)]);
        let o = occurrences(
            SIX_MONTHLY,
            &[],
            None,
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
                let due = nth(anchor, 1, k as u32 + 1).unwrap();
                let s = cal.add_working_days(due, *off);
                days.push(s);
            }
            let to = nth(anchor, 1, 360).unwrap();
            let as_of = cal.add_working_days(to, 10);
            let o = occurrences(MONTHLY, &days, None, anchor, to, as_of, &cal);
            prop_assert_eq!(o.len(), 361);
            prop_assert!(o.iter().all(|o| o.kept == Kept::OnTime), "{:?}", o.iter().find(|o| o.kept != Kept::OnTime));
        }
    }
}
