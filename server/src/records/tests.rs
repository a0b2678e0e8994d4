use std::collections::BTreeMap;

use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::json;
use uuid::Uuid;

use super::*;

const EXT_6M: &str = "AS1851-10-6M-EXT";
const EXT_12M: &str = "AS1851-10-12M-EXT";

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn rule(code: &str, frequency: &str) -> RuleRecord {
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
        equipment: "portable_extinguisher".into(),
        frequency: frequency.into(),
        readings: sqlx::types::Json(json!([])),
        classification_mappings: sqlx::types::Json(BTreeMap::new()),
        rationale: sqlx::types::Json(BTreeMap::new()),
        active: true,
        created_by: None,
        created_at: Utc::now(),
        deactivated_at: None,
        rule_set_code: "AS1851".into(),
        rule_set_version: "2012.1.0".into(),
        alternative_to: None,
    }
}

fn asset() -> AssetRecord {
    AssetRecord {
        id: Uuid::new_v4(),
        org_id: Uuid::nil(),
        building_id: Uuid::nil(),
        asset_type: "portable_extinguisher".into(),
        location: "Level 3 lobby".into(),
        identifier: Some("EXT-03-01".into()),
        install_date: None,
        rule_codes: sqlx::types::Json(vec![EXT_6M.into(), EXT_12M.into()]),
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
        name: "Harbour Tower".into(),
        address: "1 Harbour St".into(),
        building_type: "Class 5 office".into(),
        contact_name_enc: None,
        contact_phone_enc: None,
        contact_email: None,
        rule_set_code: "AS1851".into(),
        rule_set_version: "2012.1.0".into(),
        editions: Default::default(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
        schedule_anchor: None,
        state: Some("NSW".into()),
    }
}

fn item(asset: &AssetRecord, rule: &str, outcome: &str, when: &str, by: Uuid) -> RecordItemRow {
    RecordItemRow {
        session_id: Uuid::new_v4(),
        asset_id: asset.id.to_string(),
        rule_code: Some(rule.into()),
        rule_version: Some("2012.1.0".into()),
        outcome: outcome.into(),
        classification: None,
        observed_conditions: sqlx::types::Json(vec![]),
        readings: sqlx::types::Json(json!({ "gauge_pressure": 1200 })),
        notes: String::new(),
        recorded_by: Some(by.to_string()),
        recorded_at: when.into(),
        assessment: sqlx::types::Json(json!({ "readings": { "gauge_pressure": {
            "value": 1200, "verdict": "within", "expected": "in the green band", "unit": "kPa" } } })),
        session_name: "Six-monthly".into(),
        session_frequency: "six_monthly".into(),
        session_status: "completed".into(),
        signed_off_by: Some(by),
        signed_off_licence: Some("FPA-1234".into()),
        signed_off_at: Some(at(when)),
    }
}

fn defect(asset: &AssetRecord, found: &str) -> DefectRecord {
    DefectRecord {
        id: Uuid::new_v4(),
        org_id: Uuid::nil(),
        building_id: Uuid::nil(),
        asset_id: Some(asset.id),
        session_id: None,
        rule_code: Some(EXT_6M.into()),
        rule_version: None,
        severity: "non_critical".into(),
        status: "verified".into(),
        source: "automatic".into(),
        title: "Extinguisher pressure low".into(),
        description: String::new(),
        observed_condition: Some("pressure_low".into()),
        evidence: sqlx::types::Json(vec![]),
        discovered_at: at(found),
        notify_by: at(found),
        acknowledged_at: None,
        created_by: None,
        created_at: at(found),
        updated_at: at(found),
        severity_overridden: false,
        severity_reason: None,
        duplicate_of: None,
        notified_at: None,
        escalated_at: None,
        asset_identifier: asset.identifier.clone(),
        asset_type: Some(asset.asset_type.clone()),
        asset_location: Some(asset.location.clone()),
    }
}

fn event(d: Uuid, to: &str, when: &str) -> DefectEvent {
    DefectEvent {
        id: Uuid::new_v4(),
        defect_id: d,
        from_status: None,
        to_status: to.into(),
        actor_id: None,
        note: None,
        at: at(when),
    }
}

#[test]
fn logbook_names_the_licensee_and_dates_of_a_rectified_defect() {
    let b = building();
    let a = asset();
    let tech = Uuid::new_v4();
    let people = [PersonRef {
        user_id: tech,
        name: "Sam Nguyen".into(),
        licence: Some("FPA-1234".into()),
    }];
    let rules = [rule(EXT_6M, "six_monthly"), rule(EXT_12M, "yearly")];
    let items = [
        item(&a, EXT_6M, "pass", "2024-01-10T01:00:00Z", tech),
        item(&a, EXT_12M, "fail", "2024-07-10T01:00:00Z", tech),
        item(&a, EXT_6M, "pass", "2023-07-10T01:00:00Z", tech),
    ];
    let d = defect(&a, "2024-07-10T01:00:00Z");
    let events = [
        event(d.id, "repaired", "2024-07-20T03:00:00Z"),
        event(d.id, "verified", "2024-07-22T03:00:00Z"),
    ];
    let input = Inputs {
        building: &b,
        assets: std::slice::from_ref(&a),
        rules: &rules,
        people: &people,
        items: &items,
        defects: std::slice::from_ref(&d),
        events: &events,
        history: &[],
        calendar: &Calendar::default(),
        from: day("2024-01-01"),
        to: day("2024-12-31"),
        as_of: day("2024-12-31"),
        generated_at: Utc.with_ymd_and_hms(2025, 1, 2, 0, 0, 0).unwrap(),
    };
    let l = logbook(&input);
    assert_eq!(l.entries.len(), 2, "the 2023 service is outside the range");
    let e = &l.entries[0];
    assert_eq!(e.date, day("2024-01-10"));
    assert_eq!(e.performed_by.as_ref().unwrap().name, "Sam Nguyen");
    assert_eq!(e.signed_off.as_ref().unwrap().licence, "FPA-1234");
    assert_eq!(e.rule_name.as_deref(), Some("AS1851-10-6M-EXT name"));
    assert_eq!(
        reading_text(&e.readings[0]),
        "gauge_pressure 1200 kPa (within)"
    );
    assert_eq!(l.summary.passed, 1);
    assert_eq!(l.summary.failed, 1);
    assert_eq!(l.defects.len(), 1);
    assert_eq!(l.defects[0].found_at, at("2024-07-10T01:00:00Z"));
    assert_eq!(l.defects[0].rectified_at, Some(at("2024-07-20T03:00:00Z")));
    assert_eq!(l.summary.defects_rectified, 1);

    // The condition report: six-monthly kept twice; yearly anchored at its (folded) first
    // service 2023-07-10 and met on 2024-07-10. The defect was rectified in the period.
    let r = condition_report(&input);
    assert_eq!(r.systems.len(), 1);
    let s = &r.systems[0];
    assert_eq!(s.assets, 1);
    assert_eq!(s.routines.missed, 0, "{:?}", s.exceptions);
    assert_eq!(s.outstanding.total(), 0);
    assert_eq!(s.condition, Condition::Satisfactory);
    assert_eq!(s.last_serviced, Some(day("2024-07-10")));

    // A year later with nothing done: both dates missed, and a defect found then still open.
    let d2 = defect(&a, "2025-03-01T00:00:00Z");
    let input = Inputs {
        defects: std::slice::from_ref(&d2),
        events: &[],
        from: day("2025-01-01"),
        to: day("2025-12-31"),
        as_of: day("2025-12-31"),
        ..input
    };
    let r = condition_report(&input);
    let s = &r.systems[0];
    assert!(s.routines.missed >= 2, "{:?}", s.exceptions);
    assert!(s
        .exceptions
        .iter()
        .any(|e| e.kept == Kept::Missed && e.rule_code == EXT_6M && e.due == day("2025-01-10")));
    assert_eq!(s.outstanding.non_critical, 1);
    assert_eq!(s.condition, Condition::ServicesMissed);
    assert_eq!(r.condition, Condition::ServicesMissed);

    let book = logbook(&input);
    let esm = esm_statement(&r, &book, None);
    assert_eq!(esm.measures.len(), 1);
    assert_eq!(
        esm.measures[0].measure,
        "Portable and wheeled fire extinguishers"
    );
    assert_eq!(esm.measures[0].standard_of_performance, "AS 1851-2012");
    assert!(!esm.measures[0].serviced_per_schedule);
}

#[test]
fn status_at_reads_the_events_up_to_an_instant() {
    let a = asset();
    let d = defect(&a, "2024-01-01T00:00:00Z");
    let e = [
        event(d.id, "acknowledged", "2024-01-02T00:00:00Z"),
        event(d.id, "repaired", "2024-02-01T00:00:00Z"),
    ];
    let events: Vec<&DefectEvent> = e.iter().collect();
    assert_eq!(status_at(&d, &events, at("2023-12-31T00:00:00Z")), None);
    assert_eq!(
        status_at(&d, &events, at("2024-01-01T12:00:00Z")).as_deref(),
        Some("open")
    );
    assert_eq!(
        status_at(&d, &events, at("2024-01-15T00:00:00Z")).as_deref(),
        Some("acknowledged")
    );
    assert_eq!(
        status_at(&d, &events, at("2024-03-01T00:00:00Z")).as_deref(),
        Some("repaired")
    );
}

#[test]
fn every_library_kind_maps_to_a_measure() {
    for k in crate::rules::equipment_kinds() {
        assert!(!measure_of(&k.kind).is_empty(), "{}", k.kind);
    }
    assert_eq!(measure_of("fire_door"), measure_of("sliding_fire_door"));
}
