//! Conflicts grouped per item: bookkeeping folded into sides, equal values dropped, sides
//! carrying their companion fields, and resolving an item leaving no conflict behind.

use std::collections::{BTreeMap, BTreeSet};

use firemode_sync_core::automerge::transaction::Transactable;
use firemode_sync_core::automerge::{ActorId, Automerge, ObjType, ReadDoc, ScalarValue, ROOT};
use firemode_sync_core::history::{
    grouped_conflicts, resolve_item, values_differ, ItemResolution, ResolveItemError,
    BOOKKEEPING_FIELDS,
};
use firemode_sync_core::{conflicts, create_session_document, to_json, ItemInit, SessionInit};
use proptest::prelude::*;
use serde_json::{json, Value as Json};
use uuid::Uuid;

fn actor(n: u8) -> ActorId {
    ActorId::from([n; 16])
}

fn asset(n: u128) -> String {
    Uuid::from_u128(n).to_string()
}

fn base(items: u128) -> Automerge {
    let init = SessionInit {
        session_id: Uuid::from_u128(1),
        building_id: Uuid::from_u128(2),
        org_id: Uuid::from_u128(3),
        rule_set_code: "AS1851".into(),
        rule_set_version: "2012.1.0".into(),
        frequency: "six_monthly".into(),
        name: "Level 2".into(),
        items: (0..items)
            .map(|i| ItemInit {
                asset_id: Uuid::from_u128(10 + i),
                rule_code: "AS1851-10-6M-EXT".into(),
            })
            .collect(),
    };
    create_session_document(&init, actor(1), 1_700_000_000).unwrap()
}

/// A tablet's edit of one item, in one change: string fields, and numeric readings.
fn edit(doc: &mut Automerge, key: &str, fields: &[(&str, &str)], readings: &[(&str, f64)]) {
    let mut tx = doc.transaction();
    let (_, items) = tx.get(ROOT, "items").unwrap().unwrap();
    let (_, item) = tx.get(&items, key).unwrap().unwrap();
    for (f, v) in fields {
        tx.put(&item, *f, *v).unwrap();
    }
    if !readings.is_empty() {
        let (_, r) = tx.get(&item, "readings").unwrap().unwrap();
        for (name, v) in readings {
            tx.put(&r, *name, ScalarValue::F64(*v)).unwrap();
        }
    }
    tx.commit();
}

fn merged(base: &Automerge, forks: &mut [Automerge]) -> Automerge {
    let mut doc = base.clone();
    for f in forks.iter_mut() {
        doc.merge(f).unwrap();
    }
    doc
}

fn item_json(doc: &Automerge, key: &str) -> Json {
    to_json(doc, None)["items"][key].clone()
}

#[test]
fn one_disagreement_is_one_item_with_two_sides() {
    let doc0 = base(2);
    let key = asset(10);
    let mut a = doc0.fork().with_actor(actor(2));
    let mut b = doc0.fork().with_actor(actor(3));
    let rec = |by: &'static str, at: &'static str| [("recordedBy", by), ("recordedAt", at)];
    let mut fa = vec![
        ("outcome", "fail"),
        ("observedCondition", "gauge_in_red"),
        ("notes", "pin missing"),
    ];
    fa.extend(rec("user-1", "2026-12-06T01:00:00.000Z"));
    let mut fb = vec![
        ("outcome", "pass"),
        ("observedCondition", "ok"),
        ("notes", "all good"),
    ];
    // Same person on both tablets, 5 ms apart: neither is a conflict of its own.
    fb.extend(rec("user-1", "2026-12-06T01:00:00.005Z"));
    edit(&mut a, &key, &fa, &[]);
    edit(&mut b, &key, &fb, &[]);
    let doc = merged(&doc0, &mut [a, b]);
    assert!(conflicts(&doc).len() >= 5, "raw automerge conflicts");

    let g = grouped_conflicts(&doc);
    assert!(g.document.is_empty());
    assert_eq!(g.items.len(), 1);
    let item = &g.items[0];
    assert_eq!(item.key, key);
    assert_eq!(item.path, format!("/items/{key}"));
    let fields: Vec<&str> = item.fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["notes", "observedCondition", "outcome"]);
    assert_eq!(item.sides.len(), 2);
    for f in &item.fields {
        assert_eq!(f.conflict.values.len(), 2);
        let mut s = f.sides.clone();
        s.sort();
        assert_eq!(s, [0, 1]);
    }
    let by_outcome = |o: &str| {
        item.sides
            .iter()
            .find(|s| s.values["outcome"] == o)
            .unwrap()
            .clone()
    };
    let fail = by_outcome("fail");
    assert_eq!(fail.actor, "02".repeat(16));
    assert_eq!(fail.values["observedCondition"], "gauge_in_red");
    assert_eq!(fail.values["notes"], "pin missing");
    assert_eq!(fail.recorded_by, Some(json!("user-1")));
    assert_eq!(fail.recorded_at, Some(json!("2026-12-06T01:00:00.000Z")));
    let pass = by_outcome("pass");
    assert_eq!(pass.values["observedCondition"], "ok");
    assert_eq!(pass.recorded_at, Some(json!("2026-12-06T01:00:00.005Z")));
    // Side 0 is the version the document shows for the first field.
    assert_eq!(
        item.sides[0].values[&item.fields[0].field],
        item.fields[0].conflict.winner
    );

    // Take the side that is not showing: all its fields at once, no conflict left.
    let (n, side) = item
        .sides
        .iter()
        .enumerate()
        .find(|(_, s)| s.values["outcome"] != item_json(&doc, &key)["outcome"])
        .unwrap();
    let mut resolved = doc.clone().with_actor(actor(9));
    let hash = resolve_item(
        &mut resolved,
        &key,
        &ItemResolution::Side(n),
        None,
        "resolve",
        1,
    )
    .unwrap();
    assert!(hash.is_some());
    assert_eq!(
        resolved.get_changes(&[]).len(),
        doc.get_changes(&[]).len() + 1
    );
    assert!(
        conflicts(&resolved).is_empty(),
        "{:?}",
        conflicts(&resolved)
    );
    let now = item_json(&resolved, &key);
    for (f, v) in &side.values {
        assert_eq!(&now[f], v, "{f}");
    }
    assert_eq!(Some(&now["recordedAt"]), side.recorded_at.as_ref());
    // The notes stay a text object, as the schema wants.
    let (_, items) = resolved.get(ROOT, "items").unwrap().unwrap();
    let (_, it) = resolved.get(&items, key.as_str()).unwrap().unwrap();
    let (notes, _) = resolved.get(&it, "notes").unwrap().unwrap();
    assert_eq!(
        notes,
        firemode_sync_core::automerge::Value::Object(ObjType::Text)
    );
    // Choosing a side again: nothing to choose between.
    assert!(matches!(
        resolve_item(&mut resolved, &key, &ItemResolution::Side(0), None, "r", 2),
        Err(ResolveItemError::NoConflict(_))
    ));
}

#[test]
fn a_side_carries_the_companions_its_version_wrote() {
    // Tablet A records a failure with its condition; tablet B only an outcome. Taking B must
    // not leave A's condition behind (the issue: outcome resolved, condition the other way).
    let doc0 = base(1);
    let key = asset(10);
    let mut a = doc0.fork().with_actor(actor(2));
    let mut b = doc0.fork().with_actor(actor(3));
    edit(
        &mut a,
        &key,
        &[("outcome", "fail"), ("observedCondition", "gauge_in_red")],
        &[("pressure_kpa", 600.0)],
    );
    edit(&mut b, &key, &[("outcome", "pass")], &[]);
    let doc = merged(&doc0, &mut [a, b]);
    let g = grouped_conflicts(&doc);
    assert_eq!(g.items.len(), 1);
    let item = &g.items[0];
    assert_eq!(item.fields.len(), 1, "only the outcome conflicts");
    let b_side = item
        .sides
        .iter()
        .position(|s| s.values["outcome"] == "pass")
        .unwrap();
    let a_side = 1 - b_side;
    assert_eq!(
        item.sides[a_side].values["observedCondition"],
        "gauge_in_red"
    );
    assert_eq!(
        item.sides[a_side].values["readings"],
        json!({"pressure_kpa": 600.0})
    );
    assert_eq!(item.sides[b_side].values["observedCondition"], Json::Null);
    assert_eq!(item.sides[b_side].values["readings"], json!({}));

    let mut take_b = doc.clone().with_actor(actor(9));
    resolve_item(
        &mut take_b,
        &key,
        &ItemResolution::Side(b_side),
        None,
        "r",
        1,
    )
    .unwrap();
    let now = item_json(&take_b, &key);
    assert_eq!(now["outcome"], "pass");
    assert!(now.get("observedCondition").is_none(), "{now}");
    assert_eq!(now["readings"], json!({}));

    let mut take_a = doc.clone().with_actor(actor(9));
    resolve_item(
        &mut take_a,
        &key,
        &ItemResolution::Side(a_side),
        None,
        "r",
        1,
    )
    .unwrap();
    let now = item_json(&take_a, &key);
    assert_eq!(now["outcome"], "fail");
    assert_eq!(now["observedCondition"], "gauge_in_red");
    assert!(conflicts(&take_a).is_empty());
}

#[test]
fn equal_values_and_bookkeeping_alone_are_no_conflict() {
    let doc0 = base(1);
    let key = asset(10);
    let mut a = doc0.fork().with_actor(actor(2));
    let mut b = doc0.fork().with_actor(actor(3));
    edit(
        &mut a,
        &key,
        &[
            ("outcome", "fail"),
            ("recordedAt", "2026-12-06T01:00:00.000Z"),
        ],
        &[],
    );
    edit(
        &mut b,
        &key,
        &[
            ("outcome", "fail"),
            ("recordedAt", "2026-12-06T01:00:00.005Z"),
        ],
        &[],
    );
    let doc = merged(&doc0, &mut [a, b]);
    assert_eq!(conflicts(&doc).len(), 2, "automerge keeps both");
    let g = grouped_conflicts(&doc);
    assert!(g.items.is_empty() && g.document.is_empty(), "{g:?}");
    // An edit still clears what automerge kept.
    let mut edited = doc.clone().with_actor(actor(9));
    let values = BTreeMap::from([("notes".to_string(), json!("checked"))]);
    resolve_item(
        &mut edited,
        &key,
        &ItemResolution::Values(values),
        Some(("user-9", "2026-12-06T02:00:00Z")),
        "edit",
        1,
    )
    .unwrap();
    assert!(conflicts(&edited).is_empty());
    let now = item_json(&edited, &key);
    assert_eq!(now["notes"], "checked");
    assert_eq!(now["recordedBy"], "user-9");
    assert_eq!(now["outcome"], "fail");
}

#[test]
fn bad_resolutions_change_nothing() {
    let doc0 = base(1);
    let key = asset(10);
    let mut doc = doc0.clone().with_actor(actor(9));
    let heads = doc.get_heads();
    let bad = [
        json!({ "outcome": "melted" }),
        json!({ "outcome": 3 }),
        json!({ "recordedBy": "me" }),
        json!({ "readings": { "p": [1] } }),
        json!({ "observedConditions": "x" }),
        json!({}),
    ];
    for v in bad {
        let values: BTreeMap<String, Json> = serde_json::from_value(v.clone()).unwrap();
        let r = resolve_item(
            &mut doc,
            &key,
            &ItemResolution::Values(values),
            None,
            "r",
            1,
        );
        assert!(matches!(r, Err(ResolveItemError::InvalidValue(_))), "{v}");
    }
    assert!(matches!(
        resolve_item(&mut doc, &asset(99), &ItemResolution::Side(0), None, "r", 1),
        Err(ResolveItemError::NoItem(_))
    ));
    assert!(matches!(
        resolve_item(&mut doc, &key, &ItemResolution::Side(0), None, "r", 1),
        Err(ResolveItemError::NoConflict(_))
    ));
    assert_eq!(doc.get_heads(), heads);
}

/// One edit of a tablet: which item, and which fields (`None` leaves it).
#[derive(Debug, Clone)]
struct Edit {
    item: usize,
    outcome: Option<usize>,
    condition: Option<usize>,
    notes: Option<usize>,
    pressure: Option<u8>,
    record: bool,
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    (
        0..3usize,
        proptest::option::of(0..4usize),
        proptest::option::of(0..3usize),
        proptest::option::of(0..3usize),
        proptest::option::of(0..3u8),
        any::<bool>(),
    )
        .prop_map(|(item, outcome, condition, notes, pressure, record)| Edit {
            item,
            outcome,
            condition,
            notes,
            pressure,
            record,
        })
}

const OUTCOMES: [&str; 4] = ["pass", "fail", "not_tested", "not_accessible"];
const CONDITIONS: [&str; 3] = ["ok", "gauge_in_red", "pin_missing"];
const NOTES: [&str; 3] = ["", "dented", "checked"];
const FIELDS: [&str; 4] = ["outcome", "observedCondition", "notes", "readings/pressure"];

fn apply(doc: &mut Automerge, who: u8, clock: usize, e: &Edit) {
    let key = asset(10 + e.item as u128);
    let mut fields: Vec<(&str, &str)> = Vec::new();
    if let Some(o) = e.outcome {
        fields.push(("outcome", OUTCOMES[o]));
    }
    if let Some(c) = e.condition {
        fields.push(("observedCondition", CONDITIONS[c]));
    }
    if let Some(n) = e.notes {
        fields.push(("notes", NOTES[n]));
    }
    let by = format!("user-{}", who % 2);
    let at = format!("2026-12-06T01:00:{:02}.000Z", clock % 60);
    if e.record {
        fields.push(("recordedBy", by.as_str()));
        fields.push(("recordedAt", at.as_str()));
    }
    let readings: Vec<(&str, f64)> = e
        .pressure
        .map(|p| vec![("pressure", f64::from(p) * 100.0)])
        .unwrap_or_default();
    if !fields.is_empty() || !readings.is_empty() {
        edit(doc, &key, &fields, &readings);
    }
}

/// Every concurrent value of an item field (`a/b` for nested), as JSON.
fn all_values(doc: &Automerge, key: &str, field: &str) -> Vec<Json> {
    let (_, items) = doc.get(ROOT, "items").unwrap().unwrap();
    let (_, mut obj) = doc.get(&items, key).unwrap().unwrap();
    let parts: Vec<&str> = field.split('/').collect();
    let (last, parents) = parts.split_last().unwrap();
    for p in parents {
        match doc.get(&obj, *p).unwrap() {
            Some((_, id)) => obj = id,
            None => return Vec::new(),
        }
    }
    doc.get_all(&obj, *last)
        .unwrap()
        .into_iter()
        .map(|(v, id)| match v {
            firemode_sync_core::automerge::Value::Object(ObjType::Text) => {
                json!(doc.text(&id).unwrap())
            }
            firemode_sync_core::automerge::Value::Object(_) => json!({ "object": id.to_string() }),
            firemode_sync_core::automerge::Value::Scalar(s) => match s.as_ref() {
                ScalarValue::Str(s) => json!(s.to_string()),
                ScalarValue::F64(f) => json!(f),
                other => json!(other.to_string()),
            },
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn grouping_matches_the_document_and_any_side_resolves(
        rounds in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(edit_strategy(), 0..4), 3),
            1..3,
        ),
        writers in 2..4usize,
    ) {
        let mut doc = base(3);
        let mut clock = 0;
        for round in &rounds {
            let mut forks: Vec<Automerge> = (0..writers)
                .map(|w| doc.fork().with_actor(actor(2 + w as u8)))
                .collect();
            for (w, fork) in forks.iter_mut().enumerate() {
                for e in &round[w] {
                    clock += 1;
                    apply(fork, w as u8, clock, e);
                }
            }
            doc = merged(&doc, &mut forks);
        }
        let g = grouped_conflicts(&doc);
        // Ground truth from the document itself.
        let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for i in 0..3u128 {
            let key = asset(10 + i);
            for f in FIELDS {
                let values = all_values(&doc, &key, f);
                let distinct: BTreeSet<String> = values.iter().map(|v| v.to_string()).collect();
                if distinct.len() > 1 {
                    expected.entry(key.clone()).or_default().insert(f.to_string());
                }
            }
        }
        let listed: BTreeMap<String, BTreeSet<String>> = g
            .items
            .iter()
            .map(|i| (i.key.clone(), i.fields.iter().map(|f| f.field.clone()).collect()))
            .collect();
        prop_assert_eq!(listed.len(), g.items.len(), "an item listed twice");
        prop_assert_eq!(&listed, &expected);
        for item in &g.items {
            prop_assert!(item.sides.len() >= 2 && item.sides.len() <= writers);
            for f in &item.fields {
                prop_assert!(values_differ(&f.conflict));
                prop_assert!(!BOOKKEEPING_FIELDS.iter().any(|b| f.field.starts_with(b)));
                prop_assert_eq!(f.sides.len(), f.conflict.values.len());
            }
        }
        prop_assert!(g.document.is_empty());

        for item in &g.items {
            for n in 0..item.sides.len() {
                let mut r = doc.clone().with_actor(actor(99));
                resolve_item(&mut r, &item.key, &ItemResolution::Side(n), None, "r", 1).unwrap();
                let prefix = format!("{}/", item.path);
                let left: Vec<String> = conflicts(&r)
                    .into_iter()
                    .map(|c| c.path)
                    .filter(|p| p.starts_with(&prefix))
                    .collect();
                prop_assert!(left.is_empty(), "{:?}", left);
                prop_assert!(!grouped_conflicts(&r).items.iter().any(|i| i.key == item.key));
                let now = item_json(&r, &item.key);
                for (f, v) in &item.sides[n].values {
                    if v.is_null() {
                        prop_assert!(now.get(f).is_none());
                    } else {
                        prop_assert_eq!(&now[f], v, "{}", f);
                    }
                }
                // Other items are untouched.
                for other in g.items.iter().filter(|o| o.key != item.key) {
                    prop_assert_eq!(item_json(&r, &other.key), item_json(&doc, &other.key));
                }
            }
        }
    }
}
