//! The records as printable PDFs, laid out with `crate::compliance::pdf::layout` (the report
//! writer's fonts and primitives): the logbook (A4 landscape: the services table, then the
//! defects with the dates found and rectified), the yearly condition report (systems, then
//! late and missed routines and outstanding defects per system, then the signature), and the
//! statement export.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{
    reading_text, Condition, ConditionReport, EsmStatement, Logbook, PersonRef,
    SignedConditionReport,
};
use crate::compliance::pdf::layout::{
    col, render, Block, Cell, Document, Rgb, AMBER, GREEN, ORANGE, RED,
};
use crate::domain::period::Kept;

fn condition_rgb(c: Condition) -> Rgb {
    match c {
        Condition::Satisfactory => GREEN,
        Condition::AttentionRequired => AMBER,
        Condition::ServicesMissed => ORANGE,
        Condition::CriticalDefect => RED,
    }
}

fn severity_rgb(s: &str) -> Option<Rgb> {
    match s {
        "critical" => Some(RED),
        "non_critical" => Some(AMBER),
        _ => None,
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn words(code: &str) -> String {
    code.replace('_', " ")
}

fn person(p: Option<&PersonRef>) -> String {
    match p {
        Some(PersonRef {
            name,
            licence: Some(l),
            ..
        }) => format!("{name} (lic. {l})"),
        Some(p) => p.name.clone(),
        None => "-".into(),
    }
}

pub fn logbook(l: &Logbook) -> Vec<u8> {
    let b = &l.building;
    let s = &l.summary;
    let mut blocks = vec![
        Block::Title {
            title: "Building fire safety logbook".into(),
            subtitle: "Record of routine service of fire protection systems and equipment \
                       (AS 1851-2012 Section 1)"
                .into(),
        },
        Block::Heading(b.name.clone()),
        Block::Facts(vec![
            ("Address".into(), b.address.clone()),
            ("Building type".into(), b.building_type.clone()),
            ("Period".into(), format!("{} to {}", l.from, l.to)),
            ("Rule set".into(), b.rule_set.clone()),
            ("Sessions".into(), s.sessions.to_string()),
            (
                "Services (passed / failed)".into(),
                format!("{} ({} / {})", s.services, s.passed, s.failed),
            ),
            ("Not accessible".into(), s.not_accessible.to_string()),
            (
                "Defects found / rectified".into(),
                format!("{} / {}", s.defects_found, s.defects_rectified),
            ),
        ]),
        Block::Heading("Routine services".into()),
    ];
    let rows = l
        .entries
        .iter()
        .map(|e| {
            let outcome = match e.outcome.as_str() {
                "pass" => Cell::flagged("Pass", None),
                "fail" => Cell::flagged("Fail", Some(RED)),
                other => Cell::flagged(words(other), Some(ORANGE)),
            };
            let mut result: Vec<String> = e.observed_conditions.iter().map(|c| words(c)).collect();
            result.extend(e.readings.iter().map(reading_text));
            if !e.notes.trim().is_empty() {
                result.push(format!("Note: {}", e.notes.trim()));
            }
            match e.source.as_str() {
                "import" => result.push("Imported service history".into()),
                "office" => result.push("Entered by the office".into()),
                _ => {}
            }
            vec![
                Cell::from(e.date.to_string()),
                Cell::from(e.identifier.clone().unwrap_or_else(|| e.asset_id.clone())),
                Cell::from(format!("{} - {}", e.equipment, e.location)),
                Cell::from(format!(
                    "{} {}",
                    e.rule_code.clone().unwrap_or_default(),
                    e.rule_name.clone().unwrap_or_default()
                )),
                Cell::from(e.frequency.as_deref().map(words).unwrap_or_default()),
                outcome,
                Cell::from(result.join("; ")),
                Cell::from(person(e.performed_by.as_ref())),
                Cell::from(
                    e.signed_off
                        .as_ref()
                        .map(|s| {
                            format!("{} (lic. {}) {}", s.by.name, s.licence, s.at.date_naive())
                        })
                        .unwrap_or_else(|| {
                            if e.session_id.is_some() {
                                "not signed off".into()
                            } else {
                                "-".into()
                            }
                        }),
                ),
            ]
        })
        .collect();
    blocks.push(Block::Table {
        columns: vec![
            col("Date", 50.0),
            col("Asset", 55.0),
            col("Equipment and location", 110.0),
            col("Routine", 130.0),
            col("Frequency", 50.0),
            col("Outcome", 42.0),
            col("Results, readings, conditions", 170.0),
            col("Serviced by", 75.0),
            col("Signed off", 85.0),
        ],
        rows,
        empty: "No routine service was recorded in this period.".into(),
    });
    blocks.push(Block::Heading("Defects found and rectified".into()));
    let rows = l
        .defects
        .iter()
        .map(|d| {
            vec![
                Cell::from(d.found_at.date_naive().to_string()),
                Cell::from(d.identifier.clone().unwrap_or_else(|| "building".into())),
                Cell::from(d.location.clone().unwrap_or_default()),
                Cell::from(d.title.clone()),
                Cell::flagged(words(&d.severity), severity_rgb(&d.severity)),
                Cell::from(words(&d.status)),
                Cell::from(
                    d.rectified_at
                        .map(|t| t.date_naive().to_string())
                        .unwrap_or_else(|| "outstanding".into()),
                ),
                Cell::from(
                    d.verified_at
                        .map(|t| t.date_naive().to_string())
                        .unwrap_or_default(),
                ),
            ]
        })
        .collect();
    blocks.push(Block::Table {
        columns: vec![
            col("Found", 50.0),
            col("Asset", 55.0),
            col("Location", 90.0),
            col("Defect", 220.0),
            col("Severity", 60.0),
            col("Status", 70.0),
            col("Rectified", 60.0),
            col("Verified", 60.0),
        ],
        rows,
        empty: "No defect was found or outstanding in this period.".into(),
    });
    render(&Document {
        title: format!("Logbook - {} - {} to {}", b.name, l.from, l.to),
        landscape: true,
        footer: format!("{} logbook", b.name),
        generated_at: l.generated_at,
        blocks,
    })
}

fn kept_label(k: Kept) -> Cell {
    match k {
        Kept::OnTime => Cell::flagged("on time", None),
        Kept::Late => Cell::flagged("done late", Some(AMBER)),
        Kept::Missed => Cell::flagged("NOT DONE", Some(RED)),
        Kept::Pending => Cell::flagged("pending", None),
    }
}

pub fn condition_report(r: &ConditionReport, signed: Option<&SignedConditionReport>) -> Vec<u8> {
    let b = &r.building;
    let mut blocks = vec![
        Block::Title {
            title: "Yearly condition report".into(),
            subtitle: "Fire protection systems and equipment, routine service per AS 1851-2012 \
                       (cl. 1.17)"
                .into(),
        },
        Block::Heading(b.name.clone()),
        Block::Facts(vec![
            ("Address".into(), b.address.clone()),
            ("Building type".into(), b.building_type.clone()),
            (
                "Period".into(),
                format!("{} to {}", r.period_start, r.period_end),
            ),
            ("Judged on".into(), r.as_of.to_string()),
            (
                "Routines due / on time".into(),
                format!("{} / {}", r.routines.due, r.routines.on_time),
            ),
            (
                "Late / not done / pending".into(),
                format!(
                    "{} / {} / {}",
                    r.routines.late, r.routines.missed, r.routines.pending
                ),
            ),
            (
                "Outstanding defects".into(),
                format!(
                    "{} critical, {} non-critical, {} non-conformance",
                    r.outstanding.critical,
                    r.outstanding.non_critical,
                    r.outstanding.non_conformance
                ),
            ),
            ("Rule set".into(), b.rule_set.clone()),
        ]),
        Block::Banner {
            text: format!("Overall condition: {}", r.condition.label()),
            colour: condition_rgb(r.condition),
        },
        Block::Heading("Systems".into()),
    ];
    let rows = r
        .systems
        .iter()
        .map(|s| {
            vec![
                Cell::from(s.name.clone()),
                Cell::from(s.standards.join(", ")),
                Cell::from(s.assets.to_string()),
                Cell::from(s.routines.due.to_string()),
                Cell::from(s.routines.on_time.to_string()),
                Cell::flagged(
                    s.routines.late.to_string(),
                    (s.routines.late > 0).then_some(AMBER),
                ),
                Cell::flagged(
                    s.routines.missed.to_string(),
                    (s.routines.missed > 0).then_some(RED),
                ),
                Cell::from(s.routines.pending.to_string()),
                Cell::from(
                    s.last_serviced
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::from(format!(
                    "{} / {} / {}",
                    s.outstanding.critical,
                    s.outstanding.non_critical,
                    s.outstanding.non_conformance
                )),
                Cell::flagged(s.condition.label(), Some(condition_rgb(s.condition))),
            ]
        })
        .collect();
    blocks.push(Block::Table {
        columns: vec![
            col("System", 150.0),
            col("Standard", 70.0),
            col("Assets", 35.0),
            col("Due", 30.0),
            col("On time", 38.0),
            col("Late", 30.0),
            col("Not done", 38.0),
            col("Pending", 38.0),
            col("Last serviced", 58.0),
            col("Defects C/NC/NCF", 70.0),
            col("Condition", 110.0),
        ],
        rows,
        empty: "This building has no assets.".into(),
    });
    blocks.push(Block::Paragraph(
        "Due: scheduled dates of each routine in the period (a fixed grid from its anchor, \
         AS 1851 tolerances). Late: done after its tolerance window. Not done: its window \
         closed without a service. Pending: its window is still open. Defects: outstanding at \
         the end of the period (critical / non-critical / non-conformance)."
            .into(),
    ));
    for s in &r.systems {
        if s.exceptions.is_empty() && s.defects.is_empty() {
            continue;
        }
        blocks.push(Block::Heading(format!(
            "{} - {}",
            s.name,
            s.condition.label()
        )));
        if !s.exceptions.is_empty() {
            let rows = s
                .exceptions
                .iter()
                .map(|e| {
                    vec![
                        Cell::from(
                            e.identifier
                                .clone()
                                .unwrap_or_else(|| e.asset_id.to_string()),
                        ),
                        Cell::from(e.location.clone()),
                        Cell::from(format!("{} {}", e.rule_code, e.rule_name)),
                        Cell::from(words(&e.frequency)),
                        Cell::from(e.due.to_string()),
                        Cell::from(e.due_by.to_string()),
                        Cell::from(e.done.map(|d| d.to_string()).unwrap_or_else(|| "-".into())),
                        kept_label(e.kept),
                    ]
                })
                .collect();
            blocks.push(Block::Table {
                columns: vec![
                    col("Asset", 60.0),
                    col("Location", 90.0),
                    col("Routine", 200.0),
                    col("Frequency", 55.0),
                    col("Due", 55.0),
                    col("Due by", 55.0),
                    col("Done", 55.0),
                    col("Kept", 55.0),
                ],
                rows,
                empty: String::new(),
            });
        }
        if !s.defects.is_empty() {
            blocks.push(defect_table(&s.defects));
        }
    }
    if !r.building_defects.is_empty() {
        blocks.push(Block::Heading(
            "Outstanding defects not tied to an asset".into(),
        ));
        blocks.push(defect_table(&r.building_defects));
    }
    blocks.push(Block::Heading("Statement of the competent person".into()));
    match signed {
        Some(s) => {
            blocks.push(Block::Paragraph(s.statement.clone()));
            let mut lines = vec![
                ("Signed by".into(), s.signed_by.name.clone()),
                (
                    "Licence / accreditation".into(),
                    s.signed_by.licence.clone().unwrap_or_default(),
                ),
                ("Signed at".into(), stamp(s.signed_at)),
                ("Version".into(), s.version.to_string()),
                ("Report id".into(), s.id.to_string()),
            ];
            if let Some(old) = s.supersedes {
                lines.push(("Supersedes".into(), old.to_string()));
            }
            if let Some(new) = s.superseded_by {
                lines.push(("SUPERSEDED BY".into(), new.to_string()));
            }
            blocks.push(Block::Signature {
                heading: "Signature".into(),
                lines,
            });
        }
        None => blocks.push(Block::Paragraph(
            "DRAFT - not signed. A competent person signs this report in FireMode \
             (POST /v1/buildings/{id}/condition-reports); the signed version records their name, \
             licence and the time."
                .into(),
        )),
    }
    render(&Document {
        title: format!(
            "Yearly condition report - {} - {} to {}",
            b.name, r.period_start, r.period_end
        ),
        landscape: true,
        footer: format!("{} yearly condition report", b.name),
        generated_at: signed.map_or(r.generated_at, |s| s.signed_at),
        blocks,
    })
}

fn defect_table(defects: &[super::OutstandingDefect]) -> Block {
    Block::Table {
        columns: vec![
            col("Found", 55.0),
            col("Asset", 60.0),
            col("Location", 90.0),
            col("Outstanding defect", 260.0),
            col("Severity", 70.0),
            col("Status at period end", 90.0),
        ],
        rows: defects
            .iter()
            .map(|d| {
                vec![
                    Cell::from(d.found_at.date_naive().to_string()),
                    Cell::from(d.identifier.clone().unwrap_or_else(|| "building".into())),
                    Cell::from(d.location.clone().unwrap_or_default()),
                    Cell::from(d.title.clone()),
                    Cell::flagged(words(&d.severity), severity_rgb(&d.severity)),
                    Cell::from(words(&d.status)),
                ]
            })
            .collect(),
        empty: String::new(),
    }
}

pub fn esm(s: &EsmStatement) -> Vec<u8> {
    let b = &s.building;
    let mut blocks = vec![
        Block::Title {
            title: "Essential safety measures - annual statement information".into(),
            subtitle: "For the NSW annual fire safety statement and the Victorian annual \
                       essential safety measures report"
                .into(),
        },
        Block::Heading(b.name.clone()),
        Block::Facts(vec![
            ("Address".into(), b.address.clone()),
            ("Building type".into(), b.building_type.clone()),
            (
                "Period".into(),
                format!("{} to {}", s.period_start, s.period_end),
            ),
            ("Assessor".into(), person(s.assessor.as_ref())),
        ]),
        Block::Heading("Measures".into()),
    ];
    let rows = s
        .measures
        .iter()
        .map(|m| {
            vec![
                Cell::from(m.measure.clone()),
                Cell::from(m.standard_of_performance.clone()),
                Cell::from(m.assets.to_string()),
                Cell::from(format!(
                    "{} of {} on time",
                    m.routines.on_time, m.routines.due
                )),
                Cell::flagged(
                    if m.serviced_per_schedule { "Yes" } else { "No" },
                    (!m.serviced_per_schedule).then_some(RED),
                ),
                Cell::from(
                    m.last_serviced
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::from(m.outstanding.total().to_string()),
                Cell::flagged(m.condition.label(), Some(condition_rgb(m.condition))),
                Cell::from(person(m.assessor.as_ref())),
            ]
        })
        .collect();
    blocks.push(Block::Table {
        columns: vec![
            col("Essential safety measure", 140.0),
            col("Standard of performance", 98.0),
            col("Assets", 32.0),
            col("Routines", 70.0),
            col("Per schedule", 52.0),
            col("Last serviced", 55.0),
            col("Defects", 36.0),
            col("Condition", 95.0),
            col("Assessor", 102.0),
        ],
        rows,
        empty: "This building has no assets.".into(),
    });
    render(&Document {
        title: format!(
            "Essential safety measures - {} - {} to {}",
            b.name, s.period_start, s.period_end
        ),
        landscape: true,
        footer: format!("{} essential safety measures", b.name),
        generated_at: s.generated_at,
        blocks,
    })
}
