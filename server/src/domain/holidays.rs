//! Public holidays, for the working-day tolerances of the schedule (monthly: ±5 working days,
//! three-monthly: ±10). Working days skip weekends and the holidays of the building's state.
//!
//! Built in: the holidays every state and territory observes on the same day — New Year's Day,
//! Australia Day, Good Friday, Easter Monday, Anzac Day, Christmas Day and Boxing Day, with the
//! Monday (or Tuesday) substitutes that apply when New Year's Day, Australia Day, Christmas or
//! Boxing Day fall on a weekend — plus the King's Birthday, whose date differs by state. The
//! rest (Labour Day, show days, Melbourne Cup, ...) differ by state and region and change by
//! proclamation: an organisation adds them per state ([`crate::store`]'s `public_holidays`).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Days, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An Australian state or territory.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum AuState {
    Act,
    Nsw,
    Nt,
    Qld,
    Sa,
    Tas,
    Vic,
    Wa,
}

impl AuState {
    pub const ALL: [AuState; 8] = [
        Self::Act,
        Self::Nsw,
        Self::Nt,
        Self::Qld,
        Self::Sa,
        Self::Tas,
        Self::Vic,
        Self::Wa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Act => "ACT",
            Self::Nsw => "NSW",
            Self::Nt => "NT",
            Self::Qld => "QLD",
            Self::Sa => "SA",
            Self::Tas => "TAS",
            Self::Vic => "VIC",
            Self::Wa => "WA",
        }
    }
}

impl fmt::Display for AuState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "'{s}' is not an Australian state or territory ({})",
                    Self::ALL.map(Self::as_str).join(", ")
                )
            })
    }
}

/// A public holiday.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
pub struct Holiday {
    pub date: NaiveDate,
    pub name: String,
}

/// Easter Sunday of `year` (Gregorian calendar; the anonymous algorithm of 1876).
pub fn easter_sunday(year: i32) -> Option<NaiveDate> {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32)
}

/// The `n`-th (1-based) `weekday` of a month.
fn nth_weekday(year: i32, month: u32, weekday: Weekday, n: u32) -> Option<NaiveDate> {
    NaiveDate::from_weekday_of_month_opt(year, month, weekday, n as u8)
}

fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// The built-in public holidays of `state` in `year` (see the module's documentation).
pub fn built_in(state: AuState, year: i32) -> Vec<Holiday> {
    let mut out: Vec<Holiday> = Vec::new();
    let mut add = |d: Option<NaiveDate>, name: &str| {
        if let Some(date) = d {
            out.push(Holiday {
                date,
                name: name.to_owned(),
            });
        }
    };
    let ymd = |m, d| NaiveDate::from_ymd_opt(year, m, d);
    let next_monday = |d: NaiveDate| {
        let ahead = (7 - d.weekday().num_days_from_monday()) % 7;
        d.checked_add_days(Days::new(u64::from(ahead)))
    };

    for (date, name) in [(ymd(1, 1), "New Year's Day"), (ymd(1, 26), "Australia Day")] {
        add(date, name);
        if let Some(d) = date.filter(|d| is_weekend(*d)) {
            add(next_monday(d), &format!("{name} (additional day)"));
        }
    }
    if let Some(easter) = easter_sunday(year) {
        add(easter.checked_sub_days(Days::new(2)), "Good Friday");
        add(easter.checked_add_days(Days::new(1)), "Easter Monday");
    }
    add(ymd(4, 25), "Anzac Day");
    let kings_birthday = match state {
        AuState::Qld => nth_weekday(year, 10, Weekday::Mon, 1),
        // Proclaimed each year in WA, usually the last Monday of September.
        AuState::Wa => NaiveDate::from_ymd_opt(year, 9, 30).and_then(|d| {
            d.checked_sub_days(Days::new(u64::from(d.weekday().num_days_from_monday())))
        }),
        _ => nth_weekday(year, 6, Weekday::Mon, 2),
    };
    add(kings_birthday, "King's Birthday");
    let (christmas, boxing) = (ymd(12, 25), ymd(12, 26));
    add(christmas, "Christmas Day");
    add(boxing, "Boxing Day");
    // Weekend substitutes: the next working days not already holidays.
    if let (Some(c), Some(_)) = (christmas, boxing) {
        let (c_sub, b_sub) = match c.weekday() {
            Weekday::Fri => (None, ymd(12, 28)),
            Weekday::Sat => (ymd(12, 27), ymd(12, 28)),
            Weekday::Sun => (ymd(12, 27), None),
            _ => (None, None),
        };
        add(c_sub, "Christmas Day (additional day)");
        add(b_sub, "Boxing Day (additional day)");
    }
    out.sort();
    out
}

/// The holiday dates of `state` over `years` (built in) plus `configured` ones.
pub fn holiday_dates(
    state: Option<AuState>,
    years: std::ops::RangeInclusive<i32>,
    configured: impl IntoIterator<Item = NaiveDate>,
) -> BTreeSet<NaiveDate> {
    let mut set: BTreeSet<NaiveDate> = configured.into_iter().collect();
    if let Some(state) = state {
        for year in years {
            set.extend(built_in(state, year).into_iter().map(|h| h.date));
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn easter_matches_known_dates() {
        for (year, expected) in [
            (2019, "2019-04-21"),
            (2024, "2024-03-31"),
            (2025, "2025-04-20"),
            (2026, "2026-04-05"),
            (2027, "2027-03-28"),
            (2038, "2038-04-25"),
        ] {
            assert_eq!(easter_sunday(year), Some(day(expected)), "{year}");
        }
    }

    #[test]
    fn weekend_holidays_get_substitute_days() {
        // 2022: Christmas on a Sunday, Boxing Day Monday, Tuesday 27 the Christmas substitute;
        // New Year's Day on a Saturday, Monday 3 January the additional day.
        let h: Vec<NaiveDate> = built_in(AuState::Nsw, 2022)
            .into_iter()
            .map(|h| h.date)
            .collect();
        for d in ["2022-01-03", "2022-12-26", "2022-12-27", "2022-06-13"] {
            assert!(h.contains(&day(d)), "{d} in {h:?}");
        }
        // 2021: Christmas on a Saturday: Monday 27 and Tuesday 28.
        let h: Vec<NaiveDate> = built_in(AuState::Vic, 2021)
            .into_iter()
            .map(|h| h.date)
            .collect();
        assert!(h.contains(&day("2021-12-27")) && h.contains(&day("2021-12-28")));
        // 2026: Christmas on a Friday, Boxing Day Saturday, Monday 28 the substitute.
        let h: Vec<NaiveDate> = built_in(AuState::Sa, 2026)
            .into_iter()
            .map(|h| h.date)
            .collect();
        assert!(h.contains(&day("2026-12-28")));
        assert!(!h.contains(&day("2026-12-27")));
    }

    #[test]
    fn kings_birthday_differs_by_state() {
        let kb = |s| {
            built_in(s, 2026)
                .into_iter()
                .find(|h| h.name == "King's Birthday")
                .map(|h| h.date)
        };
        assert_eq!(kb(AuState::Nsw), Some(day("2026-06-08")));
        assert_eq!(kb(AuState::Qld), Some(day("2026-10-05")));
        assert_eq!(kb(AuState::Wa), Some(day("2026-09-28")));
    }

    #[test]
    fn states_parse_in_any_case() {
        assert_eq!("nsw".parse::<AuState>(), Ok(AuState::Nsw));
        assert!("XYZ".parse::<AuState>().is_err());
        assert_eq!(
            serde_json::to_string(&AuState::Act).unwrap(),
            "\"ACT\"",
            "serialised as the code"
        );
    }
}
