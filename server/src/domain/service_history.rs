//! Services recorded outside a session (a site's history brought by the CSV import, or entered
//! by the office): how a last-service cell is written and what makes a recorded service
//! believable for an asset. Pure; the import and the service-history endpoint both call it.
//!
//! A `last_services` cell lists one entry per routine, separated by `;`:
//! `RULE_CODE=YYYY-MM-DD`, optionally followed by `:fail` (or `:pass`, the default), for
//! example `AS1851-10-6M-EXT=2026-05-10;AS1851-10-12M-EXT=2025-11-02:fail`.

use chrono::{Days, NaiveDate};

/// The outcome of a recorded service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
}

impl Outcome {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pass" => Some(Self::Pass),
            "fail" => Some(Self::Fail),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
        }
    }
}

/// One entry of a `last_services` cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastService {
    pub rule_code: String,
    pub serviced_on: NaiveDate,
    pub outcome: Outcome,
}

/// A calendar date written `YYYY-MM-DD` (exactly: ten characters, no time, no other order).
pub fn parse_day(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    let shaped = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    shaped
        .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
}

/// Read a `last_services` cell. Every problem is reported (one message each); a routine may
/// appear once.
pub fn parse_last_services(cell: &str) -> Result<Vec<LastService>, Vec<String>> {
    let mut out: Vec<LastService> = Vec::new();
    let mut errors = Vec::new();
    for entry in cell.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((code, rest)) = entry.split_once('=') else {
            errors.push(format!(
                "'{entry}' is not RULE_CODE=YYYY-MM-DD (optionally followed by :fail)"
            ));
            continue;
        };
        let code = code.trim();
        let (day, outcome) = match rest.split_once(':') {
            None => (rest, Some(Outcome::Pass)),
            Some((day, outcome)) => (day, Outcome::parse(outcome)),
        };
        let Some(outcome) = outcome else {
            errors.push(format!(
                "'{entry}': the outcome after ':' must be pass or fail"
            ));
            continue;
        };
        let Some(serviced_on) = parse_day(day) else {
            errors.push(format!(
                "'{entry}': '{}' is not a date YYYY-MM-DD",
                day.trim()
            ));
            continue;
        };
        if code.is_empty() {
            errors.push(format!("'{entry}': the rule code is missing"));
            continue;
        }
        if out.iter().any(|s| s.rule_code == code) {
            errors.push(format!("rule '{code}' appears more than once"));
            continue;
        }
        out.push(LastService {
            rule_code: code.to_owned(),
            serviced_on,
            outcome,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The asset a service is recorded for, as far as checking it is concerned.
#[derive(Debug, Clone, Copy)]
pub struct ServicedAsset<'a> {
    pub asset_type: &'a str,
    pub install_date: Option<NaiveDate>,
    pub manufacture_date: Option<NaiveDate>,
}

/// Which part of a recorded service is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Rule,
    Date,
}

/// Check a recorded service: the rule exists for the organisation (`equipment_of` answers the
/// equipment kind of a rule code it sees) and is for the asset's kind; the day is not after
/// `today` (plus one day: the office may be a time zone ahead of UTC), not before 1900 and not
/// before the asset was made or installed. Every problem is returned.
pub fn check(
    rule_code: &str,
    serviced_on: NaiveDate,
    asset: ServicedAsset<'_>,
    equipment_of: impl Fn(&str) -> Option<String>,
    today: NaiveDate,
) -> Vec<(Part, String)> {
    let mut problems = Vec::new();
    match equipment_of(rule_code) {
        None => problems.push((
            Part::Rule,
            format!("rule '{rule_code}' does not exist or has no active version"),
        )),
        Some(eq) if eq != asset.asset_type => problems.push((
            Part::Rule,
            format!("rule '{rule_code}' is for {eq}, not {}", asset.asset_type),
        )),
        Some(_) => {}
    }
    let latest = today.checked_add_days(Days::new(1)).unwrap_or(today);
    let earliest = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN);
    if serviced_on > latest {
        problems.push((
            Part::Date,
            format!("{rule_code} serviced on {serviced_on}: that is in the future"),
        ));
    } else if serviced_on < earliest {
        problems.push((
            Part::Date,
            format!("{rule_code} serviced on {serviced_on}: before 1900"),
        ));
    }
    for (what, day) in [
        ("installed", asset.install_date),
        ("made", asset.manufacture_date),
    ] {
        if let Some(day) = day.filter(|d| serviced_on < *d) {
            problems.push((
                Part::Date,
                format!(
                    "{rule_code} serviced on {serviced_on}, before the asset was {what} ({day})"
                ),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        parse_day(s).unwrap()
    }

    #[test]
    fn a_cell_lists_routines_with_dates_and_optional_outcomes() {
        let got = parse_last_services(
            " AS1851-10-6M-EXT=2026-05-10 ; AS1851-10-12M-EXT=2025-11-02:FAIL;",
        )
        .unwrap();
        assert_eq!(
            got,
            [
                LastService {
                    rule_code: "AS1851-10-6M-EXT".into(),
                    serviced_on: d("2026-05-10"),
                    outcome: Outcome::Pass
                },
                LastService {
                    rule_code: "AS1851-10-12M-EXT".into(),
                    serviced_on: d("2025-11-02"),
                    outcome: Outcome::Fail
                },
            ]
        );
        assert_eq!(parse_last_services("").unwrap(), []);
    }

    #[test]
    fn every_bad_entry_is_named() {
        let errs = parse_last_services(
            "A=2026-02-30;B;C=10/05/2026;D=2026-01-01:maybe;A=2025-01-01;E=2025-01-01;E=2024-01-01",
        )
        .unwrap_err();
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(errs[0].contains("2026-02-30"));
        assert!(errs[1].contains("'B'"));
        assert!(errs[2].contains("10/05/2026"));
        assert!(errs[3].contains("pass or fail"));
        assert!(errs[4].contains("'E' appears more than once"));
        assert!(parse_day("2026-5-10").is_none());
        assert!(parse_day("2026-05-10T00:00").is_none());
    }

    #[test]
    fn a_service_must_fit_the_asset_and_the_calendar() {
        let eq = |code: &str| match code {
            "EXT-6M" => Some("portable_extinguisher".to_owned()),
            "FD-6M" => Some("fire_door".to_owned()),
            _ => None,
        };
        let asset = ServicedAsset {
            asset_type: "portable_extinguisher",
            install_date: Some(d("2020-03-01")),
            manufacture_date: Some(d("2019-06-01")),
        };
        let today = d("2026-12-06");
        assert!(check("EXT-6M", d("2026-06-01"), asset, eq, today).is_empty());
        assert!(
            check("EXT-6M", d("2026-12-07"), asset, eq, today).is_empty(),
            "a day ahead"
        );
        let parts = |code, day| -> Vec<Part> {
            check(code, d(day), asset, eq, today)
                .into_iter()
                .map(|p| p.0)
                .collect()
        };
        assert_eq!(parts("EXT-6M", "2026-12-08"), [Part::Date]);
        assert_eq!(
            parts("EXT-6M", "2020-02-29"),
            [Part::Date],
            "before install"
        );
        assert_eq!(
            parts("EXT-6M", "2019-01-01"),
            [Part::Date, Part::Date],
            "before install and manufacture"
        );
        assert_eq!(parts("FD-6M", "2026-06-01"), [Part::Rule]);
        assert_eq!(
            parts("NOPE", "1899-12-31"),
            [Part::Rule, Part::Date, Part::Date, Part::Date]
        );
    }
}
