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

/// Two nodes on one PostgreSQL: an edit through node A reaches a client of node B (doorbell and
/// catch-up); unassignment and logout through node A close sockets on node B within a second;
/// a REST write through A is read through B at once; after both nodes unload, both edits are
/// stored.
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

    // Node B's tablet edits; node A's tablet hears of it.
    put_item_field(&mut db2, bld.assets[0], "outcome", "fail");
    b.sync(doc_id, &mut db2, &mut sb, false).await.unwrap();
    // Liveness, not latency (the benchmark measures that): the whole suite shares two cores.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while da.get_heads() != db2.get_heads() {
        assert!(
            std::time::Instant::now() < deadline,
            "node A's client never got B's edit"
        );
        if let Event::Msg(firemode_sync_core::wire::Message::Sync { data, .. }) =
            a.next(Duration::from_millis(200)).await
        {
            use firemode_sync_core::automerge::sync::SyncDoc;
            da.receive_sync_message(&mut sa, sync::Message::decode(&data).unwrap())
                .unwrap();
        }
    }

    // Read-your-writes through the other node: the projection node B serves has A's edit.
    let sid = s["id"].as_str().unwrap();
    let r = node_b
        .client
        .get(
            &format!("/v1/tests/sessions/{sid}/results"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json["items"][0]["observed_condition"], "seen-on-node-a",
        "{}",
        r.body
    );
    assert_eq!(r.json["items"][0]["outcome"], "fail", "{}", r.body);

    // Unassignment through node A closes the inspector's socket on node B.
    let inspector = node_a.user(&org, "inspector").await;
    let p = node_a
        .client
        .patch(
            &format!("/v1/tests/sessions/{sid}"),
            Some(&org.admin.token),
            &serde_json::json!({ "assigned_to": [inspector.id] }),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let mut insp = SyncClient::joined(
        &node_b.base,
        &inspector.token,
        &format!("{}:i", inspector.id),
    )
    .await;
    let (mut di, mut si) = (Automerge::new(), sync::State::new());
    insp.sync(doc_id, &mut di, &mut si, true).await.unwrap();
    let p = node_a
        .client
        .patch(
            &format!("/v1/tests/sessions/{sid}"),
            Some(&org.admin.token),
            &serde_json::json!({ "assigned_to": [] }),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        insp.closed_within(Duration::from_secs(1)).await.is_some(),
        "unassigned on node A: the socket on node B closes within a second"
    );

    // Logout through node A closes that token's socket on node B.
    let office = node_a.user(&org, "office").await;
    let mut o = SyncClient::joined(&node_b.base, &office.token, &format!("{}:o", office.id)).await;
    let out = node_a
        .client
        .post(
            "/v1/auth/logout",
            Some(&office.token),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(out.status, 204);
    assert!(
        o.closed_within(Duration::from_secs(1)).await.is_some(),
        "logged out on node A: the socket on node B closes within a second"
    );

    // Everyone leaves; both nodes unload (and compact); a fresh read has both edits.
    drop((a, b, o));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while node_a.state.hub.loaded_documents() + node_b.state.hub.loaded_documents() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "documents not unloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = node_b
        .client
        .get(
            &format!("/v1/tests/sessions/{sid}/document"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    let item = &d.json["document"]["items"][bld.assets[0].to_string()];
    assert_eq!(item["observedCondition"], "seen-on-node-a");
    assert_eq!(item["outcome"], "fail");
}
