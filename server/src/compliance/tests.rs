use std::collections::BTreeMap;

use chrono::{NaiveDate, TimeZone, Utc};
use uuid::Uuid;

use super::*;

const EXT_6M: &str = "AS1851-10-6M-EXT";
const EXT_12M: &str = "AS1851-10-12M-EXT";
const EXT_5Y: &str = "AS1851-10-5Y-EXT";

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn rule(code: &str, equipment: &str, frequency: &str) -> RuleRecord {
    RuleRecord {
        id: Uuid::new_v4(),
        code: code.into(),
        version: "2012.1.0".into(),
        org_id: None,
        name: format!("{code} name"),
        description: String::new(),
        standard: "AS 1851-2012".into(),
        section: "10".into(),
        clause: String::new(),
        equipment: equipment.into(),
        frequency: frequency.into(),
        readings: sqlx::types::Json(serde_json::json!([])),
        classification_mappings: sqlx::types::Json(BTreeMap::new()),
        rationale: sqlx::types::Json(BTreeMap::new()),
        rule_set_code: "AS1851".into(),
        rule_set_version: "2012.1.0".into(),
        alternative_to: None,
        active: true,
        created_by: None,
        created_at: Utc::now(),
        deactivated_at: None,
    }
}

fn rules() -> Vec<RuleRecord> {
    vec![
        rule(EXT_6M, "portable_extinguisher", "six_monthly"),
        rule(EXT_12M, "portable_extinguisher", "yearly"),
        rule(EXT_5Y, "portable_extinguisher", "five_yearly"),
        rule("AS1851-11-6M-BLK", "fire_blanket", "six_monthly"),
    ]
}

fn asset(identifier: &str, kind: &str) -> AssetRecord {
    AssetRecord {
        id: Uuid::new_v4(),
        org_id: Uuid::nil(),
        building_id: Uuid::nil(),
        asset_type: kind.into(),
        location: "Level 1".into(),
        identifier: Some(identifier.into()),
        install_date: None,
        rule_codes: sqlx::types::Json(vec![]),
        rule_alternatives: Default::default(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
        schedule_anchor: None,
        manufacture_date: None,
    }
}

fn building() -> BuildingRecord {
    BuildingRecord {
        id: Uuid::new_v4(),
        org_id: Uuid::nil(),
        name: "Test Tower".into(),
        address: "1 Test St".into(),
        building_type: "office".into(),
        contact_name_enc: None,
        contact_phone_enc: None,
        contact_email: None,
        rule_set_code: "AS1851".into(),
        rule_set_version: "2012.1.0".into(),
        editions: Default::default(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
        state: None,
        schedule_anchor: None,
    }
}

fn service(a: &AssetRecord, code: &str, at: &str, outcome: &str) -> ServiceRow {
    ServiceRow {
        asset_id: a.id.to_string(),
        rule_code: code.into(),
        outcome: outcome.into(),
        classification: Some(
            if outcome == "pass" {
                "compliant"
            } else {
                "critical_defect"
            }
            .into(),
        ),
        recorded_at: at.into(),
        first_recorded_at: at.into(),
        session_id: Uuid::new_v4(),
        assessment: sqlx::types::Json(serde_json::json!({
            "suggested_outcome": "pass",
            "overrides_suggestion": outcome == "fail",
        })),
    }
}

fn defect(a: Option<&AssetRecord>, severity: &str, open: i64) -> DefectCountRow {
    DefectCountRow {
        asset_id: a.map(|a| a.id),
        severity: severity.into(),
        open,
    }
}

fn run(
    assets: &[AssetRecord],
    services: &[ServiceRow],
    defects: &[DefectCountRow],
    as_of: &str,
) -> Report {
    let b = building();
    build(Inputs {
        building: &b,
        assets,
        rules: &rules(),
        services,
        history: &[],
        calendar: &crate::domain::schedule::Calendar::default(),
        defects,
        active_defects: Vec::new(),
        as_of: day(as_of),
        generated_at: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
    })
}

fn row<'a>(r: &'a Report, a: &AssetRecord, code: &str) -> &'a ReportRow {
    r.items
        .iter()
        .find(|i| i.asset_id == a.id && i.rule_code.as_deref() == Some(code))
        .unwrap_or_else(|| panic!("no row {code} for {:?}", a.identifier))
}

#[test]
fn due_dates_tolerance_and_overdue() {
    let on_time = asset("EXT-1", "portable_extinguisher");
    let late = asset("EXT-2", "portable_extinguisher");
    let early = asset("EXT-3", "portable_extinguisher");
    let lapsed = asset("EXT-4", "portable_extinguisher");
    let services = [
        service(&on_time, EXT_6M, "2024-01-10T01:00:00.000Z", "pass"),
        service(&on_time, EXT_6M, "2024-07-20T01:00:00.000Z", "pass"),
        // Scheduled 2024-07-10, six-monthly tolerance ±1 month: 2024-08-20 is 41 days late.
        service(&late, EXT_6M, "2024-01-10T01:00:00Z", "pass"),
        service(&late, EXT_6M, "2024-08-20T01:00:00Z", "fail"),
        service(&early, EXT_6M, "2024-01-10T01:00:00Z", "pass"),
        service(&early, EXT_6M, "2024-05-01T01:00:00Z", "pass"),
        service(&lapsed, EXT_6M, "2023-10-01T01:00:00Z", "pass"),
    ];
    let assets = [on_time.clone(), late.clone(), early.clone(), lapsed.clone()];
    let r = run(&assets, &services, &[], "2024-10-01");

    let a = row(&r, &on_time, EXT_6M);
    assert_eq!(a.last_service.unwrap().date_naive(), day("2024-07-20"));
    assert_eq!(a.previous_service.unwrap().date_naive(), day("2024-01-10"));
    assert_eq!(a.interval_days, Some(192));
    // Ten days late but inside the window: the schedule stays on the 10th (no drift).
    assert!(!a.outside_tolerance);
    assert_eq!(a.scheduled_for, Some(day("2024-07-10")));
    assert_eq!(a.next_due, Some(day("2025-01-10")));
    assert_eq!(a.due_by, Some(day("2025-02-10")));
    assert!(!a.overdue);
    assert_eq!(a.outcome.as_deref(), Some("pass"));
    assert!(!a.overrides_suggestion);
    assert_eq!(a.serviced_under.as_deref(), Some(EXT_6M));
    assert_eq!(a.status, Status::Compliant);

    let b = row(&r, &late, EXT_6M);
    assert!(b.outside_tolerance);
    assert_eq!(b.scheduled_for, None);
    // The grid stays: the next date after the late service.
    assert_eq!(b.next_due, Some(day("2025-01-10")));
    assert_eq!(b.anchor, Some(day("2024-01-10")));
    assert_eq!(b.anchor_source, Some(schedule::AnchorSource::FirstService));
    assert_eq!(b.outcome.as_deref(), Some("fail"));
    // The readings suggested a pass; the inspector's fail overrides it, and the report says so.
    assert_eq!(b.suggested_outcome.as_deref(), Some("pass"));
    assert!(b.overrides_suggestion);
    assert_eq!(b.classification.as_deref(), Some("critical_defect"));
    assert!(
        row(&r, &early, EXT_6M).outside_tolerance,
        "early is outside too"
    );

    // Last 2023-10-01: due 2024-04-01, tolerance to 2024-05-01.
    let d = row(&r, &lapsed, EXT_6M);
    assert_eq!(d.next_due, Some(day("2024-04-01")));
    assert_eq!(d.due_by, Some(day("2024-05-01")));
    assert!(d.overdue);
    assert_eq!(d.status, Status::Overdue);
    assert!(
        !d.outside_tolerance && d.interval_days.is_none(),
        "one service has no interval"
    );

    // Never serviced under the yearly and five-yearly rules: overdue, no due date.
    let y = row(&r, &on_time, EXT_5Y);
    assert!(y.last_service.is_none() && y.next_due.is_none() && y.overdue);
    assert_eq!(r.summary.assets, 4);
    assert_eq!(r.summary.checks, 12);
    assert_eq!(r.summary.serviced, 4);
    assert_eq!(r.summary.never_serviced, 8);
    // EXT-3's early service (2024-05-01, outside the window of 2024-07-10) does not count
    // for 2024-07-10, whose window has closed by 2024-10-01.
    let e = row(&r, &early, EXT_6M);
    assert_eq!(e.next_due, Some(day("2024-07-10")));
    assert!(e.overdue);
    assert_eq!(r.summary.overdue, 10);
    assert_eq!(r.summary.outside_tolerance, 2);
    assert_eq!(r.summary.failed, 1);
    assert_eq!(r.status, Status::Overdue);
}

#[test]
fn tolerance_window_after_due_is_not_overdue() {
    let a = asset("EXT-1", "portable_extinguisher");
    let services = [service(&a, EXT_6M, "2023-06-20T00:00:00Z", "pass")];
    // Due 2023-12-20, six-monthly tolerance (±1 month) to 2024-01-20.
    let r = run(std::slice::from_ref(&a), &services, &[], "2024-01-20");
    assert!(!row(&r, &a, EXT_6M).overdue);
    let r = run(std::slice::from_ref(&a), &services, &[], "2024-01-21");
    assert!(row(&r, &a, EXT_6M).overdue);
}

#[test]
fn months_clamp_to_the_end_of_the_month() {
    let a = asset("EXT-1", "portable_extinguisher");
    let services = [service(&a, EXT_6M, "2024-08-31T10:00:00Z", "pass")];
    let r = run(std::slice::from_ref(&a), &services, &[], "2024-09-01");
    assert_eq!(row(&r, &a, EXT_6M).next_due, Some(day("2025-02-28")));
}

#[test]
fn a_longer_interval_service_counts_for_the_shorter_rules() {
    let a = asset("EXT-1", "portable_extinguisher");
    let services = [
        service(&a, EXT_6M, "2024-01-10T00:00:00Z", "pass"),
        service(&a, EXT_12M, "2024-07-12T00:00:00Z", "pass"),
        // The same visit recorded twice (a six-monthly and a yearly session): one visit.
        service(&a, EXT_6M, "2024-07-12T03:00:00Z", "pass"),
    ];
    let r = run(std::slice::from_ref(&a), &services, &[], "2024-08-01");
    let six = row(&r, &a, EXT_6M);
    assert_eq!(
        six.last_service.unwrap(),
        Utc.with_ymd_and_hms(2024, 7, 12, 3, 0, 0).unwrap()
    );
    assert_eq!(
        six.previous_service.unwrap().date_naive(),
        day("2024-01-10")
    );
    assert_eq!(six.interval_days, Some(184));
    assert!(!six.outside_tolerance);
    let yearly = row(&r, &a, EXT_12M);
    assert_eq!(yearly.serviced_under.as_deref(), Some(EXT_12M));
    assert_eq!(yearly.next_due, Some(day("2025-07-12")));
    assert!(
        yearly.previous_service.is_none(),
        "six-monthly services do not count for the yearly rule"
    );
    // The yearly alone, later: it covers the six-monthly rule.
    let services = [
        service(&a, EXT_6M, "2024-01-10T00:00:00Z", "pass"),
        service(&a, EXT_12M, "2024-07-15T00:00:00Z", "fail"),
    ];
    let r = run(std::slice::from_ref(&a), &services, &[], "2024-08-01");
    let six = row(&r, &a, EXT_6M);
    assert_eq!(six.serviced_under.as_deref(), Some(EXT_12M));
    assert_eq!(six.outcome.as_deref(), Some("fail"));
    // On the six-monthly grid from 2024-01-10 (07-15 is inside 07-10's window).
    assert_eq!(six.next_due, Some(day("2025-01-10")));
}

#[test]
fn services_after_the_report_date_are_ignored() {
    let a = asset("EXT-1", "portable_extinguisher");
    let services = [
        service(&a, EXT_6M, "2024-01-10T00:00:00Z", "pass"),
        service(&a, EXT_6M, "2024-07-10T00:00:00Z", "pass"),
        service(&a, "not-a-uuid-either", "garbage", "pass"),
    ];
    let r = run(std::slice::from_ref(&a), &services, &[], "2024-07-09");
    let six = row(&r, &a, EXT_6M);
    assert_eq!(six.last_service.unwrap().date_naive(), day("2024-01-10"));
    assert!(six.previous_service.is_none());
}

#[test]
fn install_date_sets_the_first_due_date() {
    let mut a = asset("EXT-1", "portable_extinguisher");
    a.install_date = Some(day("2024-06-01"));
    let r = run(std::slice::from_ref(&a), &[], &[], "2024-09-01");
    let six = row(&r, &a, EXT_6M);
    assert_eq!(six.next_due, Some(day("2024-12-01")));
    assert!(!six.overdue);
    assert!(six.last_service.is_none());
    assert_eq!(r.summary.never_serviced, 3);
}

#[test]
fn rule_selection_listed_codes_and_assets_without_rules() {
    let mut listed = asset("EXT-1", "portable_extinguisher");
    listed.rule_codes = sqlx::types::Json(vec![EXT_6M.into(), "RETIRED-CODE".into()]);
    let blanket = asset("BLK-1", "fire_blanket");
    let odd = asset("ZZZ-1", "toaster");
    let r = run(
        &[listed.clone(), blanket.clone(), odd.clone()],
        &[],
        &[defect(Some(&odd), "non_conformance", 1)],
        "2024-01-01",
    );
    let codes = |a: &AssetRecord| -> Vec<Option<String>> {
        r.items
            .iter()
            .filter(|i| i.asset_id == a.id)
            .map(|i| i.rule_code.clone())
            .collect()
    };
    assert_eq!(codes(&listed), vec![Some(EXT_6M.to_owned())]);
    assert_eq!(codes(&blanket), vec![Some("AS1851-11-6M-BLK".to_owned())]);
    assert_eq!(codes(&odd), vec![None]);
    let none = r.items.iter().find(|i| i.asset_id == odd.id).unwrap();
    assert!(!none.overdue);
    assert_eq!(none.status, Status::DefectsOpen);
    assert_eq!(r.summary.assets_without_rules, 1);
    assert_eq!(r.summary.checks, 2);
    // Ordered by identifier.
    let ids: Vec<_> = r
        .items
        .iter()
        .map(|i| i.identifier.clone().unwrap())
        .collect();
    assert_eq!(ids, ["BLK-1", "EXT-1", "ZZZ-1"]);
}

#[test]
fn status_precedence() {
    let a = asset("EXT-1", "portable_extinguisher");
    let b = asset("EXT-2", "portable_extinguisher");
    let fresh = |x: &AssetRecord| {
        [EXT_6M, EXT_12M, EXT_5Y].map(|c| service(x, c, "2024-05-01T00:00:00Z", "pass"))
    };
    let services: Vec<ServiceRow> = fresh(&a).into_iter().chain(fresh(&b)).collect();
    let assets = [a.clone(), b.clone()];
    let at = "2024-06-01";
    assert_eq!(run(&assets, &services, &[], at).status, Status::Compliant);
    let nc = [
        defect(Some(&a), "non_conformance", 2),
        defect(Some(&a), "non_critical", 1),
    ];
    let r = run(&assets, &services, &nc, at);
    assert_eq!(r.status, Status::DefectsOpen);
    assert_eq!(
        row(&r, &a, EXT_6M).open_defects,
        DefectCounts {
            critical: 0,
            non_critical: 1,
            non_conformance: 2
        }
    );
    assert_eq!(row(&r, &b, EXT_6M).status, Status::Compliant);
    // Overdue beats open non-critical defects...
    let r = run(&assets, &services[..5], &nc, at);
    assert_eq!(r.status, Status::Overdue);
    assert_eq!(row(&r, &b, EXT_5Y).status, Status::Overdue);
    // ...and an open critical defect beats overdue, on the row and for the building.
    let crit = [defect(Some(&b), "critical", 1)];
    let r = run(&assets, &services[..5], &crit, at);
    assert_eq!(r.status, Status::CriticalDefect);
    assert_eq!(row(&r, &b, EXT_5Y).status, Status::CriticalDefect);
    assert_eq!(r.summary.rows_by_status.critical_defect, 3);
    // A building-level critical defect (no asset) has no row but sets the overall status.
    let r = run(&assets, &services, &[defect(None, "critical", 1)], at);
    assert_eq!(r.status, Status::CriticalDefect);
    assert_eq!(r.summary.rows_by_status.compliant, 6);
    assert_eq!(r.summary.open_defects.critical, 1);
    assert!(Status::CriticalDefect > Status::Overdue && Status::Overdue > Status::DefectsOpen);
}

#[test]
fn services_before_is_the_next_day() {
    assert_eq!(services_before(day("2024-12-31")), "2025-01-01");
    // As text, every timestamp of the day sorts before it, and the next day's do not.
    assert!("2024-12-31T23:59:59.999Z" < services_before(day("2024-12-31")).as_str());
    assert!("2025-01-01T00:00:00Z" > services_before(day("2024-12-31")).as_str());
}
