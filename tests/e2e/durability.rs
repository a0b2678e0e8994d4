//! Nothing acknowledged is lost: edits synced to the real binary survive `kill -9`, and a client
//! that kept its sync state resumes without re-sending the document.

use std::time::Duration;

use chrono::Utc;
use firemode_server::store::buildings::{AssetRecord, BuildingRecord};
use firemode_sync_core::automerge::sync;
use firemode_sync_core::automerge::transaction::Transactable;
use firemode_sync_core::automerge::{Automerge, ReadDoc, ROOT};
use firemode_tests::process::Proc;
use firemode_tests::sync_client::SyncClient;
use firemode_tests::{backend_tests, Backend, Client, TestDb};
use serde_json::json;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_firemode-e2e-server");

backend_tests!(acknowledged_edits_survive_kill_9);

async fn acknowledged_edits_survive_kill_9(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let data = db.dir.path().join("data");
    let data_s = data.to_str().unwrap().to_owned();
    let mut env: Vec<(String, String)> = vec![("FIREMODE_LOG_FORMAT".into(), "json".into())];
    if b == Backend::Postgres {
        env.push(("DATABASE_URL".into(), db.raw_url()));
        env.push((
            "FIREMODE_JWT_SECRET".into(),
            firemode_server::crypto::random_b64(48),
        ));
        env.push((
            "FIREMODE_PII_KEYS".into(),
            format!("1:{}", firemode_server::crypto::random_b64(32)),
        ));
    }
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args = ["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_s];
    let srv = Proc::spawn(BIN, &args, &env_ref);

    // An organisation through the admin command, a building through the store (same database).
    let created = firemode_tests::process::create_org(
        BIN,
        &data_s,
        &env_ref,
        b == Backend::Sqlite,
        ("Durable", "d@durable.test", "ledger-stays-put-1"),
    );
    let org: Uuid = created["org_id"].as_str().unwrap().parse().unwrap();
    let url = match b {
        Backend::Sqlite => firemode_server::config::DatabaseUrl::Sqlite(data.join("firemode.db")),
        Backend::Postgres => db.url.clone(),
    };
    let store = firemode_server::store::connect(&url).await.unwrap();
    let now = Utc::now();
    let building = BuildingRecord {
        id: Uuid::now_v7(),
        org_id: org,
        name: "B".into(),
        address: "A".into(),
        building_type: "office".into(),
        contact_name_enc: None,
        contact_phone_enc: None,
        contact_email: None,
        rule_set_code: "AS1851".into(),
        rule_set_version: "2012.1.0".into(),
        editions: Default::default(),
        created_at: now,
        updated_at: now,
        state: None,
        schedule_anchor: None,
    };
    store.create_building(&building).await.unwrap();
    let asset = AssetRecord {
        id: Uuid::now_v7(),
        org_id: org,
        building_id: building.id,
        asset_type: "portable_extinguisher".into(),
        location: "L1".into(),
        identifier: None,
        install_date: None,
        rule_codes: sqlx::types::Json(vec![]),
        rule_alternatives: Default::default(),
        created_at: now,
        updated_at: now,
        schedule_anchor: None,
        manufacture_date: None,
    };
    store
        .create_assets(std::slice::from_ref(&asset))
        .await
        .unwrap();
    drop(store);

    let c = Client::new(&srv.base);
    let login = c
        .post(
            "/v1/auth/login",
            None,
            &json!({ "email": "d@durable.test", "password": "ledger-stays-put-1" }),
        )
        .await;
    let token = login.str("access_token").to_owned();
    let me = c.get("/v1/users/me", Some(&token)).await.uuid("id");
    let s = c
        .post(
            "/v1/tests/sessions",
            Some(&token),
            &json!({ "building_id": building.id, "name": "S", "frequency": "six_monthly" }),
        )
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    let sid = s.str("id").to_owned();
    let doc_id = s.str("document_id").to_owned();

    // Twenty acknowledged edits, each its own change.
    let peer = format!("{me}:tablet");
    let mut client = SyncClient::joined(&srv.base, &token, &peer).await;
    let (mut doc, mut state) = (Automerge::new(), sync::State::new());
    client
        .sync(&doc_id, &mut doc, &mut state, true)
        .await
        .unwrap();
    for i in 0..20 {
        let mut tx = doc.transaction();
        let (_, items) = tx.get(ROOT, "items").unwrap().unwrap();
        let (_, item) = tx.get(&items, asset.id.to_string()).unwrap().unwrap();
        tx.put(&item, "observedCondition", format!("edit-{i}"))
            .unwrap();
        if i == 19 {
            // The last edit fails the item: a defect must follow even though the server is
            // killed before its projection (debounced) runs.
            tx.put(&item, "outcome", "fail").unwrap();
        }
        tx.commit();
        client
            .sync(&doc_id, &mut doc, &mut state, false)
            .await
            .unwrap();
    }
    let acked = doc.get_heads();
    // The server's last message named our heads: acknowledged. Now pull the plug.
    srv.kill9();
    drop(client);

    let srv = Proc::spawn(BIN, &args, &env_ref);
    let c = Client::new(&srv.base);
    let d = c
        .get(&format!("/v1/tests/sessions/{sid}/document"), Some(&token))
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(
        d.json["document"]["items"][asset.id.to_string()]["observedCondition"],
        "edit-19"
    );
    let server_heads: Vec<String> = d.json["heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect();
    let ours: Vec<String> = acked
        .iter()
        .map(|h| firemode_sync_core::encode_heads(std::slice::from_ref(h)))
        .collect();
    assert_eq!(
        server_heads, ours,
        "the server has exactly what it acknowledged"
    );

    // Derived state survives the crash: the results say "fail" and the defect opens (the
    // start-up backlog scan, or the read itself, re-projects what the crash left behind).
    let r = c
        .get(&format!("/v1/tests/sessions/{sid}/results"), Some(&token))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let row = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["asset_id"] == asset.id.to_string())
        .expect("the item's row")
        .clone();
    assert_eq!(row["outcome"], "fail", "{row}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = c
            .get(&format!("/v1/defects?session_id={sid}"), Some(&token))
            .await;
        assert_eq!(d.status, 200, "{}", d.body);
        if d.json["items"].as_array().is_some_and(|a| !a.is_empty()) {
            assert_eq!(d.json["items"][0]["asset_id"], asset.id.to_string());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no defect for the failed item after the restart: {}",
            d.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The tablet kept its sync state (only shared heads survive encoding) and resumes cheaply.
    let mut state = sync::State::decode(&state.encode()).unwrap();
    let mut client = SyncClient::joined(&srv.base, &token, &peer).await;
    client
        .sync(&doc_id, &mut doc, &mut state, false)
        .await
        .unwrap();
    assert_eq!(
        client.changes_sent, 0,
        "no change re-sent after the restart"
    );
    assert_eq!(doc.get_heads(), acked);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let (status, _) = srv.terminate();
    assert!(status.success());
}
