//! Retention of an archived building's records, and when they may be purged. AS 1851 asks for
//! records to be kept at least seven years (cl. 1.16.6 in the 2012 edition; a recommendation
//! added to cl. 1.15.2 by Amdt 2 of the 2005 edition); deleting a building that holds records
//! archives it with `retain_until` seven years on. A purge removes an archived building with
//! everything that belongs to it — only once its retention has ended, and never for an
//! operator's cut-off shorter than the seven years.

use chrono::{DateTime, Months, Utc};

/// The shortest retention the server accepts, in years.
pub const MIN_YEARS: u32 = 7;

/// Why a `--older-than-years` value is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCutoff(pub String);

/// The archive date a building must be older than to be purged: `years` before `now`.
/// Refuses fewer than [`MIN_YEARS`] years (and absurd values).
pub fn cutoff(years: u32, now: DateTime<Utc>) -> Result<DateTime<Utc>, BadCutoff> {
    if years < MIN_YEARS {
        return Err(BadCutoff(format!(
            "--older-than-years must be at least {MIN_YEARS}: records are kept seven years"
        )));
    }
    years
        .checked_mul(12)
        .and_then(|m| now.checked_sub_months(Months::new(m)))
        .ok_or_else(|| BadCutoff(format!("--older-than-years {years} is out of range")))
}

/// What happens to one archived building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Its retention has ended and it was archived before the cut-off.
    Purge,
    /// Kept, and why.
    Keep(&'static str),
}

/// Whether an archived building (archived at `archived_at`, records kept until
/// `retain_until`) is purged by a run with `cutoff` at `now`. Both conditions must hold: the
/// building's own retention date (which a longer retention set at archiving would push out)
/// and the operator's cut-off.
pub fn decide(
    archived_at: DateTime<Utc>,
    retain_until: DateTime<Utc>,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Decision {
    if retain_until > now {
        Decision::Keep("inside retention")
    } else if archived_at > cutoff {
        Decision::Keep("archived after the cut-off")
    } else {
        Decision::Purge
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_minimum_is_the_records_retention() {
        assert_eq!(MIN_YEARS, crate::records::RETENTION_YEARS);
    }

    #[test]
    fn cutoffs_under_seven_years_are_refused() {
        let now = at("2026-12-06T10:00:00Z");
        assert!(cutoff(6, now).is_err());
        assert!(cutoff(0, now).is_err());
        assert_eq!(cutoff(7, now).unwrap(), at("2019-12-06T10:00:00Z"));
        assert!(cutoff(u32::MAX, now).is_err());
    }

    #[test]
    fn a_building_is_purged_only_after_both_dates() {
        let now = at("2026-12-06T10:00:00Z");
        let cut = cutoff(7, now).unwrap();
        let archived = at("2019-01-01T00:00:00Z");
        assert_eq!(
            decide(archived, at("2026-01-01T00:00:00Z"), cut, now),
            Decision::Purge
        );
        assert_eq!(
            decide(archived, at("2027-01-01T00:00:00Z"), cut, now),
            Decision::Keep("inside retention")
        );
        assert_eq!(
            decide(
                at("2020-01-01T00:00:00Z"),
                at("2026-01-01T00:00:00Z"),
                cut,
                now
            ),
            Decision::Keep("archived after the cut-off")
        );
    }

    proptest! {
        /// Whatever the dates and the cut-off the operator gives, nothing inside its
        /// retention, and nothing archived less than seven years ago, is ever purged.
        #[test]
        fn nothing_inside_retention_is_purged(
            archived_days_ago in 0i64..6000,
            retained_days in -3000i64..6000,
            years in 0u32..40,
        ) {
            let now = at("2026-12-06T10:00:00Z");
            let archived = now - chrono::Duration::days(archived_days_ago);
            let until = archived + chrono::Duration::days(retained_days);
            let Ok(cut) = cutoff(years, now) else {
                prop_assert!(years < MIN_YEARS);
                return Ok(());
            };
            if decide(archived, until, cut, now) == Decision::Purge {
                prop_assert!(until <= now);
                prop_assert!(archived <= now.checked_sub_months(Months::new(12 * MIN_YEARS)).unwrap());
            }
        }
    }
}
