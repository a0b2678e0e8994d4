//! Hub lifecycle: token expiry closes sockets, idle documents unload (and compact), compaction
//! keeps the audit trail, several nodes share one PostgreSQL.

use std::time::Duration;

use firemode_sync_core::automerge::sync;
use firemode_sync_core::automerge::Automerge;
use firemode_tests::fixtures::{building, put_item_field, session};
use firemode_tests::sync_client::{Event, SyncClient};
use firemode_tests::{backend_tests, test_config, Backend, TestDb, TestServer};
use uuid::Uuid;

backend_tests!(
    expired_token_closes_socket_at_expiry,
    idle_documents_unload_and_compact
);

async fn expired_token_closes_socket_at_expiry(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let mut cfg = test_config(&db);
    cfg.access_token_ttl = Duration::from_secs(2);
    let srv = TestServer::start_with(db, cfg).await;
    let org = srv.org("Acme").await;
    let mut c =
        SyncClient::joined(&srv.base, &org.admin.token, &format!("{}:t", org.admin.id)).await;
    let started = std::time::Instant::now();
    let code = c
        .closed_within(Duration::from_secs(5))
        .await
        .expect("closed at expiry");
    assert_eq!(code, Some(1008));
    assert!(
        started.elapsed() <= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // And an expired token cannot open a socket.
    assert!(SyncClient::connect(&srv.base, &org.admin.token, "x")
        .await
        .is_err());
}

async fn idle_documents_unload_and_compact(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let mut cfg = test_config(&db);
    cfg.sync_idle_unload = Duration::from_millis(500);
    cfg.sync_compact_after = 5;
    let srv = TestServer::start_with(db, cfg).await;
    let org = srv.org("Acme").await;
    let bld = building(&srv, &org, 1).await;
    let s = session(&srv, &org.admin, &bld, &[]).await;
    let sid: Uuid = s["id"].as_str().unwrap().parse().unwrap();
    let doc_id = s["document_id"].as_str().unwrap();
    let mut c =
        SyncClient::joined(&srv.base, &org.admin.token, &format!("{}:t", org.admin.id)).await;
    let (mut d, mut st) = (Automerge::new(), sync::State::new());
    c.sync(doc_id, &mut d, &mut st, true).await.unwrap();
    for i in 0..12 {
        put_item_field(&mut d, bld.assets[0], "observedCondition", &format!("v{i}"));
        c.sync(doc_id, &mut d, &mut st, false).await.unwrap();
    }
    assert_eq!(srv.state.hub.loaded_documents(), 1);
    drop(c);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while srv.state.hub.loaded_documents() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "idle document not unloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Compaction: a snapshot holds the document; change bytes are gone; attribution stays.
    let stored = srv.store().load_document(sid).await.unwrap();
    assert!(stored.snapshot.is_some(), "a snapshot was written");
    assert!(
        stored.changes.is_empty(),
        "every change is covered by the snapshot: {}",
        stored.changes.len()
    );
    let rows = srv.store().change_attributions(sid).await.unwrap();
    assert_eq!(
        rows.len(),
        13,
        "the creation plus 12 edits, each attributed"
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r.user_id == Some(org.admin.id) && r.device_id.as_deref() == Some("t"))
            .count(),
        12
    );
    // Reloaded from the snapshot, the document is the same.
    let mut c =
        SyncClient::joined(&srv.base, &org.admin.token, &format!("{}:t2", org.admin.id)).await;
    let (mut fresh, mut st2) = (Automerge::new(), sync::State::new());
    c.sync(doc_id, &mut fresh, &mut st2, true).await.unwrap();
    assert_eq!(fresh.get_heads(), d.get_heads());
    let m = srv.client.get("/metrics", None).await;
    assert!(
        m.body.contains("firemode_sync_documents_loaded 1"),
        "{}",
        m.body
    );
    assert!(m.body.contains("firemode_sync_connections 1"));
    assert!(
        m.body.contains("firemode_sync_changes_stored_total 12"),
        "{}",
        m.body
    );
}

/// Two nodes on one PostgreSQL: an edit through node A reaches a client of node B (NOTIFY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_documents_through_postgres() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let cfg = test_config(&db);
    let shared = db.shared();
    let node_a = TestServer::start_with(db, cfg.clone()).await;
    let mut cfg_b = cfg.clone();
    cfg_b.data_dir = shared.dir.path().to_owned();
    let node_b = TestServer::start_with(shared, cfg_b).await;
    let org = node_a.org("Acme").await;
    let bld = building(&node_a, &org, 1).await;
    let s = session(&node_a, &org.admin, &bld, &[]).await;
    let doc_id = s["document_id"].as_str().unwrap();
    // Tokens are valid on both nodes (same key).
    let mut a = SyncClient::joined(
        &node_a.base,
        &org.admin.token,
        &format!("{}:a", org.admin.id),
    )
    .await;
    let mut b = SyncClient::joined(
        &node_b.base,
        &org.admin.token,
        &format!("{}:b", org.admin.id),
    )
    .await;
    let (mut da, mut sa) = (Automerge::new(), sync::State::new());
    let (mut db2, mut sb) = (Automerge::new(), sync::State::new());
    a.sync(doc_id, &mut da, &mut sa, true).await.unwrap();
    b.sync(doc_id, &mut db2, &mut sb, true).await.unwrap();
    put_item_field(
        &mut da,
        bld.assets[0],
        "observedCondition",
        "seen-on-node-a",
    );
    a.sync(doc_id, &mut da, &mut sa, false).await.unwrap();
    match b.next(Duration::from_secs(3)).await {
        Event::Msg(firemode_sync_core::wire::Message::Sync { data, .. }) => {
            use firemode_sync_core::automerge::sync::SyncDoc;
            db2.receive_sync_message(&mut sb, sync::Message::decode(&data).unwrap())
                .unwrap();
        }
        other => panic!("node B did not push the change: {other:?}"),
    }
    b.sync(doc_id, &mut db2, &mut sb, false).await.unwrap();
    assert_eq!(db2.get_heads(), da.get_heads());
    let json = firemode_sync_core::to_json(&db2, None);
    assert_eq!(
        json["items"][bld.assets[0].to_string()]["observedCondition"],
        "seen-on-node-a"
    );
}
