//! The document store's multi-node contract, on the real databases: compaction is a
//! compare-and-swap that drops only the bytes of the hashes it lists; loading returns every
//! change a snapshot does not cover, whatever its sequence number; and on PostgreSQL a change
//! committed late by another transaction (with a lower seq than rows already read) is still
//! caught up, because the watermark is the oldest transaction still in flight.

use firemode_server::store::sessions::NewChange;
use firemode_sync_core::automerge::transaction::Transactable;
use firemode_sync_core::automerge::{ActorId, Automerge, ChangeHash, ROOT};
use firemode_tests::clients::{building_with_assets, create_session, SIX_MONTHLY_KINDS};
use firemode_tests::{backend_tests, Backend, TestServer};
use uuid::Uuid;

backend_tests!(compaction_is_a_compare_and_swap_that_drops_only_listed_hashes);

/// A session registered over REST (its creation change is stored), and the document.
async fn session(srv: &TestServer) -> (Uuid, Automerge) {
    let org = srv.org("Store Contract").await;
    let office = srv.user(&org, "office").await;
    let (building, _) = building_with_assets(srv, &office, &SIX_MONTHLY_KINDS[..1]).await;
    let s = create_session(srv, &office, building, "Round", &[]).await;
    let id: Uuid = s["id"].as_str().unwrap().parse().unwrap();
    let doc = srv
        .state
        .hub
        .read(id, |d| d.clone())
        .await
        .expect("document");
    (id, doc)
}

/// A change on top of `base` by `actor`, and its row.
fn change(
    base: &Automerge,
    actor: u8,
    key: &str,
    session: Uuid,
) -> (Automerge, ChangeHash, NewChange) {
    let mut d = base.fork().with_actor(ActorId::from([actor; 16]));
    let mut tx = d.transaction();
    tx.put(ROOT, key, 1).unwrap();
    tx.commit();
    let mut c = d.get_last_local_change().expect("a change");
    let hash = c.hash();
    let row = NewChange {
        session_id: session,
        hash: hash.0.to_vec(),
        bytes: c.bytes().into_owned(),
        actor_id: c.actor_id().to_hex_string(),
        user_id: None,
        device_id: Some(format!("node-{actor}")),
        connection_id: None,
        node: actor.into(),
    };
    (d, hash, row)
}

fn hashes_of(rows: &[(Vec<u8>, Vec<u8>)]) -> Vec<Vec<u8>> {
    let mut h: Vec<Vec<u8>> = rows.iter().map(|(h, _)| h.clone()).collect();
    h.sort();
    h
}

async fn compaction_is_a_compare_and_swap_that_drops_only_listed_hashes(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let (id, base) = session(&srv).await;
    // Let the hub unload it, so only this test writes the document's rows.
    srv.state.hub.unload_all().await;
    let store = srv.store();
    let before = store.load_document(id).await.unwrap();
    let (a_doc, a, a_row) = change(&base, 1, "from_node_a", id);
    let (_, b_hash, b_row) = change(&base, 2, "from_node_b", id);
    store.append_changes(&[a_row]).await.unwrap();
    store.append_changes(&[b_row]).await.unwrap();

    // Node A compacts what it holds: the base and its own change, not B's.
    let mut covered: Vec<Vec<u8>> = before.changes.iter().map(|(h, _)| h.clone()).collect();
    covered.push(a.0.to_vec());
    let g1 = store
        .compact(
            id,
            &a_doc.save(),
            before.snapshot.as_ref().map(|s| s.1),
            &covered,
        )
        .await
        .unwrap()
        .expect("the first snapshot is written");
    let loaded = store.load_document(id).await.unwrap();
    assert_eq!(loaded.snapshot.as_ref().map(|s| s.1), Some(g1));
    assert_eq!(
        hashes_of(&loaded.changes),
        vec![b_hash.0.to_vec()],
        "B's change keeps its bytes: the snapshot does not hold it"
    );

    // Node B, which never merged A's snapshot, cannot replace it.
    let stale = store
        .compact(
            id,
            &base.save(),
            before.snapshot.as_ref().map(|s| s.1),
            &[b_hash.0.to_vec()],
        )
        .await
        .unwrap();
    assert_eq!(
        stale, None,
        "a compaction over a snapshot it has not merged is refused"
    );
    let loaded = store.load_document(id).await.unwrap();
    assert_eq!(
        hashes_of(&loaded.changes),
        vec![b_hash.0.to_vec()],
        "and it changed nothing"
    );

    // Having merged it, B compacts; everything is covered.
    let mut merged = a_doc.clone();
    merged
        .load_incremental(&loaded.changes[0].1)
        .expect("B's change applies");
    let g2 = store
        .compact(id, &merged.save(), Some(g1), &[b_hash.0.to_vec()])
        .await
        .unwrap()
        .expect("written over the generation it merged");
    assert_eq!(g2, g1 + 1);
    let loaded = store.load_document(id).await.unwrap();
    assert!(loaded.changes.is_empty());
    let snapshot = Automerge::load(&loaded.snapshot.unwrap().0).unwrap();
    for h in [a, b_hash] {
        assert!(snapshot.get_change_meta_by_hash(&h).is_some());
    }
    let report = firemode_server::hub::verify::verify_documents(store.as_ref())
        .await
        .unwrap();
    assert!(report.lost.is_empty(), "{:?}", report.lost);
    assert_eq!(
        store.change_attributions(id).await.unwrap().len(),
        3,
        "attribution stays"
    );
    srv.stop().await;
}

/// Two transactions insert changes; the one with the higher seq commits first. A reader that
/// caught up in between must still read the other one once it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_committed_late_with_a_lower_seq_is_still_caught_up() {
    use sqlx::Connection;
    let Some(srv) = TestServer::start(Backend::Postgres).await else {
        return;
    };
    let (id, base) = session(&srv).await;
    srv.state.hub.unload_all().await;
    let store = srv.store();
    // Transaction ids are cluster-wide: a transaction of another test still open keeps the
    // horizon below the rows that created this session, so the sweep below would list them.
    // They count as node 2's here, like the rows this test inserts.
    sqlx::query("UPDATE doc_changes SET node = 2 WHERE session_id = $1")
        .bind(id)
        .execute(&sqlx::PgPool::connect(&srv.db.raw_url()).await.unwrap())
        .await
        .unwrap();
    let start = store.load_document(id).await.unwrap().watermark;
    let (_, early_hash, early) = change(&base, 1, "early_seq_late_commit", id);
    let (_, late_hash, late) = change(&base, 2, "late_seq_early_commit", id);
    let insert = |c: &NewChange| {
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO doc_changes (session_id, change_hash, bytes, actor_id, received_at, node) \
             VALUES ($1, $2, $3, $4, now(), 2) RETURNING seq",
        )
        .bind(c.session_id)
        .bind(c.hash.clone())
        .bind(c.bytes.clone())
        .bind(c.actor_id.clone())
    };
    let url = srv.db.raw_url();
    let mut c1 = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut c2 = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut t1 = c1.begin().await.unwrap();
    let seq1 = insert(&early).fetch_one(&mut *t1).await.unwrap();
    let mut t2 = c2.begin().await.unwrap();
    let seq2 = insert(&late).fetch_one(&mut *t2).await.unwrap();
    assert!(seq1 < seq2);
    t2.commit().await.unwrap();

    let first = store.changes_after(id, start).await.unwrap();
    let seen: Vec<&Vec<u8>> = first.rows.iter().map(|(h, _)| h).collect();
    assert!(seen.contains(&&late_hash.0.to_vec()));
    assert!(!seen.contains(&&early_hash.0.to_vec()), "not committed yet");
    let (changed, _) = store.sessions_changed_since(start, 1).await.unwrap();
    assert!(changed.contains(&id));
    let (changed, _) = store.sessions_changed_since(start, 2).await.unwrap();
    assert!(!changed.contains(&id), "a node's own changes are not swept");

    t1.commit().await.unwrap();
    let second = store.changes_after(id, first.watermark).await.unwrap();
    assert!(
        second.rows.iter().any(|(h, _)| *h == early_hash.0.to_vec()),
        "the change committed late (seq {seq1} < {seq2}) is read after the first watermark"
    );
    assert!(second.watermark >= first.watermark);
    srv.stop().await;
}
