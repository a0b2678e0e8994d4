//! Session documents edited by the JS automerge library, as tablets edit them.
//!
//! `fixtures/server-created.automerge` is written by `write_server_created_fixture` below (the
//! current schema); `fixtures/js-edited.automerge` is `fixtures/server-created-v1.automerge`,
//! what the server wrote before schema 2, after `fixtures/js-edit.js` (run with
//! `@automerge/automerge` 3.x, the version automerge-repo 2.5 uses) edited it as two tablets,
//! concurrently. automerge 3 stores assigned JS strings as text objects and integers as ints,
//! so this checks that projection, writes and conflicts cope with what clients really write.

use std::path::{Path, PathBuf};

use firemode_sync_core::automerge::{ActorId, Automerge};
use firemode_sync_core::{
    apply_results, change_summaries, conflicts, create_session_document, project, to_json,
    ItemInit, Outcome, ReadingValue, ResultInput, SessionInit,
};
use uuid::Uuid;

const ASSET: &str = "00000000-0000-0000-0000-000000001000";
const NEW_ASSET: &str = "00000000-0000-0000-0000-000000001002";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn server_created() -> Automerge {
    let init = SessionInit {
        session_id: Uuid::from_u128(1),
        building_id: Uuid::from_u128(2),
        org_id: Uuid::from_u128(3),
        rule_set_code: "AS1851".into(),
        rule_set_version: "2012.1.0".into(),
        frequency: "six_monthly".into(),
        name: "Level 3 extinguishers".into(),
        items: (0..2)
            .map(|i| ItemInit {
                asset_id: Uuid::from_u128(0x1000 + i),
                rule_code: "AS1851-10-6M-EXT".into(),
            })
            .collect(),
    };
    create_session_document(&init, ActorId::from([1; 16]), 1_700_000_000).unwrap()
}

/// Writes the document the JS script starts from. Run with `--ignored` after changing it.
#[test]
#[ignore]
fn write_server_created_fixture() {
    std::fs::write(fixture("server-created.automerge"), server_created().save()).unwrap();
}

#[test]
fn the_server_fixture_is_current() {
    let saved = std::fs::read(fixture("server-created.automerge")).unwrap();
    let doc = Automerge::load(&saved).unwrap();
    assert_eq!(doc.get_heads(), server_created().get_heads());
}

/// A schema 1 document (what servers created before schema 2), edited by JS tablets: old
/// documents must still be read.
fn js_edited() -> Automerge {
    Automerge::load(&std::fs::read(fixture("js-edited.automerge")).unwrap()).unwrap()
}

#[test]
fn js_edits_project() {
    let doc = js_edited();
    let p = project(&doc);
    assert_eq!(p.status.as_deref(), Some("completed"));

    let item = p.item(ASSET).unwrap();
    // Two tablets set the outcome concurrently: one of them wins.
    assert!(matches!(
        item.outcome,
        Some(Outcome::Fail) | Some(Outcome::Pass)
    ));
    assert_eq!(item.observed_conditions, vec!["gauge_in_red"]);
    assert_eq!(
        item.readings.get("pressure_kpa"),
        Some(&ReadingValue::Number(950.0))
    );
    assert_eq!(
        item.readings.get("temperature_c"),
        Some(&ReadingValue::Number(21.5))
    );
    assert_eq!(item.notes, "Pin missing, tamper seal broken");
    assert_eq!(item.evidence, vec!["5d3a1c1e-8a47-4b7e-9a3c-2f1e0d9c8b7a"]);
    assert_eq!(
        item.recorded_at.as_deref(),
        Some("2024-05-01T03:04:05.000Z")
    );
    assert!(item.problems.is_empty(), "{:?}", item.problems);

    // An item a tablet added offline, written the way JS writes objects.
    let added = p.item(NEW_ASSET).unwrap();
    assert_eq!(added.rule_code.as_deref(), Some("AS1851-10-6M-EXT"));
    assert_eq!(added.outcome, Some(Outcome::NotAccessible));
    assert!(added.problems.is_empty(), "{:?}", added.problems);
    assert_eq!(p.all_problems().count(), 0, "{:?}", p.problems);

    let json = to_json(&doc, None);
    assert_eq!(json["items"][ASSET]["readings"]["pressure_kpa"], 950);
    assert_eq!(
        json["items"][ASSET]["notes"],
        "Pin missing, tamper seal broken"
    );
}

#[test]
fn js_conflicts_and_history_are_visible() {
    let doc = js_edited();
    let outcome_path = format!("/items/{ASSET}/outcome");
    let found = conflicts(&doc);
    let conflict = found.iter().find(|c| c.path == outcome_path).unwrap();
    let mut values: Vec<&str> = conflict
        .values
        .iter()
        .filter_map(|v| v.value.as_str())
        .collect();
    values.sort();
    assert_eq!(values, vec!["fail", "pass"]);

    let summaries = change_summaries(&doc);
    let tablet = summaries
        .iter()
        .find(|s| s.message.as_deref() == Some("tablet A"))
        .unwrap();
    assert_eq!(tablet.actor, "0a".repeat(16));
    assert!(tablet
        .touched
        .contains(&format!("/items/{ASSET}/readings/pressure_kpa")));
    assert!(tablet.touched.contains(&format!("/items/{ASSET}/notes")));
}

#[test]
fn server_writes_merge_into_js_edits() {
    let mut doc = js_edited();
    let result = ResultInput {
        asset_id: ASSET.parse().unwrap(),
        rule_code: None,
        outcome: Outcome::Fail,
        observed_conditions: Some(vec!["gauge_in_red".into()]),
        readings: [("pressure_kpa".to_string(), ReadingValue::Number(950.0))]
            .into_iter()
            .collect(),
        notes: Some("Pin missing, tamper seal broken".into()),
        evidence: vec!["5d3a1c1e-8a47-4b7e-9a3c-2f1e0d9c8b7a".parse().unwrap()],
        recorded_by: Uuid::from_u128(50),
        recorded_at: "2024-05-01T03:04:05.000Z".into(),
    };
    // The server's write resolves the outcome conflict and sets recordedBy, and nothing else.
    assert!(apply_results(
        &mut doc,
        std::slice::from_ref(&result),
        ActorId::from([2; 16]),
        5
    )
    .unwrap()
    .is_some());
    assert_eq!(
        apply_results(&mut doc, &[result], ActorId::from([2; 16]), 6).unwrap(),
        None
    );
    let outcome_path = format!("/items/{ASSET}/outcome");
    assert!(conflicts(&doc).iter().all(|c| c.path != outcome_path));
    let p = project(&doc);
    assert_eq!(p.item(ASSET).unwrap().outcome, Some(Outcome::Fail));
    assert_eq!(p.all_problems().count(), 0);
}
