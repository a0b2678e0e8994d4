//! The report as CSV (RFC 4180, CRLF): one line per row of the JSON report, same fields, same
//! order.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{Report, ReportRow};

/// Column names, in order.
pub const COLUMNS: [&str; 25] = [
    "asset_id",
    "identifier",
    "asset_type",
    "location",
    "rule_code",
    "rule_name",
    "frequency",
    "last_service",
    "serviced_under",
    "last_session_id",
    "outcome",
    "classification",
    "suggested_outcome",
    "overrides_suggestion",
    "previous_service",
    "interval_days",
    "outside_tolerance",
    "next_due",
    "due_by",
    "overdue",
    "open_critical",
    "open_non_critical",
    "open_non_conformance",
    "open_defects",
    "status",
];

pub fn render(report: &Report) -> Vec<u8> {
    let mut w = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(250 * (report.items.len() + 1)));
    // Writing into a Vec cannot fail.
    let _ = w.write_record(COLUMNS);
    for row in &report.items {
        let _ = w.write_record(fields(row).map(guard));
    }
    w.into_inner().unwrap_or_default()
}

fn fields(r: &ReportRow) -> [String; 25] {
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    let time = |t: &Option<DateTime<Utc>>| {
        t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    let date = |d: Option<chrono::NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
    [
        r.asset_id.to_string(),
        opt(&r.identifier),
        r.asset_type.clone(),
        r.location.clone(),
        opt(&r.rule_code),
        opt(&r.rule_name),
        opt(&r.frequency),
        time(&r.last_service),
        opt(&r.serviced_under),
        r.last_session_id.map(|s| s.to_string()).unwrap_or_default(),
        opt(&r.outcome),
        opt(&r.classification),
        opt(&r.suggested_outcome),
        r.overrides_suggestion.to_string(),
        time(&r.previous_service),
        r.interval_days.map(|d| d.to_string()).unwrap_or_default(),
        r.outside_tolerance.to_string(),
        date(r.next_due),
        date(r.due_by),
        r.overdue.to_string(),
        r.open_defects.critical.to_string(),
        r.open_defects.non_critical.to_string(),
        r.open_defects.non_conformance.to_string(),
        r.open_defects.total().to_string(),
        r.status.as_str().to_owned(),
    ]
}

/// Text a spreadsheet would run as a formula (a leading `=`, `+`, `-`, `@`, tab or CR: OWASP
/// "CSV injection") gets a leading `'`; locations and identifiers are typed by users. Numbers
/// and dates never start with these. Shared with `crate::records::csv`.
pub(crate) fn guard(value: String) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_guarded() {
        assert_eq!(guard("EXT-01".into()), "EXT-01");
        assert_eq!(guard("=HYPERLINK(\"x\")".into()), "'=HYPERLINK(\"x\")");
        assert_eq!(guard("-1".into()), "'-1");
        assert_eq!(guard("@SUM(A1)".into()), "'@SUM(A1)");
        assert_eq!(guard("".into()), "");
    }
}
