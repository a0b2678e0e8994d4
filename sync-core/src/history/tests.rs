use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ReadDoc, ROOT};
use serde_json::json;

use super::*;

fn doc_with_item(actor: u8) -> (Automerge, automerge::ObjId) {
    let mut doc = Automerge::new().with_actor(ActorId::from([actor; 16]));
    let mut tx = doc.transaction();
    let items = tx.put_object(ROOT, "items", ObjType::Map).unwrap();
    let item = tx.put_object(&items, "a/b", ObjType::Map).unwrap();
    tx.put(&item, "outcome", "not_tested").unwrap();
    let notes = tx.put_object(&item, "notes", ObjType::Text).unwrap();
    tx.splice_text(&notes, 0, 0, "hi").unwrap();
    tx.commit();
    (doc, item)
}

#[test]
fn summaries_list_changes_with_touched_paths() {
    let (mut doc, item) = doc_with_item(1);
    doc.transact_with(
        |_| {
            automerge::transaction::CommitOptions::default()
                .with_message("record")
                .with_time(42)
        },
        |tx| {
            tx.put(&item, "outcome", "pass")?;
            let notes = tx.get(&item, "notes")?.unwrap().1;
            tx.splice_text(&notes, 2, 0, "!")?;
            Ok::<_, automerge::AutomergeError>(())
        },
    )
    .unwrap();

    let summaries = change_summaries(&doc);
    assert_eq!(summaries.len(), 2);
    let first = &summaries[0];
    assert_eq!(first.seq, 1);
    assert_eq!(first.actor, "01".repeat(16));
    assert!(first.touched.contains(&"/items/a~1b/outcome".to_string()));
    let second = &summaries[1];
    assert_eq!(second.deps, vec![first.hash.clone()]);
    assert_eq!(second.message.as_deref(), Some("record"));
    assert_eq!(second.time, 42);
    assert_eq!(
        second.touched,
        vec![
            "/items/a~1b/notes".to_string(),
            "/items/a~1b/outcome".to_string()
        ]
    );
}

#[test]
fn deleted_objects_keep_their_paths_in_history() {
    let (mut doc, _) = doc_with_item(1);
    let mut tx = doc.transaction();
    let items = tx.get(ROOT, "items").unwrap().unwrap().1;
    tx.delete(&items, "a/b").unwrap();
    tx.commit();
    let summaries = change_summaries(&doc);
    assert!(summaries[0]
        .touched
        .contains(&"/items/a~1b/notes".to_string()));
    assert_eq!(summaries[1].touched, vec!["/items/a~1b".to_string()]);
}

#[test]
fn concurrent_writes_are_conflicts() {
    let (mut a, item) = doc_with_item(1);
    let mut b = a.fork().with_actor(ActorId::from([2; 16]));
    a.transact(|tx| tx.put(&item, "outcome", "pass")).unwrap();
    b.transact(|tx| tx.put(&item, "outcome", "fail")).unwrap();
    a.merge(&mut b).unwrap();

    let found = conflicts(&a);
    assert_eq!(found.len(), 1, "{found:?}");
    let conflict = &found[0];
    assert_eq!(conflict.path, "/items/a~1b/outcome");
    assert_eq!(conflict.values.len(), 2);
    let winner = a.get(&item, "outcome").unwrap().unwrap().0;
    assert_eq!(conflict.winner, json!(winner.as_str().unwrap()));
    let mut values: Vec<_> = conflict.values.iter().map(|v| v.value.clone()).collect();
    values.sort_by_key(|v| v.to_string());
    assert_eq!(values, vec![json!("fail"), json!("pass")]);
    let actors: Vec<_> = conflict.values.iter().map(|v| v.actor.clone()).collect();
    assert!(actors.contains(&"02".repeat(16)));
    assert!(conflict.values.iter().all(|v| v.op_id.contains('@')));
}

#[test]
fn no_conflicts_in_a_linear_history() {
    let (doc, _) = doc_with_item(1);
    assert!(conflicts(&doc).is_empty());
    assert!(conflicts(&Automerge::new()).is_empty());
    assert!(change_summaries(&Automerge::new()).is_empty());
}
