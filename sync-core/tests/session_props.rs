//! Property tests of the session document: writes, projection, merge and conflicts.

use std::collections::BTreeMap;

use firemode_sync_core::automerge::transaction::Transactable;
use firemode_sync_core::automerge::{
    ActorId, Automerge, ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT,
};
use firemode_sync_core::{
    apply_results, change_summaries, conflicts, create_session_document, project, set_name,
    to_json, ItemInit, Outcome, ReadingValue, ResultInput, SessionInit,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;
use uuid::Uuid;

fn actor(n: u8) -> ActorId {
    ActorId::from([n; 16])
}

fn asset(i: usize) -> Uuid {
    Uuid::from_u128(0x1000 + i as u128)
}

fn key(id: &Uuid) -> String {
    id.hyphenated().to_string()
}

fn session() -> Automerge {
    let init = SessionInit {
        session_id: Uuid::from_u128(1),
        building_id: Uuid::from_u128(2),
        org_id: Uuid::from_u128(3),
        rule_set_code: "AS1851".into(),
        rule_set_version: "2012.1.0".into(),
        frequency: "six_monthly".into(),
        name: "L3".into(),
        items: (0..2)
            .map(|i| ItemInit {
                asset_id: asset(i),
                rule_code: "AS1851-10-6M-EXT".into(),
            })
            .collect(),
    };
    create_session_document(&init, actor(1), 1_700_000_000).unwrap()
}

fn outcome() -> impl Strategy<Value = Outcome> {
    proptest::sample::select(Outcome::ALL.to_vec())
}

fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |f| f.is_finite())
}

/// Readings of every type a document holds: numbers, yes/no, text.
fn readings() -> impl Strategy<Value = BTreeMap<String, ReadingValue>> {
    let value = prop_oneof![
        finite().prop_map(ReadingValue::Number),
        any::<bool>().prop_map(ReadingValue::Bool),
        "\\PC{0,12}".prop_map(ReadingValue::Text),
    ];
    btree_map("[a-z_]{1,12}", value, 0..4)
}

/// A result for asset `i` (assets 0 and 1 are in the session, the others are new).
fn result_for(i: usize) -> impl Strategy<Value = ResultInput> {
    (
        option::of("[A-Z0-9-]{3,20}"),
        outcome(),
        option::of("[a-z_]{1,20}"),
        readings(),
        option::of("\\PC{0,40}"),
        vec(0u128..6, 0..4),
        any::<u128>(),
        "[0-9TZ:.-]{10,30}",
    )
        .prop_map(
            move |(rule, outcome, condition, readings, notes, evidence, by, at)| ResultInput {
                asset_id: asset(i),
                // New assets need a rule code.
                rule_code: if i < 2 {
                    rule
                } else {
                    rule.or(Some("NEW".into()))
                },
                outcome,
                observed_conditions: condition.map(|c| vec![c]),
                readings,
                notes,
                evidence: evidence.into_iter().map(Uuid::from_u128).collect(),
                recorded_by: Uuid::from_u128(by),
                recorded_at: at,
            },
        )
}

fn results() -> impl Strategy<Value = Vec<ResultInput>> {
    proptest::sample::subsequence((0..5).collect::<Vec<usize>>(), 1..5)
        .prop_flat_map(|assets| assets.into_iter().map(result_for).collect::<Vec<_>>())
}

#[derive(Debug, Clone)]
enum Edit {
    Put(Index, Index, ScalarValue),
    PutObject(Index, Index, ObjType),
    Delete(Index, Index),
    Insert(Index, Index, ScalarValue),
    InsertObject(Index, Index, ObjType),
    Splice(Index, Index, usize, String),
    Increment(Index, Index, i64),
}

const KEYS: &[&str] = &[
    "schema",
    "sessionId",
    "orgId",
    "status",
    "name",
    "ruleSet",
    "items",
    "notes",
    "00000000-0000-0000-0000-000000001000",
    "00000000-0000-0000-0000-000000001001",
    "assetId",
    "ruleCode",
    "outcome",
    "observedCondition",
    "readings",
    "evidence",
    "recordedBy",
    "recordedAt",
    "pressure",
    "a/b~c",
];

fn scalar() -> impl Strategy<Value = ScalarValue> {
    prop_oneof![
        "\\PC{0,8}".prop_map(|s| ScalarValue::Str(s.into())),
        proptest::sample::select(vec!["pass", "fail", "not_tested", "bogus"])
            .prop_map(|s| ScalarValue::Str(s.into())),
        any::<i64>().prop_map(ScalarValue::Int),
        any::<u64>().prop_map(ScalarValue::Uint),
        any::<f64>().prop_map(ScalarValue::F64),
        any::<bool>().prop_map(ScalarValue::Boolean),
        Just(ScalarValue::Null),
        vec(any::<u8>(), 0..4).prop_map(ScalarValue::Bytes),
        any::<i64>().prop_map(ScalarValue::counter),
        any::<i64>().prop_map(ScalarValue::Timestamp),
    ]
}

fn obj_type() -> impl Strategy<Value = ObjType> {
    proptest::sample::select(vec![ObjType::Map, ObjType::List, ObjType::Text])
}

fn edit() -> impl Strategy<Value = Edit> {
    let i = any::<Index>;
    prop_oneof![
        4 => (i(), i(), scalar()).prop_map(|(o, k, v)| Edit::Put(o, k, v)),
        2 => (i(), i(), obj_type()).prop_map(|(o, k, t)| Edit::PutObject(o, k, t)),
        1 => (i(), i()).prop_map(|(o, k)| Edit::Delete(o, k)),
        2 => (i(), i(), scalar()).prop_map(|(o, n, v)| Edit::Insert(o, n, v)),
        1 => (i(), i(), obj_type()).prop_map(|(o, n, t)| Edit::InsertObject(o, n, t)),
        2 => (i(), i(), 0usize..4, "\\PC{0,6}").prop_map(|(o, n, d, s)| Edit::Splice(o, n, d, s)),
        1 => (i(), i(), any::<i64>()).prop_map(|(o, k, by)| Edit::Increment(o, k, by)),
    ]
}

/// Every object reachable in `doc`, conflicting values included.
fn objects(doc: &Automerge) -> Vec<ObjId> {
    let mut found = vec![ROOT];
    let mut next = 0;
    while next < found.len() {
        let obj = found[next].clone();
        next += 1;
        let mut values = Vec::new();
        for k in doc.keys(&obj) {
            values.extend(doc.get_all(&obj, k.as_str()).unwrap_or_default());
        }
        if doc.object_type(&obj) == Ok(ObjType::List) {
            for i in 0..doc.length(&obj) {
                values.extend(doc.get_all(&obj, i).unwrap_or_default());
            }
        }
        for (value, id) in values {
            if let Value::Object(_) = value {
                found.push(id);
            }
        }
    }
    found
}

/// Applies `edits` as one change each; edits that make no sense for their target fail and are
/// skipped, as they would be in a client.
fn apply_edits(doc: &mut Automerge, edits: &[Edit]) {
    let mut objs = objects(doc);
    for edit in edits {
        let mut tx = doc.transaction();
        let pick = |i: &Index| objs[i.index(objs.len())].clone();
        let key = |i: &Index| KEYS[i.index(KEYS.len())];
        let created = match edit {
            Edit::Put(o, k, v) => tx.put(pick(o), key(k), v.clone()).map(|_| None),
            Edit::PutObject(o, k, t) => tx.put_object(pick(o), key(k), *t).map(Some),
            Edit::Delete(o, k) => tx.delete(pick(o), key(k)).map(|_| None),
            Edit::Insert(o, n, v) => {
                let obj = pick(o);
                let len = tx.length(&obj);
                tx.insert(&obj, n.index(len + 1), v.clone()).map(|_| None)
            }
            Edit::InsertObject(o, n, t) => {
                let obj = pick(o);
                let len = tx.length(&obj);
                tx.insert_object(&obj, n.index(len + 1), *t).map(Some)
            }
            Edit::Splice(o, n, d, s) => {
                let obj = pick(o);
                let len = tx.length(&obj);
                let at = n.index(len + 1);
                tx.splice_text(&obj, at, (*d).min(len - at) as isize, s)
                    .map(|_| None)
            }
            Edit::Increment(o, k, by) => tx.increment(pick(o), key(k), *by).map(|_| None),
        };
        match created {
            Ok(new) => {
                tx.commit();
                objs.extend(new);
            }
            Err(_) => {
                tx.rollback();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn reading_never_panics_whatever_clients_write(
        edits_a in vec(edit(), 0..30),
        other_values in vec(scalar(), 30),
        edits_b in vec(edit(), 0..15),
        result in result_for(0),
    ) {
        let mut a = session();
        let start = a.get_heads();
        let mut b = a.fork().with_actor(actor(3));
        a.set_actor(actor(2));
        apply_edits(&mut a, &edits_a);
        // The other fork makes the same edits with other values (so the two conflict), then
        // some of its own.
        let mirrored: Vec<Edit> = edits_a
            .iter()
            .zip(other_values)
            .map(|(edit, value)| match edit {
                Edit::Put(o, k, _) => Edit::Put(*o, *k, value),
                Edit::Insert(o, n, _) => Edit::Insert(*o, *n, value),
                other => other.clone(),
            })
            .chain(edits_b)
            .collect();
        apply_edits(&mut b, &mirrored);
        a.merge(&mut b).unwrap();

        let projection = project(&a);
        serde_json::to_string(&projection).unwrap();
        serde_json::to_string(&to_json(&a, None)).unwrap();
        serde_json::to_string(&to_json(&a, Some(&start))).unwrap();
        serde_json::to_string(&conflicts(&a)).unwrap();
        let summaries = change_summaries(&a);
        prop_assert_eq!(summaries.len(), a.get_changes(&[]).len());
        for path in summaries.iter().flat_map(|s| s.touched.iter()) {
            prop_assert!(path.starts_with('/'), "{}", path);
        }
        // A server write into whatever is there either works and projects, or fails cleanly.
        if apply_results(&mut a, std::slice::from_ref(&result), actor(4), 1).is_ok() {
            let item = project(&a).item(&key(&result.asset_id)).cloned();
            prop_assert_eq!(item.and_then(|i| i.outcome), Some(result.outcome));
        }
    }

    #[test]
    fn results_project_as_written_and_apply_once(results in results()) {
        let mut doc = session();
        let first = apply_results(&mut doc, &results, actor(2), 10).unwrap();
        prop_assert!(first.is_some());
        let heads = doc.get_heads();
        prop_assert_eq!(apply_results(&mut doc, &results, actor(2), 11).unwrap(), None);
        prop_assert_eq!(doc.get_heads(), heads);

        let projection = project(&doc);
        prop_assert_eq!(projection.all_problems().count(), 0, "{:?}", projection.problems);
        for result in &results {
            let item = projection.item(&key(&result.asset_id)).unwrap();
            prop_assert_eq!(item.outcome, Some(result.outcome));
            let rule = result.rule_code.clone().unwrap_or("AS1851-10-6M-EXT".into());
            prop_assert_eq!(item.rule_code.as_ref(), Some(&rule));
            prop_assert_eq!(
                &item.observed_conditions,
                &result.observed_conditions.clone().unwrap_or_default()
            );
            prop_assert_eq!(&item.readings, &result.readings);
            prop_assert_eq!(&item.notes, &result.notes.clone().unwrap_or_default());
            let mut evidence: Vec<String> = Vec::new();
            for id in &result.evidence {
                if !evidence.contains(&key(id)) {
                    evidence.push(key(id));
                }
            }
            prop_assert_eq!(&item.evidence, &evidence);
            prop_assert_eq!(item.recorded_by.as_ref(), Some(&key(&result.recorded_by)));
            prop_assert_eq!(item.recorded_at.as_ref(), Some(&result.recorded_at));
        }
    }

    #[test]
    fn forks_editing_different_fields_keep_both_edits(
        outcome_a in outcome(),
        outcome_b in outcome(),
        reading in finite(),
        notes in "\\PC{1,40}",
    ) {
        let base = session();
        let mut a = base.fork();
        let mut b = base.fork();
        let asset_id = asset(0);
        let result = |outcome| ResultInput {
            asset_id,
            rule_code: None,
            outcome,
            observed_conditions: None,
            readings: BTreeMap::new(),
            notes: None,
            evidence: vec![],
            recorded_by: Uuid::from_u128(7),
            recorded_at: "2024-05-01T00:00:00Z".into(),
        };
        let mut in_a = result(outcome_a);
        in_a.readings.insert("pressure".into(), ReadingValue::Number(reading));
        let mut in_b = result(outcome_b);
        in_b.notes = Some(notes.clone());
        in_b.evidence = vec![Uuid::from_u128(99)];
        apply_results(&mut a, &[in_a], actor(2), 1).unwrap();
        apply_results(&mut b, &[in_b], actor(3), 1).unwrap();
        a.merge(&mut b).unwrap();

        let projection = project(&a);
        let item = projection.item(&key(&asset_id)).unwrap();
        prop_assert_eq!(
            item.readings.get("pressure"),
            Some(&ReadingValue::Number(reading))
        );
        prop_assert_eq!(&item.notes, &notes);
        prop_assert_eq!(&item.evidence, &vec![key(&Uuid::from_u128(99))]);
        // A fork writing the value already there (not_tested) makes no edit.
        let wrote_a = outcome_a != Outcome::NotTested;
        let wrote_b = outcome_b != Outcome::NotTested;
        match (wrote_a, wrote_b) {
            (true, false) => prop_assert_eq!(item.outcome, Some(outcome_a)),
            (false, true) => prop_assert_eq!(item.outcome, Some(outcome_b)),
            _ => prop_assert!(item.outcome == Some(outcome_a) || item.outcome == Some(outcome_b)),
        }

        let path = format!("/items/{}/outcome", key(&asset_id));
        let conflict = conflicts(&a).into_iter().find(|c| c.path == path);
        if !(wrote_a && wrote_b) || outcome_a == outcome_b {
            // Equal concurrent values are still two values to automerge; only differing ones
            // matter here.
            if let Some(conflict) = conflict {
                prop_assert!(conflict.values.iter().all(|v| v.value == conflict.winner));
            }
        } else {
            let conflict = conflict.unwrap();
            let mut values: Vec<String> =
                conflict.values.iter().map(|v| v.value.as_str().unwrap().to_string()).collect();
            values.sort();
            let mut expected = vec![outcome_a.to_string(), outcome_b.to_string()];
            expected.sort();
            prop_assert_eq!(values, expected);
            prop_assert_eq!(conflict.winner.as_str(), item.raw_outcome.as_deref());
        }
    }

    #[test]
    fn concurrent_writes_to_one_field_are_conflicts(name_a in "\\PC{1,20}", name_b in "\\PC{1,20}") {
        prop_assume!(name_a != name_b && name_a != "L3" && name_b != "L3");
        let base = session();
        let mut a = base.fork();
        let mut b = base.fork();
        set_name(&mut a, &name_a, actor(2), 1).unwrap();
        set_name(&mut b, &name_b, actor(3), 1).unwrap();
        a.merge(&mut b).unwrap();

        let found = conflicts(&a);
        let conflict = found.iter().find(|c| c.path == "/name").unwrap();
        prop_assert_eq!(conflict.values.len(), 2);
        let values: Vec<&str> = conflict.values.iter().filter_map(|v| v.value.as_str()).collect();
        prop_assert!(values.contains(&name_a.as_str()) && values.contains(&name_b.as_str()));
        let actors: Vec<String> = conflict.values.iter().map(|v| v.actor.clone()).collect();
        prop_assert!(actors.contains(&actor(2).to_hex_string()));
        prop_assert!(actors.contains(&actor(3).to_hex_string()));
        let projected_name = project(&a).name;
        prop_assert_eq!(conflict.winner.as_str(), projected_name.as_deref());
    }
}
