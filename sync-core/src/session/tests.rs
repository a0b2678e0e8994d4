use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ReadDoc, ScalarValue, ROOT};
use serde_json::json;
use uuid::Uuid;

use super::*;

fn actor(n: u8) -> ActorId {
    ActorId::from([n; 16])
}

fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn init() -> SessionInit {
    SessionInit {
        session_id: uuid(1),
        building_id: uuid(2),
        org_id: uuid(3),
        rule_set_code: "AS1851".into(),
        rule_set_version: "2012.1.0".into(),
        frequency: "six_monthly".into(),
        name: "Level 3 extinguishers".into(),
        items: vec![
            ItemInit {
                asset_id: uuid(10),
                rule_code: "AS1851-10-6M-EXT".into(),
            },
            ItemInit {
                asset_id: uuid(11),
                rule_code: "AS1851-10-6M-EXT".into(),
            },
        ],
    }
}

fn result(asset: u128) -> ResultInput {
    ResultInput {
        asset_id: uuid(asset),
        rule_code: None,
        outcome: Outcome::Fail,
        observed_conditions: Some(vec!["gauge_in_red".into()]),
        readings: BTreeMap::from([("pressure_kpa".to_string(), ReadingValue::Number(950.5))]),
        notes: Some("Pin missing".into()),
        evidence: vec![uuid(100), uuid(101)],
        recorded_by: uuid(50),
        recorded_at: "2024-05-01T03:04:05Z".into(),
    }
}

#[test]
fn a_new_document_projects_cleanly() {
    let doc = create_session_document(&init(), actor(1), 1_700_000_000).unwrap();
    assert_eq!(doc.get_changes(&[]).len(), 1);
    let change = &doc.get_changes(&[])[0];
    assert_eq!(change.timestamp(), 1_700_000_000);
    assert_eq!(change.actor_id(), &actor(1));

    let p = project(&doc);
    assert_eq!(p.all_problems().count(), 0, "{:?}", p.problems);
    assert_eq!(p.schema, Some(2));
    assert_eq!(p.session_id.as_deref(), Some(id_string(&uuid(1)).as_str()));
    assert_eq!(p.status.as_deref(), Some("in_progress"));
    assert_eq!(
        p.rule_set,
        Some(("AS1851".to_string(), "2012.1.0".to_string()))
    );
    assert_eq!(p.items.len(), 2);
    let item = &p.items[0];
    assert_eq!(item.asset_id, id_string(&uuid(10)));
    assert_eq!(item.outcome, Some(Outcome::NotTested));
    assert_eq!(item.rule_code.as_deref(), Some("AS1851-10-6M-EXT"));
    assert!(item.readings.is_empty() && item.evidence.is_empty() && item.notes.is_empty());
    assert_eq!(item.recorded_at, None);

    let json = to_json(&doc, None);
    assert_eq!(json["schema"], json!(2));
    assert_eq!(json["notes"], json!(""));
    assert_eq!(
        json["items"][id_string(&uuid(11))]["evidence"],
        json!([]),
        "{json}"
    );
}

#[test]
fn duplicate_assets_are_refused() {
    let mut init = init();
    init.items.push(init.items[0].clone());
    assert!(matches!(
        create_session_document(&init, actor(1), 0),
        Err(SessionError::DuplicateItem(id)) if id == uuid(10)
    ));
}

#[test]
fn results_are_written_once() {
    let mut doc = create_session_document(&init(), actor(1), 0).unwrap();
    let results = [result(10)];
    let first = apply_results(&mut doc, &results, actor(2), 10).unwrap();
    assert!(first.is_some());
    assert_eq!(doc.get_heads(), vec![first.unwrap()]);
    assert_eq!(
        apply_results(&mut doc, &results, actor(2), 11).unwrap(),
        None
    );
    assert_eq!(doc.get_changes(&[]).len(), 2);

    let item = project(&doc).item(&id_string(&uuid(10))).unwrap().clone();
    assert_eq!(item.outcome, Some(Outcome::Fail));
    assert_eq!(item.observed_conditions, vec!["gauge_in_red"]);
    assert_eq!(
        item.readings.get("pressure_kpa"),
        Some(&ReadingValue::Number(950.5))
    );
    assert_eq!(item.notes, "Pin missing");
    assert_eq!(
        item.evidence,
        vec![id_string(&uuid(100)), id_string(&uuid(101))]
    );
    assert_eq!(item.recorded_by, Some(id_string(&uuid(50))));
    assert!(item.problems.is_empty(), "{:?}", item.problems);

    // Adding one more evidence id keeps the earlier ones, in order, without repeats.
    let mut again = result(10);
    again.evidence = vec![uuid(101), uuid(102)];
    assert!(apply_results(&mut doc, &[again], actor(2), 12)
        .unwrap()
        .is_some());
    let item = project(&doc).item(&id_string(&uuid(10))).unwrap().clone();
    assert_eq!(item.evidence.len(), 3);
}

#[test]
fn new_assets_need_a_rule_code_and_failures_leave_no_trace() {
    let mut doc = create_session_document(&init(), actor(1), 0).unwrap();
    let heads = doc.get_heads();
    let results = [result(10), result(99)];
    assert!(matches!(
        apply_results(&mut doc, &results, actor(2), 1),
        Err(SessionError::MissingRuleCode(id)) if id == uuid(99)
    ));
    assert_eq!(doc.get_heads(), heads);

    let mut bad = result(10);
    bad.readings
        .insert("x".into(), ReadingValue::Number(f64::NAN));
    assert!(matches!(
        apply_results(&mut doc, &[bad], actor(2), 1),
        Err(SessionError::InvalidReading { .. })
    ));

    let mut new = result(99);
    new.rule_code = Some("AS1851-9-6M-HR".into());
    apply_results(&mut doc, &[new], actor(2), 1).unwrap();
    let p = project(&doc);
    let item = p.item(&id_string(&uuid(99))).unwrap();
    assert_eq!(item.rule_code.as_deref(), Some("AS1851-9-6M-HR"));
    assert_eq!(p.all_problems().count(), 0);
}

#[test]
fn status_and_name_change_only_when_different() {
    let mut doc = create_session_document(&init(), actor(1), 0).unwrap();
    assert_eq!(
        set_status(&mut doc, "in_progress", actor(2), 1).unwrap(),
        None
    );
    assert!(set_status(&mut doc, "completed", actor(2), 1)
        .unwrap()
        .is_some());
    assert!(matches!(
        set_status(&mut doc, "done", actor(2), 1),
        Err(SessionError::InvalidStatus(_))
    ));
    assert_eq!(
        set_name(&mut doc, "Level 3 extinguishers", actor(2), 1).unwrap(),
        None
    );
    assert!(set_name(&mut doc, "L3", actor(2), 1).unwrap().is_some());
    let p = project(&doc);
    assert_eq!(p.status.as_deref(), Some("completed"));
    assert_eq!(p.name.as_deref(), Some("L3"));
}

/// automerge-repo 2.x stores JS strings as text objects and integers as ints.
#[test]
fn js_shaped_values_are_read_and_kept() {
    let mut doc = create_session_document(&init(), actor(1), 0).unwrap();
    let key = id_string(&uuid(10));
    let mut tx = doc.transaction();
    let items = tx.get(ROOT, "items").unwrap().unwrap().1;
    let item = tx.get(&items, key.as_str()).unwrap().unwrap().1;
    let outcome = tx.put_object(&item, "outcome", ObjType::Text).unwrap();
    tx.splice_text(&outcome, 0, 0, "pass").unwrap();
    let readings = tx.get(&item, "readings").unwrap().unwrap().1;
    tx.put(&readings, "pressure_kpa", 950_i64).unwrap();
    tx.commit();

    let p = project(&doc);
    assert_eq!(p.item(&key).unwrap().outcome, Some(Outcome::Pass));
    assert_eq!(
        p.item(&key).unwrap().readings["pressure_kpa"],
        ReadingValue::Number(950.0)
    );

    // Writing the same values creates nothing; writing a new outcome edits the text object.
    let mut same = result(10);
    same.outcome = Outcome::Pass;
    same.readings = BTreeMap::from([("pressure_kpa".to_string(), ReadingValue::Number(950.0))]);
    apply_results(&mut doc, &[same.clone()], actor(2), 1).unwrap();
    assert_eq!(apply_results(&mut doc, &[same], actor(2), 2).unwrap(), None);
    apply_results(&mut doc, &[result(10)], actor(2), 3).unwrap();
    let (value, _) = doc.get(&item, "outcome").unwrap().unwrap();
    assert_eq!(value.to_objtype(), Some(ObjType::Text));
    assert_eq!(
        project(&doc).item(&key).unwrap().outcome,
        Some(Outcome::Fail)
    );
}

#[test]
fn schema_problems_are_flagged_not_fatal() {
    let mut doc = create_session_document(&init(), actor(1), 0).unwrap();
    let key = id_string(&uuid(10));
    let mut tx = doc.transaction();
    tx.put(ROOT, "schema", 3_i64).unwrap();
    tx.put(ROOT, "status", "archived").unwrap();
    tx.put(ROOT, "orgId", 42_i64).unwrap();
    tx.put(ROOT, "notes", "plain").unwrap();
    let items = tx.get(ROOT, "items").unwrap().unwrap().1;
    tx.put(&items, "not-a-map", true).unwrap();
    let item = tx.get(&items, key.as_str()).unwrap().unwrap().1;
    tx.put(&item, "outcome", "exploded").unwrap();
    tx.put(&item, "evidence", ScalarValue::Bytes(vec![1]))
        .unwrap();
    let readings = tx.get(&item, "readings").unwrap().unwrap().1;
    tx.put_object(&readings, "colour", ObjType::List).unwrap();
    tx.put(&readings, "ok", 1.5).unwrap();
    tx.commit();

    let p = project(&doc);
    let paths: Vec<&str> = p.problems.iter().map(|pr| pr.path.as_str()).collect();
    for expected in ["/schema", "/status", "/orgId", "/notes", "/items/not-a-map"] {
        assert!(paths.contains(&expected), "{expected} in {paths:?}");
    }
    assert_eq!(p.schema, Some(3));
    assert_eq!(p.status.as_deref(), Some("archived"));
    assert_eq!(p.notes, "plain");
    let item = p.item(&key).unwrap();
    assert_eq!(item.outcome, None);
    assert_eq!(item.raw_outcome.as_deref(), Some("exploded"));
    assert_eq!(
        item.readings,
        BTreeMap::from([("ok".to_string(), ReadingValue::Number(1.5))])
    );
    let item_paths: Vec<&str> = item.problems.iter().map(|pr| pr.path.as_str()).collect();
    for suffix in ["/outcome", "/evidence", "/readings/colour"] {
        assert!(
            item_paths.contains(&format!("/items/{key}{suffix}").as_str()),
            "{suffix} in {item_paths:?}"
        );
    }

    // A result write repairs the broken fields it writes; the odd reading stays flagged.
    apply_results(&mut doc, &[result(10)], actor(2), 1).unwrap();
    let p = project(&doc);
    let problems = &p.item(&key).unwrap().problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, format!("/items/{key}/readings/colour"));
}

#[test]
fn an_empty_or_foreign_document_projects_without_panicking() {
    let p = project(&Automerge::new());
    assert_eq!(p.items.len(), 0);
    assert!(p.problems.iter().any(|pr| pr.path == "/items"));
    assert_eq!(to_json(&Automerge::new(), None), json!({}));
}

#[test]
fn json_at_heads_shows_the_past() {
    let mut doc = create_session_document(&init(), actor(1), 0).unwrap();
    let before = doc.get_heads();
    set_name(&mut doc, "Renamed", actor(2), 1).unwrap();
    assert!(heads_known(&doc, &before));
    assert!(!heads_known(&doc, &[automerge::ChangeHash([9; 32])]));
    assert_eq!(
        to_json(&doc, Some(&before))["name"],
        json!("Level 3 extinguishers")
    );
    assert_eq!(to_json(&doc, None)["name"], json!("Renamed"));
}

#[test]
fn outcomes_parse_and_serialise_as_snake_case() {
    for outcome in Outcome::ALL {
        assert_eq!(outcome.as_str().parse::<Outcome>(), Ok(outcome));
        assert_eq!(
            serde_json::to_value(outcome).unwrap(),
            json!(outcome.as_str())
        );
    }
    assert!("PASS".parse::<Outcome>().is_err());
}

#[test]
fn schema_1_items_are_read_and_rewritten_as_lists() {
    let mut doc = create_session_document(&init(), actor(1), 0).unwrap();
    let key = id_string(&uuid(10));
    // A schema 1 document: one observedCondition string, numeric readings, no list.
    let mut tx = doc.transaction();
    tx.put(ROOT, "schema", 1_i64).unwrap();
    let items = tx.get(ROOT, "items").unwrap().unwrap().1;
    let item = tx.get(&items, key.as_str()).unwrap().unwrap().1;
    tx.delete(&item, "observedConditions").unwrap();
    tx.put(&item, "observedCondition", "gauge_in_red").unwrap();
    tx.commit();
    let p = project(&doc);
    assert_eq!(p.all_problems().count(), 0, "{:?}", p.problems);
    assert_eq!(
        p.item(&key).unwrap().observed_conditions,
        vec!["gauge_in_red"]
    );

    // Recording two conditions writes the list and drops the single field.
    let mut r = result(10);
    r.observed_conditions = Some(vec!["gauge_in_red".into(), "pin_missing".into()]);
    apply_results(&mut doc, &[r.clone()], actor(2), 1).unwrap();
    let p = project(&doc);
    assert_eq!(
        p.item(&key).unwrap().observed_conditions,
        vec!["gauge_in_red", "pin_missing"]
    );
    assert!(doc.get(&item, "observedCondition").unwrap().is_none());
    assert_eq!(
        apply_results(&mut doc, &[r.clone()], actor(2), 2).unwrap(),
        None
    );

    // Removing one keeps the other; typed readings come back typed.
    r.observed_conditions = Some(vec!["pin_missing".into()]);
    r.readings = BTreeMap::from([
        ("legend_legible".to_string(), ReadingValue::Bool(true)),
        ("gauge".to_string(), ReadingValue::Text("in_green".into())),
    ]);
    apply_results(&mut doc, &[r.clone()], actor(2), 3).unwrap();
    assert_eq!(apply_results(&mut doc, &[r], actor(2), 4).unwrap(), None);
    let item = project(&doc).item(&key).unwrap().clone();
    assert_eq!(item.observed_conditions, vec!["pin_missing"]);
    assert_eq!(item.readings["legend_legible"], ReadingValue::Bool(true));
    assert_eq!(
        item.readings["gauge"],
        ReadingValue::Text("in_green".into())
    );
}

#[test]
fn sign_off_completes_and_reopening_removes_it() {
    let mut doc = create_session_document(&init(), actor(1), 0).unwrap();
    let s = SignOff {
        user_id: id_string(&uuid(50)),
        licence: "FPA-12345".into(),
        at: "2026-12-06T01:02:03Z".into(),
    };
    assert!(set_sign_off(&mut doc, Some(&s), actor(2), 5)
        .unwrap()
        .is_some());
    let p = project(&doc);
    assert_eq!(p.status.as_deref(), Some(STATUS_COMPLETED));
    assert_eq!(p.signed_off.as_ref(), Some(&s));
    assert_eq!(p.all_problems().count(), 0, "{:?}", p.problems);
    assert_eq!(set_sign_off(&mut doc, Some(&s), actor(2), 6).unwrap(), None);
    set_sign_off(&mut doc, None, actor(2), 7).unwrap();
    let p = project(&doc);
    assert_eq!(p.status.as_deref(), Some(STATUS_IN_PROGRESS));
    assert_eq!(p.signed_off, None);
}

#[test]
fn items_read_alone_equal_the_full_projection() {
    let mut doc = create_session_document(&init(), actor(1), 1_700_000_000).unwrap();
    apply_results(&mut doc, &[result(10)], actor(2), 1_700_000_100).unwrap();
    let full = project(&doc);
    let a = uuid(10).to_string();
    let b = uuid(11).to_string();
    let missing = uuid(99).to_string();
    let some = project_items(&doc, &[&b, &missing, &a]);
    assert_eq!(some[0].as_ref(), full.item(&b));
    assert_eq!(some[1], None);
    assert_eq!(some[2].as_ref(), full.item(&a));
    assert_eq!(
        some[2].as_ref().map(|i| i.notes.as_str()),
        Some("Pin missing")
    );
}
