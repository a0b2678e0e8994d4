//! The logbook and the statement export as CSV (RFC 4180, CRLF). Text a spreadsheet would run
//! as a formula is guarded as in the compliance report's CSV.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{reading_text, EsmStatement, Logbook, PersonRef};
use crate::compliance::csv::guard;

/// Logbook columns: one line per service (`record` = `service`; `source` says whether it is a
/// session's result, imported history or an office entry) then one per defect (`record` =
/// `defect`); columns that do not apply to a line are empty.
pub const LOGBOOK_COLUMNS: [&str; 28] = [
    "record",
    "date",
    "session_id",
    "session_name",
    "asset_id",
    "identifier",
    "asset_type",
    "location",
    "rule_code",
    "rule_name",
    "frequency",
    "outcome",
    "classification",
    "observed_conditions",
    "readings",
    "notes",
    "performed_by",
    "performed_by_licence",
    "signed_off_by",
    "signed_off_licence",
    "signed_off_at",
    "defect_id",
    "defect_title",
    "severity",
    "defect_status",
    "found_at",
    "rectified_at",
    "source",
];

/// Statement export columns: one line per measure.
pub const ESM_COLUMNS: [&str; 17] = [
    "measure",
    "equipment",
    "standard_of_performance",
    "period_start",
    "period_end",
    "assets",
    "routines_due",
    "done_on_time",
    "done_late",
    "missed",
    "pending",
    "serviced_per_schedule",
    "last_serviced",
    "outstanding_defects",
    "condition",
    "assessor",
    "assessor_licence",
];

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn name(p: Option<&PersonRef>) -> String {
    p.map(|p| p.name.clone()).unwrap_or_default()
}

fn licence(p: Option<&PersonRef>) -> String {
    p.and_then(|p| p.licence.clone()).unwrap_or_default()
}

fn writer(rows: usize) -> ::csv::Writer<Vec<u8>> {
    ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(300 * (rows + 1)))
}

pub fn logbook(l: &Logbook) -> Vec<u8> {
    let mut w = writer(l.entries.len() + l.defects.len());
    // Writing into a Vec cannot fail.
    let _ = w.write_record(LOGBOOK_COLUMNS);
    for e in &l.entries {
        let readings: Vec<String> = e.readings.iter().map(reading_text).collect();
        let row: [String; 28] = [
            "service".into(),
            e.date.to_string(),
            e.session_id.map(|s| s.to_string()).unwrap_or_default(),
            e.session_name.clone(),
            e.asset_id.clone(),
            e.identifier.clone().unwrap_or_default(),
            e.asset_type.clone(),
            e.location.clone(),
            e.rule_code.clone().unwrap_or_default(),
            e.rule_name.clone().unwrap_or_default(),
            e.frequency.clone().unwrap_or_default(),
            e.outcome.clone(),
            e.classification.clone().unwrap_or_default(),
            e.observed_conditions.join("; "),
            readings.join("; "),
            e.notes.clone(),
            name(e.performed_by.as_ref()),
            licence(e.performed_by.as_ref()),
            name(e.signed_off.as_ref().map(|s| &s.by)),
            e.signed_off
                .as_ref()
                .map(|s| s.licence.clone())
                .unwrap_or_default(),
            time(e.signed_off.as_ref().map(|s| s.at)),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            e.source.clone(),
        ];
        let _ = w.write_record(row.map(guard));
    }
    for d in &l.defects {
        let row: [String; 28] = [
            "defect".into(),
            d.found_at.date_naive().to_string(),
            String::new(),
            String::new(),
            d.asset_id.map(|a| a.to_string()).unwrap_or_default(),
            d.identifier.clone().unwrap_or_default(),
            d.asset_type.clone().unwrap_or_default(),
            d.location.clone().unwrap_or_default(),
            d.rule_code.clone().unwrap_or_default(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            d.observed_condition.clone().unwrap_or_default(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            d.id.to_string(),
            d.title.clone(),
            d.severity.clone(),
            d.status.clone(),
            time(Some(d.found_at)),
            time(d.rectified_at),
            String::new(),
        ];
        let _ = w.write_record(row.map(guard));
    }
    w.into_inner().unwrap_or_default()
}

pub fn esm(s: &EsmStatement) -> Vec<u8> {
    let mut w = writer(s.measures.len());
    let _ = w.write_record(ESM_COLUMNS);
    for m in &s.measures {
        let r = &m.routines;
        let row: [String; 17] = [
            m.measure.clone(),
            m.equipment.join("; "),
            m.standard_of_performance.clone(),
            s.period_start.to_string(),
            s.period_end.to_string(),
            m.assets.to_string(),
            r.due.to_string(),
            r.on_time.to_string(),
            r.late.to_string(),
            r.missed.to_string(),
            r.pending.to_string(),
            m.serviced_per_schedule.to_string(),
            m.last_serviced.map(|d| d.to_string()).unwrap_or_default(),
            m.outstanding.total().to_string(),
            m.condition.label().to_owned(),
            name(m.assessor.as_ref()),
            licence(m.assessor.as_ref()),
        ];
        let _ = w.write_record(row.map(guard));
    }
    w.into_inner().unwrap_or_default()
}
